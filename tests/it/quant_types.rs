//! Every common quantization type of the real model against llama.cpp on the same file
//! (`tests/oracle/llamacpp_quant_types.json`, made by the script beside it): 1,024 tokens
//! teacher-forced through the batched prefill, and 128 tokens one forward pass each (the decode
//! step). llama.cpp ran with weight repacking and its tiled K-quant product off, and again,
//! for the files holding the types it repacks, with repacking on, its default
//! (`llamacpp_quant_types_repack.json`); see docs/TESTING.md for what its defaults change.

use crate::cli::gen;
use crate::quantize::sha256_file;
use crate::real::{argmax, floats, ids, oracle, real_gguf, repo, teacher_forced_with};
use candle_core::{DType, Device, Tensor};
use gen::app::load::load_path_as;
use gen::kernels::ggml::Arithmetic;
use gen::model::Logits;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;

/// The file the golden data of `entry` were made from: where the oracle script leaves it
/// (`models/quant/`) when it is there with the recorded checksum, else made from the real model
/// with `gen quantize`, whose output must be that same file byte for byte (the sha256 decides).
/// Tests run in parallel and several want the same file (Q4_0 plain and repacked): one lock
/// makes each file once (`gen quantize` itself writes to a temporary name and renames), so no
/// test finds a file another test is still making.
fn quantized_file(name: &str, entry: &Value) -> PathBuf {
    static MAKING: Mutex<()> = Mutex::new(());
    let want = entry["sha256"].as_str().unwrap();
    let local = repo().join(entry["file"].as_str().unwrap());
    if local.exists() && sha256_file(&local) == want {
        return local;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("quant");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("SmolLM2-135M-Instruct.{name}.gguf"));
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if !(path.exists() && sha256_file(&path) == want) {
        let out = gen()
            .args(["quantize", "--force", real_gguf().to_str().unwrap()])
            .arg(&path)
            .arg(name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gen quantize {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            sha256_file(&path),
            want,
            "gen quantize {name} did not make the file llama.cpp made"
        );
    }
    path
}

/// How far our log-probs of the next token are from the golden ones: (argmax agreements,
/// positions, mean |Δ log p|, max |Δ log p|, the first position off by more than 1e-6).
fn distance(
    rows: &[Vec<f64>],
    tokens: &[u32],
    golden: &Value,
) -> (usize, usize, f64, f64, Option<usize>) {
    let want_argmax = ids(&golden["argmax"]);
    let want_logp = floats(&golden["logp_next"]);
    let n = tokens.len() - 1;
    let agree = (0..n)
        .filter(|&i| argmax(&rows[i]) == want_argmax[i])
        .count();
    let d: Vec<f64> = (0..n)
        .map(|i| (rows[i][tokens[i + 1] as usize] - want_logp[i]).abs())
        .collect();
    let max = d.iter().cloned().fold(0f64, f64::max);
    let first = d.iter().position(|&x| x > 1e-6);
    (agree, n, d.iter().sum::<f64>() / n as f64, max, first)
}

/// Log-softmax of each row of f32 logits, in f64 as the oracle script computes it: equal logits
/// then give log-probs within the golden files' 6-decimal rounding (an f32 log-softmax adds
/// rounding of its own, up to ~1e-5 next to logits of magnitude 20).
fn log_softmax_f64(logits: &Tensor) -> Vec<Vec<f64>> {
    let rows = logits.flatten_to(candle_core::D::Minus2).unwrap();
    rows.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| {
            let r: Vec<f64> = r.into_iter().map(f64::from).collect();
            let max = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + r.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            r.into_iter().map(|x| x - lse).collect()
        })
        .collect()
}

/// A golden file and the arithmetic of the llama.cpp run it holds.
struct Run {
    file: &'static str,
    arith: Arithmetic,
}

/// llama.cpp with repacking and tiling off: its plain `vec_dot` / tinyBLAS products.
const PLAIN: Run = Run {
    file: "llamacpp_quant_types.json",
    arith: Arithmetic::PLAIN,
};

/// llama.cpp with its default weight repacking (tiling still off, which gen does not
/// reproduce).
const REPACKED: Run = Run {
    file: "llamacpp_quant_types_repack.json",
    arith: Arithmetic::DEFAULT,
};

fn check_type(name: &str) {
    check_run(name, &PLAIN)
}

