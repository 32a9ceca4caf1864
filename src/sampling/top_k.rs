//! Top-k (Fan et al. 2018): keep exactly the k highest-logit candidates.
//!
//! Parameter `--top-k K`, default 40 (llama.cpp's default). Ties at the boundary go to the lower
//! id, as in llama.cpp and candle (transformers may keep more on ties). K ≥ the number of
//! candidates is a no-op and is left out of the chain when K ≥ the vocabulary; K = 0 is a usage
//! error (turn top-k off with `--top-k off` or by leaving it out of `--samplers`). Uses a partial
//! selection, never a sort of the whole vocabulary.

use super::{Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};

/// Keeps the k best candidates.
#[derive(Debug, Clone, Copy)]
pub struct TopK {
    k: usize,
    min_keep: usize,
}

impl TopK {
    /// A top-k stage; `k` must be ≥ 1.
    pub fn new(k: usize, min_keep: usize) -> Result<Self> {
        ensure!(k >= 1, "top-k must be at least 1, got {k}");
        Ok(Self { k, min_keep })
    }
}

impl Sampler for TopK {
    fn name(&self) -> &'static str {
        "top-k"
    }

    fn describe(&self) -> String {
        format!("top-k(k={})", self.k)
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        c.keep_best(self.k.max(self.min_keep));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_k_with_ties_to_lower_id() {
        let mut c = Candidates::from_logits(&[1.0, 5.0, 3.0, 5.0, 3.0]).unwrap();
        TopK::new(3, 1)
            .unwrap()
            .apply(
                &mut c,
                &StepContext {
                    history: &[],
                    coin: 0.0,
                },
            )
            .unwrap();
        let ids: Vec<u32> = c.items().iter().map(|x| x.id).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert!(TopK::new(0, 1).is_err());
    }
}
