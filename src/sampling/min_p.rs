//! Min-p (Nguyen et al. 2024, llama.cpp's `min_p`): keep candidates with p_i ≥ m · p_max.
//!
//! Parameter `--min-p M` in [0, 1], default 0.05 (llama.cpp's default). Tested on logits as
//! `logit_i − max_logit ≥ ln M` (llama.cpp's form: the same inequality without a softmax, and
//! exact at the boundary when the logits are themselves logs); ties are kept, so the argmax
//! always survives. M = 0 is a no-op and is left out of the chain.

use super::{Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};

/// Keeps candidates at least `m` times as likely as the best one.
#[derive(Debug, Clone, Copy)]
pub struct MinP {
    m: f32,
    min_keep: usize,
}

impl MinP {
    /// A min-p stage; `m` must be in [0, 1].
    pub fn new(m: f32, min_keep: usize) -> Result<Self> {
        ensure!((0.0..=1.0).contains(&m), "min-p must be in [0, 1], got {m}");
        Ok(Self { m, min_keep })
    }
}

impl Sampler for MinP {
    fn name(&self) -> &'static str {
        "min-p"
    }

    fn describe(&self) -> String {
        format!("min-p(p={})", self.m)
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        let max = c
            .items()
            .iter()
            .map(|x| x.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let min_logit = self.m.ln(); // −inf for M = 0
        let keep = |logit: f32| logit - max >= min_logit;
        let kept = c.items().iter().filter(|x| keep(x.logit)).count();
        if kept >= self.min_keep {
            c.retain(|x| keep(x.logit));
        } else {
            c.keep_best(self.min_keep);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ratio_to_max_with_ties() {
        // probs ∝ [4, 2, 1, 1]: m = 0.25 keeps all, m = 0.3 drops the two 1s, m = 1 keeps the max.
        let l = [4f32.ln(), 2f32.ln(), 0.0, 0.0];
        for (m, n) in [(0.25, 4), (0.3, 2), (0.5, 2), (1.0, 1)] {
            let mut c = Candidates::from_logits(&l).unwrap();
            MinP::new(m, 1)
                .unwrap()
                .apply(
                    &mut c,
                    &StepContext {
                        history: &[],
                        coin: 0.0,
                    },
                )
                .unwrap();
            assert_eq!(c.len(), n, "m={m}");
            assert!(c.items().iter().any(|x| x.id == 0));
        }
        assert!(MinP::new(-0.1, 1).is_err() && MinP::new(1.5, 1).is_err());
    }
}
