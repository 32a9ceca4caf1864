//! One decode step of the real model (SmolLM2-135M Q4_1) after a 64-token prompt: a forward
//! pass of one token through the KV cache, the cache truncated back after each step so every
//! iteration sees the same context; the same for four rows (beam search); and the prefill of a
//! 512-token prompt. Skipped, with a message, when the model is not fetched.
//!
//! `cargo bench --bench decode` (threads: RAYON_NUM_THREADS, e.g. 2).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use gen::app::load::{self, LoadedModel};
use gen::model::Logits;
use gen::weights::ModelSource;
use std::hint::black_box;

/// The real model with a 64-token prompt prefilled, or `None` when it is not fetched.
fn prefilled() -> Option<(LoadedModel, gen::model::KvCache)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(gen::config::DEFAULT_MODEL_FILE);
    if !path.exists() {
        eprintln!(
            "decode bench skipped: run ./models/fetch.sh first ({} missing)",
            path.display()
        );
        return None;
    }
    let source = ModelSource::parse(&path.display().to_string()).expect("model path");
    let loaded = load::load(&source, &Device::Cpu).expect("loading the model");
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i * 37).collect();
    let mut cache = loaded.model.new_cache();
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("prompt tensor");
    loaded
        .model
        .forward(&input, &mut cache, Logits::Last)
        .expect("prefill");
    Some((loaded, cache))
}

fn decode_step(c: &mut Criterion) {
    let Some((loaded, mut cache)) = prefilled() else {
        return;
    };
    let m = &loaded.model;
    let next = Tensor::new(&[260u32], &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("token tensor");
    c.bench_function("decode_step/ctx64", |b| {
        b.iter(|| {
            let logits = m
                .forward(black_box(&next), &mut cache, Logits::Last)
                .expect("decode step");
            let logits = logits
                .squeeze(0)
                .and_then(|l| l.to_vec1::<f32>())
                .expect("logits row");
            cache.truncate(64).expect("truncate");
            logits
        })
    });
}

/// The same step for four sequences at once (`--beams 4`): the cache expanded to four rows.
fn decode_step_batch4(c: &mut Criterion) {
    let Some((loaded, mut cache)) = prefilled() else {
        return;
    };
    let m = &loaded.model;
    cache.reorder(&[0, 0, 0, 0]).expect("expand to four rows");
    let next = Tensor::new(&[260u32, 261, 262, 263], &Device::Cpu)
        .and_then(|t| t.unsqueeze(1))
        .expect("token tensor");
    c.bench_function("decode_step_batch4/ctx64", |b| {
        b.iter(|| {
            let logits = m
                .forward(black_box(&next), &mut cache, Logits::Last)
                .expect("decode step");
            cache.truncate(64).expect("truncate");
            logits.to_vec2::<f32>().expect("logits rows")
        })
    });
}

/// Prefill of a 512-token prompt into an empty cache (one forward pass, logits of the last
/// position), as `gen` runs a prompt of that length.
fn prefill_512(c: &mut Criterion) {
    let Some((loaded, _)) = prefilled() else {
        return;
    };
    let m = &loaded.model;
    let prompt: Vec<u32> = (0..512).map(|i| 100 + (i * 37) % 40000).collect();
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("prompt tensor");
    let mut group = c.benchmark_group("prefill");
    group.sample_size(10);
    group.bench_function("512", |b| {
        b.iter(|| {
            let mut cache = m.new_cache();
            m.forward(black_box(&input), &mut cache, Logits::Last)
                .expect("prefill")
                .to_vec2::<f32>()
                .expect("logits row")
        })
    });
    group.finish();
}

criterion_group!(benches, decode_step, decode_step_batch4, prefill_512);
criterion_main!(benches);
