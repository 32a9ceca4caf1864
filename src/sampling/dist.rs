//! The multinomial draw: the final stage of a sampling chain.
//!
//! No parameters. It uses the step's one uniform number `u` in [0, 1): walking the candidates
//! in ascending id order, it picks the first whose cumulative probability exceeds `u` (inverse
//! transform sampling, as llama2.c's `sample_mult`). Walking in id order, not in whatever order
//! the earlier stages left, makes the token a function of the filtered distribution and `u`
//! alone: a chain of no-op stages draws exactly what a plain multinomial draw does.

use super::{Candidates, Sampler, StepContext};
use anyhow::{Context, Result};

/// Draws one token from the candidates' probabilities.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dist;

impl Sampler for Dist {
    fn name(&self) -> &'static str {
        "dist"
    }

    fn describe(&self) -> String {
        "dist".into()
    }

    fn apply(&mut self, c: &mut Candidates, ctx: &StepContext) -> Result<()> {
        c.ensure_probs()?;
        let items = c.items();
        let sorted_copy;
        let items = if items.windows(2).all(|w| w[0].id < w[1].id) {
            items
        } else {
            let mut v = items.to_vec();
            v.sort_unstable_by_key(|x| x.id);
            sorted_copy = v;
            &sorted_copy[..]
        };
        let id = inverse_transform(items.iter().map(|x| (x.id, x.prob)), ctx.coin)
            .context("no candidate with non-zero probability to draw")?;
        c.select(id);
        Ok(())
    }
}

/// Inverse transform sampling with the uniform number `u`: the first of `weights` (id,
/// weight), in the order given, whose cumulative weight exceeds `u` times their total (weights
/// need not sum to 1; zero weights are never drawn). `None` when no weight is positive. The
/// chain's final draw and speculative decoding's rejection sampling both draw this way.
pub fn inverse_transform<I>(weights: I, u: f64) -> Option<u32>
where
    I: Iterator<Item = (u32, f32)> + Clone,
{
    let total: f64 = weights.clone().map(|(_, p)| f64::from(p)).sum();
    let target = u.clamp(0.0, 1.0) * total;
    let mut cum = 0f64;
    let mut chosen = None;
    for (id, p) in weights {
        if p <= 0.0 {
            continue;
        }
        cum += f64::from(p);
        chosen = Some(id);
        if cum > target {
            break;
        }
    }
    // Rounding can leave `cum` a hair below `target` at the end: the last candidate with
    // non-zero probability is then the right answer.
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(logits: &[f32], coin: f64) -> u32 {
        let mut c = Candidates::from_logits(logits).unwrap();
        Dist.apply(&mut c, &StepContext { history: &[], coin })
            .unwrap();
        c.selected().unwrap()
    }

    #[test]
    fn inverse_transform_over_cumulative_probabilities() {
        // probs = [0.5, 0.25, 0.25]
        let l = [2f32.ln(), 0.0, 0.0];
        assert_eq!(draw(&l, 0.0), 0);
        assert_eq!(draw(&l, 0.49), 0);
        assert_eq!(draw(&l, 0.51), 1);
        assert_eq!(draw(&l, 0.76), 2);
        assert_eq!(draw(&l, 0.999_999_9), 2);
        // Zero-probability candidates are never drawn, even at u = 0.
        assert_eq!(draw(&[f32::NEG_INFINITY, 1.0], 0.0), 1);
    }
}
