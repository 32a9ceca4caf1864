//! The one generation loop: prefill the prompt in chunks, then one token per step through the
//! KV cache, until a stop condition. It emits text through a callback and never prints itself.

use crate::model::{KvCache, Llama, Logits};
use crate::sampling::Sampler;
use crate::tokenizer::{TokenStream, Tokenizer};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::time::{Duration, Instant};

/// How long to generate and how to prefill.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Stop after this many generated tokens.
    pub max_tokens: usize,
    /// Keep going past EOS (benchmarks), as llama.cpp's `--ignore-eos`.
    pub ignore_eos: bool,
    /// Prompt tokens per prefill forward pass.
    pub batch_size: usize,
    /// Context size in tokens (prompt + generated); at most the model's.
    pub ctx_size: usize,
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
}

impl StopReason {
    /// The stable name used in JSON and the stats line.
    pub fn name(&self) -> &'static str {
        match self {
            StopReason::Eos { .. } => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
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
    pub stop: StopReason,
    pub timings: Timings,
}

/// Runs the prompt through `model` in chunks of `batch_size`, filling `cache`; returns the
/// logits of the last prompt position.
pub fn prefill(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    batch_size: usize,
) -> Result<Vec<f32>> {
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text with --prompt, a file or stdin");
    }
    let device = model.device();
    let mut last = None;
    for chunk in prompt.chunks(batch_size.max(1)) {
        let input = Tensor::new(chunk, device)?.unsqueeze(0)?; // (1, chunk)
        last = Some(model.forward(&input, cache, Logits::Last)?);
    }
    let logits = last.context("internal: prefill ran no chunk")?;
    Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
}

/// Generates a continuation of `prompt`, calling `on_text` with each newly completed piece of
/// text (never a partial UTF-8 character).
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    sampler: &mut dyn Sampler,
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<Generation> {
    let ctx = params.ctx_size.min(model.config().max_position_embeddings);
    if prompt.len() >= ctx {
        bail!(
            "the prompt has {} tokens but the context holds {ctx}; shorten the prompt or raise --ctx-size (the model allows {})",
            prompt.len(),
            model.config().max_position_embeddings
        );
    }
    // Stop on the model's EOS ids and on every end-of-generation token the vocabulary marks
    // (llama.cpp's EOG set: for SmolLM2 both `<|im_end|>` and `<|endoftext|>`).
    let mut eos = model.config().eos_token_ids.clone();
    for &id in tokenizer.eog_ids() {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let mut cache = KvCache::new(model.config().num_hidden_layers, ctx);
    let mut timings = Timings {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };

    let start = Instant::now();
    let mut logits = prefill(model, &mut cache, prompt, params.batch_size)?;
    timings.prefill = start.elapsed();

    let mut history = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut stream = TokenStream::new(tokenizer);
    let decode_start = Instant::now();
    let stop = loop {
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        let id = sampler.sample(&logits, &history)?;
        tokens.push(id);
        history.push(id);
        if !params.ignore_eos && eos.contains(&id) {
            break StopReason::Eos { id };
        }
        if let Some(piece) = stream.next(id)? {
            on_text(&piece)?;
            text.push_str(&piece);
        }
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.len() >= ctx {
            break StopReason::ContextFull;
        }
        let input = Tensor::new(&[id], model.device())?.unsqueeze(0)?; // (1, 1)
        logits = model
            .forward(&input, &mut cache, Logits::Last)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        timings.decode_steps += 1;
    };
    timings.decode = decode_start.elapsed();
    let rest = stream.finish()?;
    if !rest.is_empty() {
        on_text(&rest)?;
        text.push_str(&rest);
    }
    Ok(Generation {
        tokens,
        text,
        stop,
        timings,
    })
}
