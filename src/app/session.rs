//! What every generate-family command shares for one loaded model: the chat template (the
//! model's or `--chat-template-file`'s, and its end-of-turn token), the Ctrl-C flag, the one translation of the settings into the
//! engine's [`DecodeParams`], and token texts for the printers.

use super::load::LoadedModel;
use super::UsageError;
use crate::chat::{ChatTemplate, Message};
use crate::config::{GenerateConfig, TemplateChoice};
use crate::engine::{self, DecodeParams, Interrupt};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::time::Duration;

/// What one run needs besides its settings.
pub struct Ctx<'a> {
    pub loaded: &'a LoadedModel,
    pub load: Duration,
    pub interrupt: Option<Interrupt>,
    /// The chat template (the model's or `--chat-template-file`'s), unless `--raw` or there
    /// is none.
    chat: Option<ChatTemplate>,
    /// The chat template's end-of-turn token, which also ends generation.
    end_of_turn: Option<u32>,
    /// `--lookup` / `--model-draft`, the draft model loaded.
    speculation: Option<engine::Speculation>,
}

impl<'a> Ctx<'a> {
    /// The context of runs on `loaded`, with its chat template (`None`: plain text) and its
    /// end-of-turn token.
    pub fn new(
        loaded: &'a LoadedModel,
        load: Duration,
        interrupt: Option<Interrupt>,
        chat: Option<ChatTemplate>,
    ) -> Self {
        let end_of_turn = chat
            .as_ref()
            .and_then(|t| t.end_of_turn_token())
            .and_then(|t| loaded.tokenizer.token_to_id(t));
        Self {
            loaded,
            load,
            interrupt,
            chat,
            end_of_turn,
            speculation: None,
        }
    }

    /// The same context, with speculative decoding (`--lookup`, `--model-draft`).
    pub fn with_speculation(self, speculation: Option<engine::Speculation>) -> Self {
        Self {
            speculation,
            ..self
        }
    }

    /// Speculative decoding's settings, if asked for.
    pub fn speculation(&self) -> Option<engine::Speculation> {
        self.speculation.clone()
    }

    /// The chat template prompts go through, unless `--raw` or there is none.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// Whether prompts go through the model's chat template.
    pub fn is_chat(&self) -> bool {
        self.chat.is_some()
    }

    /// Whether Ctrl-C was pressed.
    pub fn is_interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(Interrupt::is_set)
    }

    /// The settings every strategy shares, from `g` (the one translation of them).
    pub fn decode_params(&self, g: &GenerateConfig) -> DecodeParams {
        let (model, tok) = (&self.loaded.model, &self.loaded.tokenizer);
        DecodeParams {
            max_tokens: g.max_tokens,
            eos: if g.ignore_eos {
                Vec::new()
            } else {
                engine::end_of_generation(model, tok, self.end_of_turn.as_slice())
            },
            batch_size: g.batch_size,
            ctx_size: g.ctx_size,
            stop: g.stop.clone(),
            keep_stop: g.keep_stop,
            interrupt: self.interrupt.clone(),
            special: g.special,
        }
    }

    /// One token's text, for tables and JSON; a token the tokenizer cannot decode is an error
    /// that names it.
    pub fn piece(&self, id: u32) -> Result<String> {
        self.loaded
            .tokenizer
            .decode(&[id])
            .with_context(|| format!("decoding token {id}"))
    }

    /// The text of several tokens, as [`Ctx::piece`].
    pub fn text(&self, ids: &[u32]) -> Result<String> {
        self.loaded
            .tokenizer
            .decode(ids)
            .with_context(|| format!("decoding tokens {ids:?}"))
    }
}

/// The chat template prompts go through: `--chat-template-file`'s (`file`, as
/// [`template_file`] read it), else the model's; `None` with `--raw` or when the model has
/// none.
pub fn chat_template(
    g: &GenerateConfig,
    loaded: &LoadedModel,
    file: Option<String>,
) -> Result<Option<ChatTemplate>> {
    let tok = &loaded.tokenizer;
    let piece = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let (bos, eos) = (piece(tok.bos_id()), piece(tok.eos_id()));
    match (&g.template, file) {
        (TemplateChoice::Raw, _) => Ok(None),
        (TemplateChoice::File(path), Some(source)) => ChatTemplate::new(&source, bos, eos)
            .map(Some)
            .map_err(|e| not_compiling(path, &e)),
        (TemplateChoice::File(path), None) => bail!(
            "internal: --chat-template-file {} was not read",
            path.display()
        ),
        (TemplateChoice::Model, _) => match tok.chat_template() {
            Some(source) => ChatTemplate::new(source, bos, eos)
                .map(Some)
                .context("the model's chat template (use --raw to send the prompt as plain text, or --chat-template-file to give another)"),
            None if g.system.is_some() => bail!(
                "--system needs a chat template, and {} has none; put the instructions in the prompt instead, or give one with --chat-template-file",
                loaded.path.display()
            ),
            None => Ok(None),
        },
    }
}

/// `--chat-template-file`'s text, read before the model loads (and compiled once, so that a
/// mistake in it is reported at once); `None` without the flag. Every failure is a usage
/// error naming the file and what to do.
pub fn template_file(g: &GenerateConfig) -> Result<Option<String>> {
    let TemplateChoice::File(path) = &g.template else {
        return Ok(None);
    };
    let flag = format!("--chat-template-file {}", path.display());
    let usage = |msg: String| anyhow::Error::from(UsageError(msg));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(g.prompt.max_bytes.saturating_add(1))
                .read_to_end(&mut bytes)
        })
        .map_err(|e| {
            usage(format!(
                "{flag}: {e}; give the path of a Jinja chat template file"
            ))
        })?;
    if bytes.len() as u64 > g.prompt.max_bytes {
        return Err(usage(format!(
            "{flag} is longer than {} bytes; a chat template is a few kilobytes (raise --max-prompt-bytes if it is meant to be)",
            g.prompt.max_bytes
        )));
    }
    let source = String::from_utf8(bytes).map_err(|e| {
        usage(format!(
            "{flag} is not valid UTF-8 (invalid byte at offset {}); save the template as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;
    if source.trim().is_empty() {
        return Err(usage(format!(
            "{flag} is empty; give a file with a Jinja chat template"
        )));
    }
    ChatTemplate::new(&source, None, None).map_err(|e| not_compiling(path, &e))?;
    Ok(Some(source))
}

/// The usage error for a `--chat-template-file` that does not compile.
fn not_compiling(path: &std::path::Path, e: &anyhow::Error) -> anyhow::Error {
    UsageError(format!(
        "--chat-template-file {}: {e:#}; fix the template (or drop the flag to use the model's)",
        path.display()
    ))
    .into()
}

/// The text the model sees: the prompt wrapped as a user message (after `--system`) by the
/// chat template, or the prompt itself.
pub fn model_input(g: &GenerateConfig, ctx: &Ctx, prompt: &str) -> Result<String> {
    let Some(t) = &ctx.chat else {
        if g.system.is_some() {
            bail!("--system needs the chat template; drop --raw or put the instructions in the prompt");
        }
        return Ok(prompt.to_string());
    };
    let mut messages = Vec::new();
    if let Some(sys) = &g.system {
        messages.push(Message::new("system", sys.as_str()));
    }
    messages.push(Message::new("user", prompt));
    t.render(&messages, true)
        .context("rendering the chat template (use --raw to send the prompt as plain text)")
}
