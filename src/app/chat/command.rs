//! What one line typed into `gen chat` means: a message for the model, a `/command`, or the
//! start of a `"""` multi-line message (ollama's convention).

use std::path::PathBuf;

/// One input of the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message for the model.
    Message(String),
    Help,
    Exit,
    Clear,
    /// `/system TEXT` (no text: show the system prompt).
    System(Option<String>),
    /// `/set NAME VALUE`.
    Set(String, String),
    Show,
    Undo,
    Regen,
    Save(PathBuf),
    Load(PathBuf),
    /// Nothing to do (an empty line).
    Nothing,
}

/// The help `/help` prints.
pub const HELP: &str = "\
commands:
  /help, /?            this list
  /bye, /exit          leave (Ctrl-D too)
  /clear               forget the conversation, keep the system prompt
  /system TEXT         set the system prompt (no TEXT: show it; /set system TEXT too)
  /set NAME VALUE      change a setting: temperature, top-k, top-p, min-p, typical-p,
                       repeat-penalty, repeat-last-n, frequency-penalty, presence-penalty,
                       seed, max-tokens (the flags' names and ranges)
  /show                model, template, settings and context used
  /undo                drop the last exchange
  /regen               answer the last message again (a new sample)
  /save FILE           write the conversation and settings as JSON
  /load FILE           continue a conversation /save wrote
  \"\"\"                  start or end a message of several lines
Ctrl-C stops an answer; a line starting with // sends the rest with one / as a message.";

/// Reads one complete input line (a multi-line message already joined).
pub fn parse(line: &str) -> Result<Input, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Input::Nothing);
    }
    if let Some(rest) = trimmed.strip_prefix("//") {
        return Ok(Input::Message(format!("/{rest}")));
    }
    let Some(body) = trimmed.strip_prefix('/') else {
        return Ok(Input::Message(line.to_string()));
    };
    let (name, arg) = match body.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (body, ""),
    };
    let need = |what: &str| -> Result<String, String> {
        if arg.is_empty() {
            Err(format!("/{name} needs {what}; /help lists the commands"))
        } else {
            Ok(arg.to_string())
        }
    };
    Ok(match name {
        "help" | "?" => Input::Help,
        "bye" | "exit" | "quit" => Input::Exit,
        "clear" => Input::Clear,
        "system" => Input::System((!arg.is_empty()).then(|| arg.to_string())),
        "set" => {
            let arg = need("a setting and a value, e.g. /set temperature 0.5")?;
            match arg.split_once(char::is_whitespace) {
                // ollama's spelling of /system.
                Some(("system", v)) => Input::System(Some(v.trim().to_string())),
                Some((k, v)) => Input::Set(k.to_string(), v.trim().to_string()),
                None => {
                    return Err(format!(
                        "/set {arg} needs a value, e.g. /set {arg} 0.5"
                    ))
                }
            }
        }
        "show" => Input::Show,
        "undo" => Input::Undo,
        "regen" => Input::Regen,
        "save" => Input::Save(need("a file name")?.into()),
        "load" => Input::Load(need("a file name")?.into()),
        _ => {
            return Err(format!(
                "unknown command /{name}; /help lists the commands (start with // to send a message that begins with /)"
            ))
        }
    })
}

/// Joins the lines of a `"""` message: `first` is the line that opened it (after the quotes);
/// returns `None` while the closing `"""` has not come.
#[derive(Debug, Default)]
pub struct MultiLine {
    lines: Option<Vec<String>>,
}

impl MultiLine {
    /// Whether a multi-line message is open.
    pub fn is_open(&self) -> bool {
        self.lines.is_some()
    }

    /// Feeds one raw line; returns the complete input line once there is one.
    pub fn feed(&mut self, line: &str) -> Option<String> {
        match &mut self.lines {
            None => {
                let Some(rest) = line.trim_start().strip_prefix("\"\"\"") else {
                    return Some(line.to_string());
                };
                // `"""one line"""` on its own line is complete at once.
                if let Some(whole) = rest.strip_suffix("\"\"\"") {
                    return Some(whole.to_string());
                }
                self.lines = Some(if rest.is_empty() {
                    Vec::new()
                } else {
                    vec![rest.to_string()]
                });
                None
            }
            Some(lines) => {
                if let Some(last) = line.trim_end().strip_suffix("\"\"\"") {
                    if !last.is_empty() {
                        lines.push(last.to_string());
                    }
                    let text = lines.join("\n");
                    self.lines = None;
                    // A message, whatever its first character.
                    Some(if text.starts_with('/') {
                        format!("/{text}")
                    } else {
                        text
                    })
                } else {
                    lines.push(line.to_string());
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_messages() {
        assert_eq!(parse("hello"), Ok(Input::Message("hello".into())));
        assert_eq!(parse("  "), Ok(Input::Nothing));
        assert_eq!(parse("/bye"), Ok(Input::Exit));
        assert_eq!(parse("/?"), Ok(Input::Help));
        assert_eq!(
            parse("/set temperature 0.5"),
            Ok(Input::Set("temperature".into(), "0.5".into()))
        );
        assert!(parse("/set temperature")
            .unwrap_err()
            .contains("needs a value"));
        assert_eq!(
            parse("/system Be brief. Very."),
            Ok(Input::System(Some("Be brief. Very.".into())))
        );
        assert_eq!(
            parse("/save"),
            Err("/save needs a file name; /help lists the commands".into())
        );
        assert!(parse("/frob")
            .unwrap_err()
            .contains("unknown command /frob"));
        assert_eq!(
            parse("//etc/hosts?"),
            Ok(Input::Message("/etc/hosts?".into()))
        );
    }

    #[test]
    fn triple_quotes_join_lines() {
        let mut m = MultiLine::default();
        assert_eq!(m.feed("plain"), Some("plain".into()));
        assert_eq!(m.feed("\"\"\"first"), None);
        assert!(m.is_open());
        assert_eq!(m.feed("second"), None);
        assert_eq!(m.feed("third\"\"\""), Some("first\nsecond\nthird".into()));
        assert!(!m.is_open());
        assert_eq!(m.feed("\"\"\"one\"\"\""), Some("one".into()));
        assert_eq!(m.feed("\"\"\""), None);
        assert_eq!(m.feed("/not a command"), None);
        let joined = m.feed("\"\"\"").unwrap();
        assert_eq!(parse(&joined), Ok(Input::Message("/not a command".into())));
    }
}
