//! A KV cache kept across calls, with the tokens it holds: each new prompt reuses the longest
//! prefix already cached and runs only the rest through the model (`gen chat` re-renders the
//! whole conversation every turn, as llama.cpp and ollama do, and pays only for the new text).

use super::prefill;
use crate::model::{KvCache, Llama};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// A cache and the token ids of the positions it holds.
#[derive(Debug)]
pub struct PrefixCache {
    cache: KvCache,
    tokens: Vec<u32>,
}

/// What [`PrefixCache::prefill`] did.
#[derive(Debug)]
pub struct PrefixFill {
    /// The logits of the prompt's last position.
    pub logits: Vec<f32>,
    /// Prompt tokens found in the cache (not run again).
    pub reused: usize,
    /// Prompt tokens run through the model.
    pub computed: usize,
    pub time: Duration,
}

impl PrefixCache {
    /// An empty cache for a context of `ctx` tokens.
    pub fn new(model: &Llama, ctx: usize) -> Self {
        Self {
            cache: model.new_cache_for(ctx),
            tokens: Vec::new(),
        }
    }

    /// The token ids the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The cache itself, for a generation that continues the last prompt. Record what it
    /// appended with [`PrefixCache::generated`].
    pub fn cache_mut(&mut self) -> &mut KvCache {
        &mut self.cache
    }

    /// Forgets everything.
    pub fn clear(&mut self) -> Result<()> {
        self.cache.truncate(0)?;
        self.tokens.clear();
        Ok(())
    }

    /// Brings the cache to hold exactly `prompt` and returns its last position's logits: the
    /// longest common prefix with what is cached stays, the rest is dropped and the prompt's
    /// remainder is run in chunks of `batch_size`. At least the last token is always run (its
    /// logits are not kept), so a prompt equal to what is cached (`/regen`) recomputes one.
    pub fn prefill(
        &mut self,
        model: &Llama,
        prompt: &[u32],
        batch_size: usize,
    ) -> Result<PrefixFill> {
        if prompt.is_empty() {
            bail!("internal: an empty prompt for the prefix cache");
        }
        if prompt.len() > self.cache.max_len() {
            bail!(
                "the conversation has {} tokens but the context holds {}",
                prompt.len(),
                self.cache.max_len()
            );
        }
        let start = Instant::now();
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.cache.truncate(common)?;
        self.tokens.truncate(common);
        let rest = &prompt[common..];
        let logits = match prefill(model, &mut self.cache, rest, batch_size) {
            Ok(l) => l,
            Err(e) => {
                // The cache may hold part of `rest` now: start clean next time.
                self.clear()?;
                return Err(e);
            }
        };
        self.tokens.extend_from_slice(rest);
        Ok(PrefixFill {
            logits,
            reused: common,
            computed: rest.len(),
            time: start.elapsed(),
        })
    }

    /// Records the tokens a generation appended after the last prompt: the cache now holds
    /// every one of `generated` but the last (never run through the model), which this keeps
    /// in step.
    pub fn generated(&mut self, generated: &[u32]) {
        self.tokens.extend_from_slice(generated);
        self.tokens.truncate(self.cache.len());
    }
}
