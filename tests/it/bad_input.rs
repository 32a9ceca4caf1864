//! Hostile input and faults (issue 21, the categories closed so far): broken files built at
//! test time from the tiny model, each giving one clear line, the right exit status and no
//! panic; signals and closed pipes that keep what was already produced.

use crate::cli::{fails_with, gen, stderr_of};
use crate::tiny::{random_weights, write_gguf_with, write_safetensors_dir, TinySpec};
use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Tensor;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

fn tiny_with(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut Vec<(String, gguf_file::Value)>),
) -> PathBuf {
    let spec = TinySpec::gqa();
    let path = dir.join(name);
    write_gguf_with(&path, &spec, &random_weights(&spec), GgmlDType::Q8_0, edit);
    path
}

/// The tiny safetensors folder at `dir`, its config.json changed by `edit`.
fn tiny_dir_with(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let spec = TinySpec::gqa();
    write_safetensors_dir(dir, &spec, &random_weights(&spec));
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    dir.to_path_buf()
}

/// The run succeeded and printed something.
fn assert_printed(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    assert!(Std::new("mkfifo").arg(path).status().unwrap().success());
}

fn set(md: &mut Vec<(String, gguf_file::Value)>, key: &str, v: gguf_file::Value) {
    md.retain(|(k, _)| k != key);
    md.push((key.into(), v));
}

/// `general.alignment = 0` (candle divides by it) and a tensor offset near 2^64 (the end check
/// used to wrap): errors naming the key or the tensor, never a panic.
#[test]
fn corrupt_gguf_headers_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let zero = tiny_with(tmp.path(), "align0.gguf", |md| {
        set(md, "general.alignment", gguf_file::Value::U32(0))
    });
    fails_with(
        &["-m", zero.to_str().unwrap(), "-p", "x"],
        1,
        &["general.alignment", "align0.gguf"],
    );
    fails_with(
        &["tokenize", "-m", zero.to_str().unwrap(), "x"],
        1,
        &["general.alignment"],
    );

    let good = tiny_with(tmp.path(), "good.gguf", |_| {});
    let mut bytes = std::fs::read(&good).unwrap();
    // The tensor info of token_embd.weight: its name (u64 length + bytes), n_dims (u32), the
    // dims (u64 each), the type (u32), then the offset (u64), which we point near 2^64.
    let name = b"token_embd.weight";
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name);
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .expect("the tensor info");
    let mut p = at + pat.len();
    let n_dims = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
    p += 4 + 8 * n_dims + 4;
    bytes[p..p + 8].copy_from_slice(&(u64::MAX - 64).to_le_bytes());
    let far = tmp.path().join("far.gguf");
    std::fs::write(&far, &bytes).unwrap();
    fails_with(
        &["-m", far.to_str().unwrap(), "-p", "x"],
        1,
        &["token_embd.weight", "corrupt"],
    );
}

/// A context length far beyond memory (2^40) costs nothing until it is used: gen runs with
/// `-c 64` (the RoPE tables used to be built for the whole context and exhaust memory).
#[test]
fn a_huge_context_length_allocates_nothing_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_with(tmp.path(), "huge_ctx.gguf", |md| {
        set(md, "llama.context_length", gguf_file::Value::U64(1 << 40))
    });
    let out = gen()
        .args([
            "-m",
            path.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "4",
            "-c",
            "64",
        ])
        .args(["--ignore-eos", "-q"])
        .output()
        .unwrap();
    assert_printed(&out);
    // Without -c, `-n -1` may fill all 2^40 positions: refused before the cache grows
    // towards them (it would abort on a failed allocation), naming the flags to change.
    fails_with(
        &["-m", path.to_str().unwrap(), "-p", "hello", "-n", "-1"],
        1,
        &["-c/--ctx-size", "GiB", "memory available"],
    );
    // The same from config.json: max_position_embeddings 10^12 runs a short generation.
    let dir = tiny_dir_with(&tmp.path().join("hf"), |cfg| {
        cfg["max_position_embeddings"] = serde_json::json!(1_000_000_000_000u64)
    });
    let out = gen()
        .args(["-m", dir.to_str().unwrap(), "-p", "hello", "-n", "4"])
        .args(["--ignore-eos", "-q"])
        .output()
        .unwrap();
    assert_printed(&out);
    // A perplexity window longer than the text is that error, not a memory estimate.
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "hello world ".repeat(50)).unwrap();
    fails_with(
        &[
            "perplexity",
            "-m",
            path.to_str().unwrap(),
            "-c",
            "2000000000",
            text.to_str().unwrap(),
        ],
        1,
        &["fewer than one window"],
    );
}

