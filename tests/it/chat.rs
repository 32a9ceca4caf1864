//! Chat templates against jinja2 as transformers' `apply_chat_template` runs it
//! (tests/oracle/chat_template.py → chat_template.json): the real model's template read from
//! its GGUF, and hand-written templates in the style of Llama 3, Zephyr, Mistral and Phi-3.

use gen::chat::{ChatTemplate, Message};
use gen::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;

fn golden() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/chat_template.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// Renders every case of `cases` and compares byte for byte; returns how many were checked.
fn check_cases(t: &ChatTemplate, cases: &Value, what: &str) -> usize {
    let cases = cases.as_array().unwrap();
    for case in cases {
        let got = t
            .render(
                &messages(&case["messages"]),
                case["add_generation_prompt"].as_bool().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{what} {}: {e:#}", case["name"]));
        assert_eq!(
            got,
            case["expected"].as_str().unwrap(),
            "{what} case {}",
            case["name"]
        );
    }
    cases.len()
}

#[test]
fn real_gguf_template_renders_like_transformers() {
    let golden = golden();
    let g = &golden["gguf"];
    let tok = Tokenizer::from_gguf_file(&crate::real::real_gguf()).unwrap();
    let source = tok
        .chat_template()
        .expect("the real GGUF has tokenizer.chat_template");
    assert_eq!(source, g["template"].as_str().unwrap());
    let bos = tok.bos_id().and_then(|id| tok.id_to_token(id));
    let eos = tok.eos_id().and_then(|id| tok.id_to_token(id));
    assert_eq!(bos, opt_str(&g["bos_token"]));
    assert_eq!(eos, opt_str(&g["eos_token"]));
    let t = ChatTemplate::new(source, bos, eos).unwrap();
    let n = check_cases(&t, &g["cases"], "SmolLM2");
    assert!(n >= 16, "only {n} golden cases");
    assert_eq!(t.end_of_turn_token(), Some("<|im_end|>"));
    assert_eq!(t.end_of_turn_token(), g["end_of_turn"].as_str());
}

#[test]
fn family_templates_render_like_transformers() {
    let golden = golden();
    let templates = golden["templates"].as_array().unwrap();
    let names: Vec<&str> = templates
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "llama3",
            "zephyr",
            "mistral",
            "pycompat",
            "trailing_newline"
        ]
    );
    for spec in templates {
        let name = spec["name"].as_str().unwrap();
        let t = ChatTemplate::new(
            spec["template"].as_str().unwrap(),
            opt_str(&spec["bos_token"]),
            opt_str(&spec["eos_token"]),
        )
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        check_cases(&t, &spec["cases"], name);
        for case in spec["errors"].as_array().unwrap() {
            let err = t
                .render(
                    &messages(&case["messages"]),
                    case["add_generation_prompt"].as_bool().unwrap(),
                )
                .expect_err(&format!("{name} {} should fail", case["name"]));
            assert_eq!(
                format!("{err:#}"),
                format!(
                    "the chat template rejected the conversation: {}",
                    case["error"].as_str().unwrap()
                ),
                "{name} {}",
                case["name"]
            );
        }
        assert_eq!(
            t.end_of_turn_token(),
            spec["end_of_turn"].as_str(),
            "{name} end of turn"
        );
    }
}

/// The binary wraps the prompt as a user message (after `--system`) exactly as transformers
/// renders it, sends it raw with `--raw`, and stops on the template's end of turn.
#[test]
fn cli_wraps_prompts_with_the_template() {
    use crate::cli::{fails_with, gen, json_of};
    let golden = golden();
    let cases = golden["gguf"]["cases"].as_array().unwrap().clone();
    let m = crate::real::real_gguf();
    let m = m.to_str().unwrap();
    let input_of = |args: &[&str]| -> String {
        let out = gen()
            .args(["-m", m, "-n", "1", "--greedy", "-v"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("gen: model input: "))
            .unwrap_or_else(|| panic!("no model input line: {err}"))
            .to_string();
        serde_json::from_str(&line).unwrap() // printed JSON-quoted
    };
    for case in &cases {
        if !case["add_generation_prompt"].as_bool().unwrap() {
            continue;
        }
        let msgs = case["messages"].as_array().unwrap();
        let (sys, user): (Vec<_>, Vec<_>) = msgs.iter().partition(|m| m["role"] == "system");
        if user.len() != 1 || sys.len() > 1 || case["name"].as_str().unwrap().contains("empty") {
            continue;
        }
        let prompt = user[0]["content"].as_str().unwrap();
        let mut args = vec!["-p", prompt];
        if let Some(s) = sys.first() {
            args.extend(["--system", s["content"].as_str().unwrap()]);
        }
        assert_eq!(
            input_of(&args),
            case["expected"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
    assert_eq!(input_of(&["-p", "Hello", "--raw"]), "Hello");
    fails_with(
        &["-m", m, "-p", "x", "--raw", "--system", "s"],
        2,
        &["--raw"],
    );
    // A short answer ends at <|im_end|>, which is not printed.
    let out = gen()
        .args([
            "-m",
            m,
            "-p",
            "What is 2+2?",
            "-n",
            "64",
            "--greedy",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let v = json_of(&out.stdout);
    assert_eq!(v["stop"]["reason"], "eos", "{v}");
    assert_eq!(v["stop"]["token"], 2);
    assert!(!v["text"].as_str().unwrap().contains("<|im_end|>"));
}
