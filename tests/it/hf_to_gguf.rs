//! `gen convert FOLDER OUT.gguf` and `gen quantize FOLDER OUT TYPE` against llama.cpp's
//! convert_hf_to_gguf.py (and llama_model_quantize after it): every file has the sha256 that
//! tests/oracle/hf_to_gguf.json (made by hf_to_gguf.py) records for the same folder. The
//! folders are made here as the script made them, by `gen convert IN.gguf FOLDER`, and
//! checked file by file against the script's record first; a converted file loads and
//! generates in gen; bad folders get one-line errors and leave no file behind.

use crate::cli::{fails_with, gen_ok};
use crate::quantize::{sha256_file, write_oracle_tiny};
use crate::real::real_gguf;
use gen::quant::gguf::{self, Kv};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

fn oracle() -> Json {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/hf_to_gguf.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn run_ok(args: &[&str]) {
    gen_ok(args);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Makes `record`'s folder from `gguf` under `dir` and checks it holds the script's files.
fn folder_of(gguf: &Path, record: &Json, dir: &Path) -> PathBuf {
    let folder = dir.join(record["folder"].as_str().unwrap());
    let mut args = vec!["convert", s(gguf), s(&folder)];
    let dtype = record["dtype"].as_str().unwrap();
    if dtype != "f32" {
        args.extend(["--dtype", dtype]);
    }
    run_ok(&args);
    for (name, f) in record["files"].as_object().unwrap() {
        assert_eq!(
            sha256_file(&folder.join(name)),
            f["sha256"].as_str().unwrap(),
            "{name} of {} is not the file hf_to_gguf.py converted",
            folder.display()
        );
    }
    folder
}

/// Converts `folder` to every out type and quantizes it to every type of `record`; returns
/// the mismatches.
fn check_all(folder: &Path, record: &Json, dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for (outtype, want) in record["convert"].as_object().unwrap() {
        let out = dir.join(format!("convert-{outtype}.gguf"));
        run_ok(&["convert", s(folder), s(&out), "--dtype", outtype]);
        let got = sha256_file(&out);
        if got != want["sha256"].as_str().unwrap() {
            failures.push(format!(
                "convert --dtype {outtype}: sha256 {got}, llama.cpp {}",
                want["sha256"]
            ));
        }
        std::fs::remove_file(&out).unwrap();
    }
    for (ty, want) in record["quantize"].as_object().into_iter().flatten() {
        let out = dir.join(format!("quantize-{ty}.gguf"));
        run_ok(&["quantize", s(folder), s(&out), ty]);
        let got = sha256_file(&out);
        if got != want["sha256"].as_str().unwrap() {
            failures.push(format!(
                "quantize {ty}: sha256 {got}, llama.cpp {}",
                want["sha256"]
            ));
        }
        std::fs::remove_file(&out).unwrap();
    }
    failures
}

#[test]
fn real_model_folders_convert_as_llama_cpp() {
    let oracle = oracle();
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for key in ["real", "real_bf16"] {
        let record = &oracle["inputs"][key];
        assert_eq!(
            sha256_file(&real_gguf()),
            record["gguf_sha256"].as_str().unwrap()
        );
        let dir = tmp.path().join(key);
        let folder = folder_of(&real_gguf(), record, &dir);
        failures.extend(
            check_all(&folder, record, &dir)
                .into_iter()
                .map(|f| format!("{key}: {f}")),
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tiny model of llamacpp_quantize.py with the real vocabulary (rows of 256 and 512, an
/// untied output: every K-quant used as itself), as hf_to_gguf.py's `write_tiny_vocab`
/// writes it.
#[test]
fn tiny_model_folder_converts_as_llama_cpp() {
    let oracle = oracle();
    let record = &oracle["inputs"]["tiny_vocab"];
    let tmp = tempfile::tempdir().unwrap();
    let real = std::fs::read(real_gguf()).unwrap();
    let tokenizer: Vec<Kv> = gguf::Gguf::parse(&real)
        .unwrap()
        .kvs
        .into_iter()
        .filter(|kv| kv.key.starts_with("tokenizer."))
        .collect();
    let input = tmp.path().join("tiny-vocab-f32.gguf");
    write_oracle_tiny(&input, &record["spec"], &tokenizer);
    assert_eq!(
        sha256_file(&input),
        record["gguf_sha256"].as_str().unwrap(),
        "the tiny model is not the file hf_to_gguf.py made"
    );
    let folder = folder_of(&input, record, tmp.path());
    let failures = check_all(&folder, record, tmp.path());
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What was converted runs: greedy tokens from the f32 and the Q4_K_M files agree with
    // those of the GGUF the folder came from (f32 all the way, the same arithmetic).
    let gen_text = |m: &Path| -> String {
        gen_ok(&[
            "-m",
            s(m),
            "--raw",
            "--greedy",
            "-n",
            "8",
            "-q",
            "--ignore-eos",
            "-p",
            "The cat",
        ])
    };
    let f32_file = tmp.path().join("back.gguf");
    run_ok(&["convert", s(&folder), s(&f32_file), "--dtype", "f32"]);
    assert_eq!(gen_text(&f32_file), gen_text(&input));
}

#[test]
fn bad_folders_get_one_line_errors_and_leave_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tiny = crate::cli::tiny_gguf(dir);
    let folder = dir.join("tiny-folder");
    std::fs::create_dir(&folder).unwrap();
    let out = dir.join("out.gguf");
    let config = |extra: &str| {
        let text = format!(
            r#"{{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4{extra}}}"#
        );
        std::fs::write(folder.join("config.json"), text).unwrap();
    };
    fails_with(&["convert", s(&folder), s(&out)], 1, &["config.json"]);
    std::fs::write(
        folder.join("config.json"),
        r#"{"architectures": ["Qwen2ForCausalLM"]}"#,
    )
    .unwrap();
    fails_with(
        &["convert", s(&folder), s(&out)],
        1,
        &["Qwen2ForCausalLM", "Llama"],
    );
    config(r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}"#);
    fails_with(&["convert", s(&folder), s(&out)], 1, &["llama3"]);
    config("");
    fails_with(&["convert", s(&folder), s(&out)], 1, &["safetensors"]);
    std::fs::write(folder.join("model.safetensors"), b"not a safetensors file").unwrap();
    fails_with(&["convert", s(&folder), s(&out)], 1, &["model.safetensors"]);
    fails_with(
        &["quantize", s(&folder), s(&out), "Q4_K_M"],
        1,
        &["model.safetensors"],
    );
    let save = |names: &[&str]| {
        let t =
            candle_core::Tensor::zeros((8, 64), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        let map: std::collections::HashMap<String, candle_core::Tensor> =
            names.iter().map(|n| (n.to_string(), t.clone())).collect();
        candle_core::safetensors::save(&map, folder.join("model.safetensors")).unwrap();
    };
    save(&[
        "model.embed_tokens.weight",
        "model.vision_tower.proj.weight",
    ]);
    fails_with(
        &["convert", s(&folder), s(&out)],
        1,
        &["model.vision_tower.proj.weight"],
    );
    save(&["model.embed_tokens.weight"]);
    fails_with(&["convert", s(&folder), s(&out)], 1, &["tokenizer.json"]);
    std::fs::write(folder.join("tokenizer.model"), b"sentencepiece").unwrap();
    fails_with(
        &["convert", s(&folder), s(&out)],
        1,
        &["SentencePiece", "tokenizer.model"],
    );
    // Flags that only one direction takes.
    fails_with(
        &["convert", s(&tiny), s(&dir.join("f")), "--dtype", "q8_0"],
        2,
        &["q8_0"],
    );
    fails_with(&["convert", s(&folder), s(dir)], 2, &["folder"]);
    std::fs::write(&out, b"keep").unwrap();
    fails_with(&["convert", s(&folder), s(&out)], 2, &["--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    std::fs::remove_file(&out).unwrap();
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n == "out.gguf")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
