//! The only module that writes to stdout and stderr: streamed text, JSON records, tokenizer
//! listings, perplexity reports, the tables of `--explain`/`--logprobs`/`--num-return`, the
//! `--compare` view, the stats line, errors and the download progress bar. Whether stdout is a
//! terminal is decided here.

mod compare;
mod json;
mod progress;
mod samples;
mod tables;

pub use compare::{compare_json, compare_records, compare_view, CompareReport, CompareRow};
pub use json::{
    beam_json, chat_error_json, chat_turn_json, generation_json, model_input_json, stop_json,
    RunInfo,
};
pub use progress::{DownloadBar, HubReporter, StepBar};
pub use samples::{samples_json, samples_jsonl, samples_stats_line, samples_text, SamplesRun};
pub use tables::{beam_blocks, explain_table, explain_tables, logprobs_table};

use crate::engine::perplexity::PerplexityReport;
use crate::engine::{BeamResult, Generation, OutputClosed};
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// One token's text (for tables and JSON); fails for a token the tokenizer cannot decode.
pub type Piece<'a> = &'a dyn Fn(u32) -> Result<String>;
/// The text of several tokens, as [`Piece`].
pub type Decode<'a> = &'a dyn Fn(&[u32]) -> Result<String>;

/// Streams generated text to stdout, each piece written and flushed as it is decided (so a
/// pipe's reader sees every token as it comes, as llama.cpp and `llm` do). A write that fails
/// because the reader went away returns [`OutputClosed`], which ends generation.
pub struct TextOut {
    terminal: bool,
}

impl TextOut {
    /// Wraps stdout, checking once whether it is a terminal.
    pub fn new() -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Writes one piece of text.
    pub fn write(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        stdout_bytes(text.as_bytes())?;
        STDOUT_MID_LINE.store(!text.ends_with('\n'), Ordering::Relaxed);
        Ok(())
    }

    /// Ends the text with a newline on a terminal (so the shell prompt starts on its own
    /// line); in a pipe the text stays exactly as generated.
    pub fn finish(self) -> Result<()> {
        if self.terminal && STDOUT_MID_LINE.swap(false, Ordering::Relaxed) {
            stdout_bytes(b"\n")?;
        }
        Ok(())
    }
}

impl Default for TextOut {
    fn default() -> Self {
        Self::new()
    }
}

/// A failed write to stdout: [`OutputClosed`] when its reader went away, else the error.
fn closed_or(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OutputClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Whether the text on stdout last ended without a newline; a stderr line written into the
/// same file (`2>&1`, or both on one terminal) then starts on a fresh line.
static STDOUT_MID_LINE: AtomicBool = AtomicBool::new(false);

/// Whether stdout and stderr are the same file (one terminal, `2>&1`, one pipe).
fn same_file() -> bool {
    static SAME: OnceLock<bool> = OnceLock::new();
    *SAME.get_or_init(|| {
        let id = |fd: std::os::fd::BorrowedFd<'_>| {
            let f = std::fs::File::from(fd.try_clone_to_owned().ok()?);
            f.metadata().ok().map(|m| (m.dev(), m.ino()))
        };
        let (out, err) = (id(std::io::stdout().as_fd()), id(std::io::stderr().as_fd()));
        out.is_some() && out == err
    })
}

/// Writes `msg` and a newline on stderr, starting on a fresh line when unfinished text on
/// stdout would otherwise run into it.
fn stderr_line(msg: &str) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    if STDOUT_MID_LINE.load(Ordering::Relaxed) && same_file() {
        STDOUT_MID_LINE.store(false, Ordering::Relaxed);
        err.write_all(b"\n")?;
    }
    writeln!(err, "{msg}")
}

/// Writes one JSON value and a newline to stdout.
pub fn json(value: &serde_json::Value) -> Result<()> {
    // Serialised first, so that a closed pipe is an I/O error we see (serde_json's writer
    // error would hide it).
    let mut bytes = serde_json::to_vec(value).context("serialising the JSON output")?;
    bytes.push(b'\n');
    stdout_bytes(&bytes)
}

/// Writes and flushes `bytes` on stdout ([`OutputClosed`] when the reader went away).
fn stdout_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(closed_or)
}

