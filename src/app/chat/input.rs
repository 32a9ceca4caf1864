//! Where `gen chat`'s input comes from: a terminal, edited with rustyline and remembered in a
//! history file, or a script's stdin, one line (or JSONL message) per input. `"""` messages of
//! several lines are joined here for both.

use super::command::MultiLine;
use crate::config::ChatConfig;
use anyhow::{Context, Result};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use serde::Deserialize;
use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

/// One input, complete.
pub enum Line {
    /// A line typed or read (a `"""` message joined).
    Text(String),
    /// A JSONL message of a script: `{"role": ..., "content": ...}`.
    Message { role: String, content: String },
    /// A JSONL conversation of a script, `{"messages": [...]}`: it replaces the conversation
    /// (and is answered when it ends with a user message).
    Conversation(Vec<(String, String)>),
    /// Ctrl-C at the prompt.
    Interrupted,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMessage {
    role: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonLine {
    Message(JsonMessage),
    Conversation { messages: Vec<JsonMessage> },
}

enum Reader {
    Terminal {
        editor: Box<Editor<(), DefaultHistory>>,
        history: Option<PathBuf>,
    },
    Script {
        stdin: std::io::StdinLock<'static>,
        line_no: usize,
    },
}

pub struct Source {
    reader: Reader,
    multi: MultiLine,
    max_bytes: u64,
}

impl Source {
    /// A terminal when stdin is one, else the script on stdin.
    pub fn open(c: &ChatConfig) -> Result<Self> {
        let max_bytes = c.generate.prompt.max_bytes;
        let reader = if std::io::stdin().is_terminal() {
            let mut editor = Editor::<(), DefaultHistory>::new()
                .context("starting the line editor on the terminal")?;
            let history = c
                .history
                .then(|| dirs::data_dir().map(|d| d.join("gen").join("chat_history")))
                .flatten();
            if let Some(h) = &history {
                // A first session has no history yet.
                let _ = editor.load_history(h);
            }
            Reader::Terminal {
                editor: Box::new(editor),
                history,
            }
        } else {
            Reader::Script {
                stdin: std::io::stdin().lock(),
                line_no: 0,
            }
        };
        Ok(Self {
            reader,
            multi: MultiLine::default(),
            max_bytes,
        })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.reader, Reader::Terminal { .. })
    }

    /// The next complete input, or `None` at the end (Ctrl-D, end of stdin). The outer error
    /// is a failure to read at all; the inner one a line that cannot be taken (too long, not
    /// UTF-8, malformed JSON), after which reading goes on.
    pub fn next_line(&mut self) -> Result<Option<Result<Line>>> {
        loop {
            let raw = match &mut self.reader {
                Reader::Terminal { editor, .. } => {
                    let prompt = if self.multi.is_open() { "... " } else { ">>> " };
                    match editor.readline(prompt) {
                        Ok(l) => {
                            if !l.trim().is_empty() {
                                let _ = editor.add_history_entry(l.as_str());
                            }
                            l
                        }
                        Err(ReadlineError::Interrupted) => {
                            self.multi = MultiLine::default();
                            return Ok(Some(Ok(Line::Interrupted)));
                        }
                        Err(ReadlineError::Eof) => return Ok(None),
                        Err(e) => return Err(e).context("reading from the terminal"),
                    }
                }
                Reader::Script { stdin, line_no } => {
                    let mut buf = Vec::new();
                    let n = stdin
                        .by_ref()
                        .take(self.max_bytes.saturating_add(1))
                        .read_until(b'\n', &mut buf)
                        .context("reading stdin")?;
                    if n == 0 {
                        return Ok(None);
                    }
                    *line_no += 1;
                    if buf.len() as u64 > self.max_bytes {
                        if buf.last() != Some(&b'\n') {
                            skip_line(stdin)?;
                        }
                        return Ok(Some(Err(anyhow::anyhow!(
                            "line {line_no} of stdin is longer than {} bytes; raise --max-prompt-bytes if it is meant to be",
                            self.max_bytes
                        ))));
                    }
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                        if buf.last() == Some(&b'\r') {
                            buf.pop();
                        }
                    }
                    let line = match String::from_utf8(buf) {
                        Ok(l) => l,
                        Err(e) => {
                            return Ok(Some(Err(anyhow::anyhow!(
                                "line {line_no} of stdin is not valid UTF-8 (invalid byte at offset {}); convert it to UTF-8 first",
                                e.utf8_error().valid_up_to()
                            ))))
                        }
                    };
                    if !self.multi.is_open() && line.trim_start().starts_with('{') {
                        let Ok(parsed) = serde_json::from_str::<JsonLine>(&line) else {
                            return Ok(Some(Err(anyhow::anyhow!(
                                "line {line_no}: not a {{\"role\": ..., \"content\": ...}} message or a {{\"messages\": [...]}} conversation"
                            ))));
                        };
                        return Ok(Some(Ok(match parsed {
                            JsonLine::Message(m) => Line::Message {
                                role: m.role,
                                content: m.content,
                            },
                            JsonLine::Conversation { messages } => Line::Conversation(
                                messages.into_iter().map(|m| (m.role, m.content)).collect(),
                            ),
                        })));
                    }
                    line
                }
            };
            if let Some(line) = self.multi.feed(&raw) {
                return Ok(Some(Ok(Line::Text(line))));
            }
        }
    }
}

/// Reads and drops the rest of a line that was too long to keep.
fn skip_line(r: &mut impl BufRead) -> Result<()> {
    loop {
        let buf = r.fill_buf().context("reading stdin")?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

impl Source {
    /// Writes the terminal's history file (nothing for a script, or with `--no-history`).
    pub fn save_history(&mut self) {
        if let Reader::Terminal {
            editor,
            history: Some(path),
        } = &mut self.reader
        {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // History is a convenience: failing to keep it does not fail the session.
            let _ = editor.save_history(path);
        }
    }
}
