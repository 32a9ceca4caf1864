//! The sampled generation loop: one token per step through the KV cache, for one sequence or
//! several continuing the same prefilled prompt with their own samplers, until a stop condition.

use super::stop::StopMatcher;
use super::{
    context_size, DecodeParams, Event, Generation, OutputClosed, Prefilled, StopReason, Timings,
    TokenRecord,
};
use crate::model::{KvCache, Llama, Logits};
use crate::sampling::{token_logprobs, SamplerChain};
use crate::tokenizer::{TokenStream, Tokenizer};
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::time::{Duration, Instant};

/// The sampled loop's settings.
#[derive(Debug, Clone, Default)]
pub struct GenerateParams {
    /// What every strategy shares: length, end-of-generation set, context, stop strings.
    pub decode: DecodeParams,
    /// Record each token's log-probability and this many alternatives (`--logprobs N`).
    pub logprobs: Option<usize>,
    /// Record what each sampler stage did to this many top candidates (`--explain`).
    pub explain: Option<usize>,
    /// Speculative decoding (`--lookup`, `--model-draft`), for a single sequence: with the
    /// default verification the output is the same token for token, only the number of
    /// forward passes changes.
    pub speculation: Option<super::Speculation>,
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
    let ctx = context_size(model, params.decode.ctx_size);
    let prefilled = Prefilled::run(model, prompt, params.decode.batch_size, ctx)?;
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
pub(super) struct Sequence<'a> {
    pub(super) sampler: &'a mut SamplerChain,
    on_event: &'a mut OnEvent<'a>,
    /// The prompt and every token generated so far.
    pub(super) history: Vec<u32>,
    pub(super) tokens: Vec<u32>,
    records: Vec<TokenRecord>,
    text: String,
    stream: TokenStream<'a>,
    stops: StopMatcher,
    pub(super) decode_steps: usize,
}

impl Sequence<'_> {
    /// Chooses the next token from `logits` and reports it; returns why the sequence ends
    /// after it, if it does (`room`: whether the cache can take one more position).
    pub(super) fn step(
        &mut self,
        logits: &[f32],
        params: &GenerateParams,
        room: bool,
    ) -> Result<Option<StopReason>> {
        if self.tokens.len() >= params.decode.max_tokens {
            return Ok(Some(StopReason::MaxTokens));
        }
        let (id, trace) = match params.explain {
            Some(rows) => {
                let (id, t) = self.sampler.sample_traced(logits, &self.history, rows)?;
                (id, Some(t))
            }
            None => (self.sampler.sample(logits, &self.history)?, None),
        };
        self.take(id, trace, logits, params, room)
    }

    /// Whether the sequence has all the tokens it may have.
    pub(super) fn is_full(&self, params: &GenerateParams) -> bool {
        self.tokens.len() >= params.decode.max_tokens
    }

    /// Appends `id`, chosen from `logits` by whatever rule (the chain's pick, or speculative
    /// rejection sampling), and reports it; returns why the sequence ends after it, if it does.
    pub(super) fn take(
        &mut self,
        id: u32,
        trace: Option<crate::sampling::StepTrace>,
        logits: &[f32],
        params: &GenerateParams,
        room: bool,
    ) -> Result<Option<StopReason>> {
        let decode = &params.decode;
        if params.logprobs.is_some() || trace.is_some() {
            let record = TokenRecord {
                id,
                logprobs: params
                    .logprobs
                    .map(|n| token_logprobs(logits, id, n))
                    .transpose()?,
                trace,
            };
            if let Some(closed) = closed((self.on_event)(Event::Token(&record)))? {
                return Ok(Some(closed));
            }
            self.records.push(record);
        }
        self.tokens.push(id);
        self.history.push(id);
        if decode.eos.contains(&id) {
            return Ok(Some(StopReason::Eos { id }));
        }
        if let Some(piece) = self.stream.next(id)? {
            let check = self.stops.push(&piece);
            if !check.emit.is_empty() {
                if let Some(closed) = closed((self.on_event)(Event::Text(&check.emit)))? {
                    return Ok(Some(closed));
                }
                self.text.push_str(&check.emit);
            }
            if let Some(string) = check.matched {
                return Ok(Some(StopReason::Stop { string }));
            }
        }
        Ok(if self.tokens.len() >= decode.max_tokens {
            Some(StopReason::MaxTokens)
        } else if !room {
            Some(StopReason::ContextFull)
        } else if decode.interrupted() {
            Some(StopReason::Interrupted)
        } else {
            None
        })
    }

    /// Releases held-back text and returns the outcome.
    pub(super) fn finish(mut self, mut stop: StopReason, timings: Timings) -> Result<Generation> {
        let mut unfinished = 0;
        if !matches!(stop, StopReason::Stop { .. } | StopReason::OutputClosed) {
            // Text the stream still holds (without the bytes of a character the last tokens
            // left unfinished), then text held back for a stop string that never completed
            // (the last bytes may still complete one).
            let (tail, cut) = self.stream.finish_complete()?;
            unfinished = cut;
            let check = self.stops.push(&tail);
            let rest = check.emit + &self.stops.finish();
            if let Some(string) = check.matched {
                stop = StopReason::Stop { string };
            }
            if !rest.is_empty() {
                match closed((self.on_event)(Event::Text(&rest)))? {
                    Some(closed) => stop = closed,
                    None => self.text.push_str(&rest),
                }
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
            unfinished,
        })
    }
}

