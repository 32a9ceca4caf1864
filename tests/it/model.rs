//! Model tests on tiny random Llamas: KV-cache decoding against full recomputation, fork,
//! truncate and reorder, batching, and GGUF (every supported type) against safetensors.

use crate::tiny::{random_weights, write_gguf, write_safetensors_dir, TinySpec};
use candle_core::quantized::GgmlDType;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};
use gen::model::{KvCache, Llama, LlamaConfig, Logits};
use gen::weights::{Matrix, TensorName, Weights};
use std::path::Path;

pub fn load_dir(dir: &Path) -> Llama {
    let cfg = LlamaConfig::from_hf_dir(dir).unwrap();
    let mut w = Weights::open_safetensors(&[dir.join("model.safetensors")]).unwrap();
    Llama::load(&mut w, cfg, &Device::Cpu).unwrap()
}

/// A GGUF model with an f32 KV cache: these tests check the format and the cache's
/// bookkeeping, where recomputation and cached decoding differ only in summation order. The
/// f16 cache (GGUF's default) has its own test, [`f16_cache_decoding_tracks_recomputation`].
pub fn load_gguf(path: &Path) -> Llama {
    let mut model = load_gguf_default(path);
    model.set_cache_dtype(DType::F32).unwrap();
    model
}

fn load_gguf_default(path: &Path) -> Llama {
    let mut w = Weights::open_gguf(path).unwrap();
    let cfg = LlamaConfig::from_gguf(w.gguf_content().unwrap()).unwrap();
    Llama::load(&mut w, cfg, &Device::Cpu).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

/// Logits at every position from one forward pass over the whole sequence.
pub fn full(model: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache();
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    rows(
        &model
            .forward(&input, &mut cache, Logits::All)
            .unwrap()
            .squeeze(0)
            .unwrap(),
    )
}

/// Logits after each token fed one at a time into `cache`.
pub fn step(model: &Llama, cache: &mut KvCache, tokens: &[u32]) -> Vec<Vec<f32>> {
    tokens
        .iter()
        .map(|&t| {
            let input = Tensor::new(&[t], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            model
                .forward(&input, cache, Logits::Last)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

const SEQ: [u32; 12] = [5, 17, 200, 3, 3, 99, 150, 42, 7, 260, 11, 64];

fn specs() -> Vec<(&'static str, TinySpec)> {
    let base = TinySpec::gqa();
    vec![
        ("gqa-untied", base.clone()),
        (
            "mha-tied",
            TinySpec {
                heads: 4,
                kv_heads: 4,
                tied: true,
                seed: 2,
                ..base.clone()
            },
        ),
        (
            "gqa-llama3-scaling",
            TinySpec {
                llama3_scaling: true,
                heads: 8,
                kv_heads: 2,
                hidden: 128,
                seed: 3,
                ..base.clone()
            },
        ),
        (
            "one-kv-head",
            TinySpec {
                heads: 2,
                kv_heads: 1,
                layers: 3,
                seed: 4,
                ..base
            },
        ),
    ]
}

/// Every shape, both formats: prefill of 5 then single steps equals recomputation.
#[test]
fn kv_cache_decoding_equals_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, spec) in specs() {
        let w = random_weights(&spec);
        let dir = tmp.path().join(name);
        write_safetensors_dir(&dir, &spec, &w);
        let gguf = tmp.path().join(format!("{name}.gguf"));
        write_gguf(&gguf, &spec, &w, GgmlDType::F32);
        for (fmt, model) in [("safetensors", load_dir(&dir)), ("gguf", load_gguf(&gguf))] {
            let reference = full(&model, &SEQ);
            let mut cache = model.new_cache();
            let prefix = Tensor::new(&SEQ[..5], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let first = model
                .forward(&prefix, &mut cache, Logits::Last)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut got = vec![first];
            got.extend(step(&model, &mut cache, &SEQ[5..]));
            let d = max_diff(&reference[4..], &got);
            eprintln!("{name}/{fmt}: max |Δlogit| cached vs recomputed = {d:.2e}");
            assert!(
                d <= 1e-4,
                "{name}/{fmt}: cached decoding differs from recomputation by {d}"
            );
            assert_eq!(cache.len(), SEQ.len());
        }
    }
}

/// GGUF's default f16 KV cache, every shape: GGUF loads with it, and cached decoding tracks
/// recomputation up to the f16 rounding llama.cpp applies to the query and the probabilities
/// (which the prefill and decode summation orders can round differently): within 1e-3 of the
/// logits' scale, against 1e-4 with the f32 cache.
#[test]
fn f16_cache_decoding_tracks_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, spec) in specs() {
        let w = random_weights(&spec);
        let gguf = tmp.path().join(format!("{name}.gguf"));
        write_gguf(&gguf, &spec, &w, GgmlDType::F32);
        let model = load_gguf_default(&gguf);
        assert_eq!(model.cache_dtype(), DType::F16, "GGUF's default cache");
        let reference = full(&model, &SEQ);
        let scale = reference.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        let mut cache = model.new_cache();
        let got = step(&model, &mut cache, &SEQ);
        let d = max_diff(&reference, &got);
        eprintln!("{name}/gguf, f16 cache: max |Δlogit| cached vs recomputed = {d:.2e} (scale {scale:.2})");
        assert!(
            d <= 1e-3 * scale.max(1.0),
            "{name}: cached decoding with the f16 cache differs from recomputation by {d}"
        );
    }
}

/// The GGUF path (interleaved RoPE over permuted rows) computes the same function as the
/// safetensors path (half-split RoPE), which checks the permutation and the rope_freqs scaling.
#[test]
fn gguf_f32_matches_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, spec) in specs() {
        let w = random_weights(&spec);
        let dir = tmp.path().join(name);
        write_safetensors_dir(&dir, &spec, &w);
        let gguf = tmp.path().join(format!("{name}.gguf"));
        write_gguf(&gguf, &spec, &w, GgmlDType::F32);
        let d = max_diff(&full(&load_dir(&dir), &SEQ), &full(&load_gguf(&gguf), &SEQ));
        eprintln!("{name}: max |Δlogit| gguf-f32 vs safetensors = {d:.2e}");
        assert!(d <= 1e-4, "{name}: GGUF and safetensors disagree by {d}");
    }
}

