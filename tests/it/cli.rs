//! The `gen` binary end to end on tiny models: generation, JSON output, subcommands, and a clear
//! one-line error with the right exit code for each kind of bad input.

use crate::model::{full, load_gguf};
use crate::tiny::{random_weights, write_gguf, write_gguf_with, write_safetensors_dir, TinySpec};
use assert_cmd::Command;
use candle_core::quantized::{gguf_file, GgmlDType};
use std::path::{Path, PathBuf};

pub fn gen() -> Command {
    let mut c = Command::cargo_bin("gen").unwrap();
    c.env_remove("GEN_MODEL")
        .env("HF_HUB_OFFLINE", "1")
        .env("NO_COLOR", "1");
    c
}

pub fn tiny_gguf(dir: &Path) -> PathBuf {
    let spec = TinySpec::gqa();
    let path = dir.join("tiny.gguf");
    write_gguf(&path, &spec, &random_weights(&spec), GgmlDType::Q8_0);
    path
}

/// Runs `gen` with `args`, which must succeed, and parses its stdout as JSON.
pub fn gen_json(args: &[&str]) -> serde_json::Value {
    let out = gen().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out.stdout)
}

/// All of a child's piped stderr.
/// Runs `gen` with `args`, which must succeed (else the failure shows its stderr); its stdout.
pub fn gen_ok(args: &[&str]) -> String {
    let out = gen().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gen {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

pub fn json_of(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// Greedy tokens from the CLI equal the argmax of a full recomputation at every step.
#[test]
fn greedy_generation_matches_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let out = gen()
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "tt hi",
            "-n",
            "8",
            "--ignore-eos",
            "--greedy",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out.stdout);
    let got: Vec<u32> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(got.len(), 8);
    assert_eq!(v["stop"]["reason"], "max_tokens");

    let model = load_gguf(&path);
    let tok = {
        let mut f = std::fs::File::open(&path).unwrap();
        gen::tokenizer::Tokenizer::from_gguf(&gguf_file::Content::read(&mut f).unwrap()).unwrap()
    };
    let mut seq = tok.encode("tt hi").unwrap();
    assert_eq!(
        v["timings"]["prompt_tokens"].as_u64().unwrap() as usize,
        seq.len()
    );
    let mut expected = Vec::new();
    for _ in 0..8 {
        let logits = full(&model, &seq);
        let last = logits.last().unwrap();
        let best = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as u32;
        expected.push(best);
        seq.push(best);
    }
    assert_eq!(got, expected);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tok/s") && stderr.contains("stop: max_tokens"),
        "stats line missing: {stderr}"
    );
}

#[test]
fn text_output_streams_only_generated_text_and_eos_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let json = gen()
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "6",
            "--ignore-eos",
            "--seed",
            "5",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let v = json_of(&json.stdout);
    let text = gen()
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "6",
            "--ignore-eos",
            "--seed",
            "5",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(text.status.success());
    assert!(text.stderr.is_empty(), "-q must keep stderr quiet");
    assert_eq!(
        String::from_utf8(text.stdout).unwrap(),
        v["text"].as_str().unwrap()
    );
    // With --max-tokens 0 nothing is generated.
    let none = gen()
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "0",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(json_of(&none.stdout)["tokens"].as_array().unwrap().len(), 0);
}

