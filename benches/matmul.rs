//! The quantized matrix products of one SmolLM2-135M decode step, one bench per layer shape:
//! `x (m, k) @ Wᵀ` with W of `(n, k)` in the model's own block types (Q4_1 for the layers, Q8_0
//! for the tied output head), for one activation row (greedy, sampling) and four (`--beams 4`,
//! `--compare` batches). The weights are random; the kernels' cost does not depend on values.
//!
//! The `types` group runs the `ffn_down` shape (576 × 1536, whose rows fit every block type) in
//! each quantization type gen has kernels for, for one activation row (decode) and 128
//! (a slice of prefill); select one with e.g. `cargo bench --bench matmul -- types/q3k`.
//!
//! The `dense` group runs the same shapes with dense weights (a safetensors folder); `stream`
//! compares an f32 product as large as the whole f32 model with a plain pass over its bytes.
//!
//! `cargo bench --bench matmul` (threads: RAYON_NUM_THREADS, e.g. 2; gen's pool reads it too). Per token the model runs
//! 30 × (q, k, v, o, gate, up, down) + one head.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gen::kernels::ggml::GgmlMatrix;
use gen::model::Linear;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

const SHAPES: [(&str, usize, usize, GgmlDType); 5] = [
    ("q_o_576x576", 576, 576, GgmlDType::Q4_1),
    ("k_v_192x576", 192, 576, GgmlDType::Q4_1),
    ("gate_up_1536x576", 1536, 576, GgmlDType::Q4_1),
    ("down_576x1536", 576, 1536, GgmlDType::Q4_1),
    ("head_49152x576_q8_0", 49152, 576, GgmlDType::Q8_0),
];

/// Every quantized type of the `types` group, as `llama-quantize` names them.
const TYPES: [(&str, GgmlDType); 10] = [
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q8_0", GgmlDType::Q8_0),
    ("q2k", GgmlDType::Q2K),
    ("q3k", GgmlDType::Q3K),
    ("q4k", GgmlDType::Q4K),
    ("q5k", GgmlDType::Q5K),
    ("q6k", GgmlDType::Q6K),
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
            h as f32 / 8388608.0 - 1.0
        })
        .collect()
}

/// One type's product of the `ffn_down` shape through gen's own kernels.
fn types(c: &mut Criterion) {
    let (n, k) = (576, 1536);
    let mut group = c.benchmark_group("types");
    let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).expect("weights");
    for (name, dt) in TYPES {
        let q = QTensor::quantize(&w, dt).expect("quantize");
        let mat = Linear::Ggml(
            GgmlMatrix::from_qtensor(&q)
                .expect("supported type")
                .expect("CPU block type"),
        );
        for m in [1usize, 128] {
            let x = Tensor::from_vec(values(m * k, 7), (m, k), &Device::Cpu).expect("input");
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_with_input(BenchmarkId::new(name, format!("rows{m}")), &x, |b, x| {
                b.iter(|| black_box(mat.forward(black_box(x)).expect("matmul")))
            });
        }
    }
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    for (name, n, k, dt) in SHAPES {
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).expect("weights");
        let q = QTensor::quantize(&w, dt).expect("quantize");
        // Through the model's linear layer, tensors in and out, as the forward pass calls it.
        let mat = Linear::Ggml(
            GgmlMatrix::from_qtensor(&q)
                .expect("supported type")
                .expect("CPU block type"),
        );
        for m in [1usize, 4] {
            let x = Tensor::from_vec(values(m * k, 7), (m, k), &Device::Cpu).expect("input");
            group.throughput(Throughput::Bytes(q.storage_size_in_bytes() as u64));
            group.bench_with_input(BenchmarkId::new(name, format!("rows{m}")), &x, |b, x| {
                // From the calling thread, as in the model's forward pass (gen's pool).
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(mat.forward(black_box(x)).expect("matmul"));
                    }
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

/// One way to compute a product, for the dense benches.
type Product<'a> = dyn Fn(&Tensor) -> Tensor + Sync + 'a;

/// The same shapes with dense weights (a safetensors folder): gen's few-row kernel on f32 and
/// bf16 weights, next to candle's product on the f32 weights (what gen used before).
fn dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense");
    for (name, n, k, _) in SHAPES {
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).expect("weights");
        let bf = w.to_dtype(DType::BF16).expect("bf16");
        let ours = Linear::new(QMatMul::Tensor(w.clone())).expect("f32");
        let ours_bf16 = Linear::new(QMatMul::Tensor(bf)).expect("bf16");
        let candle = QMatMul::Tensor(w);
        for m in [1usize, 4] {
            let x = Tensor::from_vec(values(m * k, 7), (m, k), &Device::Cpu).expect("input");
            let runs: [(&str, &Product<'_>); 3] = [
                ("gen_f32", &|x| ours.forward(x).expect("f32")),
                ("gen_bf16", &|x| ours_bf16.forward(x).expect("bf16")),
                ("candle_f32", &|x| candle.forward(x).expect("candle")),
            ];
            for (what, run) in runs {
                let shape = name.trim_end_matches("_q8_0");
                let id = BenchmarkId::new(format!("{shape}/{what}"), format!("rows{m}"));
                group.bench_with_input(id, &x, |b, x| {
                    // On a rayon thread, where the model calls candle's products (ours run on
                    // gen's pool from any thread).
                    b.iter_custom(|iters| {
                        rayon::scope(|_| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                black_box(run(black_box(x)));
                            }
                            start.elapsed()
                        })
                    })
                });
            }
        }
    }
    group.finish();
}

/// What memory delivers here, against what the f32 decode step needs: one f32 product with a
/// weight as large as the whole f32 model (538 MB, 233,532 rows of 576), next to a plain sum of
/// the same bytes on the same threads (the most a pass over them can do). A decode step of the
/// f32 folder reads all of its weights, so `1 / sum time` bounds its tokens per second.
fn stream(c: &mut Criterion) {
    const ROWS: usize = 233_532;
    const K: usize = 576;
    let mut group = c.benchmark_group("stream");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((ROWS * K * 4) as u64));
    let data = values(ROWS * K, 3);
    group.bench_function("sum_538MB", |b| {
        b.iter_custom(|iters| {
            rayon::scope(|_| {
                let start = Instant::now();
                for _ in 0..iters {
                    let total: f32 = data
                        .par_chunks(1 << 14)
                        .map(|chunk| {
                            // Sixteen independent lanes, so the sum vectorises.
                            let mut lanes = [0f32; 16];
                            for v in chunk.chunks_exact(16) {
                                for (l, x) in lanes.iter_mut().zip(v) {
                                    *l += x;
                                }
                            }
                            lanes.iter().sum::<f32>()
                        })
                        .sum();
                    black_box(total);
                }
                start.elapsed()
            })
        })
    });
    let w = Tensor::from_vec(data, (ROWS, K), &Device::Cpu).expect("weights");
    let product = Linear::new(QMatMul::Tensor(w)).expect("f32");
    let x = Tensor::from_vec(values(K, 7), (1, K), &Device::Cpu).expect("input");
    group.bench_function("gen_f32_538MB_rows1", |b| {
        b.iter_custom(|iters| {
            rayon::scope(|_| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(product.forward(black_box(&x)).expect("product"));
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, matmul, types, dense, stream);
criterion_main!(benches);
