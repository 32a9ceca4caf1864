//! `gen quantize` against llama.cpp's quantizer: every type's output has the sha256 that
//! `llama_model_quantize` gave (tests/oracle/llamacpp_quantize.json, made by
//! llamacpp_quantize.py) for the real model, for nine of those outputs quantized again, and for
//! a tiny f32 model whose rows are whole K-quant blocks; tiny models quantized by gen load and
//! generate in gen; bad calls get one-line errors and leave no file behind.

use crate::cli::{fails_with, gen};
use crate::real::real_gguf;
use crate::tiny::{random_weights, write_gguf, Rng, TinySpec};
use candle_core::quantized::GgmlDType;
use gen::quant::gguf::{self, Kv, OutTensor, Value};
use gen::quant::types::GgmlType;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// tests/oracle/llamacpp_quantize.json.
pub fn oracle() -> Json {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/llamacpp_quantize.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `gen quantize`, which must succeed; returns the seconds it took.
fn quantize(input: &Path, output: &Path, ty: &str) -> f64 {
    let t = Instant::now();
    let out = gen()
        .args([
            "quantize",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            ty,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen quantize {ty}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

/// Why `output` is not llama.cpp's file for `case` (its `sha256`, `size`, `tensor_types`), or
/// `None` when it is: the tensor types are compared first, as they explain most differences.
fn difference(output: &Path, case: &Json) -> Option<String> {
    if sha256_file(output) == case["sha256"].as_str().unwrap() {
        return None;
    }
    let bytes = std::fs::read(output).unwrap();
    let g = gguf::Gguf::parse(&bytes).unwrap();
    let ours: Vec<(String, String)> = g
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.ty.name().to_string()))
        .collect();
    let theirs: Vec<(String, String)> = case["tensor_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    if let Some((a, b)) = ours.iter().zip(&theirs).find(|(a, b)| a != b) {
        return Some(format!(
            "first differing tensor: gen {a:?}, llama.cpp {b:?}"
        ));
    }
    Some(format!(
        "same tensors and types, different bytes (size {} vs {})",
        bytes.len(),
        case["size"]
    ))
}

/// The real model to every type, and nine of those outputs to Q8_0 again (which widens every
/// type they hold with ggml's dequantizers).
#[test]
fn real_model_quantizes_as_llama_cpp() {
    let oracle = oracle();
    let input = real_gguf();
    let tmp = tempfile::tempdir().unwrap();
    let requantize: Vec<&Json> = oracle["requantize"].as_array().unwrap().iter().collect();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for case in oracle["real"].as_array().unwrap() {
        let ty = case["type"].as_str().unwrap();
        let out = tmp.path().join(format!("{ty}.gguf"));
        let secs = quantize(&input, &out, ty);
        report.push(format!(
            "{ty} {secs:.2} s (llama.cpp {} s)",
            case["seconds"]
        ));
        if let Some(why) = difference(&out, case) {
            failures.push(format!("{ty}: {why}"));
        }
        for re in requantize.iter().filter(|r| r["from"] == ty) {
            let to = re["type"].as_str().unwrap();
            let again = tmp.path().join(format!("{ty}-{to}.gguf"));
            quantize(&out, &again, to);
            if let Some(why) = difference(&again, re) {
                failures.push(format!("{ty} then {to}: {why}"));
            }
            std::fs::remove_file(&again).unwrap();
        }
        std::fs::remove_file(&out).unwrap();
    }
    eprintln!("gen quantize on the real model: {}", report.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tiny f32 model of llamacpp_quantize.py (`TINY`, `tiny_tensors`, `tiny_metadata`),
/// written as that script writes it, with `extra` keys after its own (hf_to_gguf.py's
/// `write_tiny_vocab` appends the real model's tokenizer so).
pub fn write_oracle_tiny(path: &Path, spec: &Json, extra: &[Kv]) {
    let n = |k: &str| spec[k].as_u64().unwrap();
    let (h, f, vocab) = (n("hidden"), n("ffn"), n("vocab"));
    let kv = n("kv_heads") * (h / n("heads"));
    let mut rng = Rng(n("seed"));
    let mut tensors: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
    let mut t = |name: &str, ne: &[u64], scale: f32| {
        let count: u64 = ne.iter().product();
        let values = (0..count).map(|_| rng.next_f32() * scale).collect();
        tensors.push((name.to_string(), ne.to_vec(), values));
    };
    t("token_embd.weight", &[h, vocab], 1.0);
    for i in 0..n("layers") {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        t(&p("attn_norm"), &[h], 1.0);
        t(&p("attn_q"), &[h, h], 0.0625);
        t(&p("attn_k"), &[h, kv], 0.0625);
        t(&p("attn_v"), &[h, kv], 0.0625);
        t(&p("attn_output"), &[h, h], 0.0625);
        t(&p("ffn_norm"), &[h], 1.0);
        t(&p("ffn_gate"), &[h, f], 0.0625);
        t(&p("ffn_up"), &[h, f], 0.0625);
        t(&p("ffn_down"), &[f, h], 0.03125);
    }
    t("output_norm.weight", &[h], 1.0);
    t("output.weight", &[h, vocab], 0.125);
    let v = &mut tensors[2].2;
    v[0..256].fill(0.0);
    v[256..511].fill(0.0);
    v[511] = 4.0;

    let u32kv = |key: &str, v: u64| Kv {
        key: key.into(),
        value: Value::u32(v as u32),
    };
    let kvs = vec![
        Kv {
            key: "general.architecture".into(),
            value: Value::Str(b"llama".to_vec()),
        },
        u32kv("llama.block_count", n("layers")),
        u32kv("llama.context_length", 256),
        u32kv("llama.embedding_length", h),
        u32kv("llama.feed_forward_length", f),
        u32kv("llama.attention.head_count", n("heads")),
        u32kv("llama.attention.head_count_kv", n("kv_heads")),
        u32kv("llama.rope.dimension_count", h / n("heads")),
        Kv {
            key: "llama.attention.layer_norm_rms_epsilon".into(),
            value: Value::Scalar {
                ty: 6,
                bytes: 0x3727_C5ACu32.to_le_bytes().to_vec(),
            },
        },
        u32kv("llama.vocab_size", vocab),
        u32kv("general.file_type", 0),
    ];
    let kvs: Vec<Kv> = kvs.into_iter().chain(extra.iter().cloned()).collect();
    let infos: Vec<OutTensor> = tensors
        .iter()
        .map(|(name, ne, _)| {
            let mut padded = [1u64; 4];
            padded[..ne.len()].copy_from_slice(ne);
            OutTensor {
                name: name.clone(),
                ne: padded,
                ty: GgmlType::F32,
            }
        })
        .collect();
    let mut file = gguf::header(&kvs, &infos, 32);
    for (_, _, values) in &tensors {
        for v in values {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file.resize(file.len().next_multiple_of(32), 0);
    }
    std::fs::write(path, file).unwrap();
}

/// The tiny f32 model (rows of 256 and 512: every K-quant used as itself) to every type, and
/// some K-quant outputs back to F32.
#[test]
fn tiny_model_quantizes_as_llama_cpp() {
    let oracle = oracle();
    let tiny = &oracle["tiny"];
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tiny-f32.gguf");
    write_oracle_tiny(&input, &tiny["spec"], &[]);
    assert_eq!(
        sha256_file(&input),
        tiny["input_sha256"].as_str().unwrap(),
        "the tiny model is not the file llamacpp_quantize.py made"
    );
    let mut failures = Vec::new();
    for case in tiny["cases"].as_array().unwrap() {
        let ty = case["type"].as_str().unwrap();
        let out = tmp.path().join(format!("{ty}.gguf"));
        quantize(&input, &out, ty);
        if let Some(why) = difference(&out, case) {
            failures.push(format!("{ty}: {why}"));
        }
    }
    for re in tiny["requantize"].as_array().unwrap() {
        let (from, to) = (re["from"].as_str().unwrap(), re["type"].as_str().unwrap());
        let out = tmp.path().join(format!("{from}-{to}.gguf"));
        quantize(&tmp.path().join(format!("{from}.gguf")), &out, to);
        if let Some(why) = difference(&out, re) {
            failures.push(format!("{from} then {to}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A tiny Llama whose rows are whole K-quant blocks, quantized by gen to every type, loads and
/// generates in gen.
#[test]
fn tiny_models_quantized_by_gen_generate() {
    let spec = TinySpec {
        hidden: 256,
        ffn: 512,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        vocab: 300,
        tied: false,
        llama3_scaling: false,
        max_pos: 64,
        seed: 3,
    };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tiny-f32.gguf");
    write_gguf(&input, &spec, &random_weights(&spec), GgmlDType::F32);
    for ty in gen::config::FileType::ALL {
        let out = tmp.path().join(format!("{ty}.gguf"));
        quantize(&input, &out, ty.name());
        let run = gen()
            .args([
                "-m",
                out.to_str().unwrap(),
                "--raw",
                "--greedy",
                "-n",
                "4",
                "-q",
            ])
            .args(["--ignore-eos", "-p", "hello"])
            .output()
            .unwrap();
        assert!(
            run.status.success() && !run.stdout.is_empty(),
            "{ty}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn bad_calls_get_one_line_errors_and_leave_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let spec = TinySpec::gqa();
    let input = dir.join("in.gguf");
    write_gguf(&input, &spec, &random_weights(&spec), GgmlDType::F32);
    let out = dir.join("out.gguf");

    fails_with(
        &["quantize", &s(&input), &s(&out), "Q7_K"],
        2,
        &["Q7_K", "Q4_K_M", "BF16"],
    );
    fails_with(
        &["quantize", &s(&dir.join("missing.gguf")), &s(&out), "q8_0"],
        1,
        &["missing.gguf"],
    );

    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    fails_with(
        &["quantize", &s(&truncated), &s(&out), "q8_0"],
        1,
        &["truncated"],
    );
    std::fs::write(&truncated, b"not a model").unwrap();
    fails_with(
        &["quantize", &s(&truncated), &s(&out), "q8_0"],
        1,
        &["not a GGUF file"],
    );

    fails_with(
        &[
            "quantize",
            &s(&input),
            &s(&dir.join("no/such/dir/out.gguf")),
            "q8_0",
        ],
        1,
        &["no/such/dir"],
    );

    // Nothing was written: no output, no temporary file.
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "in.gguf" && n != "truncated.gguf")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // An existing OUT is kept unless --force.
    std::fs::write(&out, b"keep me").unwrap();
    fails_with(&["quantize", &s(&input), &s(&out), "q8_0"], 2, &["--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    gen()
        .args(["quantize", &s(&input), &s(&out), "q8_0", "--force"])
        .assert()
        .success();
    assert_eq!(&std::fs::read(&out).unwrap()[..4], b"GGUF");
}