#[test]
fn stdin_prompt_and_subcommands() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let m = path.to_str().unwrap();
    gen()
        .args(["-m", m, "-n", "2"])
        .write_stdin("from stdin")
        .assert()
        .success();
    let out = gen()
        .args(["tokenize", "-m", m, "--json", "tt 1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out.stdout);
    assert!(!v["ids"].as_array().unwrap().is_empty());
    let text = tmp.path().join("t.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog ".repeat(20),
    )
    .unwrap();
    let out = gen()
        .args([
            "perplexity",
            "-m",
            m,
            "--context",
            "64",
            "--json",
            text.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out.stdout);
    assert!(v["ppl"].as_f64().unwrap() > 1.0 && v["windows"].as_u64().unwrap() >= 1);
}

/// `gen convert` of an f32 GGUF gives a safetensors folder computing the same logits.
#[test]
fn convert_roundtrip_preserves_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let gguf = tmp.path().join("f32.gguf");
    write_gguf(&gguf, &spec, &random_weights(&spec), GgmlDType::F32);
    let out_dir = tmp.path().join("hf");
    gen()
        .args(["convert", gguf.to_str().unwrap(), out_dir.to_str().unwrap()])
        .assert()
        .success();
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out_dir.join(f).exists(), "convert did not write {f}");
    }
    let seq = [3u32, 70, 71, 72, 9, 200];
    let d = crate::model::max_diff(
        &full(&load_gguf(&gguf), &seq),
        &full(&crate::model::load_dir(&out_dir), &seq),
    );
    assert!(d <= 1e-4, "converted folder differs from the GGUF by {d}");
    // The converted folder runs through the CLI too, and bf16 conversion works.
    gen()
        .args(["-m", out_dir.to_str().unwrap(), "-p", "hi", "-n", "3", "-q"])
        .assert()
        .success();
    let bf = tmp.path().join("bf16");
    gen()
        .args([
            "convert",
            "--dtype",
            "bf16",
            gguf.to_str().unwrap(),
            bf.to_str().unwrap(),
        ])
        .assert()
        .success();
    gen()
        .args(["-m", bf.to_str().unwrap(), "-p", "hi", "-n", "3", "-q"])
        .assert()
        .success();
}

/// Runs gen and checks: the exit code, one line on stderr, and that it names `what`.
pub fn fails_with(args: &[&str], code: i32, what: &[&str]) {
    let out = gen().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}: stderr {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    if code == 1 || !stderr.contains("For more information") {
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "error must be one line: {stderr}"
        );
    }
    for w in what {
        assert!(
            stderr.contains(w),
            "stderr for {args:?} should mention {w:?}: {stderr}"
        );
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |p: &Path| p.to_str().unwrap().to_string();
    let good = tiny_gguf(tmp.path());
    let spec = TinySpec::gqa();
    let w = random_weights(&spec);

    fails_with(
        &["-m", "/no/such/model.gguf", "-p", "x"],
        1,
        &["/no/such/model.gguf", "not found"],
    );
    let empty_dir = tmp.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    fails_with(&["-m", &t(&empty_dir), "-p", "x"], 1, &["config.json"]);

    let bytes = std::fs::read(&good).unwrap();
    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["-m", &t(&truncated), "-p", "x"], 1, &["truncated"]);
    let header_only = tmp.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..100]).unwrap();
    fails_with(&["-m", &t(&header_only), "-p", "x"], 1, &["header.gguf"]);
    let garbage = tmp.path().join("garbage.bin");
    std::fs::write(&garbage, b"definitely not a model").unwrap();
    fails_with(&["-m", &t(&garbage), "-p", "x"], 1, &["neither a GGUF"]);

    let arch = tmp.path().join("arch.gguf");
    write_gguf_with(&arch, &spec, &w, GgmlDType::F32, |md| {
        md[0].1 = gguf_file::Value::String("mamba".into());
    });
    fails_with(
        &["-m", &t(&arch), "-p", "x"],
        1,
        &["mamba", "architecture", "llama, qwen2, qwen3, gemma3, phi3"],
    );
    let pre = tmp.path().join("pre.gguf");
    write_gguf_with(&pre, &spec, &w, GgmlDType::F32, |md| {
        for (k, v) in md.iter_mut() {
            if k == "tokenizer.ggml.pre" {
                *v = gguf_file::Value::String("klingon".into());
            }
        }
    });
    fails_with(&["-m", &t(&pre), "-p", "x"], 1, &["klingon"]);

    let dir = tmp.path().join("st");
    write_safetensors_dir(&dir, &spec, &w);
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    bad["num_key_value_heads"] = 3.into();
    std::fs::write(&cfg_path, bad.to_string()).unwrap();
    fails_with(&["-m", &t(&dir), "-p", "x"], 1, &["num_key_value_heads"]);
    std::fs::write(&cfg_path, &cfg).unwrap();
    let st = dir.join("model.safetensors");
    let st_bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &st_bytes[..st_bytes.len() - 1000]).unwrap();
    fails_with(
        &["-m", &t(&dir), "-p", "x"],
        1,
        &["truncated", "model.safetensors"],
    );
    std::fs::write(&st, [&[255u8; 8][..], b"{garbage"].concat()).unwrap();
    fails_with(&["-m", &t(&dir), "-p", "x"], 1, &["model.safetensors"]);

    let m = t(&good);
    fails_with(&["-m", &m, "-p", ""], 2, &["prompt is empty"]);
    let long = "a ".repeat(400);
    fails_with(&["-m", &m, "-p", &long], 1, &["context", "--ctx-size"]);
    fails_with(
        &["-m", &m, "-p", "hello", "--ctx-size", "2"],
        1,
        &["context"],
    );
    let bin = tmp.path().join("latin1.txt");
    std::fs::write(&bin, [b'c', b'a', b'f', 0xE9]).unwrap();
    fails_with(&["-m", &m, "-f", &t(&bin)], 1, &["UTF-8"]);
    fails_with(
        &["-m", &m, "-f", "/no/such/prompt.txt"],
        1,
        &["/no/such/prompt.txt"],
    );
    // Usage errors exit 2.
    fails_with(&["-m", &m, "-p", "x", "--threads", "0"], 2, &["--threads"]);
    fails_with(
        &["-m", &m, "-p", "x", "--no-such-flag"],
        2,
        &["--no-such-flag"],
    );
    fails_with(&["-m", &m, "-p", "x", "-n", "-3"], 2, &[]);
}

