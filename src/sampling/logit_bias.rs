//! Logit bias: add a fixed amount to chosen tokens' logits (`--logit-bias ID=BIAS`,
//! repeatable; OpenAI's and llama.cpp's `logit_bias`).
//!
//! A bias of −inf bans the token: it leaves the candidate list. Banning every token is an error.
//! No default; the stage exists only when a bias is given.

use super::{Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};
use std::collections::HashMap;

/// Per-token additive biases.
#[derive(Debug, Clone)]
pub struct LogitBias {
    biases: HashMap<u32, f32>,
}

impl LogitBias {
    /// A bias stage. Biases for the same id add up; NaN and +inf are rejected.
    pub fn new(biases: &[(u32, f32)]) -> Result<Self> {
        let mut map = HashMap::new();
        for &(id, b) in biases {
            ensure!(
                !b.is_nan() && b != f32::INFINITY,
                "logit bias for token {id} must be a number or -inf, got {b}"
            );
            *map.entry(id).or_insert(0.0) += b;
        }
        Ok(Self { biases: map })
    }

    /// Rejects ids outside a vocabulary of `vocab_size` tokens (known only once the model is
    /// loaded, so not a flag check).
    pub fn check_ids(biases: &[(u32, f32)], vocab_size: usize) -> Result<()> {
        if let Some((id, _)) = biases.iter().find(|(id, _)| *id as usize >= vocab_size) {
            anyhow::bail!(
                "--logit-bias names token {id}, but the vocabulary has {vocab_size} tokens (ids 0..{})",
                vocab_size.saturating_sub(1)
            );
        }
        Ok(())
    }
}

impl Sampler for LogitBias {
    fn name(&self) -> &'static str {
        "logit-bias"
    }

    fn describe(&self) -> String {
        let mut v: Vec<_> = self.biases.iter().collect();
        v.sort_by_key(|(id, _)| **id);
        let parts: Vec<String> = v.iter().map(|(id, b)| format!("{id}={b}")).collect();
        format!("logit-bias({})", parts.join(", "))
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        if c.is_by_id() {
            for (&id, &b) in &self.biases {
                if let Some(x) = c.by_id_mut(id) {
                    x.logit += b;
                }
            }
        } else {
            c.edit_logits(|x| {
                if let Some(b) = self.biases.get(&x.id) {
                    x.logit += b;
                }
            });
        }
        if c.items().iter().any(|x| x.logit == f32::NEG_INFINITY) {
            c.retain(|x| x.logit > f32::NEG_INFINITY);
            ensure!(
                !c.is_empty(),
                "--logit-bias bans every remaining token; nothing can be generated"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_bans() {
        let mut c = Candidates::from_logits(&[1.0, 2.0, 3.0]).unwrap();
        LogitBias::new(&[(0, 5.0), (2, f32::NEG_INFINITY), (0, 1.0), (99, 1.0)])
            .unwrap()
            .apply(
                &mut c,
                &StepContext {
                    history: &[],
                    coin: 0.0,
                },
            )
            .unwrap();
        let got: Vec<(u32, f32)> = c.items().iter().map(|x| (x.id, x.logit)).collect();
        assert_eq!(got, [(0, 7.0), (1, 2.0)]);
        let mut c = Candidates::from_logits(&[1.0]).unwrap();
        assert!(LogitBias::new(&[(0, f32::NEG_INFINITY)])
            .unwrap()
            .apply(
                &mut c,
                &StepContext {
                    history: &[],
                    coin: 0.0
                }
            )
            .is_err());
        assert!(LogitBias::new(&[(0, f32::NAN)]).is_err());
    }
}
