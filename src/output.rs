//! The only module that writes to stdout and stderr: streamed text, JSON, tokenizer listings,
//! perplexity reports and the stats line. Whether stdout is a terminal is decided once here.

use crate::generate::Generation;
use anyhow::Result;
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

/// The JSON object describing a generation (`--format json`).
pub fn generation_json(g: &Generation, load: Duration, model: &str) -> serde_json::Value {
    let t = &g.timings;
    let stop = match &g.stop {
        crate::generate::StopReason::Eos { id } => {
            serde_json::json!({"reason": "eos", "token": id})
        }
        other => serde_json::json!({"reason": other.name()}),
    };
    serde_json::json!({
        "model": model,
        "text": g.text,
        "tokens": g.tokens,
        "stop": stop,
        "timings": {
            "load_ms": ms(load),
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": ms(t.prefill),
            "prefill_tok_s": t.prefill_tok_s(),
            "generated_tokens": g.tokens.len(),
            "decode_steps": t.decode_steps,
            "decode_ms": ms(t.decode),
            "decode_tok_s": t.decode_tok_s(),
        }
    })
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
