//! The sampler chain on one row of logits: the default chain (with a repetition penalty over a
//! 64-token window, so every stage runs), greedy, nucleus sampling without top-k (the partial
//! selection path), and --logprobs, on rows of 49,152 (SmolLM2) and 128,256 (Llama 3) entries.
//!
//! `cargo bench --bench sampling`; compare with `cargo bench --bench decode` for the share of a
//! decode step.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gen::config::SamplingConfig;
use gen::sampling::{build_chain, token_logprobs};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

/// Logits shaped like SmolLM2's on real prompts (measured: bulk σ ≈ 3.2, the top token about
/// 6σ above the mean and a few dozen tokens at 4–5σ, so the 0.95 nucleus holds 2 to 41 tokens):
/// a normal bulk with σ = 3.2, one token at 19 and thirty between 13.5 and 15.5.
fn logits(n: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut v: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * 3.2) as f32
        })
        .collect();
    v[4242] = 19.0;
    for i in 0..30 {
        v[(i * 7919 + 11) % n] = 13.5 + 2.0 * i as f32 / 29.0;
    }
    v
}

fn chains(c: &mut Criterion) {
    let history: Vec<u32> = (0..64).map(|i| (i * 131) % 49_152).collect();
    let mut group = c.benchmark_group("sampler_chain");
    for n in [49_152usize, 128_256] {
        let row = logits(n);
        let configs = [
            (
                "default+penalties",
                SamplingConfig {
                    repeat_penalty: 1.1,
                    seed: Some(1),
                    ..SamplingConfig::default()
                },
            ),
            ("greedy", SamplingConfig::greedy()),
            (
                "top-p-only",
                SamplingConfig {
                    top_k: None,
                    min_p: 0.0,
                    seed: Some(1),
                    ..SamplingConfig::default()
                },
            ),
        ];
        for (name, cfg) in configs {
            let mut chain = build_chain(&cfg, n).expect("valid config").chain;
            group.bench_with_input(BenchmarkId::new(name, n), &row, |b, row| {
                b.iter(|| chain.sample(black_box(row), &history).expect("sample"))
            });
        }
        group.bench_with_input(BenchmarkId::new("logprobs-5", n), &row, |b, row| {
            b.iter(|| token_logprobs(black_box(row), 7, 5).expect("logprobs"))
        });
    }
    group.finish();
}

criterion_group!(benches, chains);
criterion_main!(benches);
