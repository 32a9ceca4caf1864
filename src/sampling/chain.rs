//! The sampler chain: stages applied in order to one step's candidates, ending in a pick, with
//! one seeded RNG drawing one uniform number per token. The chain is itself a [`Sampler`], so
//! chains nest. [`build_chain`] turns resolved settings into a chain, leaving out every stage
//! whose settings change nothing and saying why.

use super::{
    Candidates, Dist, Greedy, LogitBias, MinP, Penalties, Sampler, SamplerRng, StepContext,
    Temperature, TopK, TopP, Typical,
};
use crate::config::{SamplingConfig, StageKind, Window};
use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng};
use std::fmt;

/// Checks every value of `cfg` against the range its sampler's constructor accepts (settings
/// that come from JSON lines or `--compare` specs rather than from checked flags).
pub fn validate(cfg: &SamplingConfig) -> Result<()> {
    anyhow::ensure!(
        cfg.temperature.is_finite() && cfg.temperature >= 0.0,
        "temperature must be ≥ 0, got {}",
        cfg.temperature
    );
    if let Some(k) = cfg.top_k {
        TopK::new(k, cfg.min_keep)?;
    }
    TopP::new(cfg.top_p, cfg.min_keep)?;
    MinP::new(cfg.min_p, cfg.min_keep)?;
    Typical::new(cfg.typical_p, cfg.min_keep)?;
    Penalties::new(
        cfg.repeat_penalty,
        cfg.frequency_penalty,
        cfg.presence_penalty,
        cfg.repeat_window.unwrap_or(Window::All),
    )?;
    LogitBias::new(&cfg.logit_bias)?;
    Ok(())
}

/// An ordered list of stages, the last of which picks the token, plus the RNG for the draw.
pub struct SamplerChain {
    stages: Vec<Box<dyn Sampler>>,
    rng: SamplerRng,
    seed: u64,
    /// The candidate list, kept between steps for its allocation.
    scratch: Candidates,
}

impl Clone for SamplerChain {
    /// The same stages and RNG state (the candidate scratch list is not copied).
    fn clone(&self) -> Self {
        Self {
            stages: self.stages.iter().map(|s| s.clone_box()).collect(),
            rng: self.rng.clone(),
            seed: self.seed,
            scratch: Candidates::default(),
        }
    }
}

impl fmt::Debug for SamplerChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SamplerChain({}, seed {})", self.describe(), self.seed)
    }
}

/// What each stage did to one step's most likely candidates (`--explain`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepTrace {
    /// The step's uniform number, when the final pick used it (`None` for greedy, which draws
    /// one too, to keep the RNG in step, but never looks at it).
    pub coin: Option<f64>,
    /// The token the chain picked.
    pub chosen: u32,
    /// Column names: `model` (the raw softmax), then each stage except the final pick.
    pub stages: Vec<String>,
    /// How many candidates were left after each column's stage.
    pub kept: Vec<usize>,
    /// The model's most likely tokens, plus the chosen one if it is not among them.
    pub rows: Vec<TraceRow>,
}

/// One token across the stages: its probability after each, `None` once removed.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub id: u32,
    pub probs: Vec<Option<f32>>,
}

impl TraceRow {
    /// Index of the column whose stage removed this token, if one did.
    pub fn removed_at(&self) -> Option<usize> {
        self.probs.iter().position(Option::is_none)
    }
}

impl SamplerChain {
    /// A chain of `stages` (the last should pick: [`Greedy`] or [`Dist`]) with its RNG seeded
    /// from `seed`.
    pub fn new(stages: Vec<Box<dyn Sampler>>, seed: u64) -> Self {
        Self {
            stages,
            rng: SamplerRng::seed_from_u64(seed),
            seed,
            scratch: Candidates::default(),
        }
    }

