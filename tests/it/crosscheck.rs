//! Our forward pass against an independent implementation: candle-transformers'
//! `quantized_llama` (its own RMSNorm, RoPE, attention and MLP code) on the same tiny GGUF
//! files. Both read the same weights, so differences are only summation order (f32) or
//! activation rounding (quantized types, where candle rounds differently from ggml).

use crate::model::{full, load_gguf};
use crate::tiny::{random_weights, write_gguf, TinySpec};
use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::path::Path;

/// candle-transformers' logits after each token of `tokens`, fed one at a time through its
/// own KV cache.
fn reference_logits(path: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
    tokens
        .iter()
        .enumerate()
        .map(|(pos, &t)| {
            let x = Tensor::new(&[[t]], &Device::Cpu).unwrap();
            let logits = model.forward(&x, pos).unwrap(); // (1, vocab)
            logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

/// The largest absolute difference over all positions, relative to the largest logit size.
fn relative_max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a
        .iter()
        .flatten()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(1e-6);
    let diff = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0f32, f32::max);
    diff / scale
}

#[test]
fn forward_pass_matches_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<u32> = vec![1, 70, 80, 90, 100, 7, 210, 33, 41, 5, 250, 12];
    let tied = TinySpec {
        tied: true,
        seed: 5,
        ..TinySpec::gqa()
    };
    // f32 weights: the two implementations agree to summation order. Q8_0 and Q4_1: candle
    // quantizes activations with another rounding, so only closely.
    for (spec, dtype, tol) in [
        (TinySpec::gqa(), GgmlDType::F32, 1e-5),
        (tied.clone(), GgmlDType::F32, 1e-5),
        (TinySpec::gqa(), GgmlDType::Q8_0, 2e-2),
        (tied, GgmlDType::Q4_1, 5e-2),
    ] {
        let path = dir.path().join(format!("m-{dtype:?}-{}.gguf", spec.tied));
        write_gguf(&path, &spec, &random_weights(&spec), dtype);
        let ours = full(&load_gguf(&path), &tokens);
        let theirs = reference_logits(&path, &tokens);
        let d = relative_max_diff(&ours, &theirs);
        assert!(
            d < tol,
            "{dtype:?}, tied {}: relative difference {d}",
            spec.tied
        );
        if dtype != GgmlDType::F32 {
            continue;
        }
        // In f32 the argmax at every position is the same token.
        for (pos, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let top = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
            assert_eq!(top(a), top(b), "{dtype:?} position {pos}");
        }
    }
}
