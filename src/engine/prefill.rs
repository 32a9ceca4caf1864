//! Prefill: the prompt run through the model in chunks, filling a KV cache, and the logits of
//! its last position. `--compare` prefills once and gives each strategy a fork.

use super::check_prompt;
use crate::model::{KvCache, Llama, Logits};
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::time::{Duration, Instant};

/// Runs the prompt through `model` in chunks of `batch_size`, filling `cache`; returns the
/// logits of the last prompt position.
pub fn prefill(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    batch_size: usize,
) -> Result<Vec<f32>> {
    let device = model.device();
    let mut last = None;
    for chunk in prompt.chunks(batch_size.max(1)) {
        let input = Tensor::new(chunk, device)?.unsqueeze(0)?; // (1, chunk)
        last = Some(model.forward(&input, cache, Logits::Last)?);
    }
    let logits =
        last.context("the prompt is empty: give some text with --prompt, a file or stdin")?;
    Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
}

/// A prompt already run through the model: its KV cache and the logits of its last position.
#[derive(Debug)]
pub struct Prefilled {
    pub cache: KvCache,
    pub logits: Vec<f32>,
    pub time: Duration,
}

impl Prefilled {
    /// Prefills `prompt` into a cache for a context of `ctx` tokens (from
    /// [`super::context_size`]), after checking that the prompt fits.
    pub fn run(model: &Llama, prompt: &[u32], batch_size: usize, ctx: usize) -> Result<Self> {
        check_prompt(model, prompt, ctx)?;
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
