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
        let mut cache = model.new_cache_for(ctx);
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
    let prefilled = match prefilled {
        Some(p) => p,
        None => {
            let ctx = params.ctx_size.min(model.config().max_position_embeddings);
            Prefilled::run(model, prompt, params.batch_size, ctx)?
        }
    };
    let mut out = generate_batch(
        model,
        tokenizer,
        prompt,
        prefilled,
        vec![(sampler, on_event)],
        params,
    )?;
    out.pop()
        .context("internal: a batch of one gave no generation")
}

/// Where a sequence's events go.
pub type OnEvent<'a> = dyn FnMut(Event) -> Result<()> + 'a;

/// One sequence of a batch: its sampler, what it has generated so far, and where its events go.
struct Sequence<'a> {
    sampler: &'a mut SamplerChain,
    on_event: &'a mut OnEvent<'a>,
    history: Vec<u32>,
    tokens: Vec<u32>,
    records: Vec<TokenRecord>,
    text: String,
    stream: TokenStream<'a>,
    stops: StopMatcher,
    decode_steps: usize,
}

impl Sequence<'_> {
    /// Chooses the next token from `logits` and reports it; returns why the sequence ends
    /// after it, if it does (`room`: whether the cache can take one more position).
    fn step(
        &mut self,
        logits: &[f32],
        params: &GenerateParams,
        eos: &[u32],
        room: bool,
    ) -> Result<Option<StopReason>> {
        if self.tokens.len() >= params.max_tokens {
            return Ok(Some(StopReason::MaxTokens));
        }
        let (id, trace) = match params.explain {
            Some(rows) => {
                let (id, t) = self.sampler.sample_traced(logits, &self.history, rows)?;
                (id, Some(t))
            }
            None => (self.sampler.sample(logits, &self.history)?, None),
        };
        if params.logprobs.is_some() || trace.is_some() {
            let record = TokenRecord {
                id,
                logprobs: params
                    .logprobs
                    .map(|n| token_logprobs(logits, id, n))
                    .transpose()?,
                trace,
            };
            (self.on_event)(Event::Token(&record))?;
            self.records.push(record);
        }
        self.tokens.push(id);
        self.history.push(id);
        if !params.ignore_eos && eos.contains(&id) {
            return Ok(Some(StopReason::Eos { id }));
        }
        if let Some(piece) = self.stream.next(id)? {
            let check = self.stops.push(&piece);
            if !check.emit.is_empty() {
                (self.on_event)(Event::Text(&check.emit))?;
                self.text.push_str(&check.emit);
            }
            if let Some(string) = check.matched {
                return Ok(Some(StopReason::Stop { string }));
            }
        }
        Ok(if self.tokens.len() >= params.max_tokens {
            Some(StopReason::MaxTokens)
        } else if !room {
            Some(StopReason::ContextFull)
        } else if params.interrupted() {
            Some(StopReason::Interrupted)
        } else {
            None
        })
    }

    /// Releases held-back text and returns the outcome.
    fn finish(mut self, mut stop: StopReason, timings: Timings) -> Result<Generation> {
        if !matches!(stop, StopReason::Stop { .. }) {
            // Bytes of an unfinished character, then text held back for a stop string that
            // never completed (the last bytes may still complete one).
            let check = self.stops.push(&self.stream.finish()?);
            let rest = check.emit + &self.stops.finish();
            if let Some(string) = check.matched {
                stop = StopReason::Stop { string };
            }
            if !rest.is_empty() {
                (self.on_event)(Event::Text(&rest))?;
                self.text.push_str(&rest);
            }
        }
        Ok(Generation {
            tokens: self.tokens,
            text: self.text,
            records: self.records,
            stop,
            timings: Timings {
                decode_steps: self.decode_steps,
                ..timings
            },
        })
    }
}

/// The generation loop, for one or several sequences continuing the same prefilled prompt
/// with their own samplers (`--compare` runs its sampling strategies this way). Every decode
/// step is one forward pass for all sequences still running; a sequence that stops leaves the
/// batch. Each sequence gets exactly the tokens it would get alone: the model computes every
/// row of a batch as it computes a single one.
pub fn generate_batch<'a>(
    model: &Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    prefilled: Prefilled,
    sequences: Vec<(&'a mut SamplerChain, &'a mut OnEvent<'a>)>,
    params: &GenerateParams,
) -> Result<Vec<Generation>> {
    let ctx = params
        .ctx_size
        .min(model.config().max_position_embeddings)
        .min(prefilled.cache.max_len());
    let mut eos = end_ids(model, tokenizer);
    for &id in &params.extra_eos {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    let Prefilled {
        mut cache,
        logits,
        time,
    } = prefilled;
    let n = sequences.len();
    if n > 1 {
        cache.reorder(&vec![0; n])?;
    }
    let mut seqs: Vec<Sequence> = sequences
        .into_iter()
        .map(|(sampler, on_event)| Sequence {
            sampler,
            on_event,
            history: prompt.to_vec(),
            tokens: Vec::new(),
            records: Vec::new(),
            text: String::new(),
            stream: TokenStream::new(tokenizer),
            stops: StopMatcher::new(&params.stop, params.keep_stop),
            decode_steps: 0,
        })
        .collect();
    let mut rows = vec![logits; n];
    // Sequences still running, in the order of their rows in the cache.
    let mut running: Vec<usize> = (0..n).collect();
    let mut ended: Vec<Option<(StopReason, Duration)>> = vec![None; n];
    let decode_start = Instant::now();
    loop {
        let room = cache.len() < ctx;
        let mut keep = Vec::with_capacity(running.len());
        for (row, &i) in running.iter().enumerate() {
            match seqs[i].step(&rows[row], params, &eos, room)? {
                Some(stop) => ended[i] = Some((stop, decode_start.elapsed())),
                None => keep.push(row),
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < running.len() {
            cache.reorder(&keep)?;
            running = keep.iter().map(|&row| running[row]).collect();
        }
        let next = running
            .iter()
            .map(|&i| seqs[i].tokens.last().copied())
            .collect::<Option<Vec<u32>>>()
            .context("internal: a running sequence has no token")?;
        let input = Tensor::new(next.as_slice(), model.device())?.unsqueeze(1)?; // (b, 1)
        rows = model
            .forward(&input, &mut cache, Logits::Last)?
            .to_vec2::<f32>()?;
        for &i in &running {
            seqs[i].decode_steps += 1;
        }
    }
    seqs.into_iter()
        .zip(ended)
        .map(|(seq, end)| {
            let (stop, decode) = end.context("internal: a sequence ended without a reason")?;
            let timings = Timings {
                prompt_tokens: prompt.len(),
                prefill: time,
                decode,
                ..Default::default()
            };
            seq.finish(stop, timings)
        })
        .collect()
}
