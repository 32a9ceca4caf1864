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
    let stop = match &g.stop {
        crate::generate::StopReason::Eos { id } => json!({"reason": "eos", "token": id}),
        crate::generate::StopReason::Stop { string } => json!({"reason": "stop", "string": string}),
        other => json!({"reason": other.name()}),
    };
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
