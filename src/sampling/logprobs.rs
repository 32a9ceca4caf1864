//! Log-probabilities under the model's unfiltered distribution (`--logprobs N`): the chosen
//! token's and the N most likely alternatives', from the raw logits before any penalty,
//! temperature or filter, as OpenAI's and llama.cpp's servers report them.

use super::candidates::{rank, Candidate};
use super::{check_logits, log_sum_exp, top_n};
use anyhow::Result;

/// The chosen token's log-probability and the top alternatives, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    /// (id, log-probability), the `n` most likely tokens, ties to the lower id.
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of `logits` at `id`, and the `n` best entries (partial selection, no full sort).
pub fn token_logprobs(logits: &[f32], id: u32, n: usize) -> Result<TokenLogprobs> {
    check_logits(logits)?;
    let log_z = log_sum_exp(logits);
    let lp = |l: f32| (l as f64 - log_z) as f32;
    let chosen = logits
        .get(id as usize)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("token {id} is outside the vocabulary"))?;
    let all = top_n(
        logits.iter().enumerate().map(|(i, &logit)| Candidate {
            id: i as u32,
            logit,
            prob: 0.0,
        }),
        n,
        rank,
    );
    Ok(TokenLogprobs {
        id,
        logprob: lp(chosen),
        top: all.iter().map(|c| (c.id, lp(c.logit))).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_top_n() {
        let l = [2f32.ln(), 0.0, 0.0, f32::NEG_INFINITY];
        let t = token_logprobs(&l, 2, 2).unwrap();
        assert!((t.logprob - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(t.top.len(), 2);
        assert_eq!((t.top[0].0, t.top[1].0), (0, 1));
        assert!((t.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
        assert_eq!(token_logprobs(&l, 3, 0).unwrap().logprob, f32::NEG_INFINITY);
        assert!(token_logprobs(&l, 9, 1).is_err());
    }
}
