//! `--compare`: several decoding strategies on one prompt. This module owns the strategy specs
//! (`greedy`, `beams=4`, `temperature=0.7,top_p=0.95`, presets) and the per-strategy metrics
//! (mean token log-probability and perplexity under the unfiltered model, distinct-1/2, the
//! longest repeated n-gram, where strategies first diverge). Running them is the driver's job,
//! printing is output's.

use crate::config::BeamConfig;
use crate::decode::EarlyStopping;
use crate::sampling::SamplingConfig;
use std::collections::HashMap;

/// One strategy to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    /// As the user wrote it (or the preset's name for it).
    pub label: String,
    pub kind: StrategyKind,
}

/// Sampling with a chain, or beam search.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyKind {
    Sample(SamplingConfig),
    Beam(BeamConfig),
}

/// The strategies of `--compare all`: greedy, pure sampling, top-k, top-p, min-p, beam search.
pub const PRESET_ALL: [&str; 6] = [
    "greedy",
    "temperature=1",
    "top_k=40",
    "top_p=0.95",
    "min_p=0.1",
    "beams=4",
];

const KEYS: &str = "temperature, top_k, top_p, min_p, typical_p, beams, length_penalty";

/// Parses the `--compare` arguments. A sampling spec starts from pure sampling (temperature 1,
/// no filters) and sets only what it names; penalties, logit bias and the seed come from `base`.
pub fn parse_strategies(specs: &[String], base: &SamplingConfig) -> Result<Vec<Strategy>, String> {
    let mut expanded: Vec<String> = Vec::new();
    for s in specs {
        if s.trim() == "all" {
            expanded.extend(PRESET_ALL.iter().map(|p| p.to_string()));
        } else {
            expanded.push(s.trim().to_string());
        }
    }
    if expanded.is_empty() {
        return Err("--compare needs at least one strategy (or `all`)".into());
    }
    expanded.iter().map(|s| parse_one(s, base)).collect()
}

fn parse_one(spec: &str, base: &SamplingConfig) -> Result<Strategy, String> {
    let bad = |why: String| format!("--compare strategy '{spec}': {why}");
    let mut cfg = SamplingConfig {
        temperature: 1.0,
        top_k: None,
        top_p: 1.0,
        min_p: 0.0,
        typical_p: 1.0,
        ..base.clone()
    };
    if spec == "greedy" {
        cfg.temperature = 0.0;
        return Ok(Strategy {
            label: spec.into(),
            kind: StrategyKind::Sample(cfg),
        });
    }
    let mut beams: Option<usize> = None;
    let mut length_penalty = 1.0f32;
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key=value or `greedy`; keys: {KEYS}")))?;
        let k = k.trim().replace('-', "_");
        let num = |v: &str| -> Result<f32, String> {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("'{v}' is not a number")))
        };
        match k.as_str() {
            "temperature" | "temp" => cfg.temperature = num(v)?,
            "top_k" => {
                cfg.top_k = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad("top_k must be a whole number ≥ 1".into()))?,
                )
            }
            "top_p" => cfg.top_p = num(v)?,
            "typical_p" => cfg.typical_p = num(v)?,
            "min_p" => cfg.min_p = num(v)?,
            "beams" => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => beams = Some(n),
                _ => return Err(bad("beams must be a whole number ≥ 1".into())),
            },
            "length_penalty" => length_penalty = num(v)?,
            other => return Err(bad(format!("unknown key '{other}'; keys: {KEYS}"))),
        }
    }
    cfg.validate().map_err(|e| bad(format!("{e:#}")))?;
    let kind = match beams {
        Some(n) => {
            if cfg.temperature != 1.0 || cfg.top_k.is_some() || cfg.top_p != 1.0 || cfg.min_p != 0.0
            {
                return Err(bad(
                    "beam search cannot be combined with sampling keys".into()
                ));
            }
            StrategyKind::Beam(BeamConfig {
                num_beams: n,
                num_return: 1,
                length_penalty,
                early_stopping: EarlyStopping::Heuristic,
                no_repeat_ngram: None,
            })
        }
        None => StrategyKind::Sample(cfg),
    };
    Ok(Strategy {
        label: spec.into(),
        kind,
    })
}

/// Unique n-grams over all n-grams of `tokens` (1.0 for fewer than n tokens).
pub fn distinct(tokens: &[u32], n: usize) -> f64 {
    if tokens.len() < n || n == 0 {
        return 1.0;
    }
    let grams: Vec<&[u32]> = tokens.windows(n).collect();
    let unique: std::collections::HashSet<&[u32]> = grams.iter().copied().collect();
    unique.len() as f64 / grams.len() as f64
}

/// The longest token n-gram that occurs at least twice (possibly overlapping): its tokens.
pub fn longest_repeat(tokens: &[u32]) -> &[u32] {
    for n in (1..tokens.len()).rev() {
        let mut seen: HashMap<&[u32], usize> = HashMap::new();
        for w in tokens.windows(n) {
            let c = seen.entry(w).or_insert(0);
            *c += 1;
            if *c == 2 {
                return w;
            }
        }
    }
    &[]
}

/// The number of leading tokens every sequence shares.
pub fn common_prefix(seqs: &[&[u32]]) -> usize {
    let Some(first) = seqs.first() else {
        return 0;
    };
    (0..first.len())
        .find(|&i| seqs.iter().any(|s| s.get(i) != Some(&first[i])))
        .unwrap_or(first.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_presets() {
        let base = SamplingConfig::default();
        let all = parse_strategies(&["all".into()], &base).unwrap();
        assert_eq!(all.len(), 6);
        let StrategyKind::Sample(c) = &all[3].kind else {
            panic!()
        };
        assert_eq!(
            (c.temperature, c.top_k, c.top_p, c.min_p),
            (1.0, None, 0.95, 0.0)
        );
        let s = parse_strategies(
            &["temperature=0.7,top_p=0.9".into(), "beams=3".into()],
            &base,
        )
        .unwrap();
        let StrategyKind::Sample(c) = &s[0].kind else {
            panic!()
        };
        assert_eq!((c.temperature, c.top_p), (0.7, 0.9));
        assert!(matches!(&s[1].kind, StrategyKind::Beam(b) if b.num_beams == 3));
        for bad in [
            "nucleus",
            "top_p=2",
            "colour=1",
            "beams=0",
            "beams=2,top_k=3",
        ] {
            let e = parse_strategies(&[bad.into()], &base).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn metrics() {
        assert_eq!(distinct(&[1, 2, 1, 2], 1), 0.5);
        assert!((distinct(&[1, 2, 1, 2], 2) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(longest_repeat(&[5, 1, 2, 3, 9, 1, 2, 3]), &[1, 2, 3]);
        assert_eq!(longest_repeat(&[1, 2, 3]), &[] as &[u32]);
        assert_eq!(common_prefix(&[&[1, 2, 3], &[1, 2, 4], &[1, 2]]), 2);
        let a: &[u32] = &[1, 2, 3];
        assert_eq!(common_prefix(&[a, &[1, 2, 4]]), 2);
        assert_eq!(common_prefix(&[a]), 3);
        assert_eq!(common_prefix(&[a, &a[..1]]), 1);
    }
}