/// Every quantized type we claim loads, keeps matmuls quantized, and stays close to f32.
/// bf16 and f16 safetensors stay in their own type on the CPU and widen as they are read, which
/// is exact: logits equal, bit for bit, those of a folder holding the same values as f32, both
/// for a whole-sequence pass (candle's product) and step by step (the few-row kernel).
#[test]
fn half_safetensors_equal_their_f32_widening() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, spec) in specs() {
        let w = random_weights(&spec);
        for dt in [DType::BF16, DType::F16] {
            let cast = |to: DType| -> std::collections::HashMap<String, Tensor> {
                w.iter()
                    .map(|(k, t)| (k.clone(), t.to_dtype(dt).unwrap().to_dtype(to).unwrap()))
                    .collect()
            };
            let half_dir = tmp.path().join(format!("{name}-{dt:?}"));
            let wide_dir = tmp.path().join(format!("{name}-{dt:?}-widened"));
            write_safetensors_dir(&half_dir, &spec, &cast(dt));
            write_safetensors_dir(&wide_dir, &spec, &cast(DType::F32));
            // The matrices are kept in the stored type (else this test would compare f32 with
            // f32); norms become f32.
            let mut weights =
                Weights::open_safetensors(&[half_dir.join("model.safetensors")]).unwrap();
            let embed = TensorName::new("model.embed_tokens.weight", "token_embd.weight");
            match weights
                .matrix(&embed, spec.vocab, spec.hidden, &Device::Cpu)
                .unwrap()
            {
                Matrix::Candle(QMatMul::Tensor(t)) => assert_eq!(t.dtype(), dt),
                other => panic!("{name}: the embedding loaded as {other:?}"),
            }
            let (half, wide) = (load_dir(&half_dir), load_dir(&wide_dir));
            assert_eq!(
                full(&half, &SEQ),
                full(&wide, &SEQ),
                "{name} {dt:?}: whole sequence"
            );
            let (mut a, mut b) = (half.new_cache(), wide.new_cache());
            assert_eq!(
                step(&half, &mut a, &SEQ),
                step(&wide, &mut b, &SEQ),
                "{name} {dt:?}: step by step"
            );
        }
    }
}

