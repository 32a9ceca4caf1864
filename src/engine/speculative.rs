//! Speculative decoding of one sequence: a drafter proposes tokens (prompt lookup, or a small
//! draft model with the target's vocabulary), the target scores them all in one verify pass
//! whose logits equal one-token steps bit for bit ([`Llama::forward_as_steps`]), and the
//! drafted tokens are accepted by one of two rules ([`Verify`]):
//!
//! - **match** (the default, llama.cpp's "sample and match"): at each drafted position the
//!   sequence draws its token exactly as the plain loop would, with the same random number, and
//!   goes on while it equals the draft. The output is the plain run's, token for token.
//! - **rejection** (Leviathan et al. 2023, transformers' `_speculative_sampling`): drafted token
//!   `x` is kept with probability `min(1, p(x)/q(x))` (`p`, `q`: the target's and the draft's
//!   distributions after the sampler chain; an n-gram draft is one-hot), else a token is drawn
//!   from `max(0, p − q)` normalised and the rest of the draft is dropped. The tokens are
//!   distributed as the target's, but are not the plain run's for a given seed.
//!
//! Either way the target's cache is cut back to what it would hold without speculation, and
//! the draft model's to what it has seen of the accepted text.

use super::lookup::Lookup;
use super::pacer::Pacer;
use super::prefill::prefill;
use super::sample::{GenerateParams, Sequence};
use super::{Generation, Timings};
use crate::model::{KvCache, Llama, Logits};
use crate::sampling::{inverse_transform, log_sum_exp, SamplerChain, SamplerRng};
use anyhow::{Context, Result};
use candle_core::Tensor;
use rand::{RngExt, SeedableRng};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where drafts come from.
#[derive(Clone)]
pub enum DraftSource {
    /// Prompt lookup (`--lookup`): the continuation of the latest earlier occurrence of the
    /// last n-gram, up to `ngram` tokens long.
    Lookup { ngram: usize },
    /// A draft model with the target's vocabulary (`--model-draft`), and what one of its
    /// decode steps costs in target decode steps (decoding is memory-bound: the ratio of the
    /// two models' weight bytes).
    Model { model: Arc<Llama>, cost: f64 },
}

impl fmt::Debug for DraftSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lookup { ngram } => write!(f, "Lookup {{ ngram: {ngram} }}"),
            Self::Model { cost, .. } => write!(f, "Model {{ cost: {cost:.3} }}"),
        }
    }
}

/// How drafted tokens are accepted (`--draft-verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Draw as the plain loop does and keep going while the draw equals the draft: the output
    /// is the plain run's, token for token.
    #[default]
    Match,
    /// Leviathan et al.'s rejection sampling: the target's distribution, more tokens accepted
    /// from a sampled draft, but other tokens than the plain run's for a given seed.
    Rejection,
}

/// Speculative decoding's settings.
#[derive(Debug, Clone)]
pub struct Speculation {
    pub source: DraftSource,
    /// Most tokens proposed per verify pass (`--draft-max`).
    pub max: usize,
    /// Drafts shorter than this are not verified (`--draft-min`).
    pub min: usize,
    /// A draft model stops proposing at a token its own softmax gives less than this
    /// (`--draft-p-min`).
    pub p_min: f32,
    pub verify: Verify,
}

/// Mixed into the sequence's seed for rejection sampling's own random numbers, so that they
/// are reproducible and independent of the chain's.
const REJECTION_STREAM: u64 = 0x5EC7_1A7E_D0C5_EED5;
/// Mixed into the seed of the draft model's sampler (rejection sampling draws its drafts).
const DRAFT_STREAM: u64 = 0xD4AF_7C0D_E5EE_D001;

/// With sample-and-match, a draft model stops proposing once the chance that its whole draft
/// is kept (the product of its tokens' probabilities under the sampler chain) falls below this.
const MATCH_ODDS: f64 = 0.5;

/// Proposed tokens, each with the draft's distribution at its position when the draft was
/// sampled (rejection sampling needs `q`); without them a proposal is one-hot.
#[derive(Debug, Default)]
struct Draft {
    tokens: Vec<u32>,
    dists: Vec<Vec<(u32, f32)>>,
}

trait Drafter {
    /// Up to `k` tokens to follow `history` (k ≥ 1).
    fn propose(&mut self, history: &[u32], k: usize) -> Result<Draft>;
    /// What one proposed token costs, in target decode steps (an estimate).
    fn cost(&self) -> f64;
    /// Reads the prompt, before the first proposal (a draft model prefills its cache).
    fn prefill(&mut self, _prompt: &[u32]) -> Result<()> {
        Ok(())
    }
}

