//! `--print-prompt` (the exact model input on stdout, nothing generated) and
//! `--chat-template-file` (another template than the model's), against transformers'
//! renderings: the real model's template (chat_template.json) and a corpus template
//! (chat_templates_corpus.json).

use crate::cli::{fails_with, gen, json_of};
use serde_json::Value;
use std::path::PathBuf;

fn golden(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Runs gen with `args` on the real model; returns stdout, checking it exited 0 and printed
/// no stats line (nothing was generated).
fn printed(args: &[&str], stdin: &str) -> String {
    let m = crate::real::real_gguf();
    let out = gen()
        .args(["-m", m.to_str().unwrap(), "--print-prompt"])
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    assert!(!err.contains("tok/s"), "{args:?} generated: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// The golden case `name` of the real model's template.
fn gguf_case(name: &str) -> String {
    let g = golden("chat_template.json");
    let case = g["gguf"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .clone();
    case["expected"].as_str().unwrap().to_string()
}

#[test]
fn print_prompt_prints_the_rendered_template_exactly() {
    let user = gguf_case("user+gen");
    assert_eq!(printed(&["-p", "What is 2+2?"], ""), user);
    // stdin and a file are the same prompt.
    assert_eq!(printed(&[], "What is 2+2?\n"), user);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("p.txt");
    std::fs::write(&f, "What is 2+2?").unwrap();
    assert_eq!(printed(&["-f", f.to_str().unwrap()], ""), user);
    assert_eq!(
        printed(
            &[
                "-p",
                "Name a colour.",
                "--system",
                "You are a terse assistant."
            ],
            ""
        ),
        gguf_case("system_user+gen")
    );
    // Plain text is printed as it is fed: no template, no newline added.
    assert_eq!(printed(&["-p", "Once upon", "--raw"], ""), "Once upon");
}

#[test]
fn print_prompt_json_has_the_token_ids_and_each_line_works() {
    let v = json_of(printed(&["-p", "What is 2+2?", "--format", "json"], "").as_bytes());
    assert_eq!(v["model_input"], gguf_case("user+gen"));
    let ids: Vec<u64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    // SmolLM2's ChatML starts with <|im_start|> (id 1) written by the template.
    assert_eq!(ids.first(), Some(&1), "{v}");
    assert!(ids.len() > 10, "{v}");
    let out = printed(&["--each-line", "--format", "jsonl"], "What is 2+2?\n{\"prompt\": \"Name a colour.\", \"system\": \"You are a terse assistant.\"}\n");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["model_input"], gguf_case("user+gen"));
    assert_eq!(lines[1]["model_input"], gguf_case("system_user+gen"));
    assert_eq!(lines[1]["line"], 2);
    // Text mode: one input after another, each ended and separated as answers are (a
    // newline, then an empty line between two).
    let text = printed(&["--each-line", "--raw"], "a\nb\n");
    assert_eq!(text, "a\n\nb\n");
}

/// A corpus template that uses neither bos_token nor eos_token, so that the real model's
/// tokens do not change its rendering: Qwen2.5's.
#[test]
fn chat_template_file_renders_like_transformers() {
    let g = golden("chat_templates_corpus.json");
    let spec = g["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Qwen-Qwen2.5-7B-Instruct")
        .unwrap()
        .clone();
    let source = spec["template"].as_str().unwrap();
    assert!(!source.contains("bos_token") && !source.contains("eos_token"));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("qwen.jinja");
    std::fs::write(&file, source).unwrap();
    let file = file.to_str().unwrap();
    let case = |name: &str| {
        spec["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let base = case("system_user")["expected"]
        .as_str()
        .unwrap()
        .to_string();
    let with_gen = match case("system_user+gen").get("suffix") {
        Some(s) => format!("{base}{}", s.as_str().unwrap()),
        None => case("system_user+gen")["expected"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    let got = printed(
        &[
            "--chat-template-file",
            file,
            "--system",
            "You are a terse assistant.",
            "-p",
            "Name a colour.",
        ],
        "",
    );
    assert_eq!(got, with_gen);
    assert!(got.contains("<|im_start|>assistant\n"));
    // The model's own template is not used: SmolLM2's default system prompt is absent.
    let user = printed(&["--chat-template-file", file, "-p", "What is 2+2?"], "");
    assert!(!user.contains("SmolLM"), "{user}");
    assert!(user.contains("You are Qwen"), "{user}");
}

#[test]
fn bad_chat_template_files_are_usage_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let path = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let missing = tmp.path().join("missing.jinja");
    let missing = missing.to_str().unwrap();
    let binary = path("binary.jinja", b"\xff\xfe{{ x }}");
    let broken = path("broken.jinja", b"{% for m in messages %}{{ m.content }}");
    let empty = path("empty.jinja", b"\n");
    let dir = tmp.path().to_str().unwrap();
    for (file, what) in [
        (missing, "No such file"),
        (binary.as_str(), "not valid UTF-8"),
        (broken.as_str(), "does not compile"),
        (empty.as_str(), "is empty"),
        (dir, "Is a directory"),
    ] {
        fails_with(
            &["-m", m, "-p", "x", "--chat-template-file", file],
            2,
            &["--chat-template-file", file, what],
        );
    }
    fails_with(
        &["chat", "-m", m, "--chat-template-file", missing],
        2,
        &["--chat-template-file", missing],
    );
    fails_with(
        &["-m", m, "-p", "x", "--raw", "--chat-template-file", &broken],
        2,
        &["--raw"],
    );
}
