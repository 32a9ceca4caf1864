//! Greedy: pick the candidate with the highest logit, ties to the lower id.
//!
//! No parameters. It is the final stage when `--temperature 0` (or `--greedy`) is given; every
//! filter keeps the argmax, so with greedy only penalties and logit bias can change the result.

use super::candidates::rank;
use super::{Candidates, Sampler, StepContext};
use anyhow::{Context, Result};

/// Always picks the most likely remaining candidate.
#[derive(Debug, Default, Clone, Copy)]
pub struct Greedy;

impl Sampler for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn describe(&self) -> String {
        "greedy".into()
    }

    fn apply(&mut self, c: &mut Candidates, _ctx: &StepContext) -> Result<()> {
        let best = c
            .items()
            .iter()
            .min_by(|a, b| rank(a, b))
            .context("no candidate left to pick")?;
        if best.logit == f32::NEG_INFINITY {
            anyhow::bail!("every candidate token has probability 0 (all were banned, e.g. by --logit-bias ID=-inf)");
        }
        let id = best.id;
        c.select(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(logits: &[f32]) -> Result<u32> {
        let mut c = Candidates::from_logits(logits)?;
        Greedy.apply(
            &mut c,
            &StepContext {
                history: &[],
                coin: 0.5,
            },
        )?;
        Ok(c.selected().unwrap())
    }

    #[test]
    fn argmax_with_ties_to_lowest_id() {
        assert_eq!(pick(&[0.0, 3.0, 1.0, 3.0]).unwrap(), 1);
        assert_eq!(pick(&[f32::NEG_INFINITY, -1.0]).unwrap(), 1);
        assert!(pick(&[f32::NEG_INFINITY; 2]).is_err());
    }
}
