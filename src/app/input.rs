//! Where prompts come from: an argument, a file, stdin, or a file (`-f -` for stdin) followed
//! by the argument; and `--each-line`, where every input line is a prompt of
//! its own and a JSON object line may override settings for that prompt.

use super::UsageError;
use crate::config::{GenerateConfig, PromptSource};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// Reads the prompt text `src` describes. Piped stdin is read when neither a file nor prompt
/// text is given, and always with `-f -` (then followed by the text); a terminal is never
/// waited on. One final newline of a file or of stdin is dropped.
pub fn read_input(src: &PromptSource) -> Result<String> {
    read_text(
        src,
        "no prompt: pass one as an argument, with --prompt, with --file, or on stdin",
    )
}

/// Reads the text `src` describes, as [`read_input`]; `missing` is the usage error when there
/// is none.
pub fn read_text(src: &PromptSource, missing: &str) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    match &src.file {
        Some(p) if p.as_os_str() == "-" => {
            parts.push(without_final_newline(read_stdin(src.max_bytes)?))
        }
        Some(p) => parts.push(read_text_file(p, "the prompt file", src.max_bytes)?),
        // Stdin is read unasked only when no prompt text was given: with one, a pipe that
        // stays open (`sleep 100 | gen -p hi`) would be waited on. `-f -` reads it explicitly.
        None if src.text.is_none() && !std::io::stdin().is_terminal() => {
            let s = without_final_newline(read_stdin(src.max_bytes)?);
            if !s.is_empty() {
                parts.push(s);
            }
        }
        None => {}
    }
    if let Some(t) = &src.text {
        parts.push(t.clone());
    }
    if parts.is_empty() {
        return Err(UsageError(missing.into()).into());
    }
    // Joined by a newline, unless the first part already ends with one.
    let mut out = String::new();
    for p in parts {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&p);
    }
    Ok(out)
}

/// Reads the text file at `path` (`what` names it in errors), at most `max_bytes` of it, without
/// its final newline. A pipe is fine (`-f <(cmd)`); a device that never ends stops at the cap.
pub fn read_text_file(path: &Path, what: &str, max_bytes: u64) -> Result<String> {
    let what = format!("{what} {}", path.display());
    let file = std::fs::File::open(path).with_context(|| format!("reading {what}"))?;
    let bytes = read_capped(file, &what, max_bytes)?;
    Ok(without_final_newline(utf8(bytes, &what)?))
}

/// A file or stdin ends with a newline that is not part of the prompt (`echo hi | gen`, an
/// editor's last line); as llama.cpp does for `-f`, one final `\n` (or `\r\n`) is dropped.
fn without_final_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn read_stdin(max_bytes: u64) -> Result<String> {
    let what = "the prompt on stdin";
    utf8(read_capped(std::io::stdin().lock(), what, max_bytes)?, what)
}

/// Reads all of `r`, but no more than `max` bytes: more is a usage error naming the flag.
fn read_capped(r: impl Read, what: &str, max: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what}"))?;
    if buf.len() as u64 > max {
        return Err(UsageError(format!(
            "{what} is longer than {max} bytes; raise --max-prompt-bytes if it is meant to be"
        ))
        .into());
    }
    Ok(buf)
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} is not valid UTF-8 (invalid byte at offset {}); convert it to UTF-8 first",
            e.utf8_error().valid_up_to()
        )
    })
}

/// One prompt of an `--each-line` batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// 1-based input line number.
    pub line: usize,
    pub prompt: String,
    pub overrides: Overrides,
}

/// Per-prompt settings a JSON line may carry (`{"prompt": "...", "seed": 3}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub stop: Option<StopList>,
    pub system: Option<String>,
}

/// `"stop": "x"` or `"stop": ["x", "y"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StopList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    prompt: String,
    #[serde(flatten)]
    overrides: Overrides,
}

impl Overrides {
    /// Applies these overrides to a copy of the command's settings, checking ranges as the
    /// samplers define them.
    pub fn apply(&self, base: &GenerateConfig) -> Result<GenerateConfig> {
        let mut g = base.clone();
        let s = &mut g.sampling;
        if let Some(v) = self.seed {
            s.seed = Some(v);
        }
        if let Some(v) = self.max_tokens {
            g.max_tokens = v;
        }
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.top_k = self.top_k.or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.min_p = self.min_p.unwrap_or(s.min_p);
        s.typical_p = self.typical_p.unwrap_or(s.typical_p);
        s.repeat_penalty = self.repeat_penalty.unwrap_or(s.repeat_penalty);
        crate::sampling::validate(s)?;
        match &self.stop {
            Some(StopList::One(x)) => g.stop = vec![x.clone()],
            Some(StopList::Many(v)) => g.stop = v.clone(),
            None => {}
        }
        if g.stop.iter().any(String::is_empty) {
            anyhow::bail!("\"stop\": a stop string must not be empty (it would match at once)");
        }
        if let Some(v) = &self.system {
            g.system = Some(v.clone());
        }
        Ok(g)
    }
}

/// Splits `--each-line` input into prompts: blank lines are skipped, a line starting with `{` is
/// a JSON object with a `"prompt"` and optional overrides, any other line is the prompt itself.
/// Each line that cannot be parsed is an error naming its line number.
pub fn parse_lines(text: &str) -> Vec<(usize, Result<Job>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            (line, parse_line(line, l))
        })
        .collect()
}

fn parse_line(line: usize, l: &str) -> Result<Job> {
    if l.trim_start().starts_with('{') {
        let j: JsonLine = serde_json::from_str(l)
            .with_context(|| format!("line {line}: not a valid JSON prompt object"))?;
        Ok(Job {
            line,
            prompt: j.prompt,
            overrides: j.overrides,
        })
    } else {
        Ok(Job {
            line,
            prompt: l.to_string(),
            overrides: Overrides::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json_objects() {
        let jobs = parse_lines(
            "plain prompt\n\n{\"prompt\": \"j\", \"seed\": 4, \"stop\": [\"x\"]}\n{bad\n{\"prompt\": \"k\", \"colour\": 1}\n",
        );
        assert_eq!(jobs.len(), 4);
        let jobs: Vec<Result<Job>> = jobs.into_iter().map(|(_, j)| j).collect();
        let a = jobs[0].as_ref().unwrap();
        assert_eq!((a.line, a.prompt.as_str()), (1, "plain prompt"));
        let b = jobs[1].as_ref().unwrap();
        assert_eq!((b.line, b.overrides.seed), (3, Some(4)));
        assert_eq!(b.overrides.stop, Some(StopList::Many(vec!["x".into()])));
        let e = format!("{:#}", jobs[2].as_ref().unwrap_err());
        assert!(e.starts_with("line 4:"), "{e}");
        let e = format!("{:#}", jobs[3].as_ref().unwrap_err());
        assert!(e.contains("line 5") && e.contains("colour"), "{e}");
    }
}
