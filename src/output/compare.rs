//! `--compare`: each strategy's metrics (computed once, typed) and their three renderings:
//! columns or stacked blocks on stdout, one JSON object, or one JSON line per strategy.

use super::json::stop_json;
use super::{ms, Decode};
use crate::engine::metrics::{common_prefix, distinct, longest_repeat};
use crate::engine::StopReason;
use anyhow::Result;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// One strategy's outcome in `--compare`.
#[derive(Debug, Clone)]
pub struct CompareRow {
    pub label: String,
    /// The effective sampler chain (or the beam settings).
    pub sampler: Vec<String>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
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
        common_prefix(&seqs)
    }
}

/// The text metrics of one row.
struct Metrics {
    distinct_1: f64,
    distinct_2: f64,
    /// The longest repeated n-gram: its length in tokens and its text.
    repeat_tokens: usize,
    repeat_text: String,
}

impl Metrics {
    fn of(r: &CompareRow, decode: Decode) -> Result<Self> {
        let rep = longest_repeat(&r.tokens);
        Ok(Self {
            distinct_1: distinct(&r.tokens, 1),
            distinct_2: distinct(&r.tokens, 2),
            repeat_tokens: rep.len(),
            repeat_text: decode(rep)?,
        })
    }
}

fn row_json(r: &CompareRow, decode: Decode) -> Result<Value> {
    let m = Metrics::of(r, decode)?;
    Ok(json!({
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
        "distinct_1": m.distinct_1,
        "distinct_2": m.distinct_2,
        "longest_repeat": {"tokens": m.repeat_tokens, "text": m.repeat_text},
    }))
}

/// `--compare --format json`: one object with every strategy.
pub fn compare_json(rep: &CompareReport, decode: Decode) -> Result<Value> {
    let strategies = rep
        .rows
        .iter()
        .map(|r| row_json(r, decode))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "prompt_tokens": rep.prompt_tokens,
        "prefill_ms": ms(rep.prefill),
        "seed": rep.seed,
        "diverge_at": rep.diverge_at(),
        "strategies": strategies,
    }))
}

/// `--compare --format jsonl`: one object per strategy.
pub fn compare_records(rep: &CompareReport, decode: Decode) -> Result<Vec<Value>> {
    rep.rows
        .iter()
        .map(|r| {
            let mut v = row_json(r, decode)?;
            v["seed"] = rep.seed.into();
            v["diverge_at"] = rep.diverge_at().into();
            v["prompt_tokens"] = rep.prompt_tokens.into();
            Ok(v)
        })
        .collect()
}

/// One strategy's block in the text view: its label, its metric lines, and its text with the
/// divergence mark after the first `k` tokens' text.
fn block(
    r: &CompareRow,
    rep: &CompareReport,
    k: usize,
    decode: Decode,
) -> Result<(String, Vec<String>, String)> {
    let m = Metrics::of(r, decode)?;
    let metrics = vec![
        format!(
            "{} tok{}, stop: {}",
            r.tokens.len(),
            if r.tokens.len() > 1 {
                format!(", {:.1} tok/s", r.decode_tok_s)
            } else {
                String::new()
            },
            r.stop.name()
        ),
        match r.mean_logprob {
            Some(lp) => format!("mean log p {lp:.3}, perplexity {:.2}", (-lp).exp()),
            None => "mean log p -".to_string(),
        },
        format!(
            "distinct-1 {:.2}, distinct-2 {:.2}",
            m.distinct_1, m.distinct_2
        ),
        match m.repeat_tokens {
            0 => "no repeated tokens".to_string(),
            n => format!(
                "longest repeat {n} tok {:?}",
                m.repeat_text.chars().take(24).collect::<String>()
            ),
        },
    ];
    let shared = decode(&r.tokens[..k.min(r.tokens.len())])?;
    let text = match r.text.strip_prefix(shared.as_str()) {
        Some(rest) if rep.rows.len() > 1 => format!("{shared}{DIVERGE_MARK}{rest}"),
        _ => r.text.clone(),
    };
    Ok((r.label.clone(), metrics, text))
}

/// Where strategies part ways in the printed text.
const DIVERGE_MARK: char = '▍';

/// `--compare` in text mode: one column per strategy when the terminal is wide enough, stacked
/// blocks otherwise (and always in a pipe). A mark shows where the strategies first diverge.
pub fn compare_view(rep: &CompareReport, decode: Decode) -> Result<()> {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let width = terminal_size::terminal_size().map_or(0, |(w, _)| w.0 as usize);
    let k = rep.diverge_at();
    let blocks = rep
        .rows
        .iter()
        .map(|r| block(r, rep, k, decode))
        .collect::<Result<Vec<_>>>()?;
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
        // Labels and metrics wrap to the column width; each section is padded to the
        // tallest column's, so that the rules and the texts stay in line.
        let heads: Vec<Vec<String>> = blocks.iter().map(|(l, _, _)| wrap(l, col)).collect();
        let metric_lines: Vec<Vec<String>> = blocks
            .iter()
            .map(|(_, m, _)| m.iter().flat_map(|m| wrap(m, col)).collect())
            .collect();
        let tallest = |v: &[Vec<String>]| v.iter().map(Vec::len).max().unwrap_or(0);
        let (head_h, metric_h) = (tallest(&heads), tallest(&metric_lines));
        let cols: Vec<Vec<(String, bool)>> = blocks
            .iter()
            .enumerate()
            .map(|(j, (_, _, text))| {
                let mut lines: Vec<(String, bool)> = Vec::new();
                let mut section = |src: &[String], height: usize, head: bool| {
                    for i in 0..height {
                        lines.push((src.get(i).cloned().unwrap_or_default(), head));
                    }
                };
                section(&heads[j], head_h, true);
                section(&metric_lines[j], metric_h, false);
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
    let shared = match k {
        0 => format!(
            "the strategies differ from the first token ({DIVERGE_MARK} marks where they diverge)"
        ),
        1 => format!(
            "the strategies share the first token ({DIVERGE_MARK} marks where they diverge)"
        ),
        k => format!(
            "the strategies share the first {k} tokens ({DIVERGE_MARK} marks where they diverge)"
        ),
    };
    writeln!(
        out,
        "{dim}prompt {} tok prefilled once in {:.0} ms; seed {}; {shared}{reset}",
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
