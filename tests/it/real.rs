//! Golden and parity tests on the real model (SmolLM2-135M-Instruct, Q4_1 GGUF) against
//! independent oracles whose outputs are committed in tests/oracle/ beside the scripts that made
//! them: llama.cpp (llama-cpp-python 0.3.36) for the GGUF path and Hugging Face transformers
//! (loading the same GGUF in f32) for the f32 path made by `gen convert`.

use crate::model::max_diff;
use candle_core::{DType, Device, Tensor};
use gen::app::load::{load, LoadedModel};
use gen::config::SamplingConfig;
use gen::engine::{generate, DecodeParams, GenerateParams};
use gen::model::Logits;
use gen::sampling::build_chain;
use gen::weights::ModelSource;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn real_gguf() -> PathBuf {
    let p = repo().join("models").join(gen::config::DEFAULT_MODEL_FILE);
    assert!(
        p.exists(),
        "{} is missing: run ./models/fetch.sh (the tests need the real model)",
        p.display()
    );
    p
}

pub(crate) fn oracle(name: &str) -> Value {
    let p = repo().join("tests/oracle").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

pub(crate) fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub(crate) fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub(crate) fn load_path(p: &Path) -> LoadedModel {
    load(&ModelSource::Local(p.to_path_buf()), &Device::Cpu).unwrap()
}

/// The real GGUF with its KV cache stored as `cache` (the golden files name theirs).
fn real_gguf_with_cache(cache: DType) -> LoadedModel {
    let mut m = load_path(&real_gguf());
    m.model.set_cache_dtype(cache).unwrap();
    m
}

/// The f32 Hugging Face folder made by `gen convert` from the real GGUF, once per test run.
pub fn real_f32_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smollm2-f32");
        let _ = std::fs::remove_dir_all(&dir);
        gen::app::convert::convert(&real_gguf(), &dir, candle_core::DType::F32).unwrap();
        dir
    })
}

/// Log-softmax rows of `(seq, vocab)` logits, in f64 for stable comparisons.
pub(crate) fn log_softmax_rows(logits: &Tensor) -> Vec<Vec<f64>> {
    let lp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1).unwrap();
    lp.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect()
}

pub(crate) fn argmax(row: &[f64]) -> u32 {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
}

