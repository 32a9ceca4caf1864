//! Turning one row of logits into one token. Only greedy decoding exists so far; the sampler
//! chain (temperature, top-k, top-p, min-p, penalties) plugs in behind the same trait.

mod greedy;

pub use greedy::Greedy;

use anyhow::Result;

/// Picks the next token from the logits of one sequence.
pub trait Sampler {
    /// Chooses a token id given the model's logits (length = vocabulary size) and the tokens so
    /// far (prompt and generated), which penalties need.
    fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32>;
}

/// Rejects NaN and +inf logits, which no sampler can rank meaningfully.
pub fn check_logits(logits: &[f32]) -> Result<()> {
    if let Some((i, v)) = logits
        .iter()
        .enumerate()
        .find(|(_, v)| v.is_nan() || **v == f32::INFINITY)
    {
        anyhow::bail!(
            "the model produced an invalid logit {v} for token {i}; the weights may be corrupt or the computation overflowed"
        );
    }
    Ok(())
}