impl Drafter for Lookup {
    fn propose(&mut self, history: &[u32], k: usize) -> Result<Draft> {
        let mut tokens = Lookup::propose(self, history);
        tokens.truncate(k);
        Ok(Draft {
            tokens,
            dists: Vec::new(),
        })
    }

    fn cost(&self) -> f64 {
        0.0
    }
}

/// A draft model with its own KV cache, kept in step with the sequence: before proposing, it
/// drops what it holds past the common prefix with the sequence and catches up in one pass.
struct ModelDrafter<'m> {
    model: &'m Llama,
    cache: KvCache,
    /// The tokens in `cache`, in order.
    fed: Vec<u32>,
    /// The target's sampler settings, with their own RNG: the draft proposes the mode of its
    /// filtered distribution, or (rejection sampling) a draw from it.
    chain: SamplerChain,
    rng: Option<SamplerRng>,
    p_min: f32,
    ctx: usize,
    batch: usize,
    cost: f64,
}

impl<'m> ModelDrafter<'m> {
    fn new(
        model: &'m Llama,
        target_chain: &SamplerChain,
        spec: &Speculation,
        ctx: usize,
        batch: usize,
        cost: f64,
    ) -> Self {
        let ctx = ctx.min(model.config().max_position_embeddings);
        let seed = target_chain.seed() ^ DRAFT_STREAM;
        Self {
            model,
            cache: model.new_cache_for(ctx),
            fed: Vec::new(),
            chain: target_chain.with_seed(seed),
            rng: (spec.verify == Verify::Rejection).then(|| SamplerRng::seed_from_u64(seed)),
            p_min: spec.p_min,
            ctx,
            batch: batch.max(1),
            cost,
        }
    }
}

impl Drafter for ModelDrafter<'_> {
    fn propose(&mut self, history: &[u32], k: usize) -> Result<Draft> {
        let mut draft = Draft::default();
        // The draft holds the history and all proposed tokens but the last.
        if history.is_empty() || history.len() > self.ctx {
            return Ok(draft);
        }
        let k = k.min(self.ctx + 1 - history.len());
        let common = self
            .fed
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        self.cache.truncate(common)?;
        self.fed.truncate(common);
        let mut logits = prefill(self.model, &mut self.cache, &history[common..], self.batch)?;
        self.fed.extend_from_slice(&history[common..]);
        let mut seen = history.to_vec();
        let mut likely = 1.0f64;
        for i in 0..k {
            let q = self.chain.distribution(&logits, &seen)?;
            let token = match self.rng.as_mut() {
                Some(rng) => draw(&q, rng.random::<f64>()),
                None => mode(&q),
            }
            .context("the draft model's sampler kept no candidate")?;
            // The draft's own confidence (its softmax, before any sampler), as llama.cpp's
            // --draft-p-min.
            if self.p_min > 0.0 && softmax_at(&logits, token) < f64::from(self.p_min) {
                break;
            }
            // Sample-and-match keeps a token only when the target's own draw hits it, which
            // (for a draft that models the target) happens about as often as the chain gives it
            // in the draft: stop once the whole draft so far is more likely lost than kept.
            // (Greedy chains give the mode probability 1: they never stop here.)
            if self.rng.is_none() {
                likely *= f64::from(prob(&q, token));
                if likely < MATCH_ODDS {
                    break;
                }
            }
            draft.tokens.push(token);
            if self.rng.is_some() {
                draft.dists.push(q);
            }
            seen.push(token);
            if i + 1 < k {
                let x = Tensor::new(&[token], self.model.device())?.unsqueeze(0)?;
                logits = self
                    .model
                    .forward(&x, &mut self.cache, Logits::Last)?
                    .squeeze(0)?
                    .to_vec1::<f32>()?;
                self.fed.push(token);
            }
        }
        Ok(draft)
    }

    fn cost(&self) -> f64 {
        self.cost
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        if prompt.len() > 1 && prompt.len() <= self.ctx {
            let head = &prompt[..prompt.len() - 1];
            prefill(self.model, &mut self.cache, head, self.batch)?;
            self.fed = head.to_vec();
        }
        Ok(())
    }
}