/// At position 0 (attention is the identity on V) our quantized path computes what llama.cpp
/// computes: ggml's activation quantization, RMSNorm rounding and vectorised SiLU are
/// reproduced, so single-token inputs give the same top-10 log-probabilities to float-summation
/// noise. Measured: all 48 within 6.1e-6 (46 of 48 before SiLU used ggml's vector exp; the
/// other two were off by ~0.1, one int8 rounding flip).
#[test]
fn gguf_first_position_matches_llama_cpp() {
    let golden = oracle("llamacpp_first_position.json");
    let m = real_gguf_with_cache(DType::F32);
    let mut worst = 0f64;
    let mut exact = 0;
    for case in golden["first_position"].as_array().unwrap() {
        let tok = case["token"].as_u64().unwrap() as u32;
        let mut cache = m.model.new_cache();
        let input = Tensor::new(&[tok], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let lp = &log_softmax_rows(&m.model.forward(&input, &mut cache, Logits::Last).unwrap())[0];
        let top = case["top"].as_array().unwrap();
        assert_eq!(
            argmax(lp) as u64,
            top[0][0].as_u64().unwrap(),
            "argmax after token {tok}"
        );
        let mut here = 0f64;
        for pair in top {
            here = here
                .max((lp[pair[0].as_u64().unwrap() as usize] - pair[1].as_f64().unwrap()).abs());
        }
        exact += usize::from(here <= 1e-4);
        worst = worst.max(here);
    }
    eprintln!("first position, 48 tokens x top 10: {exact}/48 within 1e-4 of llama.cpp, max |Δ log p| {worst:.2e}");
    assert_eq!(
        exact, 48,
        "only {exact} of 48 first-position distributions match llama.cpp within 1e-4 (worst {worst})"
    );
}

/// Teacher-forced over 2,048 tokens of text, our GGUF path against llama.cpp on the same file
/// (flash attention off, f32 KV cache). The issue asks for >= 98% argmax agreement and mean
/// |Δ log p| <= 0.02. We reproduce llama.cpp's CPU arithmetic op for op (int8 activation
/// quantization, RMSNorm, RoPE with GCC's fused multiply-adds, attention's dot products,
/// softmax and tinyBLAS sums, SwiGLU's vector exp), and measure 100.00% and 0.0000; before
/// RoPE and attention matched it was 95.6% and 0.057, which is llama.cpp's own distance from
/// itself when only its attention arithmetic changes (flash attention + f16 KV: 95.7%, 0.060).
/// The bounds hold that exactness with a little room.
#[test]
fn gguf_teacher_forced_tracks_llama_cpp() {
    teacher_forced("llamacpp_logprobs.json", DType::F32);
}

/// The same with llama.cpp's default f16 KV cache on both sides: llama.cpp rounds the query
/// and the probabilities to f16 for those products, and so do we.
#[test]
fn gguf_teacher_forced_f16_cache_tracks_llama_cpp() {
    teacher_forced("llamacpp_logprobs_f16cache.json", DType::F16);
}

/// Log-softmax rows for every position of `tokens` run as one sequence from an empty cache, in
/// 512-token batches (llama.cpp's n_batch in the golden runs).
pub(crate) fn teacher_forced_rows(model: &gen::model::Llama, tokens: &[u32]) -> Vec<Vec<f64>> {
    teacher_forced_with(model, tokens, log_softmax_rows)
}

/// [`teacher_forced_rows`] with the log-softmax `lsm` of each batch's `(positions, vocab)` logits.
pub(crate) fn teacher_forced_with(
    model: &gen::model::Llama,
    tokens: &[u32],
    lsm: fn(&Tensor) -> Vec<Vec<f64>>,
) -> Vec<Vec<f64>> {
    let mut cache = model.new_cache();
    let mut rows = Vec::new();
    for chunk in tokens.chunks(512) {
        let input = Tensor::new(chunk, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = model
            .forward(&input, &mut cache, Logits::All)
            .unwrap()
            .squeeze(0)
            .unwrap();
        rows.extend(lsm(&logits));
    }
    rows
}

fn teacher_forced(golden: &str, cache_type: DType) {
    let floor = &oracle("llamacpp_first_position.json")["noise_floor"]["flash_attn_f16_kv"];
    let floor_rate = floor["argmax_agreement"].as_f64().unwrap();
    let floor_dlogp = floor["mean_abs_dlogp"].as_f64().unwrap();
    let golden = oracle(golden);
    let tokens = ids(&golden["tokens"]);
    let want_argmax = ids(&golden["argmax"]);
    let want_logp = floats(&golden["logp_next"]);
    let m = real_gguf_with_cache(cache_type);
    let rows = teacher_forced_rows(&m.model, &tokens);
    let n = tokens.len() - 1;
    let agree = (0..n)
        .filter(|&i| argmax(&rows[i]) == want_argmax[i])
        .count();
    let mean_dlogp: f64 = (0..n)
        .map(|i| (rows[i][tokens[i + 1] as usize] - want_logp[i]).abs())
        .sum::<f64>()
        / n as f64;
    let rate = agree as f64 / n as f64;
    eprintln!(
        "GGUF ({cache_type:?} cache) vs llama.cpp over {n} positions: argmax agreement {:.2}%, mean |Δ log p| {mean_dlogp:.4} \
         (llama.cpp vs itself with flash attention + f16 KV: {:.2}%, {floor_dlogp:.4})",
        rate * 100.0,
        floor_rate * 100.0
    );
    assert!(
        rate >= 0.995,
        "argmax agreement {rate}: the issue asks for >= 0.98 and we reproduce llama.cpp exactly"
    );
    assert!(
        mean_dlogp <= 1e-3,
        "mean |Δ log p| {mean_dlogp}: the issue asks for <= 0.02 and we reproduce llama.cpp exactly"
    );
}

/// The decode step (one token per forward pass, the path generation takes) against llama.cpp
/// fed the same text one token per `llama_decode`, whose attention sums round differently from
/// its batched pass: every argmax the same and every log-prob within 1e-5 (6-decimal golden
/// data; we reproduce its arithmetic, so the measured difference is rounding of the file).
#[test]
fn gguf_decode_steps_match_llama_cpp_token_by_token() {
    decode_steps("llamacpp_decode_logprobs.json", DType::F32);
}

/// The same with llama.cpp's default f16 KV cache on both sides.
#[test]
fn gguf_decode_steps_f16_cache_match_llama_cpp_token_by_token() {
    decode_steps("llamacpp_decode_logprobs_f16cache.json", DType::F16);
}

fn decode_steps(golden: &str, cache_type: DType) {
    let golden = oracle(golden);
    let tokens = ids(&golden["tokens"]);
    let want_argmax = ids(&golden["argmax"]);
    let want_logp = floats(&golden["logp_next"]);
    let m = real_gguf_with_cache(cache_type);
    let mut cache = m.model.new_cache();
    let mut worst = 0f64;
    for (i, &t) in tokens.iter().enumerate().take(tokens.len() - 1) {
        let input = Tensor::new(&[t], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let lp = &log_softmax_rows(&m.model.forward(&input, &mut cache, Logits::Last).unwrap())[0];
        assert_eq!(argmax(lp), want_argmax[i], "argmax at position {i}");
        worst = worst.max((lp[tokens[i + 1] as usize] - want_logp[i]).abs());
    }
    eprintln!(
        "decode steps ({cache_type:?} cache) vs llama.cpp over {} positions: max |Δ log p| {worst:.2e}",
        tokens.len() - 1
    );
    assert!(
        worst <= 1e-5,
        "decode-step log-probs differ from llama.cpp by {worst}"
    );
}

/// `gen perplexity`'s computation against llama.cpp's llama-perplexity method, within 1%.
#[test]
fn perplexity_matches_llama_cpp() {
    let golden = oracle("llamacpp_perplexity.json");
    let tokens = ids(&golden["tokens"]);
    let text = std::fs::read_to_string(repo().join("tests/oracle/text.txt")).unwrap();
    let m = load_path(&real_gguf());
    let text = text.strip_suffix('\n').unwrap_or(&text);
    assert_eq!(
        m.tokenizer.encode(text).unwrap(),
        tokens,
        "our tokenization of text.txt differs from llama.cpp's"
    );
    for r in golden["results"].as_array().unwrap() {
        let ctx = r["context"].as_u64().unwrap() as usize;
        let ours =
            gen::engine::perplexity::perplexity(&m.model, &tokens, ctx, &mut |_, _, _| {}).unwrap();
        let theirs = r["ppl"].as_f64().unwrap();
        let rel = (ours.ppl() - theirs).abs() / theirs;
        eprintln!(
            "perplexity ctx {ctx}: gen {:.4}, llama.cpp {theirs:.4} ({:+.3}%)",
            ours.ppl(),
            rel * 100.0
        );
        assert_eq!(ours.windows as u64, r["n_windows"].as_u64().unwrap());
        assert_eq!(ours.scored_tokens as u64, r["n_scored"].as_u64().unwrap());
        assert!(
            rel <= 0.01,
            "perplexity at context {ctx}: {} vs llama.cpp {theirs}",
            ours.ppl()
        );
    }
}

/// The f32 path (the folder made by `gen convert`) against transformers on the same GGUF in
/// f32: identical greedy tokens up to the oracle's first near-tie (top-two gap < 0.02), and
/// first-step log-probabilities within 1e-3.
#[test]
fn f32_greedy_matches_transformers() {
    let golden = oracle("hf_f32.json");
    let m = load_path(real_f32_dir());
    // No end-of-generation tokens: transformers' loop runs all 32 steps (`--ignore-eos`).
    let params = GenerateParams {
        decode: DecodeParams {
            max_tokens: 32,
            eos: Vec::new(),
            batch_size: 512,
            ctx_size: Some(8192),
            ..DecodeParams::default()
        },
        ..GenerateParams::default()
    };
    for case in golden["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = ids(&case["prompt_ids"]);
        assert_eq!(
            m.tokenizer.encode(prompt).unwrap(),
            prompt_ids,
            "tokenization of {prompt:?}"
        );
        let want = ids(&case["greedy_ids"]);
        let gaps = floats(&case["gaps"]);
        let checked = gaps.iter().position(|&g| g < 0.02).unwrap_or(want.len());
        let got = generate(
            &m.model,
            &m.tokenizer,
            &prompt_ids,
            &mut build_chain(&SamplingConfig::greedy(), m.model.config().vocab_size)
                .unwrap()
                .chain,
            &params,
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(
            &got.tokens[..checked],
            &want[..checked],
            "greedy tokens for {prompt:?} (checked up to the first near-tie at step {checked})"
        );

        let mut cache = m.model.new_cache();
        let input = Tensor::new(prompt_ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.model.forward(&input, &mut cache, Logits::Last).unwrap();
        let lp = &log_softmax_rows(&logits)[0];
        let worst = case["first_step_top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (lp[pair[0].as_u64().unwrap() as usize] - pair[1].as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{prompt:?}: {checked}/32 greedy tokens checked, first-step max |Δ log p| {worst:.2e}"
        );
        assert!(
            worst <= 1e-3,
            "first-step log-probs for {prompt:?} differ by {worst}"
        );
    }
}

/// KV-cache decoding equals full recomputation on the real model (f32 path) for 16 steps.
#[test]
fn real_model_kv_cache_equals_recomputation() {
    let m = load_path(real_f32_dir());
    let prompt = m
        .tokenizer
        .encode("The quick brown fox jumps over")
        .unwrap();
    let mut cache = m.model.new_cache();
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut logits = m
        .model
        .forward(&input, &mut cache, Logits::Last)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut seq = prompt.clone();
    let mut stepped = vec![logits.clone()];
    for _ in 0..16 {
        let next =
            (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b }) as u32;
        seq.push(next);
        let input = Tensor::new(&[next], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        logits = m
            .model
            .forward(&input, &mut cache, Logits::Last)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        stepped.push(logits.clone());
    }
    let full = crate::model::full(&m.model, &seq);
    let d = max_diff(&full[prompt.len() - 1..], &stepped);
    eprintln!("real model f32: max |Δlogit| cached vs recomputed over 16 steps = {d:.2e}");
    assert!(
        d <= 1e-4,
        "cached decoding differs from recomputation by {d}"
    );
}

/// Beam search on the f32 path against transformers' `generate(num_beams=4,
/// num_return_sequences=4, length_penalty=1.0, early_stopping=True, max_new_tokens=32)` on the
/// same weights (tests/oracle/hf_beam.py): the same token ids for every returned hypothesis and
/// scores within 1e-3, for all eight prompts; plus the early-stopping and length-penalty
/// variants on the ChatML prompt, whose beams end in EOS.
#[test]
fn f32_beam_search_matches_transformers() {
    use gen::config::EarlyStopping;
    use gen::engine::{beam_search, BeamParams, Prefilled, Processors};
    let golden = oracle("hf_beam.json");
    let m = load_path(real_f32_dir());
    let eos = vec![0u32, 2];
    let check = |prompt_ids: &[u32], run: &Value, lp: f32, es: EarlyStopping, what: &str| {
        let params = BeamParams {
            num_beams: 4,
            num_return: 4,
            length_penalty: lp,
            early_stopping: es,
            decode: DecodeParams {
                max_tokens: 32,
                eos: eos.clone(),
                batch_size: 512,
                ctx_size: Some(8192),
                ..DecodeParams::default()
            },
        };
        let pre = Prefilled::run(&m.model, prompt_ids, 512, 8192).unwrap();
        let got = beam_search(
            &m.model,
            &m.tokenizer,
            prompt_ids,
            pre,
            &params,
            &Processors::default(),
            &mut |_| Ok(()),
        )
        .unwrap();
        let want = run["hypotheses"].as_array().unwrap();
        assert_eq!(got.hypotheses.len(), want.len(), "{what}");
        for (i, (h, w)) in got.hypotheses.iter().zip(want).enumerate() {
            assert_eq!(h.tokens, ids(&w["ids"]), "{what}: hypothesis {i} token ids");
            let score = w["score"].as_f64().unwrap();
            assert!(
                (h.score - score).abs() < 1e-3,
                "{what}: hypothesis {i} score {} vs transformers {score}",
                h.score
            );
        }
    };
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = ids(&case["prompt_ids"]);
        assert_eq!(m.tokenizer.encode(prompt).unwrap(), prompt_ids);
        check(&prompt_ids, &case["run"], 1.0, EarlyStopping::Eager, prompt);
    }
    let v = &golden["variants"];
    let prompt_ids = ids(&v["prompt_ids"]);
    for run in v["runs"].as_array().unwrap() {
        let o = &run["params_override"];
        let lp = o["length_penalty"].as_f64().unwrap_or(1.0) as f32;
        let es = match &o["early_stopping"] {
            Value::Bool(false) => EarlyStopping::Heuristic,
            Value::String(s) if s == "never" => EarlyStopping::Never,
            _ => EarlyStopping::Eager,
        };
        check(&prompt_ids, run, lp, es, &format!("variant {o}"));
    }
}

/// The verify pass of speculative decoding (`Llama::forward_as_steps`): 6 positions after a
/// prompt in one forward pass give, bit for bit, the logits of 6 one-token steps, with the f16
/// cache of GGUF weights and with an f32 cache. (A plain multi-position forward does not: its
/// attention follows llama.cpp's multi-query order, measured up to 0.74 apart.)
#[test]
fn a_verify_pass_equals_one_token_steps_bit_for_bit() {
    for cache in [DType::F16, DType::F32] {
        let m = real_gguf_with_cache(cache);
        let model = &m.model;
        let ids = m
            .tokenizer
            .encode("Once upon a time, in a land far away, there lived a king who had three")
            .unwrap();
        let (prompt, rest) = ids.split_at(ids.len() - 6);
        let mut a = model.new_cache_for(128);
        let mut b = model.new_cache_for(128);
        gen::engine::prefill(model, &mut a, prompt, 512).unwrap();
        gen::engine::prefill(model, &mut b, prompt, 512).unwrap();
        let input = Tensor::new(rest, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let all = model
            .forward_as_steps(&input, &mut a)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, &t) in rest.iter().enumerate() {
            let x = Tensor::new(&[t], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let one = model
                .forward(&x, &mut b, Logits::Last)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let differ = all[i]
                .iter()
                .zip(&one)
                .filter(|(p, q)| p.to_bits() != q.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{cache:?} cache, position {i}: {differ} logits differ"
            );
        }
        assert_eq!(a.len(), b.len());
    }
}
