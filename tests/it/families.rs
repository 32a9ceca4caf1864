//! Qwen2, Qwen3, Gemma 3 and Phi-3 on tiny random models, against transformers (the safetensors
//! folder, f32) and llama.cpp (the GGUF llama.cpp's own converter makes of that folder, f32 and
//! f16): golden data from tests/oracle/families.py, which also records how it made the weights
//! (one splitmix64 stream per tensor, seeded by the FNV-1a hash of its name), the converter's
//! metadata and the sha256 of every tensor it wrote. The test rebuilds both files from that,
//! checks the hashes (so gen reads exactly the file llama.cpp read), and compares teacher-forced
//! log-probabilities. Also per family: KV-cache decoding equals recomputation.

use crate::model::{full, load_dir, load_gguf, max_diff, step};
use crate::tiny::{byte_chars, Rng};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

fn golden() -> &'static Json {
    static G: OnceLock<Json> = OnceLock::new();
    G.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/families.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (made by families.py beside it)", path.display()));
        serde_json::from_str(&text).unwrap()
    })
}

fn family(name: &str) -> &'static Json {
    &golden()["families"][name]
}

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// The oracle's value rule (`fill` in families.py): centre + scale · splitmix(fnv1a(name)).
fn fill(name: &str, shape: &[usize], gemma: bool) -> Tensor {
    let (centre, scale) = if name.ends_with("norm.weight") {
        (if gemma { 0.0 } else { 1.0 }, 0.2)
    } else if name.ends_with(".bias") {
        (0.0, 0.5)
    } else if name.contains("embed_tokens") {
        (0.0, 1.0)
    } else {
        let fan_in = *shape.last().unwrap() as f64;
        (0.0, (2.0 * (3.0 / fan_in).sqrt()) as f32)
    };
    let mut rng = Rng(fnv1a(name));
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| scale * rng.next_f32() + centre).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn weights(rec: &Json) -> HashMap<String, Tensor> {
    let gemma = rec["config"]["model_type"] == "gemma3_text";
    rec["tensors_hf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap();
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name.to_string(), fill(name, &shape, gemma))
        })
        .collect()
}

fn write_folder(dir: &Path, rec: &Json, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), rec["config"].to_string()).unwrap();
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
}

fn metadata_value(m: &Json) -> gguf_file::Value {
    use gguf_file::Value as V;
    let scalar = |ty: &str, v: &Json| match ty {
        "uint32" => V::U32(v.as_u64().unwrap() as u32),
        "int32" => V::I32(v.as_i64().unwrap() as i32),
        "float32" => V::F32(v.as_f64().unwrap() as f32),
        "bool" => V::Bool(v.as_bool().unwrap()),
        "string" => V::String(v.as_str().unwrap().to_string()),
        other => panic!("metadata type {other} is not in the oracle's vocabulary"),
    };
    match m["type"].as_str().unwrap() {
        "array" => V::Array(
            m["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| scalar(m["item"].as_str().unwrap(), v))
                .collect(),
        ),
        ty => scalar(ty, &m["value"]),
    }
}

/// Writes the GGUF the converter wrote (`outtype` f32 or f16), from the same weights, and
/// checks every tensor's bytes against the converter's.
fn write_gguf(path: &Path, arch: &str, rec: &Json, outtype: &str, w: &HashMap<String, Tensor>) {
    let g = &rec["gguf"][outtype];
    let mut md: Vec<(String, gguf_file::Value)> = vec![(
        "general.architecture".into(),
        gguf_file::Value::String(arch.into()),
    )];
    for m in g["metadata"].as_array().unwrap() {
        md.push((m["key"].as_str().unwrap().into(), metadata_value(m)));
    }
    // Not the oracle's placeholder vocabulary (llama.cpp read only ids): a byte-level one gen
    // can build, so that `gen convert` and the CLI run on these files.
    use gguf_file::Value as V;
    let mut tokens: Vec<V> = byte_chars()[..255]
        .iter()
        .map(|c| V::String(c.to_string()))
        .collect();
    tokens.push(V::String("Ġt".into()));
    md.extend([
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), V::String("default".into())),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(vec![V::I32(1); tokens.len()]),
        ),
        ("tokenizer.ggml.tokens".into(), V::Array(tokens)),
        (
            "tokenizer.ggml.merges".into(),
            V::Array(vec![V::String("Ġ t".into())]),
        ),
    ]);
    let mut tensors = Vec::new();
    for t in g["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let src = (&w[t["from"].as_str().unwrap()] + t["add"].as_f64().unwrap()).unwrap();
        let dtype = match t["type"].as_str().unwrap() {
            "F32" => GgmlDType::F32,
            "F16" => GgmlDType::F16,
            other => panic!("{name}: type {other}"),
        };
        let q = QTensor::quantize(&src, dtype).unwrap();
        let data = q.data().unwrap();
        assert_eq!(
            format!("{:x}", Sha256::digest(&data)),
            t["sha256"].as_str().unwrap(),
            "{arch} {outtype}: tensor {name} differs from the one llama.cpp's converter wrote"
        );
        tensors.push((name.to_string(), q));
    }
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row.iter().map(|&x| x as f64 - max - sum.ln()).collect()
}