#[test]
fn quantized_types_load_and_track_f32() {
    let tmp = tempfile::tempdir().unwrap();
    // K-quants need rows that are multiples of 256.
    let spec = TinySpec {
        hidden: 256,
        ffn: 512,
        heads: 4,
        kv_heads: 2,
        ..TinySpec::gqa()
    };
    let w = random_weights(&spec);
    let f32_path = tmp.path().join("f32.gguf");
    write_gguf(&f32_path, &spec, &w, GgmlDType::F32);
    let reference = full(&load_gguf(&f32_path), &SEQ);
    let rms = |v: &[Vec<f32>]| {
        (v.iter().flatten().map(|x| x * x).sum::<f32>() / v.iter().flatten().count() as f32).sqrt()
    };
    let scale = rms(&reference);
    for (dt, tol) in [
        (GgmlDType::F16, 0.01),
        (GgmlDType::Q8_0, 0.06),
        (GgmlDType::Q6K, 0.15),
        (GgmlDType::Q4K, 0.4),
        (GgmlDType::Q4_1, 0.4),
        (GgmlDType::Q4_0, 0.4),
        // Measured 0.13, 0.11, 0.11, 0.49, 0.76 (2026-12-03).
        (GgmlDType::Q5_0, 0.2),
        (GgmlDType::Q5_1, 0.2),
        (GgmlDType::Q5K, 0.2),
        (GgmlDType::Q3K, 0.65),
        (GgmlDType::Q2K, 1.0),
    ] {
        let path = tmp.path().join(format!("{dt:?}.gguf"));
        write_gguf(&path, &spec, &w, dt);
        let model = load_gguf(&path);
        let got = full(&model, &SEQ);
        let err: Vec<Vec<f32>> = reference
            .iter()
            .zip(&got)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
            .collect();
        let rel = rms(&err) / scale;
        eprintln!("{dt:?}: rms(Δlogit) / rms(logit) vs f32 = {rel:.4}");
        assert!(rel <= tol, "{dt:?}: relative logit error {rel} above {tol}");
        // The cache path must agree with recomputation for quantized weights too. F16 is
        // looser: as in llama.cpp, its activations are rounded to f16 before each product and a
        // decode step sums in `vec_dot`'s order where a batch sums in tinyBLAS's, so a last-bit
        // difference can move a rounded activation by a whole f16 step.
        let mut cache = model.new_cache();
        let inc = step(&model, &mut cache, &SEQ);
        let d = max_diff(&got, &inc);
        let bound = if dt == GgmlDType::F16 { 1e-2 } else { 1e-3 };
        eprintln!("{dt:?}: cached decode vs recomputation {d:.2e} (scale {scale:.2})");
        assert!(
            d <= bound * scale.max(1.0),
            "{dt:?}: cached decode differs by {d}"
        );
    }
}

fn tiny() -> Llama {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let dir = tmp.path().join("m");
    write_safetensors_dir(&dir, &spec, &random_weights(&spec));
    load_dir(&dir)
}

fn prefill(model: &Llama, cache: &mut KvCache, tokens: &[u32]) {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model.forward(&input, cache, Logits::Last).unwrap();
}

#[test]
fn fork_continues_independently() {
    let model = tiny();
    let mut a = model.new_cache();
    prefill(&model, &mut a, &SEQ[..6]);
    let mut b = a.fork().unwrap();
    let cont_a = [8u32, 9, 10];
    let cont_b = [100u32, 101, 102, 103];
    // Interleave writes so that any shared storage would corrupt the other fork.
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for i in 0..4 {
        if i < 3 {
            got_a.extend(step(&model, &mut a, &cont_a[i..=i]));
        }
        got_b.extend(step(&model, &mut b, &cont_b[i..=i]));
    }
    let seq_a: Vec<u32> = SEQ[..6].iter().chain(&cont_a).copied().collect();
    let seq_b: Vec<u32> = SEQ[..6].iter().chain(&cont_b).copied().collect();
    assert!(max_diff(&full(&model, &seq_a)[6..], &got_a) <= 1e-4);
    assert!(max_diff(&full(&model, &seq_b)[6..], &got_b) <= 1e-4);
}

#[test]
fn truncate_then_append_equals_recomputation() {
    let model = tiny();
    let mut cache = model.new_cache();
    prefill(&model, &mut cache, &SEQ);
    cache.truncate(4).unwrap();
    assert_eq!(cache.len(), 4);
    let tail = [77u32, 78, 79];
    let got = step(&model, &mut cache, &tail);
    let seq: Vec<u32> = SEQ[..4].iter().chain(&tail).copied().collect();
    assert!(max_diff(&full(&model, &seq)[4..], &got) <= 1e-4);
}

/// A batch of three different prompts, reordered as beam search does (`[2, 0, 0]`), then each
/// row continued with its own token: every row equals recomputing its own sequence.
#[test]
fn batched_forward_and_reorder_equal_recomputation() {
    let model = tiny();
    let prompts: [[u32; 4]; 3] = [[1, 2, 3, 4], [50, 60, 70, 80], [9, 8, 7, 6]];
    let flat: Vec<u32> = prompts.iter().flatten().copied().collect();
    let mut cache = model.new_cache();
    let input = Tensor::from_vec(flat, (3, 4), &Device::Cpu).unwrap();
    let batch_logits = rows(&model.forward(&input, &mut cache, Logits::Last).unwrap());
    for (i, p) in prompts.iter().enumerate() {
        let alone = full(&model, p);
        assert!(
            max_diff(&alone[3..], &batch_logits[i..=i]) <= 1e-4,
            "batch row {i} differs from running it alone"
        );
    }
    cache.reorder(&[2, 0, 0]).unwrap();
    assert_eq!(cache.batch_size(), Some(3));
    let next = [11u32, 12, 13];
    let input = Tensor::new(&next, &Device::Cpu)
        .unwrap()
        .unsqueeze(1)
        .unwrap(); // (3, 1)
    let got = rows(&model.forward(&input, &mut cache, Logits::Last).unwrap());
    for (row, (parent, tok)) in [(2usize, 11u32), (0, 12), (0, 13)].iter().enumerate() {
        let seq: Vec<u32> = prompts[*parent].iter().copied().chain([*tok]).collect();
        let reference = full(&model, &seq);
        assert!(
            max_diff(&reference[4..], &got[row..=row]) <= 1e-4,
            "reordered row {row} differs"
        );
    }
}

