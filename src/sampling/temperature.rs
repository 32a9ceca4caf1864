//! Temperature: divide every logit by T, sharpening (T < 1) or flattening (T > 1) the
//! distribution.
//!
//! Parameter `--temperature T`, default 0.8 (llama.cpp's default). T = 1 is a no-op and is
//! left out of the chain; T = 0 means greedy (llama.cpp, candle, mistral.rs and ollama all treat
//! it so; transformers raises instead), which the chain builder turns into a greedy final
//! stage; T < 0 is a usage error.

use super::{Candidates, Sampler, StepContext};
use anyhow::{ensure, Result};

/// Scales logits by 1/T, T > 0.
#[derive(Debug, Clone, Copy)]
pub struct Temperature {
    t: f32,
}

impl Temperature {
    /// A temperature stage; `t` must be finite and > 0 (T = 0 is greedy, built elsewhere).
    pub fn new(t: f32) -> Result<Self> {
        ensure!(
            t.is_finite() && t > 0.0 && (1.0 / t).is_finite(),
            "--temperature must be a finite number > 0 whose inverse is finite here (0 means greedy), got {t}"
        );
        Ok(Self { t })
    }
}

impl Sampler for Temperature {
    fn name(&self) -> &'static str {
        "temperature"
    }

    fn describe(&self) -> String {
        format!("temperature(t={})", self.t)
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        let inv = 1.0 / self.t;
        // Checked before scaling, so that the message can give the logit as it arrived: one
        // already near f32::MAX was made so by the penalties or --logit-bias, not the model.
        // (Going to −inf only bans the token, as a ban does.)
        if let Some(x) = c
            .items()
            .iter()
            .find(|x| x.logit.is_finite() && x.logit * inv == f32::INFINITY)
        {
            anyhow::bail!(
                "--temperature {:?} makes the logit of token {} ({:e}, after any penalties and --logit-bias) overflow; use a larger temperature, smaller penalties or biases, or 0 for greedy",
                self.t,
                x.id,
                x.logit
            );
        }
        c.scale_logits(inv);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(logits: &[f32], t: f32) -> Vec<f32> {
        let mut c = Candidates::from_logits(logits).unwrap();
        Temperature::new(t)
            .unwrap()
            .apply(
                &mut c,
                &StepContext {
                    history: &[],
                    coin: 0.0,
                },
            )
            .unwrap();
        c.ensure_probs().unwrap();
        c.items().iter().map(|x| x.prob).collect()
    }

    /// The seed documents' example: logits [2, 1, 0.5] at T = 0.5, 1 and 2 (exact softmax).
    #[test]
    fn seed_document_temperatures() {
        let l = [2.0, 1.0, 0.5];
        for (t, want) in [
            (0.5, [0.844, 0.114, 0.042]),
            (1.0, [0.629, 0.231, 0.140]),
            (2.0, [0.481, 0.292, 0.227]),
        ] {
            let got = probs(&l, t);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-3, "T={t}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn rejects_non_positive() {
        assert!(Temperature::new(0.0).is_err());
        assert!(Temperature::new(-1.0).is_err());
        assert!(Temperature::new(f32::NAN).is_err());
    }
}
