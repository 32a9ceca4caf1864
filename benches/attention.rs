//! Attention of one decode step in one layer, over a KV cache of 128 and 2,048 positions, with
//! the real model's shape (9 query heads, 3 KV heads, head dimension 64), for the f32 and the
//! f16 cache. The keys and values are views of a larger buffer, as the cache hands them out.
//!
//! `cargo bench --bench attention` (threads: RAYON_NUM_THREADS, e.g. 2; gen's pool reads it too).

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gen::kernels::attention::attention;
use std::hint::black_box;
use std::time::Instant;

const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 8388608.0 - 1.0
        })
        .collect()
}

fn cache_view(len: usize, seed: u32, dtype: DType) -> Tensor {
    let cap = len.next_multiple_of(256) + 256;
    Tensor::from_vec(
        values(KV_HEADS * cap * HEAD_DIM, seed),
        (1, KV_HEADS, cap, HEAD_DIM),
        &Device::Cpu,
    )
    .and_then(|t| t.to_dtype(dtype))
    .and_then(|t| t.narrow(2, 0, len))
    .expect("cache buffer")
}

fn decode_attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention_decode");
    let q = Tensor::from_vec(
        values(HEADS * HEAD_DIM, 1),
        (1, HEADS, 1, HEAD_DIM),
        &Device::Cpu,
    )
    .expect("query");
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    for len in [128, 2048] {
        for (name, dtype) in [("f32", DType::F32), ("f16", DType::F16)] {
            let (k, v) = (cache_view(len, 2, dtype), cache_view(len, 3, dtype));
            group.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                // The kernel runs its parallel parts on gen's pool (`gen::pool`) from the
                // calling thread, as the forward pass does.
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(attention(black_box(&q), &k, &v, scale).expect("attention"));
                    }
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode_attention);
criterion_main!(benches);
