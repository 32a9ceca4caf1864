//! `gen chat`: a conversation, turn after turn, in one KV cache. Each turn renders the whole
//! conversation with the model's chat template (as llama.cpp and ollama do), keeps the longest
//! token prefix already cached and prefills only the rest ([`PrefixCache`]), so a turn costs
//! its own new text. When a turn would not fit the context, the oldest exchanges after the
//! system prompt are dropped, and said so. In a terminal the input is edited with rustyline
//! (history in the user's data folder); otherwise every line, or JSONL message, is a turn.

mod command;
mod conversation;
mod input;

use super::load::load_model;
use super::session::{chat_template, template_file, Ctx};
use super::{signals::interrupt_on_ctrl_c, terminated, Interrupted, UsageError};
use crate::cli::{apply_setting, current_settings};
use crate::config::{ChatConfig, GenerateConfig, OutputFormat, TemplateChoice};
use crate::engine::{self, Event, GenerateParams, Generation, PrefixCache, StopReason};
use crate::{output, sampling};
use anyhow::{bail, Context, Result};
use command::{Input, HELP};
use conversation::Conversation;
use std::time::Instant;

/// Runs a chat session until `/bye`, Ctrl-D or the end of stdin.
pub fn run(c: ChatConfig) -> Result<()> {
    let template_file = template_file(&c.generate)?;
    let interrupt = interrupt_on_ctrl_c();
    let start = Instant::now();
    let loaded = load_model(
        c.generate.model.as_deref(),
        c.generate.cache_type,
        c.generate.arith,
    )?;
    let template = chat_template(&c.generate, &loaded, template_file)?;
    if template.is_none() {
        return Err(UsageError(format!(
            "gen chat needs a chat template, and {} has none (no tokenizer.chat_template); give one with --chat-template-file, or use `gen` to continue plain text",
            loaded.path.display()
        ))
        .into());
    }
    let speculation = c
        .generate
        .speculative
        .as_ref()
        .map(|s| super::draft::speculation(s, &loaded, c.generate.cache_type, c.generate.arith))
        .transpose()?;
    let ctx = Ctx::new(&loaded, start.elapsed(), interrupt, template).with_speculation(speculation);
    let ctx_size = engine::context_size(&loaded.model, c.generate.ctx_size);
    loaded.check_memory("-c/--ctx-size", 1, ctx_size, 1)?;
    let mut source = input::Source::open(&c)?;
    let mut session = Session {
        interactive: source.is_terminal(),
        conversation: Conversation::new(c.generate.system.clone()),
        cache: PrefixCache::new(&loaded.model, ctx_size),
        g: c.generate.clone(),
        ctx: &ctx,
        ctx_size,
        turn: 0,
        regens: 0,
    };
    if source.is_terminal() {
        output::note(&format!(
            "gen chat: {} ({} tokens of context). /help for commands, Ctrl-D or /bye to leave.",
            loaded.path.display(),
            ctx_size
        ))?;
    }
    let (mut inputs, mut failed) = (0usize, 0usize);
    loop {
        let Some(line) = source.next_line()? else {
            break;
        };
        inputs += 1;
        let step = match line {
            Err(e) => Err(e),
            Ok(input::Line::Text(l)) => match command::parse(&l) {
                Ok(i) => session.handle(i),
                Err(msg) => Err(UsageError(msg).into()),
            },
            Ok(input::Line::Message { role, content }) => session.handle_message(&role, &content),
            Ok(input::Line::Conversation(messages)) => session.replace_conversation(messages),
            Ok(input::Line::Interrupted) => {
                output::note("(Ctrl-D or /bye to leave)")?;
                Ok(Flow::Go)
            }
        };
        match step {
            Ok(Flow::Go) => {}
            Ok(Flow::Exit) => break,
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) if super::is_broken_pipe(&e) => return Err(e),
            // A failed turn or command is reported and the session goes on, as in llama-cli;
            // a script's failures are counted for its exit status, as --each-line's are, and
            // a JSONL reader gets a record in the failed turn's place.
            Err(e) => {
                output::error(&e);
                failed += 1;
                if !source.is_terminal() && c.generate.format == OutputFormat::Jsonl {
                    output::json(&output::chat_error_json(inputs, &e))?;
                }
            }
        }
        if terminated() {
            return Err(Interrupted.into());
        }
    }
    source.save_history();
    if failed > 0 && !source.is_terminal() {
        bail!("{failed} of {inputs} inputs failed (see the errors above)");
    }
    Ok(())
}

/// Whether the session goes on.
enum Flow {
    Go,
    Exit,
}

