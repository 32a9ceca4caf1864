//! The conversation `gen chat` holds: the system prompt and the exchanges after it, the edits
//! the commands make (`/undo`, `/regen`, `/clear`, dropping the oldest exchanges when the
//! context is full), and its file form for `/save` and `/load`.

use crate::chat::Message;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A system prompt and the user/assistant messages after it, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub system: Option<String>,
    /// Alternating user and assistant messages; the last may be a user message waiting for
    /// its answer.
    messages: Vec<Message>,
}

/// What `/save` writes: the conversation and the settings, each setting by its `/set` name.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<SavedMessage>,
    #[serde(default)]
    settings: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedMessage {
    role: String,
    content: String,
}

impl Conversation {
    /// An empty conversation after `system`.
    pub fn new(system: Option<String>) -> Self {
        Self {
            system,
            messages: Vec::new(),
        }
    }

    /// Every message the chat template renders: the system prompt first.
    pub fn messages(&self) -> Vec<Message> {
        self.system
            .iter()
            .map(|s| Message::new("system", s.as_str()))
            .chain(self.messages.iter().cloned())
            .collect()
    }

    /// Exchanges so far (a user message waiting for its answer counts).
    pub fn exchanges(&self) -> usize {
        self.messages.iter().filter(|m| m.role == "user").count()
    }

    pub fn push_user(&mut self, text: &str) {
        self.messages.push(Message::new("user", text));
    }

    pub fn push_assistant(&mut self, text: &str) {
        self.messages.push(Message::new("assistant", text));
    }

    /// Whether the last message is a user message waiting for its answer.
    pub fn awaits_answer(&self) -> bool {
        self.messages.last().is_some_and(|m| m.role == "user")
    }

    /// Drops the last user message (a turn that failed before it was answered).
    pub fn pop_user(&mut self) {
        if self.awaits_answer() {
            self.messages.pop();
        }
    }

    /// `/undo`: drops the last exchange (the answer and the message it answered); false when
    /// there is none.
    pub fn undo(&mut self) -> bool {
        if self.messages.last().is_some_and(|m| m.role == "assistant") {
            self.messages.pop();
        }
        let had = self.awaits_answer();
        self.pop_user();
        had
    }

    /// `/regen`: drops the last answer so its message can be answered again; false when there
    /// is no answer to drop.
    pub fn drop_last_answer(&mut self) -> bool {
        if self.messages.last().is_some_and(|m| m.role == "assistant") {
            self.messages.pop();
            true
        } else {
            false
        }
    }

    /// `/clear`: forgets every exchange, keeps the system prompt.
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Drops the oldest exchange (a user message and its answer) when one comes before the
    /// last user message; false when only the last message is left.
    pub fn drop_oldest(&mut self) -> bool {
        if self.exchanges() < 2 {
            return false;
        }
        self.messages.remove(0);
        if self.messages.first().is_some_and(|m| m.role == "assistant") {
            self.messages.remove(0);
        }
        true
    }

    /// A conversation from `(role, content)` pairs: an optional system message first (it
    /// replaces `system`), then user and assistant messages alternating, starting with a user
    /// one.
    pub fn from_messages(
        system: Option<String>,
        messages: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        let mut c = Self::new(system);
        for (i, (role, content)) in messages.into_iter().enumerate() {
            if i == 0 && role == "system" {
                c.system = Some(content);
                continue;
            }
            let want = if c.messages.len().is_multiple_of(2) {
                "user"
            } else {
                "assistant"
            };
            if role != want {
                return Err(format!(
                    "message {} has role `{role}` where `{want}` belongs (after an optional system message, user and assistant messages alternate)",
                    i + 1
                ));
            }
            c.messages.push(Message::new(role, content));
        }
        Ok(c)
    }

    /// Writes the conversation and `settings` to `path` as JSON.
    pub fn save(&self, path: &Path, settings: Vec<(String, String)>) -> Result<()> {
        let saved = Saved {
            system: self.system.clone(),
            messages: self
                .messages
                .iter()
                .map(|m| SavedMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect(),
            settings,
        };
        let text = serde_json::to_string_pretty(&saved).context("serialising the conversation")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Reads what [`Conversation::save`] wrote: the conversation and its settings.
    pub fn load(path: &Path) -> Result<(Self, Vec<(String, String)>)> {
        crate::weights::source::check_regular_file(path)?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let saved: Saved = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a conversation saved by /save (JSON with `messages`)",
                path.display()
            )
        })?;
        let messages = saved.messages.into_iter().map(|m| (m.role, m.content));
        let c = Self::from_messages(saved.system, messages)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok((c, saved.settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Conversation {
        let mut c = Conversation::new(Some("Be brief.".into()));
        for (u, a) in [("a", "A"), ("b", "B"), ("c", "C")] {
            c.push_user(u);
            c.push_assistant(a);
        }
        c
    }

    #[test]
    fn edits_keep_the_system_prompt_and_the_alternation() {
        let mut c = three();
        assert_eq!(c.messages().len(), 7);
        assert!(c.drop_oldest());
        let m = c.messages();
        assert_eq!((m[0].role.as_str(), m[1].content.as_str()), ("system", "b"));
        assert!(c.drop_last_answer());
        assert!(c.awaits_answer());
        assert!(!c.drop_last_answer());
        assert!(c.undo());
        assert_eq!(c.messages().last().unwrap().content, "B");
        c.push_user("d");
        assert!(c.drop_oldest());
        assert_eq!(c.messages()[1].content, "d");
        assert!(!c.drop_oldest(), "the message waiting for its answer stays");
        c.clear();
        assert_eq!(c.messages(), vec![Message::new("system", "Be brief.")]);
        assert!(!c.undo());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let c = three();
        let settings = vec![("temperature".to_string(), "0.3".to_string())];
        c.save(&path, settings.clone()).unwrap();
        let (back, s) = Conversation::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(s, settings);
        std::fs::write(
            &path,
            r#"{"messages": [{"role": "assistant", "content": "x"}]}"#,
        )
        .unwrap();
        let err = Conversation::load(&path).unwrap_err().to_string();
        assert!(err.contains("role `assistant`"), "{err}");
    }
}
