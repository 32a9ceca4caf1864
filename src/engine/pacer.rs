//! When speculative decoding drafts, and how much: the draft length adapts to what is
//! accepted, drafting pauses while it is measured to lose, and stops for the run when even a
//! perfect draft could not pay.
//!
//! The draft length starts at 4, grows by 2 when a whole draft is accepted and shrinks by 1
//! otherwise (transformers' heuristic). Whether drafting pays is judged in one of two ways:
//!
//! - **by the clock** (sample-and-match verification, whose output does not depend on where
//!   drafts are made): a pass's draft and verify time per token gained, against the time of a
//!   plain one-token step, both as moving averages;
//! - **by the tokens alone** (rejection sampling, whose tokens do depend on it, so that a
//!   seeded run stays reproducible): the acceptance rate against an estimate of what a drafted
//!   token costs, [`PAYING_RATE`] plus the draft's own step in target steps.
//!
//! A losing spell pauses drafting for 1, 2, 4, ... up to [`MAX_WAIT`] steps; a good draft after
//! the pause ends it.

use std::time::Duration;

/// The acceptance rate below which drafting is taken to lose, before the draft's own cost:
/// about what one drafted position of a verify pass costs, in one-token steps (0.4–0.56
/// measured on the Q4_1 model, docs/PERFORMANCE.md).
pub const PAYING_RATE: f64 = 0.5;

/// The longest pause, in steps.
pub const MAX_WAIT: usize = 64;

/// A draft whose step costs at least this share of a target step cannot pay: every verify
/// pass costs a step or more, so even with every token accepted the pair is no faster.
const HOPELESS_COST: f64 = 0.9;

/// Moving-average weight of the newest measurement.
const NEW: f64 = 0.3;
/// The same for the clock, whose single passes vary more (one unlucky draft should not pause).
const NEW_TIME: f64 = 0.2;

#[derive(Debug)]
pub struct Pacer {
    max: usize,
    k: usize,
    wait: usize,
    backoff: usize,
    off: bool,
    judge: Judge,
}

#[derive(Debug)]
enum Judge {
    Clock {
        /// Seconds of a plain one-token step.
        step: Option<f64>,
        /// Seconds per proposed token.
        draft: Option<f64>,
        /// Speculative seconds per token gained, over `step` (above 1: losing).
        ratio: f64,
    },
    Tokens {
        paying: f64,
        rate: f64,
    },
}

fn average(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| (1.0 - NEW) * o + NEW * new)
}

impl Pacer {
    /// Judged by the clock, drafting at most `max` tokens.
    pub fn timed(max: usize) -> Self {
        Self::new(
            max,
            Judge::Clock {
                step: None,
                draft: None,
                ratio: 1.0,
            },
        )
    }

    /// Judged by acceptance alone, with a drafted token estimated to cost `draft_cost` target
    /// steps of drafting.
    pub fn counted(max: usize, draft_cost: f64) -> Self {
        let paying = PAYING_RATE + draft_cost;
        let mut p = Self::new(max, Judge::Tokens { paying, rate: 1.0 });
        p.off = draft_cost >= HOPELESS_COST;
        p
    }

    fn new(max: usize, judge: Judge) -> Self {
        Self {
            max,
            k: max.min(4),
            wait: 0,
            backoff: 0,
            off: false,
            judge,
        }
    }

    /// How many tokens to draft before the next verify pass (0: a plain step). The first
    /// pass of a clock-judged run is plain, to time a step.
    pub fn draft_length(&mut self) -> usize {
        if self.off {
            return 0;
        }
        if let Judge::Clock { step: None, .. } = self.judge {
            return 0;
        }
        if self.wait > 0 {
            self.wait -= 1;
            return 0;
        }
        self.k
    }