/// The token with the highest probability, ties to the lower id (`dist` is in id order).
fn mode(dist: &[(u32, f32)]) -> Option<u32> {
    dist.iter()
        .fold(None, |best: Option<(u32, f32)>, &(id, p)| match best {
            Some((_, bp)) if bp >= p => best,
            _ => Some((id, p)),
        })
        .map(|(id, _)| id)
}

/// A draw from `dist` (id order) with the uniform number `u`, as the chain's final draw.
fn draw(dist: &[(u32, f32)], u: f64) -> Option<u32> {
    inverse_transform(dist.iter().copied(), u)
}

fn prob(dist: &[(u32, f32)], id: u32) -> f32 {
    dist.binary_search_by_key(&id, |&(i, _)| i)
        .map_or(0.0, |at| dist[at].1)
}

fn softmax_at(logits: &[f32], id: u32) -> f64 {
    logits
        .get(id as usize)
        .map_or(0.0, |&l| (f64::from(l) - log_sum_exp(logits)).exp())
}

/// One step of Leviathan et al.'s rule: the drafted token `x`, proposed with probability
/// `q(x)` (`q` `None`: one-hot), is kept with probability `min(1, p(x)/q(x))` (uniform `u`);
/// otherwise a token is drawn from `max(0, p − q)` normalised (uniform `v`). Returns the token
/// and whether it is the draft's. Both distributions are (id, prob) in id order.
pub fn accept_or_resample(
    p: &[(u32, f32)],
    q: Option<&[(u32, f32)]>,
    x: u32,
    u: f64,
    v: f64,
) -> Option<(u32, bool)> {
    let px = f64::from(prob(p, x));
    let qx = q.map_or(1.0, |q| f64::from(prob(q, x)));
    if u * qx < px {
        return Some((x, true));
    }
    let q_of = |id: u32| match q {
        Some(q) => prob(q, id),
        None => f32::from(u8::from(id == x)),
    };
    let residual: Vec<(u32, f32)> = p
        .iter()
        .map(|&(id, pi)| (id, (pi - q_of(id)).max(0.0)))
        .filter(|&(_, r)| r > 0.0)
        .collect();
    // p ≤ q everywhere happens only through rounding (then p = q, and x would have been
    // kept): draw from p.
    let from = if residual.is_empty() { p } else { &residual };
    draw(from, v).map(|id| (id, false))
}

