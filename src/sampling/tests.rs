//! Properties of the samplers over random inputs (proptest), and statistical checks that the
//! final draw follows the filtered distribution (chi-square over seeded draws).

use super::*;
use crate::config::{SamplingConfig, Window};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};

fn ctx(history: &[u32]) -> StepContext<'_> {
    StepContext { history, coin: 0.5 }
}

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-20.0f32..20.0, 1..300)
}

fn prob_sum(c: &mut Candidates) -> f64 {
    c.ensure_probs().unwrap();
    c.items().iter().map(|x| x.prob as f64).sum()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut c = Candidates::from_logits(logits).unwrap();
    Greedy.apply(&mut c, &ctx(&[])).unwrap();
    c.selected().unwrap()
}

/// Every filter and transform the chain can hold, with parameters from the strategy.
fn stages(t: f32, k: usize, p: f32, m: f32, typ: f32, rep: f32) -> Vec<Box<dyn Sampler>> {
    vec![
        Box::new(Penalties::new(rep, 0.1, 0.2, Window::Last(16)).unwrap()),
        Box::new(LogitBias::new(&[(0, 1.5), (3, -2.0)]).unwrap()),
        Box::new(Temperature::new(t).unwrap()),
        Box::new(TopK::new(k, 1).unwrap()),
        Box::new(TopP::new(p, 1).unwrap()),
        Box::new(MinP::new(m, 1).unwrap()),
        Box::new(Typical::new(typ, 1).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn probabilities_sum_to_one_after_every_stage(
        logits in logits_strategy(),
        history in prop::collection::vec(0u32..300, 0..40),
        t in 0.05f32..4.0, k in 1usize..400, p in 0.01f32..=1.0,
        m in 0.0f32..=1.0, typ in 0.01f32..=1.0, rep in 0.5f32..2.0,
    ) {
        let mut c = Candidates::from_logits(&logits).unwrap();
        for mut s in stages(t, k, p, m, typ, rep) {
            s.apply(&mut c, &ctx(&history)).unwrap();
            prop_assert!(!c.is_empty(), "{} left no candidate", s.name());
            let sum = prob_sum(&mut c);
            prop_assert!((sum - 1.0).abs() < 1e-4, "after {}: sum {sum}", s.name());
        }
    }

    #[test]
    fn top_k_leaves_at_most_k_and_keeps_the_best(logits in logits_strategy(), k in 1usize..400) {
        let mut c = Candidates::from_logits(&logits).unwrap();
        TopK::new(k, 1).unwrap().apply(&mut c, &ctx(&[])).unwrap();
        prop_assert_eq!(c.len(), k.min(logits.len()));
        let worst_kept = c.items().iter().map(|x| x.logit).fold(f32::INFINITY, f32::min);
        let kept: std::collections::HashSet<u32> = c.items().iter().map(|x| x.id).collect();
        for (i, &l) in logits.iter().enumerate() {
            if !kept.contains(&(i as u32)) {
                prop_assert!(l <= worst_kept);
            }
        }
    }

    #[test]
    fn top_p_keeps_mass_at_least_p_and_is_minimal(logits in logits_strategy(), p in 0.01f32..=1.0) {
        let mut c = Candidates::from_logits(&logits).unwrap();
        c.ensure_probs().unwrap();
        let before: Vec<f32> = c.items().iter().map(|x| x.prob).collect();
        TopP::new(p, 1).unwrap().apply(&mut c, &ctx(&[])).unwrap();
        let mass: f64 = c.items().iter().map(|x| before[x.id as usize] as f64).sum();
        prop_assert!(mass >= p as f64 - 1e-5, "kept mass {mass} < p {p}");
        // Minimal: without its least likely member the set would fall short of p.
        let least = c.items().iter().map(|x| before[x.id as usize]).fold(f32::INFINITY, f32::min);
        if c.len() > 1 {
            prop_assert!(mass - (least as f64) < p as f64 + 1e-6);
        }
    }

    #[test]
    fn min_p_keeps_the_argmax(logits in logits_strategy(), m in 0.0f32..=1.0) {
        let best = argmax(&logits);
        let mut c = Candidates::from_logits(&logits).unwrap();
        MinP::new(m, 1).unwrap().apply(&mut c, &ctx(&[])).unwrap();
        prop_assert!(c.items().iter().any(|x| x.id == best));
    }

    #[test]
    fn temperature_towards_zero_is_greedy(logits in logits_strategy(), coin in 0.0f64..1.0) {
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        prop_assume!(sorted.len() == 1 || sorted[0] - sorted[1] > 0.05);
        let mut c = Candidates::from_logits(&logits).unwrap();
        Temperature::new(1e-4).unwrap().apply(&mut c, &ctx(&[])).unwrap();
        Dist.apply(&mut c, &StepContext { history: &[], coin }).unwrap();
        prop_assert_eq!(c.selected().unwrap(), argmax(&logits));
    }

    #[test]
    fn no_op_stages_draw_what_a_plain_multinomial_draws(logits in logits_strategy(), seed in any::<u64>()) {
        let n = logits.len();
        let noops: Vec<Box<dyn Sampler>> = vec![
            Box::new(Temperature::new(1.0).unwrap()),
            Box::new(TopK::new(n, 1).unwrap()),
            Box::new(TopP::new(1.0, 1).unwrap()),
            Box::new(MinP::new(0.0, 1).unwrap()),
            Box::new(Typical::new(1.0, 1).unwrap()),
            Box::new(Dist),
        ];
        let mut chain = SamplerChain::new(noops, seed);
        let mut rng = SamplerRng::seed_from_u64(seed);
        // The reference: softmax in f64, inverse transform in id order.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
        let z: f64 = w.iter().sum();
        for _ in 0..20 {
            let u: f64 = rng.random();
            let mut cum = 0.0;
            let mut want = n - 1;
            for (i, wi) in w.iter().enumerate() {
                cum += wi / z;
                if cum > u { want = i; break; }
            }
            let got = chain.sample(&logits, &[]).unwrap() as usize;
            // f32 vs f64 rounding may move a draw that lands within 1e-5 of a boundary.
            if got != want {
                let edge: f64 = w[..got.max(want)].iter().sum::<f64>() / z;
                prop_assert!((edge - u).abs() < 1e-5, "got {got}, want {want}, u {u}");
            }
        }
    }
}

/// The filtered distribution a chain without its final pick leaves: (id, prob).
fn filtered(stages: &mut [Box<dyn Sampler>], logits: &[f32], history: &[u32]) -> Vec<(u32, f64)> {
    let mut c = Candidates::from_logits(logits).unwrap();
    for s in stages.iter_mut() {
        s.apply(&mut c, &ctx(history)).unwrap();
    }
    c.ensure_probs().unwrap();
    c.items().iter().map(|x| (x.id, x.prob as f64)).collect()
}

/// Pearson's chi-square p-value of `counts` against `expected` probabilities, pooling cells
/// with an expected count below 5.
fn chi_square_p(
    counts: &std::collections::HashMap<u32, u64>,
    expected: &[(u32, f64)],
    n: u64,
) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let mut stat = 0.0;
    let mut cells = 0;
    let (mut pool_o, mut pool_e) = (0.0, 0.0);
    for &(id, p) in expected {
        let e = p * n as f64;
        let o = *counts.get(&id).unwrap_or(&0) as f64;
        if e < 5.0 {
            pool_o += o;
            pool_e += e;
        } else {
            stat += (o - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e.max(1e-9);
        cells += 1;
    }
    assert!(cells >= 2, "too few cells for a chi-square test");
    1.0 - ChiSquared::new((cells - 1) as f64).unwrap().cdf(stat)
}

#[test]
fn draws_follow_the_filtered_distribution() {
    let logits: Vec<f32> = (0..64)
        .map(|i| ((i * 29 % 64) as f32 / 9.0) - 3.0)
        .collect();
    let history = [5u32, 9, 9, 40];
    type Build = fn() -> Vec<Box<dyn Sampler>>;
    let chains: [(&str, Build); 5] = [
        ("temperature 0.7 + top-k 8", || {
            vec![
                Box::new(Temperature::new(0.7).unwrap()),
                Box::new(TopK::new(8, 1).unwrap()),
            ]
        }),
        ("top-p 0.9", || vec![Box::new(TopP::new(0.9, 1).unwrap())]),
        ("temperature 1.5 + min-p 0.1", || {
            vec![
                Box::new(Temperature::new(1.5).unwrap()),
                Box::new(MinP::new(0.1, 1).unwrap()),
            ]
        }),
        ("typical 0.8", || {
            vec![Box::new(Typical::new(0.8, 1).unwrap())]
        }),
        ("penalties + bias + top-k 20 + top-p 0.95", || {
            vec![
                Box::new(Penalties::new(1.3, 0.2, 0.1, Window::All).unwrap()),
                Box::new(LogitBias::new(&[(20, 2.0), (11, f32::NEG_INFINITY)]).unwrap()),
                Box::new(TopK::new(20, 1).unwrap()),
                Box::new(TopP::new(0.95, 1).unwrap()),
            ]
        }),
    ];
    const N: u64 = 20_000;
    for (name, build) in chains {
        let expected = filtered(&mut build(), &logits, &history);
        let mut stages = build();
        stages.push(Box::new(Dist));
        let mut chain = SamplerChain::new(stages, 1234);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..N {
            *counts
                .entry(chain.sample(&logits, &history).unwrap())
                .or_insert(0u64) += 1;
        }
        assert!(
            counts
                .keys()
                .all(|id| expected.iter().any(|(e, _)| e == id)),
            "{name}: drew a token the filters removed"
        );
        let p = chi_square_p(&counts, &expected, N);
        assert!(p > 0.001, "{name}: chi-square p = {p}");
    }
}

/// The chi-square check can fail: a draw that ignores the filters' renormalisation is caught.
#[test]
fn chi_square_detects_a_wrong_distribution() {
    let logits: Vec<f32> = (0..64)
        .map(|i| ((i * 29 % 64) as f32 / 9.0) - 3.0)
        .collect();
    let expected = filtered(
        &mut [Box::new(Temperature::new(0.7).unwrap()) as Box<dyn Sampler>],
        &logits,
        &[],
    );
    // Draw at temperature 1 instead of 0.7.
    let mut chain = SamplerChain::new(vec![Box::new(Dist)], 1234);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..20_000u64 {
        *counts
            .entry(chain.sample(&logits, &[]).unwrap())
            .or_insert(0u64) += 1;
    }
    assert!(chi_square_p(&counts, &expected, 20_000) < 1e-6);
}

#[test]
fn same_seed_same_tokens_different_seed_different_tokens() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 7 % 97) as f32) / 30.0).collect();
    let run = |seed| {
        let mut c = build_chain(
            &SamplingConfig {
                seed: Some(seed),
                ..SamplingConfig::default()
            },
            1000,
        )
        .unwrap()
        .chain;
        (0..32)
            .map(|_| c.sample(&logits, &[]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}