/// Ends the text of one prompt of an `--each-line` batch in text mode and separates it from
/// the next one's: the answer ends with a newline, then an empty line follows (`last`: no
/// empty line). An answer that failed is an empty one, so the k-th answer stays the k-th
/// prompt's.
pub fn answer_end(last: bool) -> Result<()> {
    let mut sep: &[u8] = if STDOUT_MID_LINE.swap(false, Ordering::Relaxed) {
        b"\n\n"
    } else {
        b"\n"
    };
    if last {
        sep = &sep[..sep.len() - 1];
    }
    stdout_bytes(sep)
}

/// Writes plain lines to stdout.
pub fn lines(lines: &[String]) -> Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    stdout_bytes(text.as_bytes())
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

/// Ends one `gen chat` answer in text mode: a newline if the answer did not end with one, then
/// an empty line (a script reading stdout splits answers there).
pub fn chat_answer_end() -> Result<()> {
    let sep: &[u8] = if STDOUT_MID_LINE.swap(false, Ordering::Relaxed) {
        b"\n\n"
    } else {
        b"\n"
    };
    stdout_bytes(sep)
}

/// `-v`'s line after each `gen chat` turn.
pub fn chat_stats_line(turn: usize, g: &Generation, reused: usize, computed: usize) -> String {
    let t = &g.timings;
    format!(
        "gen: turn {turn} | prompt {} tok ({reused} from the cache, {computed} computed in {:.1} ms) | generated {} tok{} | stop: {}",
        reused + computed,
        ms(t.prefill),
        g.tokens.len(),
        rate(t.decode_steps, t.decode_tok_s(), "tok/s"),
        g.stop.name()
    )
}

/// A diagnostic line on stderr.
pub fn note(msg: &str) -> Result<()> {
    stderr_line(msg).context("writing to stderr")
}

/// How the prompt reached the model, for the stats line: ` (chat template)` when it was
/// wrapped as a user message, nothing when sent as plain text.
fn prompt_kind(chat: bool) -> &'static str {
    if chat {
        " (chat template)"
    } else {
        ""
    }
}

/// The one-line summary printed on stderr after a generation (`chat`: the prompt went through
/// the chat template).
pub fn stats_line(g: &Generation, load: Duration, chat: bool) -> String {
    let t = &g.timings;
    format!(
        "gen: load {:.2} s | prompt {} tok{}, {:.1} tok/s | generated {} tok{}{} | stop: {}",
        load.as_secs_f64(),
        t.prompt_tokens,
        prompt_kind(chat),
        t.prefill_tok_s(),
        g.tokens.len(),
        rate(t.decode_steps, t.decode_tok_s(), "tok/s"),
        drafts(t),
        g.stop.name()
    )
}

/// ` | draft: 12 of 30 accepted (40%), 1.6 tok/pass`, with speculative decoding.
fn drafts(t: &crate::engine::Timings) -> String {
    if t.target_passes == 0 {
        String::new()
    } else {
        format!(
            " | draft: {} of {} accepted ({:.0}%), {:.2} tok/pass",
            t.accepted,
            t.drafted,
            100.0 * t.acceptance_rate(),
            t.tokens_per_pass()
        )
    }
}

/// The stats line after a beam search.
pub fn beam_stats_line(r: &BeamResult, load: Duration, chat: bool) -> String {
    let t = &r.timings;
    format!(
        "gen: load {:.2} s | prompt {} tok{}, {:.1} tok/s | {} beam steps{} (KV reorder {:.1} ms) | stop: {}",
        load.as_secs_f64(),
        t.prompt_tokens,
        prompt_kind(chat),
        t.prefill_tok_s(),
        t.decode_steps,
        rate(t.decode_steps, t.decode_tok_s(), "steps/s"),
        ms(r.reorder),
        if r.interrupted {
            "interrupted"
        } else {
            r.hypotheses.first().map_or("none", |h| h.stop.name())
        }
    )
}

/// `, 52.9 tok/s`, or nothing when no decode step ran (the first token comes from prefill, so
/// one generated token has no decode rate).
fn rate(steps: usize, per_s: f64, unit: &str) -> String {
    if steps == 0 {
        String::new()
    } else {
        format!(", {per_s:.1} {unit}")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints an error (with its chain of causes) on stderr as one line. Each cause contributes
/// its first line only: candle appends a backtrace to its messages when RUST_BACKTRACE is set.
pub fn error(err: &anyhow::Error) {
    // Nowhere is left to report a failure to write the error itself (stderr closed or full);
    // the exit status still says that the run failed.
    let _ = stderr_line(&format!("error: {}", error_text(err)));
}

/// An error and its causes on one line, each cause's first line only.
fn error_text(err: &anyhow::Error) -> String {
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
    causes.join(": ")
}