struct Session<'a> {
    /// A terminal (a Ctrl-C ends the answer) or a script (a Ctrl-C ends the session).
    interactive: bool,
    conversation: Conversation,
    cache: PrefixCache,
    /// The settings now (`/set` changes them).
    g: GenerateConfig,
    ctx: &'a Ctx<'a>,
    ctx_size: usize,
    /// Turns answered so far.
    turn: usize,
    /// `/regen`s of the current last message (each draws from a new seed).
    regens: u64,
}

impl Session<'_> {
    fn handle(&mut self, input: Input) -> Result<Flow> {
        match input {
            Input::Nothing => {}
            Input::Message(text) => {
                self.regens = 0;
                self.conversation.push_user(&text);
                self.answer()?;
            }
            Input::Help => output::note(HELP)?,
            Input::Exit => return Ok(Flow::Exit),
            Input::Clear => {
                self.conversation.clear();
                output::note("gen: conversation cleared (the system prompt is kept)")?;
            }
            Input::System(None) => output::note(&format!(
                "system: {}",
                self.conversation.system.as_deref().unwrap_or("(none)")
            ))?,
            Input::System(Some(text)) => {
                self.conversation.system = Some(text);
                output::note("gen: system prompt set")?;
            }
            Input::Set(name, value) => {
                let said =
                    apply_setting(&mut self.g.sampling, &mut self.g.max_tokens, &name, &value)
                        .map_err(UsageError)?;
                output::note(&format!("gen: {said}"))?;
            }
            Input::Show => self.show()?,
            Input::Undo => {
                if !self.conversation.undo() {
                    bail!("/undo: there is no exchange to drop");
                }
                output::note("gen: dropped the last exchange")?;
            }
            Input::Regen => {
                if !self.conversation.drop_last_answer() {
                    bail!("/regen: there is no answer to generate again");
                }
                self.regens += 1;
                self.answer()?;
            }
            Input::Save(path) => {
                self.conversation
                    .save(&path, current_settings(&self.g.sampling, self.g.max_tokens))?;
                output::note(&format!("gen: saved to {}", path.display()))?;
            }
            Input::Load(path) => self.load(&path)?,
        }
        Ok(Flow::Go)
    }

    /// A JSONL message of a script: a user message is a turn, a system message sets the
    /// system prompt. (Earlier answers come in a `{"messages": [...]}` line.)
    fn handle_message(&mut self, role: &str, content: &str) -> Result<Flow> {
        match role {
            "user" => {
                self.regens = 0;
                self.conversation.push_user(content);
                self.answer()?;
            }
            "system" => self.conversation.system = Some(content.to_string()),
            "assistant" => bail!(
                "an assistant message on its own has nothing to answer: send a conversation with its user messages as one {{\"messages\": [...]}} line"
            ),
            other => bail!("unknown role `{other}`: use user or system"),
        }
        Ok(Flow::Go)
    }

    /// A JSONL `{"messages": [...]}` line: the conversation so far, replacing the session's;
    /// answered when its last message is a user one.
    fn replace_conversation(&mut self, messages: Vec<(String, String)>) -> Result<Flow> {
        self.conversation = Conversation::from_messages(self.conversation.system.clone(), messages)
            .map_err(|e| anyhow::anyhow!("the conversation line: {e}"))?;
        self.regens = 0;
        if self.conversation.awaits_answer() {
            self.answer()?;
        }
        Ok(Flow::Go)
    }

    fn load(&mut self, path: &std::path::Path) -> Result<()> {
        let (conversation, settings) = Conversation::load(path)?;
        let (mut sampling, mut max_tokens) = (self.g.sampling.clone(), self.g.max_tokens);
        for (k, v) in &settings {
            apply_setting(&mut sampling, &mut max_tokens, k, v)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        self.g.sampling = sampling;
        self.g.max_tokens = max_tokens;
        output::note(&format!(
            "gen: loaded {} ({} exchanges)",
            path.display(),
            conversation.exchanges()
        ))?;
        self.conversation = conversation;
        Ok(())
    }

    fn show(&self) -> Result<()> {
        let loaded = self.ctx.loaded;
        let eot = self
            .ctx
            .template()
            .and_then(|t| t.end_of_turn_token())
            .unwrap_or("none");
        let template = match &self.g.template {
            TemplateChoice::File(path) => path.display().to_string(),
            _ => "the model's".to_string(),
        };
        let settings: Vec<String> = current_settings(&self.g.sampling, self.g.max_tokens)
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        output::note(&format!(
            "model: {} ({:?})\ntemplate: {template} (end of turn {eot})\nsystem: {}\nsettings: {}\ncontext: {} of {} tokens used, {} exchanges",
            loaded.path.display(),
            loaded.format,
            self.conversation.system.as_deref().unwrap_or("(none)"),
            settings.join(", "),
            self.cache.tokens().len(),
            self.ctx_size,
            self.conversation.exchanges()
        ))
    }

    /// The token ids of the conversation as the template renders it (with the assistant's
    /// turn opened), after dropping the oldest exchanges while it would leave no room for an
    /// answer; says how much was dropped.
    fn fit(&mut self) -> Result<Vec<u32>> {
        let loaded = self.ctx.loaded;
        let template = self
            .ctx
            .template()
            .context("internal: gen chat without a chat template")?;
        // Room kept for the answer: its limit, but at most a quarter of the context.
        let room = self.g.max_tokens.min(self.ctx_size / 4).max(1);
        let (mut dropped_exchanges, mut first_len) = (0usize, None);
        loop {
            let text = template
                .render(&self.conversation.messages(), true)
                .context("rendering the chat template")?;
            let ids = loaded.encode(&text)?;
            first_len.get_or_insert(ids.len());
            if ids.len() + room <= self.ctx_size {
                if dropped_exchanges > 0 {
                    output::note(&format!(
                        "gen: the conversation no longer fit in the context of {} tokens: dropped the {} oldest exchange(s), {} tokens; the system prompt is kept",
                        self.ctx_size,
                        dropped_exchanges,
                        first_len.unwrap_or(0) - ids.len()
                    ))?;
                }
                return Ok(ids);
            }
            if !self.conversation.drop_oldest() {
                let n = ids.len();
                self.conversation.pop_user();
                bail!(
                    "this message and the system prompt take {n} tokens, and the context holds {} with {room} kept for the answer; send a shorter one or raise -c/--ctx-size",
                    self.ctx_size
                );
            }
            dropped_exchanges += 1;
        }
    }

    /// Answers the last user message, streaming the answer, and records it.
    fn answer(&mut self) -> Result<()> {
        let ids = self.fit()?;
        let loaded = self.ctx.loaded;
        let mut sampling = self.g.sampling.clone();
        // A fixed seed gives every turn what a fresh run would; `/regen` moves it on.
        sampling.seed = sampling.seed.map(|s| s.wrapping_add(self.regens));
        let mut chain = sampling::build_chain(&sampling, loaded.model.config().vocab_size)?.chain;
        let params = GenerateParams {
            decode: self.ctx.decode_params(&self.g),
            logprobs: self.g.logprobs,
            explain: None,
            speculation: self.ctx.speculation(),
        };
        let fill = match self.cache.prefill(&loaded.model, &ids, self.g.batch_size) {
            Ok(f) => f,
            Err(e) => {
                self.conversation.pop_user();
                return Err(e);
            }
        };
        let text_mode = self.g.format == OutputFormat::Text;
        let mut out = text_mode.then(output::TextOut::new);
        let result = engine::generate_in_cache(
            &loaded.model,
            &loaded.tokenizer,
            &ids,
            self.cache.cache_mut(),
            fill.logits,
            fill.time,
            &mut chain,
            &params,
            &mut |event| match (event, out.as_mut()) {
                (Event::Text(t), Some(o)) => o.write(t),
                _ => Ok(()),
            },
        );
        let generation = match result {
            Ok(g) => g,
            Err(e) => {
                // The cache may hold part of the failed answer.
                self.cache.clear()?;
                self.conversation.pop_user();
                return Err(e);
            }
        };
        self.cache.generated(&generation.tokens);
        // What the user saw is what the conversation keeps, an interrupted answer included.
        self.conversation.push_assistant(&generation.text);
        self.turn += 1;
        self.report(&generation, fill.reused, fill.computed)?;
        match generation.stop {
            StopReason::OutputClosed => Err(engine::OutputClosed.into()),
            StopReason::Interrupted if !self.interactive || terminated() => Err(Interrupted.into()),
            _ => {
                if let Some(i) = &self.ctx.interrupt {
                    i.clear();
                }
                Ok(())
            }
        }
    }

    fn report(&self, g: &Generation, reused: usize, computed: usize) -> Result<()> {
        match self.g.format {
            OutputFormat::Text => output::chat_answer_end()?,
            _ => {
                let piece = |id: u32| self.ctx.piece(id);
                output::json(&output::chat_turn_json(
                    self.turn, g, reused, computed, &piece,
                )?)?
            }
        }
        if self.g.verbose {
            output::note(&output::chat_stats_line(self.turn, g, reused, computed))?;
        }
        Ok(())
    }
}
