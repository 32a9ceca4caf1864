//! The text-mode tables: `--explain` and `--logprobs` (on stderr), and the numbered
//! hypotheses of `--num-return` (on stdout).

use super::Piece;
use crate::engine::{BeamResult, Generation};
use crate::sampling::StepTrace;
use anyhow::Result;
use std::io::Write;

/// A token's text for tables: quoted and escaped, at most `max` characters.
fn shown(text: &str, max: usize) -> String {
    let q = format!("{text:?}");
    if q.chars().count() <= max {
        q
    } else {
        let mut s: String = q.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// One step of `--explain` as a table: a row per token, a column per stage.
pub fn explain_table(step: usize, tr: &StepTrace, piece: Piece) -> Result<Vec<String>> {
    const TOKEN_W: usize = 16;
    let widths: Vec<usize> = tr.stages.iter().map(|s| s.chars().count().max(8)).collect();
    let coin = tr
        .coin
        .map_or_else(String::new, |c| format!(" · coin {c:.4}"));
    let mut lines = vec![format!(
        "step {step}{coin} · picked {} (id {})",
        shown(&piece(tr.chosen)?, 24),
        tr.chosen
    )];
    let mut header = format!("  {:<TOKEN_W$}", "token");
    for (s, w) in tr.stages.iter().zip(&widths) {
        header.push_str(&format!("  {s:>w$}"));
    }
    lines.push(header);
    for r in &tr.rows {
        let mut line = format!("  {:<TOKEN_W$}", shown(&piece(r.id)?, TOKEN_W));
        for (p, w) in r.probs.iter().zip(&widths) {
            let cell = p.map_or_else(|| "-".to_string(), |p| format!("{p:.4}"));
            line.push_str(&format!("  {cell:>w$}"));
        }
        if let Some(i) = r.removed_at() {
            line.push_str(&format!("  removed by {}", tr.stages[i]));
        }
        if r.id == tr.chosen {
            line.push_str("  <- picked");
        }
        lines.push(line);
    }
    let mut kept = format!("  {:<TOKEN_W$}", "(kept)");
    for (k, w) in tr.kept.iter().zip(&widths) {
        kept.push_str(&format!("  {k:>w$}"));
    }
    lines.push(kept);
    Ok(lines)
}

/// Prints every step's `--explain` table on stderr.
pub fn explain_tables(g: &Generation, piece: Piece) -> Result<()> {
    let mut err = std::io::stderr().lock();
    for (i, tr) in g
        .records
        .iter()
        .filter_map(|r| r.trace.as_ref())
        .enumerate()
    {
        for l in explain_table(i, tr, piece)? {
            writeln!(err, "{l}")?;
        }
        writeln!(err)?;
    }
    Ok(())
}

/// Prints `--logprobs` in text mode on stderr: one line per generated token.
pub fn logprobs_table(g: &Generation, piece: Piece) -> Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "gen: logprobs (token, log p, then the most likely alternatives)"
    )?;
    for l in g.records.iter().filter_map(|r| r.logprobs.as_ref()) {
        let alts = l
            .top
            .iter()
            .map(|&(id, lp)| Ok(format!("{} {lp:.3}", shown(&piece(id)?, 16))))
            .collect::<Result<Vec<String>>>()?;
        writeln!(
            err,
            "  {:<18} {:>8.3}  | {}",
            shown(&piece(l.id)?, 18),
            l.logprob,
            alts.join("  ")
        )?;
    }
    Ok(())
}

/// `--num-return N` in text mode: numbered blocks, best first.
pub fn beam_blocks(r: &BeamResult) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, h) in r.hypotheses.iter().enumerate() {
        writeln!(
            out,
            "[{}] score {:.4} (sum of log-probs {:.4}, {} tokens, stop: {})",
            i + 1,
            h.score,
            h.sum_logprobs,
            h.tokens.len(),
            h.stop.name()
        )?;
        writeln!(out, "{}", h.text)?;
        if i + 1 < r.hypotheses.len() {
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}
