//! The candidate list every sampler edits: token ids with their current logits and, computed
//! lazily, the softmax over the candidates that are still in the list.

use super::check_logits;
use anyhow::{bail, Result};
use std::cmp::Ordering;

/// One candidate token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    /// Softmax of `logit` over the current candidates; valid only after
    /// [`Candidates::ensure_probs`].
    pub prob: f32,
}

/// The candidates of one step, plus what is known about their order.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    items: Vec<Candidate>,
    /// `prob` is the softmax of the current logits over the current items.
    probs_fresh: bool,
    /// Items are in [`rank`] order: logit descending, ties to the lower id.
    sorted: bool,
    /// `items[i].id == i`: the untouched vocabulary, so a token's candidate is found by index.
    by_id: bool,
    selected: Option<u32>,
}

/// The order samplers rank by: higher logit first, ties to the lower id (llama.cpp, candle).
pub fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

impl Candidates {
    /// Every token of the vocabulary, in id order. NaN and +inf logits are an error.
    pub fn from_logits(logits: &[f32]) -> Result<Self> {
        let mut c = Self::default();
        c.refill(logits)?;
        Ok(c)
    }

    /// Resets to every token of the vocabulary, reusing the allocation (a 49,152-entry list is
    /// 600 KB: allocating it afresh each step costs more than the samplers themselves).
    pub fn refill(&mut self, logits: &[f32]) -> Result<()> {
        check_logits(logits)?;
        if logits.is_empty() {
            bail!("cannot pick a token from empty logits");
        }
        self.items.clear();
        self.items
            .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
                prob: 0.0,
            }));
        self.probs_fresh = false;
        self.sorted = false;
        self.by_id = true;
        self.selected = None;
        Ok(())
    }

    /// The candidates in their current order.
    pub fn items(&self) -> &[Candidate] {
        &self.items
    }

    /// Number of candidates left.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no candidate is left (filters never let this happen).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `items()[i].id == i` still holds.
    pub fn is_by_id(&self) -> bool {
        self.by_id
    }

    /// Changes logits in place. Order and probabilities are no longer known afterwards.
    pub fn edit_logits(&mut self, mut f: impl FnMut(&mut Candidate)) {
        self.items.iter_mut().for_each(&mut f);
        self.probs_fresh = false;
        self.sorted = false;
    }

    /// Changes logits in place with a map that keeps their order (a positive scale).
    pub fn scale_logits(&mut self, factor: f32) {
        self.items.iter_mut().for_each(|c| c.logit *= factor);
        self.probs_fresh = false;
    }

    /// The first candidate whose logit is NaN or ±inf (−inf, a ban, is allowed), if any.
    pub fn first_overflow(&self) -> Option<&Candidate> {
        self.items
            .iter()
            .find(|c| c.logit.is_nan() || c.logit == f32::INFINITY)
    }

    /// Mutable access to the candidate of `id` when the list is still indexed by id.
    pub fn by_id_mut(&mut self, id: u32) -> Option<&mut Candidate> {
        if !self.by_id {
            return None;
        }
        self.probs_fresh = false;
        self.sorted = false;
        self.items.get_mut(id as usize)
    }

    /// Computes `prob` as the softmax of the logits over the current candidates (max
    /// subtraction, sum in f64). Fails when every candidate has logit −inf.
    pub fn ensure_probs(&mut self) -> Result<()> {
        if self.probs_fresh {
            return Ok(());
        }
        let max = self
            .items
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            bail!("every candidate token has probability 0 (all were banned, e.g. by --logit-bias ID=-inf)");
        }
        let mut sum = 0f64;
        for c in &mut self.items {
            let e = (c.logit - max).exp();
            c.prob = e;
            sum += e as f64;
        }
        let inv = (1.0 / sum) as f32;
        for c in &mut self.items {
            c.prob *= inv;
        }
        self.probs_fresh = true;
        Ok(())
    }

    /// Sorts into [`rank`] order (a no-op when already sorted).
    pub fn ensure_sorted(&mut self) {
        if !self.sorted {
            self.items.sort_unstable_by(rank);
            self.sorted = true;
            self.by_id = false;
        }
    }

    /// Makes the first `n` items the `n` best in [`rank`] order, sorted, without sorting the
    /// rest (a partial selection: O(len) plus O(n log n)). The rest stay after them, unordered.
    pub fn sort_prefix(&mut self, n: usize) {
        if self.sorted {
            return;
        }
        let n = n.min(self.items.len());
        if n < self.items.len() && n > 0 {
            self.items.select_nth_unstable_by(n - 1, rank);
        }
        self.items[..n].sort_unstable_by(rank);
        self.by_id = false;
        if n >= self.items.len() {
            self.sorted = true;
        }
    }

    /// Keeps the `n` best candidates in [`rank`] order, sorted (`n` is at least 1).
    pub fn keep_best(&mut self, n: usize) {
        let n = n.max(1);
        self.sort_prefix(n);
        if n < self.items.len() {
            self.items.truncate(n);
            self.probs_fresh = false;
        }
        self.sorted = true;
        self.by_id = false;
    }

    /// Keeps the candidates for which `keep` is true, in their order.
    pub fn retain(&mut self, keep: impl FnMut(&Candidate) -> bool) {
        let before = self.items.len();
        self.items.retain(keep);
        if self.items.len() != before {
            self.probs_fresh = false;
            self.by_id = false;
        }
    }

    /// Replaces the items with a reordered subset (typical-p's own order).
    pub(crate) fn replace(&mut self, items: Vec<Candidate>, sorted: bool) {
        self.items = items;
        self.probs_fresh = false;
        self.sorted = sorted;
        self.by_id = false;
    }

    /// The final stage's choice.
    pub fn select(&mut self, id: u32) {
        self.selected = Some(id);
    }

    /// The chosen token, once a final stage has run.
    pub fn selected(&self) -> Option<u32> {
        self.selected
    }

    /// The `n` most likely candidates as (id, prob), best first.
    pub fn top(&mut self, n: usize) -> Result<Vec<(u32, f32)>> {
        self.ensure_probs()?;
        let mut v: Vec<Candidate> = self.items.clone();
        let n = n.min(v.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        if n < v.len() {
            v.select_nth_unstable_by(n - 1, rank);
            v.truncate(n);
        }
        v.sort_unstable_by(rank);
        Ok(v.into_iter().map(|c| (c.id, c.prob)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_sorts_with_ties_to_lower_id() {
        let mut c = Candidates::from_logits(&[1.0, 3.0, 3.0, f32::NEG_INFINITY]).unwrap();
        c.ensure_probs().unwrap();
        let s: f32 = c.items().iter().map(|c| c.prob).sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert_eq!(c.items()[3].prob, 0.0);
        c.ensure_sorted();
        let ids: Vec<u32> = c.items().iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 2, 0, 3]);
    }

    #[test]
    fn sort_prefix_equals_full_sort() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 613) as f32 / 10.0)
            .collect();
        let mut a = Candidates::from_logits(&logits).unwrap();
        let mut b = a.clone();
        a.sort_prefix(37);
        b.ensure_sorted();
        assert_eq!(&a.items()[..37], &b.items()[..37]);
    }

    #[test]
    fn bad_logits_are_errors() {
        assert!(Candidates::from_logits(&[]).is_err());
        assert!(Candidates::from_logits(&[0.0, f32::NAN]).is_err());
        assert!(Candidates::from_logits(&[f32::INFINITY]).is_err());
        let mut all_banned = Candidates::from_logits(&[f32::NEG_INFINITY; 3]).unwrap();
        assert!(all_banned.ensure_probs().is_err());
    }
}
