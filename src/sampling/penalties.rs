//! Repetition, frequency and presence penalties over a window of recent tokens.
//!
//! - `--repeat-penalty θ` (CTRL, Keskar et al. 2019, with the sign fix llama.cpp and
//!   transformers use): for each *distinct* token in the window, logit / θ if logit > 0, else
//!   logit · θ. Default 1.0 = off (llama.cpp's default); θ must be > 0.
//! - `--frequency-penalty α_f`, `--presence-penalty α_p` (OpenAI's definition): logit −=
//!   count · α_f + [count > 0] · α_p. Defaults 0 = off.
//! - `--repeat-last-n N`: the window is the last N tokens of the history, *prompt included*
//!   (llama.cpp and transformers), default 64 (llama.cpp's default); −1 means the whole history,
//!   0 turns all three penalties off.
//!
//! The stage is built only when at least one penalty is active.

use super::{Candidates, Sampler, StepContext};
use crate::config::Window;
use anyhow::{ensure, Result};
use std::collections::HashMap;

/// The three penalties, sharing one window.
#[derive(Debug, Clone, Copy)]
pub struct Penalties {
    repeat: f32,
    frequency: f32,
    presence: f32,
    window: Window,
}

impl Penalties {
    /// A penalties stage; `repeat` must be > 0 and the others finite.
    pub fn new(repeat: f32, frequency: f32, presence: f32, window: Window) -> Result<Self> {
        ensure!(
            repeat.is_finite() && repeat > 0.0,
            "repeat penalty must be > 0 (1 = off), got {repeat}"
        );
        ensure!(
            frequency.is_finite() && presence.is_finite(),
            "frequency and presence penalties must be finite numbers"
        );
        ensure!(
            window != Window::Last(0),
            "the penalty window must hold at least one token"
        );
        Ok(Self {
            repeat,
            frequency,
            presence,
            window,
        })
    }

    /// Whether these settings change nothing.
    pub fn is_noop(&self) -> bool {
        self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0
    }

    /// The part of the history the penalties look at.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Counts of each distinct token in the window.
    fn counts(&self, history: &[u32]) -> HashMap<u32, u32> {
        let window = match self.window {
            Window::All => history,
            Window::Last(n) => &history[history.len().saturating_sub(n)..],
        };
        let mut counts = HashMap::with_capacity(window.len());
        for &t in window {
            *counts.entry(t).or_insert(0) += 1;
        }
        counts
    }

    fn penalise(&self, logit: f32, count: u32) -> f32 {
        let l = if logit > 0.0 {
            logit / self.repeat
        } else {
            logit * self.repeat
        };
        l - count as f32 * self.frequency - self.presence
    }

    /// Applies the penalties to a full row of logits indexed by token id (beam search uses
    /// this on each beam's row).
    pub fn apply_to_logits(&self, logits: &mut [f32], history: &[u32]) {
        for (t, n) in self.counts(history) {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = self.penalise(*l, n);
            }
        }
    }
}

impl Sampler for Penalties {
    fn name(&self) -> &'static str {
        "penalties"
    }

    fn describe(&self) -> String {
        let window = match self.window {
            Window::All => "all".to_string(),
            Window::Last(n) => n.to_string(),
        };
        format!(
            "penalties(repeat={}, frequency={}, presence={}, last_n={window})",
            self.repeat, self.frequency, self.presence
        )
    }

    fn apply(&mut self, c: &mut Candidates, ctx: &StepContext) -> Result<()> {
        let counts = self.counts(ctx.history);
        if counts.is_empty() {
            return Ok(());
        }
        // Only penalised tokens change; their logits must still be numbers.
        let mut overflow: Option<(u32, f32)> = None;
        let mut penalise = |x: &mut super::Candidate, n: u32| {
            x.logit = self.penalise(x.logit, n);
            if x.logit.is_nan() || x.logit == f32::INFINITY {
                overflow.get_or_insert((x.id, x.logit));
            }
        };
        if c.is_by_id() {
            for (&t, &n) in &counts {
                if let Some(x) = c.by_id_mut(t) {
                    penalise(x, n);
                }
            }
        } else {
            c.edit_logits(|x| {
                if let Some(&n) = counts.get(&x.id) {
                    penalise(x, n);
                }
            });
        }
        if let Some((id, logit)) = overflow {
            anyhow::bail!(
                "the penalties (--repeat-penalty {:?}, --frequency-penalty {:?}, --presence-penalty {:?}) make the logit of token {id} overflow ({logit}); use smaller penalties",
                self.repeat,
                self.frequency,
                self.presence
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: Penalties, logits: &[f32], history: &[u32]) -> Vec<f32> {
        let mut c = Candidates::from_logits(logits).unwrap();
        let mut p = p;
        p.apply(&mut c, &StepContext { history, coin: 0.0 })
            .unwrap();
        let mut row = logits.to_vec();
        p.apply_to_logits(&mut row, history);
        let got: Vec<f32> = c.items().iter().map(|x| x.logit).collect();
        assert_eq!(got, row, "candidate and row paths agree");
        got
    }

    #[test]
    fn repetition_is_sign_aware_and_once_per_distinct_token() {
        let p = Penalties::new(2.0, 0.0, 0.0, Window::All).unwrap();
        // Token 0 appears three times but is penalised once; token 1 is negative: multiplied.
        assert_eq!(run(p, &[4.0, -1.0, 3.0], &[0, 0, 0, 1]), [2.0, -2.0, 3.0]);
    }

    #[test]
    fn frequency_and_presence_follow_counts() {
        let p = Penalties::new(1.0, 0.5, 0.25, Window::All).unwrap();
        assert_eq!(run(p, &[1.0, 1.0, 1.0], &[0, 0, 1]), [-0.25, 0.25, 1.0]);
    }

    #[test]
    fn window_counts_only_the_last_n() {
        let p = Penalties::new(2.0, 0.0, 0.0, Window::Last(2)).unwrap();
        assert_eq!(run(p, &[4.0, 4.0, 4.0], &[0, 1, 2]), [4.0, 2.0, 2.0]);
        assert!(Penalties::new(0.0, 0.0, 0.0, Window::All).is_err());
        assert!(Penalties::new(1.0, 0.0, 0.0, Window::Last(0)).is_err());
    }
}
