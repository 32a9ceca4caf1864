//! Turning one row of logits into one token: a chain of small samplers, each editing a list of
//! candidates `(id, logit, prob)` on the CPU, ending in a pick (greedy or a multinomial draw).
//!
//! The semantics of every sampler are fixed in `docs/SAMPLING.md`; each file
//! here documents its parameters, when it is a no-op and whose definition it follows. Sampling
//! code never sees a tensor: the generation loop hands it a `&[f32]`.

mod candidates;
mod chain;
mod dist;
mod greedy;
mod logit_bias;
mod logprobs;
mod min_p;
mod penalties;
mod temperature;
mod top_k;
mod top_p;
mod typical;

pub use candidates::{Candidate, Candidates};
pub use chain::{build_chain, validate, BuiltChain, SamplerChain, StepTrace, TraceRow};
pub use dist::{inverse_transform, Dist};
pub use greedy::Greedy;
pub use logit_bias::LogitBias;
pub use logprobs::{token_logprobs, TokenLogprobs};
pub use min_p::MinP;
pub use penalties::Penalties;
pub use temperature::Temperature;
pub use top_k::TopK;
pub use top_p::TopP;
pub use typical::Typical;

use anyhow::Result;

/// The random number generator behind every draw: named and portable, so a seed means the same
/// tokens on every machine (rand's `StdRng` may change algorithm between releases).
pub type SamplerRng = rand_chacha::ChaCha8Rng;

/// A seed for a run that was not given one: 32 bits, as llama.cpp draws its default seed, so
/// that it survives every JSON reader (jq and JavaScript read numbers as doubles, exact only
/// below 2^53) and is short to type back with `--seed`. Any u64 given explicitly is accepted.
pub fn random_seed() -> u64 {
    u64::from(rand::random::<u32>())
}

/// What a sampler may look at besides the candidates.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The tokens so far, prompt included (penalties read a window of it).
    pub history: &'a [u32],
    /// The step's one uniform number in [0, 1), used by the final draw only.
    pub coin: f64,
}

/// One stage of the chain: a filter, a transform, or the final pick.
///
/// A sampler that would change nothing is not built at all ("off" means absent from the chain),
/// so implementations never carry an "off" value.
pub trait Sampler: Send + SamplerClone {
    /// The stable name used by `--samplers`, `--verbose` and `--explain` (`top-k`).
    fn name(&self) -> &'static str;
    /// The sampler and its parameters, for display (`top-k(k=40)`).
    fn describe(&self) -> String;
    /// Edits the candidates; the final stage selects a token with [`Candidates::select`].
    fn apply(&mut self, candidates: &mut Candidates, ctx: &StepContext) -> Result<()>;
}

/// A copy of a boxed stage (every sampler is a small `Clone` struct; this makes them copyable
/// behind `dyn Sampler`).
pub trait SamplerClone {
    fn clone_box(&self) -> Box<dyn Sampler>;
}

impl<T: Sampler + Clone + 'static> SamplerClone for T {
    fn clone_box(&self) -> Box<dyn Sampler> {
        Box::new(self.clone())
    }
}

pub use crate::config::DEFAULT_MIN_KEEP;

/// `ln Σ exp(row)`: exp in f32 (it vectorises), sums in f64 over chunks of 64 to keep
/// rounding small; −inf when every entry is −inf.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    // exp eight at a time (ggml's vector expf, within 1.5 ulp), summed in f32 per 64 and in
    // f64 across.
    let sum: f64 = row
        .chunks(64)
        .map(|c| {
            c.chunks(8)
                .map(|e| {
                    let x =
                        std::array::from_fn(|i| e.get(i).map_or(f32::NEG_INFINITY, |&l| l - max));
                    crate::kernels::vexp::exp8(x).iter().sum::<f32>()
                })
                .sum::<f32>() as f64
        })
        .sum();
    max as f64 + sum.ln()
}

/// The `n` best items under `cmp` (`Less` = better), best first, in one pass that keeps a small
/// sorted list: most items are rejected by one comparison with its worst entry. For a top few
/// out of a whole vocabulary, without materialising or sorting it.
pub fn top_n<T>(
    items: impl IntoIterator<Item = T>,
    n: usize,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let mut best: Vec<T> = Vec::with_capacity(n + 1);
    for item in items {
        if best.len() == n && best.last().is_none_or(|w| cmp(&item, w).is_ge()) {
            continue;
        }
        let at = best.partition_point(|x| cmp(x, &item).is_lt());
        best.insert(at, item);
        best.truncate(n);
    }
    best
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

#[cfg(test)]
mod tests;
