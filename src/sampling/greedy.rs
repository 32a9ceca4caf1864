//! Greedy decoding: the argmax, ties broken towards the lower token id.

use super::{check_logits, Sampler};
use anyhow::{bail, Result};

/// Always picks the most likely token (`--temperature 0`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Greedy;

impl Sampler for Greedy {
    fn sample(&mut self, logits: &[f32], _history: &[u32]) -> Result<u32> {
        check_logits(logits)?;
        let mut best: Option<(usize, f32)> = None;
        for (i, &v) in logits.iter().enumerate() {
            // Strictly greater keeps the first (lowest) id among equal maxima.
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        match best {
            Some((i, _)) => Ok(i as u32),
            None => bail!("cannot pick a token from empty logits"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_with_ties_to_lowest_id() {
        assert_eq!(Greedy.sample(&[0.0, 3.0, 1.0, 3.0], &[]).unwrap(), 1);
        assert_eq!(Greedy.sample(&[f32::NEG_INFINITY, -1.0], &[]).unwrap(), 1);
        assert!(Greedy.sample(&[0.0, f32::NAN], &[]).is_err());
        assert!(Greedy.sample(&[], &[]).is_err());
    }
}