    /// The seed the RNG started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Each stage's description, in order.
    pub fn stage_descriptions(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.describe()).collect()
    }

    /// Picks the next token from one row of logits. Draws exactly one uniform number.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        let coin = self.rng.random::<f64>();
        let mut c = std::mem::take(&mut self.scratch);
        c.refill(logits)?;
        let result = self.apply(&mut c, &StepContext { history, coin });
        let picked = c.selected();
        self.scratch = c;
        result?;
        picked.context(
            "the sampler chain ended without picking a token (its last stage must be greedy or dist)",
        )
    }

    /// The distribution the final pick draws from, as (id, probability) in id order: the
    /// candidates every stage before it left, or the argmax alone when the pick is greedy.
    /// Draws no number, so the RNG is untouched. Speculative decoding's rejection sampling
    /// compares the target's and the draft's distributions this way.
    pub fn distribution(&mut self, logits: &[f32], history: &[u32]) -> Result<Vec<(u32, f32)>> {
        let mut c = std::mem::take(&mut self.scratch);
        c.refill(logits)?;
        let result = self.filtered(&mut c, history);
        self.scratch = c;
        result
    }

    fn filtered(&mut self, c: &mut Candidates, history: &[u32]) -> Result<Vec<(u32, f32)>> {
        let ctx = StepContext { history, coin: 0.0 };
        for stage in &mut self.stages {
            if stage.name() == Dist.name() {
                break;
            }
            stage.apply(c, &ctx)?;
            if let Some(id) = c.selected() {
                return Ok(vec![(id, 1.0)]);
            }
        }
        c.ensure_probs()?;
        let mut dist: Vec<(u32, f32)> = c
            .items()
            .iter()
            .filter(|x| x.prob > 0.0)
            .map(|x| (x.id, x.prob))
            .collect();
        dist.sort_unstable_by_key(|x| x.0);
        Ok(dist)
    }

    /// A chain with the same stages and its own RNG seeded from `seed` (a speculative draft
    /// model samples with the target's settings this way).
    pub fn with_seed(&self, seed: u64) -> Self {
        Self::new(self.stages.iter().map(|s| s.clone_box()).collect(), seed)
    }

    /// As [`sample`](Self::sample) (the same token for the same RNG state), also recording the
    /// probabilities of the model's `rows` most likely tokens after every stage.
    pub fn sample_traced(
        &mut self,
        logits: &[f32],
        history: &[u32],
        rows: usize,
    ) -> Result<(u32, StepTrace)> {
        let coin = self.rng.random::<f64>();
        let ctx = StepContext { history, coin };
        let vocab = logits.len();
        let mut c = Candidates::from_logits(logits)?;
        let snapshot = |c: &mut Candidates| -> Result<Vec<f32>> {
            c.ensure_probs()?;
            let mut dense = vec![f32::NAN; vocab];
            for x in c.items() {
                dense[x.id as usize] = x.prob;
            }
            Ok(dense)
        };
        let top_ids: Vec<u32> = c.top(rows)?.into_iter().map(|(id, _)| id).collect();
        let mut columns = vec![snapshot(&mut c)?];
        let mut names = vec!["model".to_string()];
        let mut kept = vec![c.len()];
        let mut used_coin = true;
        for stage in &mut self.stages {
            stage.apply(&mut c, &ctx)?;
            if c.selected().is_some() {
                used_coin = stage.name() != Greedy.name();
                break;
            }
            columns.push(snapshot(&mut c)?);
            names.push(stage.describe());
            kept.push(c.len());
        }
        let chosen = c.selected().context(
            "the sampler chain ended without picking a token (its last stage must be greedy or dist)",
        )?;
        let mut ids = top_ids;
        if !ids.contains(&chosen) {
            ids.push(chosen);
        }
        let rows = ids
            .into_iter()
            .map(|id| TraceRow {
                id,
                probs: columns
                    .iter()
                    .map(|col| Some(col[id as usize]).filter(|p| !p.is_nan()))
                    .collect(),
            })
            .collect();
        Ok((
            chosen,
            StepTrace {
                coin: used_coin.then_some(coin),
                chosen,
                stages: names,
                kept,
                rows,
            },
        ))
    }
}

impl Sampler for SamplerChain {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn describe(&self) -> String {
        self.stage_descriptions().join(" → ")
    }

    fn apply(&mut self, c: &mut Candidates, ctx: &StepContext) -> Result<()> {
        for stage in &mut self.stages {
            stage.apply(c, ctx)?;
            if c.selected().is_some() {
                break;
            }
        }
        Ok(())
    }
}

/// A chain built from settings, with the stages that were left out and why.
#[derive(Debug)]
pub struct BuiltChain {
    pub chain: SamplerChain,
    /// One line per listed stage whose settings change nothing (for `--verbose`).
    pub noops: Vec<String>,
}

