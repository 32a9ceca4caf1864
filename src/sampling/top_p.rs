//! Top-p, nucleus sampling (Holtzman et al. 2019): keep the smallest set of most likely
//! candidates whose probability mass reaches p, the crossing candidate included.
//!
//! Parameter `--top-p P` in (0, 1], default 0.95 (llama.cpp's default). The mass is measured on
//! the distribution renormalised over the candidates that survived earlier stages (llama.cpp,
//! transformers, mistral.rs; not candle's unrenormalised variant). P = 1 is a no-op and is left
//! out of the chain. Only as much of the list is sorted as the nucleus needs: a growing
//! partial selection, so a peaked distribution over 49,152 tokens sorts a few hundred.

use super::{Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};

/// Keeps the nucleus of mass ≥ p.
#[derive(Debug, Clone, Copy)]
pub struct TopP {
    p: f32,
    min_keep: usize,
}

impl TopP {
    /// A top-p stage; `p` must be in (0, 1].
    pub fn new(p: f32, min_keep: usize) -> Result<Self> {
        ensure!(p > 0.0 && p <= 1.0, "top-p must be in (0, 1], got {p}");
        Ok(Self { p, min_keep })
    }
}

/// Index after the first prefix of `probs` whose sum reaches `mass`, if any.
fn crossing(probs: impl Iterator<Item = f32>, mass: f64) -> Option<usize> {
    let mut cum = 0f64;
    for (i, p) in probs.enumerate() {
        cum += p as f64;
        if cum >= mass {
            return Some(i + 1);
        }
    }
    None
}

impl Sampler for TopP {
    fn name(&self) -> &'static str {
        "top-p"
    }

    fn describe(&self) -> String {
        format!("top-p(p={})", self.p)
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        c.ensure_probs()?;
        let mass = self.p as f64;
        let mut n = 256usize.min(c.len());
        let keep = loop {
            c.sort_prefix(n);
            let found = crossing(c.items()[..n].iter().map(|x| x.prob), mass);
            match found {
                Some(k) => break k,
                // Rounding can leave the whole list a hair short of p = 1.0: keep everything.
                None if n == c.len() => break n,
                None => n = (n * 4).min(c.len()),
            }
        };
        c.keep_best(keep.max(self.min_keep));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::TopK;

    fn ctx() -> StepContext<'static> {
        StepContext {
            history: &[],
            coin: 0.0,
        }
    }

    /// The seed documents' worked example: logits [10, 8, 5, 2, 1, 0.5], T = 1, top-k 3 →
    /// [0.875, 0.119, 0.006]; top-p 0.9 keeps two → [0.881, 0.119].
    #[test]
    fn seed_document_worked_example() {
        let mut c = Candidates::from_logits(&[10.0, 8.0, 5.0, 2.0, 1.0, 0.5]).unwrap();
        TopK::new(3, 1).unwrap().apply(&mut c, &ctx()).unwrap();
        c.ensure_probs().unwrap();
        let after_k: Vec<f32> = c.items().iter().map(|x| x.prob).collect();
        for (g, w) in after_k.iter().zip([0.875, 0.119, 0.006]) {
            assert!((g - w).abs() < 1e-3, "{after_k:?}");
        }
        TopP::new(0.9, 1).unwrap().apply(&mut c, &ctx()).unwrap();
        c.ensure_probs().unwrap();
        let got: Vec<(u32, f32)> = c.items().iter().map(|x| (x.id, x.prob)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[1].0), (0, 1));
        assert!(
            (got[0].1 - 0.881).abs() < 1e-3 && (got[1].1 - 0.119).abs() < 1e-3,
            "{got:?}"
        );
    }

    #[test]
    fn crossing_token_included_and_large_lists_grow_the_selection() {
        // probs 0.5, 0.25, 0.25: p = 0.5 keeps one, p = 0.51 keeps two.
        let l = [2f32.ln(), 0.0, 0.0];
        for (p, n) in [(0.5, 1), (0.51, 2), (1.0, 3)] {
            let mut c = Candidates::from_logits(&l).unwrap();
            TopP::new(p, 1).unwrap().apply(&mut c, &ctx()).unwrap();
            assert_eq!(c.len(), n, "p={p}");
        }
        // A flat distribution over 4,096 tokens (1/4096 is exact in f32): p = 0.5 needs 2,048,
        // beyond the first window of the partial selection.
        let mut c = Candidates::from_logits(&vec![0.0; 4096]).unwrap();
        TopP::new(0.5, 1).unwrap().apply(&mut c, &ctx()).unwrap();
        assert_eq!(c.len(), 2048);
        assert_eq!(c.items()[0].id, 0);
        assert!(TopP::new(0.0, 1).is_err() && TopP::new(1.01, 1).is_err());
    }
}