#[test]
fn closed_pipe_exits_quietly() {
    use std::process::{Command as Std, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("gen"))
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "200",
            "--ignore-eos",
            "-q",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before gen writes anything, so every write meets a closed pipe.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.is_empty(), "a closed pipe must end quietly: {err}");
}

/// Runs `gen` with `args` on the real model, sends it SIGINT (Ctrl-C) after `ms`
/// milliseconds, and returns its output.
fn interrupted_run(args: &[&str], ms: u64) -> std::process::Output {
    use std::process::{Command as Std, Stdio};
    let model = crate::real::real_gguf();
    let child = Std::new(assert_cmd::cargo::cargo_bin("gen"))
        .args(["-m", model.to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let kill = Std::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

/// Ctrl-C (SIGINT) ends generation after the current token: what was generated is on stdout,
/// the stats line says `interrupted`, and the exit status is 130.
#[test]
fn ctrl_c_flushes_and_exits_130() {
    let out = interrupted_run(
        &[
            "-p",
            "Once upon a time",
            "--raw",
            "-n",
            "4000",
            "--ignore-eos",
            "--greedy",
            "-t",
            "2",
        ],
        2500,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("stop: interrupted"), "{err}");
    // Whatever was generated before Ctrl-C is on stdout (a block-buffered pipe is flushed).
    let generated: usize = err
        .split("generated ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(generated < 4000);
    assert_eq!(out.stdout.is_empty(), generated == 0, "{err}");
}

/// Ctrl-C during beam search ends it after the current step: the best hypothesis so far is on
/// stdout, the stats line says `interrupted`, and the exit status is 130.
#[test]
fn ctrl_c_during_beam_search_prints_the_best_so_far_and_exits_130() {
    let out = interrupted_run(
        &[
            "-p",
            "Once upon a time",
            "--raw",
            "--beams",
            "4",
            "-n",
            "3000",
            "--ignore-eos",
            "-t",
            "2",
        ],
        2500,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("stop: interrupted"), "{err}");
    let steps: usize = err
        .split(" tok/s | ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no beam step count in {err}"));
    assert!(steps > 0 && steps < 3000, "{err}");
    // What was decided is printed: the best hypothesis, as long as the steps taken.
    assert!(!out.stdout.is_empty(), "{err}");
}