/// (argmax agreements, mean and max |Δ log p| of the next token) against a golden summary.
fn agreement(rows: &[Vec<f32>], tokens: &[u32], want: &Json) -> (usize, f64, f64) {
    let argmax: Vec<u64> = want["argmax"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let next: Vec<f64> = want["next_logprob"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut agree = 0;
    let (mut sum, mut max) = (0f64, 0f64);
    for (i, row) in rows.iter().enumerate() {
        let lp = log_softmax(row);
        let best = (0..lp.len()).fold(0, |b, j| if lp[j] > lp[b] { j } else { b });
        agree += usize::from(best as u64 == argmax[i]);
        if i + 1 < tokens.len() {
            let d = (lp[tokens[i + 1] as usize] - next[i]).abs();
            sum += d;
            max = max.max(d);
        }
    }
    (agree, sum / next.len() as f64, max)
}

fn tokens(rec: &Json) -> Vec<u32> {
    rec["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// One family: the folder against transformers, the f32 and f16 GGUFs against llama.cpp, and
/// cached decoding against recomputation on each.
fn check_family(arch: &str) {
    let rec = family(arch);
    let toks = tokens(rec);
    let w = weights(rec);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    write_folder(&dir, rec, &w);
    let model = load_dir(&dir);
    assert_eq!(model.config().family.gguf_name(), arch);
    let rows = full(&model, &toks);
    let (agree, mean, max) = agreement(&rows, &toks, &rec["transformers"]);
    eprintln!("{arch} folder vs transformers: argmax {agree}/{}, mean |Δ log p| {mean:.2e}, max {max:.2e}", toks.len());
    assert_eq!(agree, toks.len(), "{arch}: argmax against transformers");
    assert!(
        mean <= 1e-4 && max <= 1e-3,
        "{arch}: against transformers, mean {mean:.2e} max {max:.2e}"
    );
    let stepped = step(&model, &mut model.new_cache(), &toks);
    let d = max_diff(&rows, &stepped);
    assert!(
        d < 1e-4,
        "{arch} folder: cached decoding is {d} away from recomputation"
    );

    for (outtype, bound) in [("f32", 1e-5), ("f16", 1e-4)] {
        let path = tmp.path().join(format!("{arch}-{outtype}.gguf"));
        write_gguf(&path, arch, rec, outtype, &w);
        let model = load_gguf(&path);
        let rows = full(&model, &toks);
        let (agree, mean, max) = agreement(&rows, &toks, &rec["gguf"][outtype]["llama_cpp"]);
        eprintln!("{arch} GGUF {outtype} vs llama.cpp: argmax {agree}/{}, mean |Δ log p| {mean:.2e}, max {max:.2e}", toks.len());
        assert_eq!(
            agree,
            toks.len(),
            "{arch} {outtype}: argmax against llama.cpp"
        );
        assert!(
            mean <= bound,
            "{arch} {outtype}: mean |Δ log p| {mean:.2e} against llama.cpp (bound {bound:.0e})"
        );
        // Cached decoding against recomputation on the f32 file. (With f16 weights the
        // activations are rounded to f16 before each product, as llama.cpp does, and a decode
        // step sums in `vec_dot`'s order where a batch sums in tinyBLAS's: a last-bit
        // difference then moves a rounded activation by a whole f16 step, so the two paths
        // agree only to about 1e-2, in llama.cpp as here.) ggml's GELU is a table of f16
        // steps too, so Gemma's bound is wider.
        // Speculative decoding's verify pass equals one-token steps bit for bit, also where
        // a batch sums in another order than one row (both files here).
        let mut cache = model.new_cache();
        let input = Tensor::new(toks.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let verify = model
            .forward_as_steps(&input, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let one_by_one = step(&model, &mut model.new_cache(), &toks);
        assert_eq!(
            verify.to_vec2::<f32>().unwrap(),
            one_by_one,
            "{arch} {outtype}: verify pass"
        );
        if outtype == "f32" {
            let bound = if arch == "gemma3" { 2e-3 } else { 1e-4 };
            let stepped = step(&model, &mut model.new_cache(), &toks);
            let d = max_diff(&rows, &stepped);
            assert!(
                d < bound,
                "{arch} {outtype}: cached decoding is {d} away from recomputation"
            );
        }
    }

    // `gen convert` of the f32 GGUF gives back the folder's model.
    let back = tmp.path().join("back");
    gen::app::convert::convert(
        &tmp.path().join(format!("{arch}-f32.gguf")),
        &back,
        candle_core::DType::F32,
    )
    .unwrap();
    let converted = load_dir(&back);
    assert_eq!(converted.config().family, model.config().family);
    let d = max_diff(&full(&converted, &toks), &rows);
    assert!(
        d < 1e-4,
        "{arch}: gen convert's folder is {d} away from the original folder"
    );
}

#[test]
fn qwen2_matches_transformers_and_llama_cpp() {
    check_family("qwen2");
}

#[test]
fn qwen3_matches_transformers_and_llama_cpp() {
    check_family("qwen3");
}

#[test]
fn gemma3_matches_transformers_and_llama_cpp() {
    check_family("gemma3");
}

#[test]
fn phi3_matches_transformers_and_llama_cpp() {
    check_family("phi3");
}

/// The full rows llama.cpp recorded for the f32 GGUF: every log-probability, not just the
/// next token's.
#[test]
fn whole_rows_match_llama_cpp() {
    for arch in ["qwen2", "qwen3", "gemma3", "phi3"] {
        let rec = family(arch);
        let toks = tokens(rec);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.gguf");
        write_gguf(&path, arch, rec, "f32", &weights(rec));
        let rows = full(&load_gguf(&path), &toks);
        for (pos, want) in rec["gguf"]["f32"]["rows"].as_object().unwrap() {
            let got = log_softmax(&rows[pos.parse::<usize>().unwrap()]);
            let d = got
                .iter()
                .zip(want.as_array().unwrap())
                .map(|(a, b)| (a - b.as_f64().unwrap()).abs())
                .fold(0f64, f64::max);
            eprintln!("{arch} position {pos}: max |Δ log p| {d:.2e} over the row");
            assert!(d < 1e-3, "{arch} position {pos}: max |Δ log p| {d:.2e}");
        }
    }
}

/// A Qwen2 GGUF as a user downloads one, but small: the real Qwen2 vocabulary (151,936 tokens,
/// its ChatML template and special tokens, from llama.cpp's `ggml-vocab-qwen2.gguf`, which
/// models/fetch.sh fetches) on the tiny random Qwen2 weights, the embedding widened to the
/// vocabulary. `gen -m FILE -p ...` then renders Qwen's template, ends on its end-of-turn
/// tokens and runs the family's forward pass end to end.
#[test]
fn a_qwen2_gguf_with_its_real_vocabulary_runs_from_the_cli() {
    use gguf_file::Value as V;
    let vocab_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vocab/ggml-vocab-qwen2.gguf");
    let vocab = gguf_file::Content::read(
        &mut std::fs::File::open(&vocab_path)
            .unwrap_or_else(|e| panic!("{}: {e}; run models/fetch.sh", vocab_path.display())),
    )
    .unwrap();
    let V::Array(tokens) = &vocab.metadata["tokenizer.ggml.tokens"] else {
        panic!("no token list")
    };
    let n_vocab = tokens.len();
    let rec = family("qwen2");
    let mut md: Vec<(String, V)> = vec![("general.architecture".into(), V::String("qwen2".into()))];
    for m in rec["gguf"]["f32"]["metadata"].as_array().unwrap() {
        md.push((m["key"].as_str().unwrap().into(), metadata_value(m)));
    }
    for (k, v) in &vocab.metadata {
        if k.starts_with("tokenizer.") {
            md.push((k.clone(), v.clone()));
        }
    }
    let hidden = rec["config"]["hidden_size"].as_u64().unwrap() as usize;
    let w = weights(rec);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for t in rec["gguf"]["f32"]["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let src = match name {
            "token_embd.weight" | "output.weight" => {
                fill(t["from"].as_str().unwrap(), &[n_vocab, hidden], false)
            }
            _ => w[t["from"].as_str().unwrap()].clone(),
        };
        let dtype = if src.rank() == 2 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        tensors.push((name.to_string(), QTensor::quantize(&src, dtype).unwrap()));
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("qwen2-tiny.Q8_0.gguf");
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(
        &mut std::fs::File::create(&path).unwrap(),
        &md_refs,
        &t_refs,
    )
    .unwrap();
    let file = path.to_str().unwrap();

    let out = crate::cli::gen()
        .args(["-m", file, "-p", "Hello", "--print-prompt"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prompt = String::from_utf8(out.stdout).unwrap();
    assert!(
        prompt.contains("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"),
        "not Qwen's template: {prompt:?}"
    );
    let out = crate::cli::gen()
        .args(["-m", file, "-p", "Hello", "-n", "6", "-v", "--seed", "3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("qwen2, 2 layers"), "{err}");
    assert!(
        err.contains("pre-tokenizer qwen2")
            && err.contains("<|im_end|>")
            && err.contains("<|endoftext|>"),
        "{err}"
    );
    assert!(err.contains("generated"), "{err}");
}