fn check_run(name: &str, run: &Run) {
    let golden = oracle(run.file);
    let entry = &golden["types"][name];
    assert!(
        entry.is_object(),
        "no golden data for {name} in {}",
        run.file
    );
    let tokens = ids(&golden["tokens"]);
    let path = quantized_file(name, entry);
    let mut m = load_path_as(&path, &Device::Cpu, run.arith).unwrap();
    m.model.set_cache_dtype(DType::F32).unwrap();

    let rows = teacher_forced_with(&m.model, &tokens, log_softmax_f64);
    let prefill = distance(&rows, &tokens, &entry["prefill"]);
    let nll = (0..tokens.len() - 1)
        .map(|i| -rows[i][tokens[i + 1] as usize])
        .sum::<f64>()
        / (tokens.len() - 1) as f64;
    let want_nll = entry["prefill"]["mean_nll"].as_f64().unwrap();
    let ppl_ratio = (nll - want_nll).exp();
    eprintln!(
        "{name} prefill perplexity {:.4} vs llama.cpp {:.4} (ratio {ppl_ratio:.5})",
        nll.exp(),
        want_nll.exp()
    );

    let n_decode = golden["n_decode"].as_u64().unwrap() as usize;
    let mut cache = m.model.new_cache();
    let mut rows = Vec::new();
    for &t in &tokens[..n_decode] {
        let input = Tensor::new(&[t], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.model.forward(&input, &mut cache, Logits::Last).unwrap();
        rows.extend(log_softmax_f64(&logits));
    }
    let decode = distance(&rows, &tokens[..n_decode], &entry["decode"]);

    for (what, (agree, n, mean, max, first)) in [("prefill", prefill), ("decode", decode)] {
        eprintln!(
            "{name} {what} vs llama.cpp over {n} positions: argmax {agree}/{n}, mean |Δ log p| {mean:.2e}, max {max:.2e}, first off at {first:?}"
        );
    }
    assert!(
        (ppl_ratio - 1.0).abs() <= 0.005,
        "{name}: perplexity {:.4} against llama.cpp's {:.4}",
        nll.exp(),
        want_nll.exp()
    );
    for (what, (agree, n, mean, max, _)) in [("prefill", prefill), ("decode", decode)] {
        // The golden log-probs have 6 decimals (both sides take the log-softmax in f64): equal
        // logits stay within 1e-6 of them; one flipped int8 rounding moves them by far more.
        assert!(
            agree == n && max <= 1e-6,
            "{name} {what}: argmax {agree}/{n}, mean |Δ log p| {mean:.2e}, max {max:.2e}: not llama.cpp's logits"
        );
    }
}

#[test]
fn q4_0_matches_llama_cpp() {
    check_type("Q4_0");
}

#[test]
fn q5_0_matches_llama_cpp() {
    check_type("Q5_0");
}

#[test]
fn q5_1_matches_llama_cpp() {
    check_type("Q5_1");
}

#[test]
fn q8_0_matches_llama_cpp() {
    check_type("Q8_0");
}

#[test]
fn q4_k_m_matches_llama_cpp() {
    check_type("Q4_K_M");
}

#[test]
fn q5_k_m_matches_llama_cpp() {
    check_type("Q5_K_M");
}

#[test]
fn q6_k_matches_llama_cpp() {
    check_type("Q6_K");
}

#[test]
fn q3_k_m_matches_llama_cpp() {
    check_type("Q3_K_M");
}

#[test]
fn q2_k_matches_llama_cpp() {
    check_type("Q2_K");
}

/// GGUF F16 matrices: activations rounded to f16, `vec_dot_f16` for one row, tinyBLAS for more.
#[test]
fn f16_matches_llama_cpp() {
    check_type("F16");
}

/// GGUF BF16 matrices: activations rounded to bf16, `vec_dot_bf16` for one row, tinyBLAS for
/// more (the AVX2 build's kernels).
#[test]
fn bf16_matches_llama_cpp() {
    check_type("BF16");
}

#[test]
fn q4_0_matches_llama_cpp_repacked() {
    check_run("Q4_0", &REPACKED);
}

#[test]
fn q2_k_matches_llama_cpp_repacked() {
    check_run("Q2_K", &REPACKED);
}

#[test]
fn q4_k_m_matches_llama_cpp_repacked() {
    check_run("Q4_K_M", &REPACKED);
}

#[test]
fn q3_k_m_matches_llama_cpp_repacked() {
    check_run("Q3_K_M", &REPACKED);
}

/// `-v` names the order each type's products follow; `--no-repack` switches Q4_0 (and Q4_K) to
/// llama.cpp's plain kernels, and changes nothing else.
#[test]
fn verbose_names_the_repacked_order_and_no_repack_turns_it_off() {
    let golden = oracle(PLAIN.file);
    let path = quantized_file("Q4_0", &golden["types"]["Q4_0"]);
    let run = |extra: &[&str]| {
        let out = gen()
            .arg("-m")
            .arg(&path)
            .args(["-p", "Hi", "-n", "1", "-v", "--temp", "0"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let line = err
            .lines()
            .find(|l| l.starts_with("gen: matrices:"))
            .unwrap_or_else(|| panic!("no matrices line in {err}"))
            .to_string();
        line
    };
    let default = run(&[]);
    assert!(
        default.contains("Q4_0, ggml-exact, repacked order"),
        "{default}"
    );
    let plain = run(&["--no-repack"]);
    assert!(
        plain.contains("Q4_0, ggml-exact") && !plain.contains("repacked"),
        "{plain}"
    );
    assert!(plain.contains("Q8_0, ggml-exact"), "{plain}");
}