#[test]
fn context_full_is_an_error_not_a_panic() {
    let model = tiny(); // max_pos 256
    let mut cache = model.new_cache();
    let long: Vec<u32> = (0..257).map(|i| i % 200).collect();
    let input = Tensor::new(long.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let err = model.forward(&input, &mut cache, Logits::Last).unwrap_err();
    assert!(format!("{err:#}").contains("context is full"), "{err:#}");
}

/// A folder sharded with `model.safetensors.index.json`, and one stored in f16, load through
/// the same path as a single f32 file and compute the same function.
#[test]
fn sharded_and_half_precision_folders_load() {
    use std::collections::HashMap;
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let w = random_weights(&spec);
    let single = tmp.path().join("single");
    write_safetensors_dir(&single, &spec, &w);
    let reference = full(&load_dir(&single), &SEQ);

    let sharded = tmp.path().join("sharded");
    write_safetensors_dir(&sharded, &spec, &w);
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let shard: HashMap<String, Tensor> =
            part.iter().map(|n| ((*n).clone(), w[*n].clone())).collect();
        candle_core::safetensors::save(&shard, sharded.join(file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let m = gen::app::load::load_path(&sharded, &Device::Cpu).unwrap();
    assert!(
        max_diff(&reference, &full(&m.model, &SEQ)) <= 1e-5,
        "sharded folder computes a different function"
    );

    let half = tmp.path().join("f16");
    write_safetensors_dir(&half, &spec, &w);
    let w16: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, t)| (k.clone(), t.to_dtype(candle_core::DType::F16).unwrap()))
        .collect();
    candle_core::safetensors::save(&w16, half.join("model.safetensors")).unwrap();
    let m = gen::app::load::load_path(&half, &Device::Cpu).unwrap();
    let d = max_diff(&reference, &full(&m.model, &SEQ));
    assert!(
        d > 0.0 && d <= 0.05,
        "f16 weights should be close to, not equal to, f32: {d}"
    );
}

/// `gen chat`'s prefix cache: after a prompt, generated tokens (one-token steps) and a new
/// prompt that shares part of them, the logits are bit for bit those of a fresh cache that ran
/// the same passes (prefill chunks, single steps, the new remainder): truncating to the common
/// prefix leaves nothing stale behind. A prompt equal to what is cached (`/regen`) runs its
/// last token again, as the same passes in a fresh cache do.
#[test]
fn prefix_cache_reuse_is_bit_exact() {
    use gen::engine::{prefill, PrefixCache};
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let path = tmp.path().join("m.gguf");
    write_gguf(&path, &spec, &random_weights(&spec), GgmlDType::Q8_0);
    let model = load_gguf_default(&path);
    let a: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 250).collect();
    let generated: Vec<u32> = vec![11, 12, 13, 14, 15];
    let mut b = a.clone();
    b.extend_from_slice(&generated[..3]);
    b.extend([40, 41, 42, 43, 44, 45, 46]);
    let step = |cache: &mut KvCache, id: u32| {
        let input = Tensor::new(&[id], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        model.forward(&input, cache, Logits::Last).unwrap()
    };

    let mut pc = PrefixCache::new(&model, 128);
    pc.prefill(&model, &a, 8).unwrap();
    // A generation: every generated token but the last goes through the model.
    for &id in &generated[..4] {
        step(pc.cache_mut(), id);
    }
    pc.generated(&generated);
    assert_eq!(pc.tokens().len(), a.len() + 4);
    let fill = pc.prefill(&model, &b, 8).unwrap();
    assert_eq!((fill.reused, fill.computed), (a.len() + 3, 7));

    let mut fresh = model.new_cache_for(128);
    prefill(&model, &mut fresh, &a, 8).unwrap();
    for &id in &generated[..3] {
        step(&mut fresh, id);
    }
    let want = prefill(&model, &mut fresh, &b[a.len() + 3..], 8).unwrap();
    assert_eq!(fill.logits, want, "reused prefix + new remainder");

    let again = pc.prefill(&model, &b, 8).unwrap();
    assert_eq!((again.reused, again.computed), (b.len() - 1, 1));
    fresh.truncate(b.len() - 1).unwrap();
    let want = prefill(&model, &mut fresh, &b[b.len() - 1..], 8).unwrap();
    assert_eq!(again.logits, want, "the same prompt again");
}
