//! Decoding over a model and a KV cache the caller owns: prefill, the sampled loop
//! ([`sample`]), beam search ([`beam`]), stop strings, text metrics and perplexity. The engine
//! never prints; it reports text and tokens through callbacks and returns typed results that
//! [`crate::output`] renders. The types every strategy shares live here, once each: events, stop
//! reasons, timings, the end-of-generation set, the context clamp and the interrupt flag.

pub mod beam;
pub mod lookup;
pub mod metrics;
pub mod pacer;
pub mod perplexity;
pub mod prefill;
pub mod prefix;
pub mod sample;
pub mod speculative;
pub mod stop;
pub mod vote;

pub use beam::{beam_search, BeamParams, BeamResult, Hypothesis, Processors};
pub use lookup::Lookup;
pub use prefill::{prefill, Prefilled};
pub use prefix::{PrefixCache, PrefixFill};
pub use sample::{generate, generate_batch, generate_in_cache, GenerateParams, OnEvent};
pub use speculative::{DraftSource, Speculation, Verify};
pub use stop::StopMatcher;

use crate::model::Llama;
use crate::sampling::{StepTrace, TokenLogprobs};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Set from outside (the Ctrl-C handler) to end decoding after the current token or step.
/// Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag; returns whether it was already set.
    pub fn set(&self) -> bool {
        self.0.swap(true, Ordering::SeqCst)
    }

    /// Clears the flag (`gen chat`: a Ctrl-C ends one answer, and the next turn starts over).
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl From<Arc<AtomicBool>> for Interrupt {
    /// A flag shared with whoever else holds `flag` (a signal handler).
    fn from(flag: Arc<AtomicBool>) -> Self {
        Self(flag)
    }
}

/// What every decoding strategy is told besides its own settings.
#[derive(Debug, Clone, Default)]
pub struct DecodeParams {
    /// Stop after this many generated tokens.
    pub max_tokens: usize,
    /// Tokens that end generation ([`end_of_generation`]; empty with `--ignore-eos`).
    pub eos: Vec<u32>,
    /// Prompt tokens per prefill forward pass.
    pub batch_size: usize,
    /// `--ctx-size`: context size in tokens (prompt + generated); `None` is the model's. Read
    /// through [`context_size`].
    pub ctx_size: Option<usize>,
    /// Stop strings (`--stop`), matched on the decoded text.
    pub stop: Vec<String>,
    /// Keep the matched stop string in the text (`--keep-stop`).
    pub keep_stop: bool,
    /// Set from outside (Ctrl-C) to end decoding after the current token or step.
    pub interrupt: Option<Interrupt>,
    /// Show control tokens (`<|im_end|>`, ...) in the text (`--special`); by default they are
    /// left out of it, as llama.cpp does. Their ids are always in the token lists.
    pub special: bool,
}

impl DecodeParams {
    /// Whether the interrupt flag is set.
    pub fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(Interrupt::is_set)
    }
}

/// The context size in tokens (prompt + generated) for a requested `--ctx-size`: at most the
/// model's, which is also the default.
pub fn context_size(model: &Llama, requested: Option<usize>) -> usize {
    let max = model.config().max_position_embeddings;
    requested.map_or(max, |c| c.min(max))
}

/// Fails unless `prompt` is non-empty and leaves room for at least one generated token in a
/// context of `ctx` tokens.
pub fn check_prompt(model: &Llama, prompt: &[u32], ctx: usize) -> Result<()> {
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text with --prompt, a file or stdin");
    }
    if prompt.len() >= ctx {
        bail!(
            "the prompt has {} tokens but the context holds {ctx}; shorten the prompt or raise --ctx-size (the model allows {})",
            prompt.len(),
            model.config().max_position_embeddings
        );
    }
    Ok(())
}

/// The tokens that end generation: the model's EOS ids, every end-of-generation token the
/// vocabulary marks (llama.cpp's EOG set: for SmolLM2 both `<|im_end|>` and `<|endoftext|>`),
/// and `extra` (the chat template's end of turn).
pub fn end_of_generation(model: &Llama, tokenizer: &Tokenizer, extra: &[u32]) -> Vec<u32> {
    let mut eos = model.config().eos_token_ids.clone();
    for &id in tokenizer.eog_ids().iter().chain(extra) {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    eos
}

/// What one generated token carries besides its id, when asked for.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: u32,
    pub logprobs: Option<TokenLogprobs>,
    pub trace: Option<StepTrace>,
}

/// What the loop reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// Newly completed text (never a partial UTF-8 character).
    Text(&'a str),
    /// A token was chosen (sent only when logprobs or a trace were asked for).
    Token(&'a TokenRecord),
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced one of its end-of-sequence tokens.
    Eos { id: u32 },
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The context window filled up.
    ContextFull,
    /// A stop string appeared in the text.
    Stop { string: String },
    /// Generation was interrupted (Ctrl-C).
    Interrupted,
    /// The text's reader went away (`gen ... | head`): an event callback returned
    /// [`OutputClosed`].
    OutputClosed,
}

/// The error an event callback returns when nobody reads its text any more (a closed pipe):
/// the sequence ends at once with [`StopReason::OutputClosed`] and reports nothing more.
#[derive(Debug, Clone, Copy)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader of the output went away")
    }
}

impl std::error::Error for OutputClosed {}

impl StopReason {
    /// The stable name used in JSON and the stats line.
    pub fn name(&self) -> &'static str {
        match self {
            StopReason::Eos { .. } => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
            StopReason::Stop { .. } => "stop",
            StopReason::Interrupted => "interrupted",
            StopReason::OutputClosed => "output_closed",
        }
    }
}

/// Where the time went.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prefill: Duration,
    /// Tokens that went through a decode step (the first generated token comes from prefill).
    pub decode_steps: usize,
    pub decode: Duration,
    /// Speculative decoding: tokens proposed, those the target accepted, and the target's
    /// verify passes (each gives one token more than it accepts).
    pub drafted: usize,
    pub accepted: usize,
    pub target_passes: usize,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill)
    }
    /// Decode steps per second.
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.decode_steps, self.decode)
    }
    /// Speculative decoding: accepted of drafted tokens (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
    /// Speculative decoding: generated tokens per target forward pass after the prefill.
    pub fn tokens_per_pass(&self) -> f64 {
        if self.target_passes == 0 {
            0.0
        } else {
            self.decode_steps as f64 / self.target_passes as f64
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// The outcome of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids (an EOS that ended generation included).
    pub tokens: Vec<u32>,
    /// Generated text (EOS excluded).
    pub text: String,
    /// Per-token logprobs and traces, when asked for (empty otherwise).
    pub records: Vec<TokenRecord>,
    pub stop: StopReason,
    pub timings: Timings,
    /// Generated tokens at the end whose bytes began a character that generation stopped
    /// before completing (a multi-token emoji cut by `max_tokens`): in `tokens`, not in `text`.
    pub unfinished: usize,
}