/// The sampled loop of one sequence with speculation (see the module documentation). The
/// first token comes from the prefill's `logits`; each later verify pass runs the last token
/// and the draft, and the cache is cut back to what the plain loop would hold.
#[allow(clippy::too_many_arguments)]
pub(super) fn speculate(
    model: &Llama,
    cache: &mut KvCache,
    ctx: usize,
    mut seq: Sequence,
    logits: Vec<f32>,
    spec: &Speculation,
    params: &GenerateParams,
    timings: Timings,
) -> Result<Generation> {
    let mut drafter: Box<dyn Drafter + '_> = match &spec.source {
        DraftSource::Lookup { ngram } => Box::new(Lookup {
            ngram: *ngram,
            max: spec.max,
        }),
        DraftSource::Model { model: draft, cost } => Box::new(ModelDrafter::new(
            draft,
            seq.sampler,
            spec,
            ctx,
            params.decode.batch_size,
            *cost,
        )),
    };
    // The draft's reading of the prompt counts as prefill.
    let reading = Instant::now();
    drafter.prefill(&seq.history)?;
    let timings = Timings {
        prefill: timings.prefill + reading.elapsed(),
        ..timings
    };
    let start = Instant::now();
    let mut judge = (spec.verify == Verify::Rejection)
        .then(|| SamplerRng::seed_from_u64(seq.sampler.seed() ^ REJECTION_STREAM));
    let (mut drafted, mut accepted, mut passes) = (0usize, 0usize, 0usize);
    // Sample-and-match output does not depend on where drafts are made, so the clock may
    // decide; rejection sampling's does, so there only the tokens decide (reproducible).
    let mut pacer = match spec.verify {
        Verify::Match => Pacer::timed(spec.max),
        Verify::Rejection => Pacer::counted(spec.max, drafter.cost()),
    };
    let end = |seq: Sequence, stop, drafted, accepted, passes| {
        let t = Timings {
            decode: start.elapsed(),
            drafted,
            accepted,
            target_passes: passes,
            ..timings.clone()
        };
        seq.finish(stop, t)
    };
    if let Some(stop) = seq.step(&logits, params, cache.len() < ctx)? {
        return end(seq, stop, 0, 0, 0);
    }
    loop {
        let last = *seq
            .tokens
            .last()
            .context("internal: a running sequence has no token")?;
        let before = cache.len();
        let left = params.decode.max_tokens.saturating_sub(seq.tokens.len());
        let room = ctx.saturating_sub(before + 1);
        let most = pacer.draft_length().min(left.saturating_sub(1)).min(room);
        let (mut draft, draft_time) = if most == 0 {
            (Draft::default(), Duration::ZERO)
        } else {
            let drafting = Instant::now();
            let d = drafter.propose(&seq.history, most)?;
            // Never exactly zero, which would read as a plain step.
            (d, drafting.elapsed().max(Duration::from_nanos(1)))
        };
        if draft.tokens.len() < spec.min {
            draft = Draft::default();
        }
        draft.tokens.truncate(most);
        let mut input = Vec::with_capacity(1 + draft.tokens.len());
        input.push(last);
        input.extend_from_slice(&draft.tokens);
        let x = Tensor::new(input.as_slice(), model.device())?.unsqueeze(0)?; // (1, 1 + k)
        let verifying = Instant::now();
        let rows = model
            .forward_as_steps(&x, cache)?
            .squeeze(0)?
            .to_vec2::<f32>()?;
        let verify_time = verifying.elapsed();
        passes += 1;
        drafted += draft.tokens.len();
        let (mut consumed, mut took) = (0, 0);
        let mut stop = None;
        for (r, row) in rows.iter().enumerate() {
            consumed = r + 1;
            seq.decode_steps += 1;
            let room = before + r + 1 < ctx;
            let proposed = draft.tokens.get(r).copied();
            let kept = match (judge.as_mut(), proposed) {
                (Some(rng), Some(x)) if !seq.is_full(params) => {
                    let p = seq.sampler.distribution(row, &seq.history)?;
                    let q = draft.dists.get(r).map(Vec::as_slice);
                    let (id, kept) =
                        accept_or_resample(&p, q, x, rng.random::<f64>(), rng.random::<f64>())
                            .context("no candidate with non-zero probability to draw")?;
                    stop = seq.take(id, None, row, params, room)?;
                    kept
                }
                _ => {
                    stop = seq.step(row, params, room)?;
                    proposed.is_some() && seq.tokens.last() == proposed.as_ref()
                }
            };
            if kept && stop.is_none() {
                took += 1;
            }
            if stop.is_some() || !kept {
                break;
            }
        }
        accepted += took;
        cache.truncate(before + consumed)?;
        if let Some(stop) = stop {
            return end(seq, stop, drafted, accepted, passes);
        }
        pacer.record(draft.tokens.len(), took, draft_time, verify_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_and_draw_follow_the_chain_conventions() {
        let d = [(2, 0.25), (5, 0.5), (9, 0.25)];
        assert_eq!(mode(&d), Some(5));
        assert_eq!(mode(&[(1, 0.5), (3, 0.5)]), Some(1));
        assert_eq!(draw(&d, 0.0), Some(2));
        assert_eq!(draw(&d, 0.3), Some(5));
        assert_eq!(draw(&d, 0.8), Some(9));
        assert_eq!(draw(&[], 0.5), None);
    }

    #[test]
    fn the_rule_keeps_likely_drafts_and_resamples_the_rest() {
        let p = [(0, 0.5), (1, 0.5)];
        // q(x) ≤ p(x): always kept.
        let q = [(0, 0.25), (1, 0.75)];
        assert_eq!(
            accept_or_resample(&p, Some(&q), 0, 0.999, 0.0),
            Some((0, true))
        );
        // q(1) = 0.75 > p(1) = 0.5: kept when u < 2/3; else the residual is all on token 0.
        assert_eq!(
            accept_or_resample(&p, Some(&q), 1, 0.6, 0.9),
            Some((1, true))
        );
        assert_eq!(
            accept_or_resample(&p, Some(&q), 1, 0.7, 0.9),
            Some((0, false))
        );
        // One-hot drafts: kept with probability p(x), else drawn from p without x.
        assert_eq!(accept_or_resample(&p, None, 1, 0.4, 0.0), Some((1, true)));
        assert_eq!(accept_or_resample(&p, None, 1, 0.6, 0.99), Some((0, false)));
        // A greedy target (one-hot p) keeps only its argmax.
        let greedy = [(1, 1.0)];
        assert_eq!(
            accept_or_resample(&greedy, Some(&q), 0, 0.0, 0.5),
            Some((1, false))
        );
    }
}