/// A FIFO (or any non-regular file) as the model, its config.json or tokenizer.json is an
/// error at once, not a wait for a writer that never comes.
#[test]
fn a_fifo_is_not_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("model.gguf");
    mkfifo(&fifo);
    let out = gen()
        .args(["-m", fifo.to_str().unwrap(), "-p", "x"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    let spec = TinySpec::gqa();
    let dir = tmp.path().join("hf");
    write_safetensors_dir(&dir, &spec, &random_weights(&spec));
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    mkfifo(&dir.join("tokenizer.json"));
    let out = gen()
        .args(["-m", dir.to_str().unwrap(), "-p", "x"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.json is not a regular file"));
}

/// Weights that are finite but overflow in use (queries and keys scaled by 1e30, so the
/// attention scores are infinite and the logits NaN): perplexity and beam search say so (they
/// used to print "perplexity NaN" and "every token is banned"). A non-finite norm weight is
/// refused at load.
#[test]
fn nan_logits_are_errors_in_perplexity_and_beams() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let mut w = random_weights(&spec);
    for p in ["q_proj", "k_proj"] {
        let name = format!("model.layers.0.self_attn.{p}.weight");
        let huge = (w[&name].clone() * 1e30).unwrap();
        w.insert(name, huge);
    }
    let mut nan_norm = w.clone();
    let norm = w["model.norm.weight"].clone();
    let nan = Tensor::full(f32::NAN, norm.dims(), norm.device()).unwrap();
    nan_norm.insert("model.norm.weight".into(), nan);
    let bad = tmp.path().join("nan_norm");
    write_safetensors_dir(&bad, &spec, &nan_norm);
    fails_with(
        &["-m", bad.to_str().unwrap(), "-p", "x"],
        1,
        &["model.norm.weight", "NaN", "corrupt"],
    );
    let dir = tmp.path().join("nan");
    write_safetensors_dir(&dir, &spec, &w);
    let d = dir.to_str().unwrap();
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "hello world, some text to score. ".repeat(10)).unwrap();
    fails_with(
        &["perplexity", text.to_str().unwrap(), "-m", d, "-c", "16"],
        1,
        &["NaN or infinite", "window 1"],
    );
    fails_with(
        &["-m", d, "-p", "hello", "--beams", "2", "-n", "3"],
        1,
        &["NaN"],
    );
}

/// SIGTERM is the first Ctrl-C: generation ends after the current token, the text so far is
/// on stdout, the stats line says `interrupted`, and the exit status is 143.
#[test]
fn sigterm_flushes_and_exits_143() {
    let model = crate::real::real_gguf();
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("gen"))
        .args(["-m", model.to_str().unwrap(), "-p", "Tell me a long story."])
        .args(["-n", "3000", "--ignore-eos"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first text, so that the signal arrives during generation.
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    assert!(Std::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let err = stderr_of(&mut child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("stop: interrupted"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let n: usize = err
        .split("generated ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(n < 3000, "{err}");
}

/// A closed pipe under JSON output larger than a pipe's buffer exits 0 quietly (serde_json's
/// writer used to hide the broken pipe: exit 1 with "Broken pipe").
#[test]
fn a_closed_pipe_under_long_json_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    let text = tmp.path().join("long.txt");
    std::fs::write(&text, "hello there ".repeat(20_000)).unwrap();
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("gen"))
        .args(["tokenize", "-m", m.to_str().unwrap(), "--json", "-f"])
        .arg(&text)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let err = stderr_of(&mut child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// stderr on a full disk: the error cannot be written, but there is no panic, and the exit
/// status still says the run failed.
#[test]
fn stderr_on_a_full_disk_is_not_a_panic() {
    let bin = assert_cmd::cargo::cargo_bin("gen");
    let out = Std::new("bash")
        .args([
            "-c",
            &format!("'{}' -m /no/such.gguf -p hi 2>/dev/full", bin.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Sampler settings whose arithmetic overflows: a usage error when the value alone overflows
/// (1/T, 1/θ), a runtime error naming the flags when the logits do; never a pick among
/// infinities.
#[test]
fn overflowing_sampler_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    fails_with(
        &["-m", m, "-p", "x", "--temperature", "1e-45"],
        2,
        &["--temperature", "overflows"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--repeat-penalty", "1e-45"],
        2,
        &["--repeat-penalty", "overflows"],
    );
    fails_with(
        &[
            "-m",
            m,
            "-p",
            "hello hello hello",
            "--raw",
            "-n",
            "3",
            "--presence-penalty",
            "-3.4e38",
            "--frequency-penalty",
            "-3.4e38",
        ],
        1,
        &["--presence-penalty -3.4e38", "overflow"],
    );
    // A penalty that leaves a logit just under f32::MAX, which the temperature then overflows:
    // the message gives the logit as the temperature got it and names the penalties too.
    fails_with(
        &[
            "-m",
            m,
            "-p",
            "hello hello hello",
            "--raw",
            "-n",
            "3",
            "--presence-penalty",
            "-3.4e38",
            "--temperature",
            "0.8",
        ],
        1,
        &["--temperature 0.8", "after any penalties", "overflow"],
    );
}

/// A chat template that loops without end (nested `range(100000)`) is stopped by the render's
/// fuel: an error naming the chat template, not a hang.
#[test]
fn a_runaway_chat_template_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_with(tmp.path(), "loop.gguf", |md| {
        set(
            md,
            "tokenizer.chat_template",
            gguf_file::Value::String(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                    .into(),
            ),
        )
    });
    let out = gen()
        .args(["-m", path.to_str().unwrap(), "-p", "x", "-n", "1"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("chat template") && !err.contains("panicked"),
        "{err}"
    );
}

/// Integer weights in a safetensors folder (a norm stored as I64) are refused, naming the
/// tensor, instead of being computed with as integers.
#[test]
fn integer_safetensors_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let mut w = random_weights(&spec);
    let norm = w["model.norm.weight"]
        .to_dtype(candle_core::DType::I64)
        .unwrap();
    w.insert("model.norm.weight".into(), norm);
    let dir = tmp.path().join("int");
    write_safetensors_dir(&dir, &spec, &w);
    fails_with(
        &["-m", dir.to_str().unwrap(), "-p", "x"],
        1,
        &["model.norm.weight", "I64", "f32, f16 or bf16"],
    );
}

/// A tokenizer.json whose ids go past the embedding's rows (it belongs to another model):
/// an error naming both sizes, not "index-select invalid index".
#[test]
fn a_tokenizer_from_another_model_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let dir = tmp.path().join("hf");
    write_safetensors_dir(&dir, &spec, &random_weights(&spec));
    let big = gen::tokenizer::Tokenizer::from_gguf_file(&crate::real::real_gguf()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), big.to_json_string().unwrap()).unwrap();
    fails_with(
        &[
            "-m",
            dir.to_str().unwrap(),
            "-p",
            "The capital of France",
            "--raw",
        ],
        1,
        &["embedding has", "rows", "does not belong"],
    );
}

/// Endless or huge prompts: `-f /dev/zero` and an endless stdin stop at --max-prompt-bytes
/// (a usage error naming it), and a prompt longer than the context can possibly hold is
/// refused before it is tokenized.
#[test]
fn endless_and_huge_prompts_are_refused_early() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    fails_with(
        &["-m", m, "-f", "/dev/zero"],
        2,
        &["/dev/zero", "--max-prompt-bytes"],
    );
    fails_with(
        &["-m", m, "-f", "/dev/zero", "--max-prompt-bytes", "1000"],
        2,
        &["longer than 1000 bytes"],
    );
    // The same cap on the text of `perplexity` and `tokenize`.
    fails_with(
        &["perplexity", "-m", m, "/dev/zero"],
        2,
        &["text file /dev/zero", "--max-prompt-bytes"],
    );
    fails_with(
        &[
            "tokenize",
            "-m",
            m,
            "-f",
            "/dev/zero",
            "--max-prompt-bytes",
            "10",
        ],
        2,
        &["longer than 10 bytes"],
    );
    let big = tmp.path().join("big.txt");
    std::fs::write(&big, "a".repeat(4 << 20)).unwrap();
    fails_with(
        &["-m", m, "-f", big.to_str().unwrap()],
        1,
        &["more than a context of"],
    );
    let out = gen()
        .args(["-m", m, "-n", "1"])
        .write_stdin("y\n".repeat(40 << 20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the prompt on stdin is longer"));
}

/// With prompt text given, a stdin pipe that stays open is not waited on.
#[test]
fn an_open_stdin_is_not_waited_on_when_a_prompt_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    // A FIFO opened for reading and writing: gen's stdin never reaches end of file while
    // this handle is open (as `sleep 100 | gen`). `timeout` kills gen after a minute, so a
    // regression fails instead of hanging the suite.
    let fifo = tmp.path().join("stdin");
    mkfifo(&fifo);
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let out = Std::new("timeout")
        .arg("60")
        .arg(assert_cmd::cargo::cargo_bin("gen"))
        .args(["-m", m.to_str().unwrap(), "-p", "hi", "-n", "2", "-q"])
        .env_remove("GEN_MODEL")
        .stdin(Stdio::from(held.try_clone().unwrap()))
        .output()
        .unwrap();
    drop(held);
    assert_printed(&out);
}

/// Layer counts no file can hold (2^62, 2^40): an error at the first missing layer, with no
/// allocation sized by the count.
#[test]
fn absurd_layer_counts_fail_at_the_first_missing_layer() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, n) in [("l62.gguf", 1u64 << 62), ("l40.gguf", 1u64 << 40)] {
        let path = tiny_with(tmp.path(), name, |md| {
            set(md, "llama.block_count", gguf_file::Value::U64(n))
        });
        fails_with(
            &["-m", path.to_str().unwrap(), "-p", "x"],
            1,
            &["blk.2", name],
        );
    }
}

/// `--beams` and `--compare` sizes whose KV cache cannot fit in memory are refused before
/// anything is allocated, with the estimate and what to change (they used to abort, or be
/// killed, after exhausting memory).
#[test]
fn runs_too_big_for_memory_are_refused_up_front() {
    let m = crate::real::real_gguf();
    let m = m.to_str().unwrap();
    fails_with(
        &["-m", m, "-p", "hi", "--beams", "1000000", "-n", "64"],
        1,
        &["--beams 1000000", "GiB", "memory available"],
    );
    let many: Vec<String> = vec!["temperature=1".to_string(); 20_000];
    let mut args: Vec<&str> = vec!["-m", m, "-p", "hi", "--raw", "-n", "3000", "--compare"];
    args.extend(many.iter().map(String::as_str));
    fails_with(&args, 1, &["--compare", "GiB"]);
}

/// The same for a safetensors folder whose config.json claims 10^12 layers.
#[test]
fn an_absurd_layer_count_in_config_json_fails_at_the_first_missing_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_dir_with(&tmp.path().join("hf"), |cfg| {
        cfg["num_hidden_layers"] = serde_json::json!(1_000_000_000_000u64)
    });
    fails_with(
        &["-m", dir.to_str().unwrap(), "-p", "x"],
        1,
        &["model.layers.2"],
    );
}

/// A chat template whose output is huge though its instructions are few (100 MB strings in a
/// loop) stops at the render's output cap with an error naming the template.
#[test]
fn a_chat_template_that_renders_gigabytes_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_with(tmp.path(), "big.gguf", |md| {
        set(
            md,
            "tokenizer.chat_template",
            gguf_file::Value::String(
                "{% for i in range(100) %}{{ 'xxxxxxxxxx' * 10000000 }}{% endfor %}".into(),
            ),
        )
    });
    fails_with(
        &["-m", path.to_str().unwrap(), "-p", "x", "-n", "1"],
        1,
        &["chat template rendered more than"],
    );
}

/// Sizes in config.json whose products would wrap (head_dim 2^62 × 9 heads used to read as
/// 2^62), and a llama3 rope_scaling that divides by zero: errors naming the key.
#[test]
fn config_json_sizes_that_wrap_or_divide_by_zero_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("head_dim", serde_json::json!(1u64 << 62), "`head_dim`"),
        ("vocab_size", serde_json::json!(1u64 << 40), "`vocab_size`"),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 1.0, "original_max_position_embeddings": 64}),
            "rope_scaling",
        ),
    ];
    for (key, value, named) in cases {
        let dir = tiny_dir_with(&tmp.path().join(key), |cfg| cfg[key] = value.clone());
        fails_with(
            &["-m", dir.to_str().unwrap(), "-p", "x"],
            1,
            &[named, "config.json"],
        );
    }
}