    /// Records a pass: `drafted` tokens proposed in `draft_time` (zero when no draft was
    /// asked for: a plain step), `took` of them accepted, the verify pass in `verify_time`. A
    /// draft asked for and not made (the drafter had nothing it trusted) still cost its time.
    pub fn record(
        &mut self,
        drafted: usize,
        took: usize,
        draft_time: Duration,
        verify_time: Duration,
    ) {
        if draft_time.is_zero() {
            if let Judge::Clock { step, .. } = &mut self.judge {
                *step = Some(average(*step, verify_time.as_secs_f64()));
            }
            return;
        }
        if drafted == 0 && matches!(self.judge, Judge::Tokens { .. }) {
            return;
        }
        if drafted > 0 {
            self.k = if took == drafted {
                (self.k + 2).min(self.max)
            } else {
                self.k.saturating_sub(1).max(1)
            };
        }
        let losing = match &mut self.judge {
            Judge::Clock { step, draft, ratio } => {
                let Some(step) = *step else {
                    return;
                };
                if drafted > 0 {
                    let per_draft = draft_time.as_secs_f64() / drafted as f64;
                    let d = average(*draft, per_draft);
                    *draft = Some(d);
                    if d >= HOPELESS_COST * step {
                        self.off = true;
                        return;
                    }
                }
                let spent = draft_time.as_secs_f64() + verify_time.as_secs_f64();
                let r = spent / ((took + 1) as f64 * step);
                *ratio = (1.0 - NEW_TIME) * *ratio + NEW_TIME * r;
                let losing = *ratio > 1.0;
                if losing {
                    // Start afresh at the next try: one good draft brings it back.
                    *ratio = 1.0;
                }
                losing
            }
            Judge::Tokens { paying, rate } => {
                *rate = (1.0 - NEW) * *rate + NEW * (took as f64 / drafted as f64);
                let losing = *rate < *paying;
                if losing {
                    *rate = paying.min(1.0);
                }
                losing
            }
        };
        if losing {
            self.backoff = (self.backoff * 2).clamp(1, MAX_WAIT);
            self.wait = self.backoff;
        } else {
            self.backoff = 0;
        }
    }

    /// Whether drafting was switched off for the rest of the run.
    #[cfg(test)]
    fn is_off(&self) -> bool {
        self.off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_draft_length_follows_acceptance() {
        let mut p = Pacer::counted(10, 0.0);
        assert_eq!(p.draft_length(), 4);
        p.record(4, 4, MS, MS);
        assert_eq!(p.draft_length(), 6);
        p.record(6, 6, MS, MS);
        p.record(8, 8, MS, MS);
        assert_eq!(p.draft_length(), 10);
        p.record(10, 9, MS, MS);
        assert_eq!(p.draft_length(), 9);
    }

    #[test]
    fn losing_drafts_pause_longer_each_time() {
        let mut p = Pacer::counted(10, 0.0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(p.draft_length() > 0);
            p.record(4, 0, MS, MS);
            let mut w = 0;
            while p.draft_length() == 0 {
                w += 1;
            }
            waits.push(w);
        }
        // The first miss leaves the average (from 1) above 0.5; each later one pauses twice as
        // long as the one before.
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn a_draft_as_slow_as_the_target_is_switched_off() {
        assert!(Pacer::counted(10, 1.0).is_off());
        let mut p = Pacer::timed(10);
        assert_eq!(p.draft_length(), 0, "the first pass times a plain step");
        p.record(0, 0, Duration::ZERO, 10 * MS);
        assert_eq!(p.draft_length(), 4);
        // Four tokens drafted in 40 ms: 10 ms each, a whole target step.
        p.record(4, 4, 40 * MS, 12 * MS);
        assert!(p.is_off());
        assert_eq!(p.draft_length(), 0);
    }

    #[test]
    fn the_clock_pauses_a_draft_that_costs_more_than_it_saves() {
        let mut p = Pacer::timed(10);
        p.draft_length();
        p.record(0, 0, Duration::ZERO, 10 * MS);
        // A cheap draft (2 ms a token) whose tokens are all accepted: 5 tokens in 8 + 20 ms.
        assert_eq!(p.draft_length(), 4);
        p.record(4, 4, 8 * MS, 20 * MS);
        assert_eq!(p.draft_length(), 6);
        // Mostly rejected: 1 token gained for 12 + 25 ms, three times.
        p.record(6, 0, 12 * MS, 25 * MS);
        p.record(5, 0, 10 * MS, 25 * MS);
        assert_eq!(p.draft_length(), 0, "paused");
    }
}
