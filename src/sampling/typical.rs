//! Locally typical sampling (Meister et al. 2022): keep the candidates whose surprisal is
//! closest to the distribution's entropy, until their mass reaches p.
//!
//! Parameter `--typical-p P` in (0, 1], default off (1.0, as in llama.cpp and transformers).
//! H = −Σ p log p over the current candidates; candidates are ordered by |−log p_i − H|
//! ascending and kept while the cumulative mass is below P, plus the one that crosses it
//! (transformers' `TypicalLogitsWarper`). P = 1 is a no-op and is left out of the chain.

use super::{Candidate, Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};

/// Keeps the most typical candidates up to mass p.
#[derive(Debug, Clone, Copy)]
pub struct Typical {
    p: f32,
    min_keep: usize,
}

impl Typical {
    /// A typical-p stage; `p` must be in (0, 1].
    pub fn new(p: f32, min_keep: usize) -> Result<Self> {
        ensure!(p > 0.0 && p <= 1.0, "typical-p must be in (0, 1], got {p}");
        Ok(Self { p, min_keep })
    }
}

impl Sampler for Typical {
    fn name(&self) -> &'static str {
        "typical"
    }

    fn describe(&self) -> String {
        format!("typical(p={})", self.p)
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        c.ensure_probs()?;
        let entropy: f64 = c
            .items()
            .iter()
            .filter(|x| x.prob > 0.0)
            .map(|x| -(x.prob as f64) * (x.prob as f64).ln())
            .sum();
        let mut scored: Vec<(f64, Candidate)> = c
            .items()
            .iter()
            .map(|x| {
                let surprisal = -(x.prob as f64).ln(); // +inf for p = 0: least typical
                ((surprisal - entropy).abs(), *x)
            })
            .collect();
        scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        let mut cum = 0f64;
        let mut keep = scored.len();
        for (i, (_, x)) in scored.iter().enumerate() {
            cum += x.prob as f64;
            if cum >= self.p as f64 {
                keep = i + 1;
                break;
            }
        }
        let keep = keep.max(self.min_keep).min(scored.len());
        c.replace(
            scored.into_iter().take(keep).map(|(_, x)| x).collect(),
            false,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_tokens_nearest_the_entropy() {
        // probs [0.7, 0.2, 0.1]: H = 0.8018 nats; surprisals 0.357, 1.609, 2.303;
        // distances 0.445, 0.808, 1.501 → order 0, 1, 2.
        let l = [7f32.ln(), 2f32.ln(), 0.0];
        for (p, want) in [(0.5, vec![0]), (0.8, vec![0, 1]), (0.95, vec![0, 1, 2])] {
            let mut c = Candidates::from_logits(&l).unwrap();
            Typical::new(p, 1)
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
            assert_eq!(ids, want, "p={p}");
        }
        // Typical sampling can drop the argmax. probs [0.4, 0.3, 0.3]: H = 1.0889; surprisals
        // 0.916, 1.204, 1.204 → distances 0.173, 0.115, 0.115 → order 1, 2, 0.
        let mut c = Candidates::from_logits(&[4f32.ln(), 3f32.ln(), 3f32.ln()]).unwrap();
        Typical::new(0.5, 1)
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
        assert_eq!(ids, [1, 2]);
    }
}
