//! The only module that writes to stdout and stderr: streamed text, JSON records, tokenizer
//! listings, perplexity reports, the tables of `--explain`/`--logprobs`/`--num-return`, the
//! `--compare` view, the stats line, errors and the download progress bar. Whether stdout is a
//! terminal is decided here.

mod compare;
mod json;
mod progress;
mod tables;

pub use compare::{compare_json, compare_records, compare_view, CompareReport, CompareRow};
pub use json::{beam_json, generation_json, stop_json, RunInfo};
pub use progress::{DownloadBar, HubReporter};
pub use tables::{beam_blocks, explain_table, explain_tables, logprobs_table};

use crate::engine::perplexity::PerplexityReport;
use crate::engine::{BeamResult, Generation};
use anyhow::Result;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// One token's text (for tables and JSON); fails for a token the tokenizer cannot decode.
pub type Piece<'a> = &'a dyn Fn(u32) -> Result<String>;
/// The text of several tokens, as [`Piece`].
pub type Decode<'a> = &'a dyn Fn(&[u32]) -> Result<String>;

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

/// `gen tokenize`: one `id<TAB>piece` line per token, or `{"ids": [...], "pieces": [...]}`.
pub fn tokens(ids: &[u32], pieces: &[String], as_json: bool) -> Result<()> {
    if as_json {
        return self::json(&json!({"ids": ids, "pieces": pieces}));
    }
    let rows: Vec<String> = ids
        .iter()
        .zip(pieces)
        .map(|(id, p)| format!("{id}\t{p}"))
        .collect();
    lines(&rows)
}

/// `gen perplexity`: the report as one summary line, or as JSON.
pub fn perplexity(r: &PerplexityReport, as_json: bool) -> Result<()> {
    if as_json {
        return self::json(&json!({
            "context": r.context,
            "windows": r.windows,
            "scored_tokens": r.scored_tokens,
            "mean_nll": r.mean_nll,
            "ppl": r.ppl(),
            "running_ppl": r.running,
        }));
    }
    lines(&[format!(
        "perplexity {:.4} over {} windows of {} tokens ({} tokens scored, mean NLL {:.5})",
        r.ppl(),
        r.windows,
        r.context,
        r.scored_tokens,
        r.mean_nll
    )])
}

/// A diagnostic line on stderr.
pub fn note(msg: &str) -> Result<()> {
    writeln!(std::io::stderr().lock(), "{msg}")?;
    Ok(())
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
        if r.interrupted {
            "interrupted"
        } else {
            r.hypotheses.first().map_or("none", |h| h.stop.name())
        }
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
    // Nowhere is left to report a failure to write the error itself (stderr closed or full);
    // the exit status still says that the run failed.
    let _ = writeln!(std::io::stderr().lock(), "error: {}", causes.join(": "));
}