/// `--each-line` in text mode with a malformed line: the failed line gets an empty answer, so
/// answer k is still the answer to line k (answers used to shift up one), and the status is 1.
#[test]
fn a_malformed_line_keeps_text_answers_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let opts = ["-n", "4", "--ignore-eos", "--temperature", "0", "-q"];
    let single = |p: &str| {
        let out = gen().args(["-m", m, "-p", p]).args(opts).output().unwrap();
        assert_printed(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    let out = gen()
        .args(["-m", m, "--each-line"])
        .args(opts)
        .write_stdin("one\n{\"prompt\": 3}\nthree\nfour\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2:") && !err.contains("panicked"),
        "{err}"
    );
    let expected = format!(
        "{}\n\n\n{}\n\n{}\n",
        single("one"),
        single("three"),
        single("four")
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

/// A GGUF whose `token_embd.weight` has no dimensions and no `llama.vocab_size`: an error naming
/// the tensor (the vocabulary size used to be read from its first dimension, which panicked).
#[test]
fn an_embedding_without_dimensions_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_with(tmp.path(), "good.gguf", |md| {
        md.retain(|(k, _)| k != "llama.vocab_size")
    });
    let mut bytes = std::fs::read(&good).unwrap();
    let name = b"token_embd.weight";
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name);
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .expect("the tensor info");
    let p = at + pat.len();
    let n_dims = u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) as usize;
    // n_dims = 0, and the dimensions dropped, so the rest of the info still lines up.
    bytes[p..p + 4].copy_from_slice(&0u32.to_le_bytes());
    bytes.drain(p + 4..p + 4 + 8 * n_dims);
    let path = tmp.path().join("nodims.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let out = gen()
        .args(["-m", path.to_str().unwrap(), "-p", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("token_embd"), "{err}");
}

/// A syntax error inside tokenizer.json's `decoder` section (found by the `tokenizer_json`
/// fuzz target): the tokenizers crate panics on it through an `expect`; gen reports the JSON
/// error with the file's name instead.
#[test]
fn a_broken_decoder_in_tokenizer_json_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let dir = tmp.path().join("hf");
    write_safetensors_dir(&dir, &spec, &random_weights(&spec));
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replacen("\"decoder\": {", "\"decoder\": {R ", 1);
    assert_ne!(
        broken, text,
        "the decoder section is where the test expects it"
    );
    std::fs::write(&path, &broken).unwrap();
    fails_with(
        &["-m", dir.to_str().unwrap(), "-p", "x"],
        1,
        &["tokenizer.json", "must be a Hugging Face tokenizer.json"],
    );
    fails_with(
        &["tokenize", "-m", dir.to_str().unwrap(), "x"],
        1,
        &["tokenizer.json"],
    );
}

/// A NaN among a GGUF's RoPE frequency factors (`rope_freqs.weight`, Llama 3.1 scaling): refused
/// at load, naming the tensor, instead of NaN angles in every forward pass.
#[test]
fn a_nan_rope_frequency_factor_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        llama3_scaling: true,
        ..TinySpec::gqa()
    };
    let path = tmp.path().join("llama3.gguf");
    write_gguf_with(
        &path,
        &spec,
        &random_weights(&spec),
        GgmlDType::Q8_0,
        |_| {},
    );
    let content = gguf_file::Content::read(&mut std::fs::File::open(&path).unwrap()).unwrap();
    let info = &content.tensor_infos["rope_freqs.weight"];
    let at = (content.tensor_data_offset + info.offset) as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at + 4..at + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    fails_with(
        &["-m", path.to_str().unwrap(), "-p", "x"],
        1,
        &["rope_freqs.weight", "NaN"],
    );
}
