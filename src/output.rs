//! The only module that writes to stdout and stderr: streamed text, JSON, tokenizer listings,
//! perplexity reports and the stats line. Whether stdout is a terminal is decided once here.

use crate::decode::BeamResult;
use crate::generate::Generation;
use crate::sampling::{StepTrace, TokenLogprobs};
use anyhow::Result;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Streams generated text to stdout: flushed per piece on a terminal, block-buffered in a pipe.
pub struct TextOut {
    out: std::io::BufWriter<std::io::Stdout>,
    flush_each: bool,
}

impl TextOut {
    /// Wraps stdout, checking once whether it is a terminal.
    pub fn new() -> Self {
        let stdout = std::io::stdout();
        let flush_each = stdout.is_terminal();
        Self {
            out: std::io::BufWriter::new(stdout),
            flush_each,
        }
    }

    /// Writes one piece of text.
    pub fn write(&mut self, text: &str) -> Result<()> {
        self.out.write_all(text.as_bytes())?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Ends the text with a newline on a terminal (so the shell prompt starts on its own line)
    /// and flushes.
    pub fn finish(mut self) -> Result<()> {
        if self.flush_each {
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

impl Default for TextOut {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes one JSON value and a newline to stdout.
pub fn json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Ends one prompt's text in an `--each-line` batch: a newline, so outputs stay one per line
/// (on a terminal `TextOut::finish` already wrote it).
pub fn text_separator() -> Result<()> {
    let mut out = std::io::stdout().lock();
    if !out.is_terminal() {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes plain lines to stdout.
pub fn lines(lines: &[String]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for l in lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(())
}

/// A diagnostic line on stderr.
pub fn note(msg: &str) {
    eprintln!("{msg}");
}

/// The one-line summary printed on stderr after a generation.
pub fn stats_line(g: &Generation, load: Duration) -> String {
    let t = &g.timings;
    format!(
        "gen: load {:.2} s | prompt {} tok, {:.1} tok/s | generated {} tok, {:.1} tok/s | stop: {}",
        load.as_secs_f64(),
        t.prompt_tokens,
        t.prefill_tok_s(),
        g.tokens.len(),
        t.decode_tok_s(),
        g.stop.name()
    )
}

/// What the JSON record says about the run besides the generation itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub model: String,
    pub load: Duration,
    /// The seed the sampler's RNG started from.
    pub seed: u64,
    /// The effective sampler chain, stage by stage.
    pub sampler: Vec<String>,
}

/// The JSON object describing a generation (`--format json`). `piece` decodes one token id.
pub fn generation_json(g: &Generation, run: &RunInfo, piece: &dyn Fn(u32) -> String) -> Value {
    let t = &g.timings;
    let stop = stop_json(&g.stop);
    let mut v = json!({
        "model": run.model,
        "text": g.text,
        "tokens": g.tokens,
        "stop": stop,
        "seed": run.seed,
        "sampler": run.sampler,
        "timings": {
            "load_ms": ms(run.load),
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": ms(t.prefill),
            "prefill_tok_s": t.prefill_tok_s(),
            "generated_tokens": g.tokens.len(),
            "decode_steps": t.decode_steps,
            "decode_ms": ms(t.decode),
            "decode_tok_s": t.decode_tok_s(),
        }
    });
    let lp: Vec<Value> = g
        .records
        .iter()
        .filter_map(|r| r.logprobs.as_ref())
        .map(|l| logprobs_json(l, piece))
        .collect();
    if !lp.is_empty() {
        v["logprobs"] = Value::Array(lp);
    }
    let ex: Vec<Value> = g
        .records
        .iter()
        .filter_map(|r| r.trace.as_ref())
        .enumerate()
        .map(|(i, tr)| trace_json(i, tr, piece))
        .collect();
    if !ex.is_empty() {
        v["explain"] = Value::Array(ex);
    }
    v
}

fn logprobs_json(l: &TokenLogprobs, piece: &dyn Fn(u32) -> String) -> Value {
    json!({
        "token": l.id,
        "text": piece(l.id),
        "logprob": finite_or_null(l.logprob),
        "top": l.top.iter().map(|&(id, lp)| json!({
            "token": id, "text": piece(id), "logprob": finite_or_null(lp)
        })).collect::<Vec<_>>(),
    })
}

/// JSON has no −inf: a token with probability 0 gets `null`.
fn finite_or_null(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn trace_json(step: usize, tr: &StepTrace, piece: &dyn Fn(u32) -> String) -> Value {
    json!({
        "step": step,
        "coin": tr.coin,
        "chosen": tr.chosen,
        "chosen_text": piece(tr.chosen),
        "stages": tr.stages,
        "kept": tr.kept,
        "rows": tr.rows.iter().map(|r| json!({
            "token": r.id,
            "text": piece(r.id),
            "probs": r.probs,
            "removed_by": r.removed_at().map(|i| tr.stages[i].clone()),
        })).collect::<Vec<_>>(),
    })
}

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
pub fn explain_table(step: usize, tr: &StepTrace, piece: &dyn Fn(u32) -> String) -> Vec<String> {
    const TOKEN_W: usize = 16;
    let widths: Vec<usize> = tr.stages.iter().map(|s| s.chars().count().max(8)).collect();
    let mut lines = vec![format!(
        "step {step} · coin {:.4} · picked {} (id {})",
        tr.coin,
        shown(&piece(tr.chosen), 24),
        tr.chosen
    )];
    let mut header = format!("  {:<TOKEN_W$}", "token");
    for (s, w) in tr.stages.iter().zip(&widths) {
        header.push_str(&format!("  {s:>w$}"));
    }
    lines.push(header);
    for r in &tr.rows {
        let mut line = format!("  {:<TOKEN_W$}", shown(&piece(r.id), TOKEN_W));
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
    lines
}

/// Prints every step's `--explain` table on stderr.
pub fn explain_tables(g: &Generation, piece: &dyn Fn(u32) -> String) {
    let mut err = std::io::stderr().lock();
    for (i, tr) in g
        .records
        .iter()
        .filter_map(|r| r.trace.as_ref())
        .enumerate()
    {
        for l in explain_table(i, tr, piece) {
            let _ = writeln!(err, "{l}");
        }
        let _ = writeln!(err);
    }
}

/// Prints `--logprobs` in text mode on stderr: one line per generated token.
pub fn logprobs_table(g: &Generation, piece: &dyn Fn(u32) -> String) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "gen: logprobs (token, log p, then the most likely alternatives)"
    );
    for l in g.records.iter().filter_map(|r| r.logprobs.as_ref()) {
        let alts: Vec<String> = l
            .top
            .iter()
            .map(|&(id, lp)| format!("{} {lp:.3}", shown(&piece(id), 16)))
            .collect();
        let _ = writeln!(
            err,
            "  {:<18} {:>8.3}  | {}",
            shown(&piece(l.id), 18),
            l.logprob,
            alts.join("  ")
        );
    }
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

fn stop_json(stop: &crate::generate::StopReason) -> Value {
    match stop {
        crate::generate::StopReason::Eos { id } => json!({"reason": "eos", "token": id}),
        crate::generate::StopReason::Stop { string } => json!({"reason": "stop", "string": string}),
        other => json!({"reason": other.name()}),
    }
}

/// The JSON object of a beam search: the best hypothesis at the top level (as a sampled
/// generation's), and every returned one under `beams`.
pub fn beam_json(r: &BeamResult, model: &str, load: Duration) -> Value {
    let t = &r.timings;
    let best = r.hypotheses.first();
    json!({
        "model": model,
        "text": best.map(|h| h.text.as_str()).unwrap_or_default(),
        "tokens": best.map(|h| h.tokens.clone()).unwrap_or_default(),
        "stop": best.map_or(Value::Null, |h| stop_json(&h.stop)),
        "beams": r.hypotheses.iter().map(|h| json!({
            "text": h.text,
            "tokens": h.tokens,
            "score": h.score,
            "sum_logprobs": h.sum_logprobs,
            "stop": stop_json(&h.stop),
        })).collect::<Vec<_>>(),
        "timings": {
            "load_ms": ms(load),
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": ms(t.prefill),
            "prefill_tok_s": t.prefill_tok_s(),
            "decode_steps": t.decode_steps,
            "decode_ms": ms(t.decode),
            "reorder_ms": ms(r.reorder),
            "decode_tok_s": t.decode_tok_s(),
        }
    })
}

/// The stats line after a beam search.
pub fn beam_stats_line(r: &BeamResult, load: Duration) -> String {
    let t = &r.timings;
    format!(
        "gen: load {:.2} s | prompt {} tok, {:.1} tok/s | {} beam steps, {:.1} steps/s (KV reorder {:.1} ms) | stop: {}",
        load.as_secs_f64(),
        t.prompt_tokens,
        t.prefill_tok_s(),
        t.decode_steps,
        t.decode_tok_s(),
        ms(r.reorder),
        r.hypotheses.first().map_or("none", |h| h.stop.name())
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints an error (with its chain of causes) on stderr as one line. Each cause contributes
/// its first line only: candle appends a backtrace to its messages when RUST_BACKTRACE is set.
pub fn error(err: &anyhow::Error) {
    let causes: Vec<String> = err
        .chain()
        .map(|c| {
            c.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string()
        })
        .collect();
    eprintln!("error: {}", causes.join(": "));
}

/// One strategy's outcome in `--compare`.
#[derive(Debug, Clone)]
pub struct CompareRow {
    pub label: String,
    /// The effective sampler chain (or the beam settings).
    pub sampler: Vec<String>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: crate::generate::StopReason,
    /// Mean log-probability of the generated tokens under the unfiltered model.
    pub mean_logprob: Option<f64>,
    pub decode_tok_s: f64,
    pub elapsed: Duration,
}

/// Everything `--compare` reports.
#[derive(Debug, Clone)]
pub struct CompareReport {
    pub prompt_tokens: usize,
    pub prefill: Duration,
    pub seed: u64,
    pub rows: Vec<CompareRow>,
}

impl CompareReport {
    /// Tokens every strategy shares at the start.
    pub fn diverge_at(&self) -> usize {
        let seqs: Vec<&[u32]> = self.rows.iter().map(|r| r.tokens.as_slice()).collect();
        crate::compare::common_prefix(&seqs)
    }
}

fn row_metrics(r: &CompareRow, decode: &dyn Fn(&[u32]) -> String) -> Value {
    let rep = crate::compare::longest_repeat(&r.tokens);
    json!({
        "strategy": r.label,
        "sampler": r.sampler,
        "text": r.text,
        "tokens": r.tokens,
        "stop": stop_json(&r.stop),
        "generated_tokens": r.tokens.len(),
        "decode_tok_s": r.decode_tok_s,
        "elapsed_ms": ms(r.elapsed),
        "mean_logprob": r.mean_logprob,
        "perplexity": r.mean_logprob.map(|m| (-m).exp()),
        "distinct_1": crate::compare::distinct(&r.tokens, 1),
        "distinct_2": crate::compare::distinct(&r.tokens, 2),
        "longest_repeat": {"tokens": rep.len(), "text": decode(rep)},
    })
}

/// `--compare --format json`: one object with every strategy.
pub fn compare_json(rep: &CompareReport, decode: &dyn Fn(&[u32]) -> String) -> Value {
    json!({
        "prompt_tokens": rep.prompt_tokens,
        "prefill_ms": ms(rep.prefill),
        "seed": rep.seed,
        "diverge_at": rep.diverge_at(),
        "strategies": rep.rows.iter().map(|r| row_metrics(r, decode)).collect::<Vec<_>>(),
    })
}

/// `--compare --format jsonl`: one object per strategy.
pub fn compare_records(rep: &CompareReport, decode: &dyn Fn(&[u32]) -> String) -> Vec<Value> {
    rep.rows
        .iter()
        .map(|r| {
            let mut v = row_metrics(r, decode);
            v["seed"] = rep.seed.into();
            v["diverge_at"] = rep.diverge_at().into();
            v["prompt_tokens"] = rep.prompt_tokens.into();
            v
        })
        .collect()
}

/// Where strategies part ways in the printed text.
const DIVERGE_MARK: char = '▍';

/// `--compare` in text mode: one column per strategy when the terminal is wide enough, stacked
/// blocks otherwise (and always in a pipe). A mark shows where the strategies first diverge.
pub fn compare_view(rep: &CompareReport, decode: &dyn Fn(&[u32]) -> String) -> Result<()> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let width = terminal_size::terminal_size().map_or(0, |(w, _)| w.0 as usize);
    let k = rep.diverge_at();
    let blocks: Vec<(String, Vec<String>, String)> = rep
        .rows
        .iter()
        .map(|r| {
            let m = row_metrics(r, decode);
            let rep_text = m["longest_repeat"]["text"].as_str().unwrap_or_default();
            let metrics = vec![
                format!(
                    "{} tok, {:.1} tok/s, stop: {}",
                    r.tokens.len(),
                    r.decode_tok_s,
                    r.stop.name()
                ),
                match r.mean_logprob {
                    Some(lp) => format!("mean log p {lp:.3}, perplexity {:.2}", (-lp).exp()),
                    None => "mean log p -".to_string(),
                },
                format!(
                    "distinct-1 {:.2}, distinct-2 {:.2}",
                    m["distinct_1"].as_f64().unwrap_or(0.0),
                    m["distinct_2"].as_f64().unwrap_or(0.0)
                ),
                format!(
                    "longest repeat {} tok {:?}",
                    m["longest_repeat"]["tokens"],
                    rep_text.chars().take(24).collect::<String>()
                ),
            ];
            // The mark goes after the shared prefix's text.
            let shared = decode(&r.tokens[..k.min(r.tokens.len())]);
            let text = match r.text.strip_prefix(shared.as_str()) {
                Some(rest) if rep.rows.len() > 1 => format!("{shared}{DIVERGE_MARK}{rest}"),
                _ => r.text.clone(),
            };
            (r.label.clone(), metrics, text)
        })
        .collect();
    let n = blocks.len().max(1);
    let gap = 3;
    let col = width.saturating_sub(gap * (n - 1)) / n;
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (bold, dim, reset) = if colour {
        ("\x1b[1m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    if terminal && col >= 28 {
        let cols: Vec<Vec<(String, bool)>> = blocks
            .iter()
            .map(|(label, metrics, text)| {
                let mut lines = vec![(label.clone(), true)];
                lines.extend(
                    metrics
                        .iter()
                        .flat_map(|m| wrap(m, col))
                        .map(|l| (l, false)),
                );
                lines.push(("─".repeat(col), false));
                lines.extend(wrap(text, col).into_iter().map(|l| (l, false)));
                lines
            })
            .collect();
        let height = cols.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..height {
            let mut line = String::new();
            for (j, c) in cols.iter().enumerate() {
                let (cell, head) = c.get(i).cloned().unwrap_or_default();
                let pad = col.saturating_sub(cell.chars().count());
                if head {
                    line.push_str(bold);
                }
                line.push_str(&cell);
                if head {
                    line.push_str(reset);
                }
                if j + 1 < cols.len() {
                    line.push_str(&" ".repeat(pad + gap));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    } else {
        for (i, (label, metrics, text)) in blocks.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "{bold}== {label} =={reset}")?;
            for m in metrics {
                writeln!(out, "{dim}{m}{reset}")?;
            }
            writeln!(out, "{text}")?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{dim}prompt {} tok prefilled once in {:.0} ms; seed {}; the strategies share the first {k} tokens ({DIVERGE_MARK} marks where they diverge){reset}",
        rep.prompt_tokens,
        ms(rep.prefill),
        rep.seed
    )?;
    out.flush()?;
    Ok(())
}

/// Splits text into lines of at most `width` characters, breaking at newlines and spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_inclusive(' ') {
            if line.chars().count() + word.trim_end().chars().count() > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line).trim_end().to_string());
            }
            let mut w = word.to_string();
            while w.chars().count() > width {
                let head: String = w.chars().take(width).collect();
                w = w.chars().skip(width).collect();
                lines.push(head);
            }
            line.push_str(&w);
        }
        lines.push(line.trim_end().to_string());
    }
    lines
}