/// Builds the chain `cfg` describes for a vocabulary of `vocab_size` tokens. A stage that would
/// change nothing is left out and reported in `noops`. Without a seed, one is drawn from the OS.
pub fn build_chain(cfg: &SamplingConfig, vocab_size: usize) -> Result<BuiltChain> {
    let greedy = cfg.temperature == 0.0;
    let mut stages: Vec<Box<dyn Sampler>> = Vec::new();
    let mut noops = Vec::new();
    let greedy_noop = |what: String| {
        format!("{what} has no effect: temperature 0 is greedy, and greedy always picks the argmax, which {what} keeps")
    };
    for kind in &cfg.order {
        match kind {
            StageKind::Penalties => {
                let p = Penalties::new(
                    cfg.repeat_penalty,
                    cfg.frequency_penalty,
                    cfg.presence_penalty,
                    cfg.repeat_window.unwrap_or(Window::All),
                )?;
                if cfg.repeat_window.is_none() {
                    noops.push("penalties are off: --repeat-last-n 0".into());
                } else if p.is_noop() {
                    noops.push(
                        "penalties are off: repeat penalty 1, frequency and presence penalties 0"
                            .into(),
                    );
                } else {
                    stages.push(Box::new(p));
                }
            }
            StageKind::LogitBias => {
                LogitBias::check_ids(&cfg.logit_bias, vocab_size)?;
                if !cfg.logit_bias.is_empty() {
                    stages.push(Box::new(LogitBias::new(&cfg.logit_bias)?));
                }
            }
            StageKind::Temperature => {
                anyhow::ensure!(
                    cfg.temperature.is_finite() && cfg.temperature >= 0.0,
                    "temperature must be ≥ 0, got {}",
                    cfg.temperature
                );
                if greedy {
                    // The final stage becomes greedy below.
                } else if cfg.temperature == 1.0 {
                    noops.push("temperature 1 has no effect".into());
                } else {
                    stages.push(Box::new(Temperature::new(cfg.temperature)?));
                }
            }
            StageKind::TopK => match cfg.top_k {
                None => {}
                Some(k) => {
                    let s = TopK::new(k, cfg.min_keep)?;
                    if greedy {
                        noops.push(greedy_noop(format!("top-k {k}")));
                    } else if k >= vocab_size {
                        noops.push(format!(
                            "top-k {k} has no effect: the vocabulary has only {vocab_size} tokens"
                        ));
                    } else {
                        stages.push(Box::new(s));
                    }
                }
            },
            StageKind::TopP => {
                let s = TopP::new(cfg.top_p, cfg.min_keep)?;
                if cfg.top_p >= 1.0 {
                    noops.push("top-p 1 has no effect: it keeps every token".into());
                } else if greedy {
                    noops.push(greedy_noop(format!("top-p {}", cfg.top_p)));
                } else {
                    stages.push(Box::new(s));
                }
            }
            StageKind::MinP => {
                let s = MinP::new(cfg.min_p, cfg.min_keep)?;
                if cfg.min_p == 0.0 {
                    noops.push("min-p 0 has no effect: it keeps every token".into());
                } else if greedy {
                    noops.push(greedy_noop(format!("min-p {}", cfg.min_p)));
                } else {
                    stages.push(Box::new(s));
                }
            }
            StageKind::Typical => {
                let s = Typical::new(cfg.typical_p, cfg.min_keep)?;
                if cfg.typical_p >= 1.0 {
                    // Off by default: only worth a note when the user asked for it.
                } else if greedy {
                    noops.push(format!(
                        "typical-p {} is not applied: temperature 0 means greedy decoding of the (penalised) model distribution",
                        cfg.typical_p
                    ));
                } else {
                    stages.push(Box::new(s));
                }
            }
        }
    }
    if greedy {
        stages.push(Box::new(Greedy));
    } else {
        stages.push(Box::new(Dist));
    }
    let seed = cfg.seed.unwrap_or_else(crate::sampling::random_seed);
    Ok(BuiltChain {
        chain: SamplerChain::new(stages, seed),
        noops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chain_order_and_noops() {
        let b = build_chain(&SamplingConfig::default(), 1000).unwrap();
        assert_eq!(
            b.chain.stage_descriptions(),
            [
                "temperature(t=0.8)",
                "top-k(k=40)",
                "top-p(p=0.95)",
                "min-p(p=0.05)",
                "dist"
            ]
        );
        assert_eq!(b.noops.len(), 1, "{:?}", b.noops); // penalties off
        let g = build_chain(&SamplingConfig::greedy(), 1000).unwrap();
        assert_eq!(g.chain.stage_descriptions(), ["greedy"]);
        assert!(g
            .noops
            .iter()
            .any(|n| n.contains("top-p 0.95 has no effect")));
    }

    #[test]
    fn custom_order_and_subset() {
        let cfg = SamplingConfig {
            order: vec![StageKind::TopK, StageKind::Temperature, StageKind::MinP],
            seed: Some(7),
            ..SamplingConfig::default()
        };
        let b = build_chain(&cfg, 1000).unwrap();
        assert_eq!(
            b.chain.stage_descriptions(),
            ["top-k(k=40)", "temperature(t=0.8)", "min-p(p=0.05)", "dist"]
        );
        assert_eq!(b.chain.seed(), 7);
        assert_eq!("top_p".parse::<StageKind>().unwrap(), StageKind::TopP);
        let err = "nucleus".parse::<StageKind>().unwrap_err();
        assert!(
            err.contains("valid samplers: penalties, logit-bias, temperature"),
            "{err}"
        );
    }

    #[test]
    fn traced_sampling_picks_the_same_tokens() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 / 20.0).collect();
        let cfg = SamplingConfig {
            seed: Some(42),
            repeat_penalty: 1.3,
            ..SamplingConfig::default()
        };
        let mut a = build_chain(&cfg, 500).unwrap().chain;
        let mut b = build_chain(&cfg, 500).unwrap().chain;
        let history = [3u32, 4, 5];
        for _ in 0..50 {
            let x = a.sample(&logits, &history).unwrap();
            let (y, trace) = b.sample_traced(&logits, &history, 5).unwrap();
            assert_eq!(x, y);
            assert_eq!(trace.stages.len(), trace.kept.len());
            assert_eq!(trace.stages[0], "model");
            assert!(trace.rows.iter().any(|r| r.id == y));
            assert_eq!(trace.kept[0], 500);
        }
    }

    #[test]
    fn bad_bias_id_is_an_error() {
        let cfg = SamplingConfig {
            logit_bias: vec![(1000, 1.0)],
            ..SamplingConfig::default()
        };
        let err = build_chain(&cfg, 1000).unwrap_err().to_string();
        assert!(err.contains("--logit-bias names token 1000"), "{err}");
    }
}