/// What a callback's result means for its sequence: `Some(OutputClosed)` when its reader went
/// away (the sequence ends there), `None` to go on; any other error is returned.
fn closed(result: Result<()>) -> Result<Option<StopReason>> {
    match result {
        Ok(()) => Ok(None),
        Err(e) if e.is::<OutputClosed>() => Ok(Some(StopReason::OutputClosed)),
        Err(e) => Err(e),
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
    let Prefilled {
        mut cache,
        logits,
        time,
    } = prefilled;
    run_batch(
        model, tokenizer, prompt, &mut cache, logits, time, sequences, params,
    )
}

/// Continues `prompt`, already in the caller's `cache` with `logits` its last position's, with
/// one sampler. The cache keeps the sequence afterwards: the prompt and every generated token
/// but the last (which was never run through the model). `gen chat` keeps its conversation in
/// one cache this way; `prefill_time` is reported as the prefill's.
#[allow(clippy::too_many_arguments)]
pub fn generate_in_cache(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    cache: &mut KvCache,
    logits: Vec<f32>,
    prefill_time: Duration,
    sampler: &mut SamplerChain,
    params: &GenerateParams,
    on_event: &mut OnEvent<'_>,
) -> Result<Generation> {
    let mut out = run_batch(
        model,
        tokenizer,
        prompt,
        cache,
        logits,
        prefill_time,
        vec![(sampler, on_event)],
        params,
    )?;
    out.pop()
        .context("internal: a batch of one gave no generation")
}

#[allow(clippy::too_many_arguments)]
fn run_batch<'a>(
    model: &Llama,
    tokenizer: &'a Tokenizer,
    prompt: &[u32],
    cache: &mut KvCache,
    logits: Vec<f32>,
    time: Duration,
    sequences: Vec<(&'a mut SamplerChain, &'a mut OnEvent<'a>)>,
    params: &GenerateParams,
) -> Result<Vec<Generation>> {
    let ctx = context_size(model, params.decode.ctx_size).min(cache.max_len());
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
            stream: TokenStream::new(tokenizer).show_control(params.decode.special),
            stops: StopMatcher::new(&params.decode.stop, params.decode.keep_stop),
            decode_steps: 0,
        })
        .collect();
    let mut rows = vec![logits; n];
    // Sequences still running, in the order of their rows in the cache.
    let mut running: Vec<usize> = (0..n).collect();
    let mut ended: Vec<Option<(StopReason, Duration)>> = vec![None; n];
    if let (Some(spec), 1) = (&params.speculation, seqs.len()) {
        let seq = seqs
            .pop()
            .context("internal: a batch of one has no sequence")?;
        let logits = rows
            .pop()
            .context("internal: a batch of one has no logits")?;
        let timings = Timings {
            prompt_tokens: prompt.len(),
            prefill: time,
            ..Default::default()
        };
        return Ok(vec![super::speculative::speculate(
            model, cache, ctx, seq, logits, spec, params, timings,
        )?]);
    }
    let decode_start = Instant::now();
    loop {
        let room = cache.len() < ctx;
        let mut keep = Vec::with_capacity(running.len());
        for (row, &i) in running.iter().enumerate() {
            match seqs[i].step(&rows[row], params, room)? {
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
            .forward(&input, cache, Logits::Last)?
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
