//! Perplexity as llama.cpp's `llama-perplexity` computes it: non-overlapping windows of
//! `context` tokens, each from an empty KV cache, scoring only the second half of each window
//! (positions `context/2 .. context-1` predicting the next token), no BOS added by us.

use crate::model::{Llama, Logits};
use anyhow::{bail, Result};
use candle_core::{Tensor, D};

/// The result of a perplexity run.
#[derive(Debug, Clone)]
pub struct PerplexityReport {
    pub context: usize,
    pub windows: usize,
    pub scored_tokens: usize,
    /// Mean negative log-likelihood per scored token (natural log).
    pub mean_nll: f64,
    /// Perplexity after each window (the running figure llama.cpp prints).
    pub running: Vec<f64>,
}

impl PerplexityReport {
    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        self.mean_nll.exp()
    }
}

/// Scores `tokens` in windows of `context` tokens; `on_window(done, total, running ppl)` after
/// each window.
pub fn perplexity(
    model: &Llama,
    tokens: &[u32],
    context: usize,
    on_window: &mut dyn FnMut(usize, usize, f64),
) -> Result<PerplexityReport> {
    if context < 4 {
        bail!("--ctx-size must be at least 4 tokens");
    }
    if context > model.config().max_position_embeddings {
        bail!(
            "--ctx-size {context} exceeds the model's context of {} tokens",
            model.config().max_position_embeddings
        );
    }
    let windows = tokens.len() / context;
    if windows == 0 {
        bail!(
            "the text has {} tokens, fewer than one window of {context}; use a longer text or a smaller --ctx-size",
            tokens.len()
        );
    }
    let first = context / 2;
    let mut total_nll = 0.0f64;
    let mut scored = 0usize;
    let mut running = Vec::with_capacity(windows);
    for w in 0..windows {
        let window = &tokens[w * context..(w + 1) * context];
        let mut cache = model.new_cache();
        let input = Tensor::new(window, model.device())?.unsqueeze(0)?; // (1, context)
        let logits = model.forward(&input, &mut cache, Logits::All)?.squeeze(0)?; // (context, vocab)
        let scored_logits = logits.narrow(0, first, context - 1 - first)?;
        let logp = candle_nn::ops::log_softmax(&scored_logits, D::Minus1)?;
        let targets: Vec<u32> = window[first + 1..].to_vec();
        let targets = Tensor::new(targets.as_slice(), model.device())?.unsqueeze(1)?;
        let picked: Vec<f32> = logp.gather(&targets, 1)?.squeeze(1)?.to_vec1()?;
        if let Some(i) = picked.iter().position(|x| !x.is_finite()) {
            bail!(
                "the log-probability of token {} in window {} is {} (NaN or infinite logits): the weights are corrupt or overflowed",
                first + 1 + i,
                w + 1,
                picked[i]
            );
        }
        total_nll -= picked.iter().map(|&x| x as f64).sum::<f64>();
        scored += picked.len();
        let ppl = (total_nll / scored as f64).exp();
        running.push(ppl);
        on_window(w + 1, windows, ppl);
    }
    Ok(PerplexityReport {
        context,
        windows,
        scored_tokens: scored,
        mean_nll: total_nll / scored as f64,
        running,
    })
}
