//! The quantized matrix products of one SmolLM2-135M decode step, one bench per layer shape:
//! `x (m, k) @ Wᵀ` with W of `(n, k)` in the model's own block types (Q4_1 for the layers, Q8_0
//! for the tied output head), for one activation row (greedy, sampling) and four (`--beams 4`,
//! `--compare` batches). The weights are random; the kernels' cost does not depend on values.
//!
//! `cargo bench --bench matmul` (threads: RAYON_NUM_THREADS, e.g. 2). Per token the model runs
//! 30 × (q, k, v, o, gate, up, down) + one head.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gen::model::ggml_matmul::GgmlMatrix;
use std::hint::black_box;
use std::time::Instant;

const SHAPES: [(&str, usize, usize, GgmlDType); 5] = [
    ("q_o_576x576", 576, 576, GgmlDType::Q4_1),
    ("k_v_192x576", 192, 576, GgmlDType::Q4_1),
    ("gate_up_1536x576", 1536, 576, GgmlDType::Q4_1),
    ("down_576x1536", 576, 1536, GgmlDType::Q4_1),
    ("head_49152x576_q8_0", 49152, 576, GgmlDType::Q8_0),
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
            h as f32 / 8388608.0 - 1.0
        })
        .collect()
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    for (name, n, k, dt) in SHAPES {
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).expect("weights");
        let q = QTensor::quantize(&w, dt).expect("quantize");
        let mat = GgmlMatrix::from_qtensor(&q)
            .expect("supported type")
            .expect("CPU block type");
        for m in [1usize, 4] {
            let x = Tensor::from_vec(values(m * k, 7), (m, k), &Device::Cpu).expect("input");
            group.throughput(Throughput::Bytes(q.storage_size_in_bytes() as u64));
            group.bench_with_input(BenchmarkId::new(name, format!("rows{m}")), &x, |b, x| {
                // On a pool thread, as in the model's forward pass.
                b.iter_custom(|iters| {
                    rayon::scope(|_| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(mat.forward(black_box(x)).expect("matmul"));
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
