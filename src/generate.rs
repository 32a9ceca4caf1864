//! The one generation loop: prefill the prompt in chunks, then one token per step through the
//! KV cache, until a stop condition. It emits text through a callback and never prints itself.

use crate::model::{KvCache, Llama, Logits};
use crate::sampling::{token_logprobs, SamplerChain, StepTrace, TokenLogprobs};
use crate::stop::StopMatcher;
use crate::tokenizer::{TokenStream, Tokenizer};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
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
    /// Record each token's log-probability and this many alternatives (`--logprobs N`).
    pub logprobs: Option<usize>,
    /// Record what each sampler stage did to this many top candidates (`--explain`).
    pub explain: Option<usize>,
    /// Stop strings (`--stop`), matched on the decoded text.
    pub stop: Vec<String>,
    /// Print the matched stop string too (`--keep-stop`).
    pub keep_stop: bool,
    /// Set from outside (Ctrl-C) to end generation after the current token.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// More tokens that end generation (the chat template's end of turn).
    pub extra_eos: Vec<u32>,
}

impl GenerateParams {
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }
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
}

impl StopReason {
    /// The stable name used in JSON and the stats line.
    pub fn name(&self) -> &'static str {
        match self {
            StopReason::Eos { .. } => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
            StopReason::Stop { .. } => "stop",
            StopReason::Interrupted => "interrupted",
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
    /// Per-token logprobs and traces, when asked for (empty otherwise).
    pub records: Vec<TokenRecord>,
    pub stop: StopReason,
    pub timings: Timings,
}

/// The tokens that end generation: the model's EOS ids and every end-of-generation token the
/// vocabulary marks (llama.cpp's EOG set: for SmolLM2 both `<|im_end|>` and `<|endoftext|>`).
pub fn end_ids(model: &Llama, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut eos = model.config().eos_token_ids.clone();
    for &id in tokenizer.eog_ids() {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    eos
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

/// A prompt already run through the model: its KV cache and the logits of its last position.
/// `--compare` prefills once and gives each strategy a fork.
#[derive(Debug)]
pub struct Prefilled {
    pub cache: KvCache,
    pub logits: Vec<f32>,
    pub time: Duration,
}

impl Prefilled {
    /// Prefills `prompt` into a cache for a context of `ctx_size` tokens.
    pub fn run(model: &Llama, prompt: &[u32], batch_size: usize, ctx_size: usize) -> Result<Self> {
        let ctx = ctx_size.min(model.config().max_position_embeddings);
        check_fits(model, prompt, ctx)?;
        let start = Instant::now();
        let mut cache = KvCache::new(model.config().num_hidden_layers, ctx);
        let logits = prefill(model, &mut cache, prompt, batch_size)?;
        Ok(Self {
            cache,
            logits,
            time: start.elapsed(),
        })
    }

    /// An independent copy (the cache shares no storage with this one).
    pub fn fork(&self) -> Result<Self> {
        Ok(Self {
            cache: self.cache.fork()?,
            logits: self.logits.clone(),
            time: self.time,
        })
    }
}

fn check_fits(model: &Llama, prompt: &[u32], ctx: usize) -> Result<()> {
    if prompt.len() >= ctx {
        bail!(
            "the prompt has {} tokens but the context holds {ctx}; shorten the prompt or raise --ctx-size (the model allows {})",
            prompt.len(),
            model.config().max_position_embeddings
        );
    }
    Ok(())
}

/// Generates a continuation of `prompt` with `sampler`, reporting text and tokens to `on_event`
/// as they come.
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    sampler: &mut SamplerChain,
    params: &GenerateParams,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<Generation> {
    generate_from(model, tokenizer, prompt, None, sampler, params, on_event)
}

/// As [`generate`], continuing from `prefilled` (the same `prompt` already in a cache) when
/// given.
pub fn generate_from(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    prefilled: Option<Prefilled>,
    sampler: &mut SamplerChain,
    params: &GenerateParams,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<Generation> {
    let ctx = params.ctx_size.min(model.config().max_position_embeddings);
    let mut eos = end_ids(model, tokenizer);
    for &id in &params.extra_eos {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let Prefilled {
        mut cache,
        mut logits,
        time,
    } = match prefilled {
        Some(p) => p,
        None => Prefilled::run(model, prompt, params.batch_size, ctx)?,
    };
    let ctx = ctx.min(cache.max_len());
    let mut timings = Timings {
        prompt_tokens: prompt.len(),
        prefill: time,
        ..Default::default()
    };

    let mut history = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut records = Vec::new();
    let mut text = String::new();
    let mut stream = TokenStream::new(tokenizer);
    let mut stops = StopMatcher::new(&params.stop, params.keep_stop);
    let decode_start = Instant::now();
    let stop = loop {
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        let (id, trace) = match params.explain {
            Some(rows) => {
                let (id, t) = sampler.sample_traced(&logits, &history, rows)?;
                (id, Some(t))
            }
            None => (sampler.sample(&logits, &history)?, None),
        };
        if params.logprobs.is_some() || trace.is_some() {
            let record = TokenRecord {
                id,
                logprobs: params
                    .logprobs
                    .map(|n| token_logprobs(&logits, id, n))
                    .transpose()?,
                trace,
            };
            on_event(Event::Token(&record))?;
            records.push(record);
        }
        tokens.push(id);
        history.push(id);
        if !params.ignore_eos && eos.contains(&id) {
            break StopReason::Eos { id };
        }
        if let Some(piece) = stream.next(id)? {
            let check = stops.push(&piece);
            if !check.emit.is_empty() {
                on_event(Event::Text(&check.emit))?;
                text.push_str(&check.emit);
            }
            if let Some(string) = check.matched {
                break StopReason::Stop { string };
            }
        }
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.len() >= ctx {
            break StopReason::ContextFull;
        }
        if params.interrupted() {
            break StopReason::Interrupted;
        }
        let input = Tensor::new(&[id], model.device())?.unsqueeze(0)?; // (1, 1)
        logits = model
            .forward(&input, &mut cache, Logits::Last)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        timings.decode_steps += 1;
    };
    timings.decode = decode_start.elapsed();
    let mut stop = stop;
    if !matches!(stop, StopReason::Stop { .. }) {
        // Bytes of an unfinished character, then text held back for a stop string that never
        // completed (the last bytes may still complete one).
        let check = stops.push(&stream.finish()?);
        let rest = check.emit + &stops.finish();
        if let Some(string) = check.matched {
            stop = StopReason::Stop { string };
        }
        if !rest.is_empty() {
            on_event(Event::Text(&rest))?;
            text.push_str(&rest);
        }
    }
    Ok(Generation {
        tokens,
        text,
        records,
        stop,
        timings,
    })
}
