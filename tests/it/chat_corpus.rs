//! 70 real chat templates (llama.cpp's `models/templates`) rendered by gen's renderer and
//! compared byte for byte with transformers' `render_jinja_template`
//! (tests/oracle/chat_templates_corpus.py → chat_templates_corpus.json), with a few
//! hand-written `gen-*` templates for tojson, strftime_now and Python methods. Every template in the
//! corpus either passes all its cases or is listed in [`NOT_SUPPORTED`] with the reason and how
//! its first failing case fails, which the test checks, so the list cannot go stale silently.

use gen::chat::{ChatTemplate, Clock, Message};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Templates gen does not render as transformers does: (name, why, a piece of the first
/// failing case's failure as [`check_template`] describes it). Mirrored in docs/TESTING.md.
const NOT_SUPPORTED: &[(&str, &str, &str)] = &[
    (
        "CohereForAI-c4ai-command-r-plus-tool_use",
        ITERATES_NONE,
        NONE_NOT_ITERABLE,
    ),
    (
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
        ITERATES_NONE,
        NONE_NOT_ITERABLE,
    ),
    (
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
        ITERATES_NONE,
        NONE_NOT_ITERABLE,
    ),
];

/// Why the tool-use variants differ.
const ITERATES_NONE: &str = "the tool-use variant loops over `tools` unconditionally; with no \
    tools (None) jinja2 raises TypeError, minijinja iterates None as empty, so gen renders a \
    prompt with an empty tool list where transformers fails";
const NONE_NOT_ITERABLE: &str =
    r#"where transformers fails with "TypeError: 'NoneType' object is not iterable""#;

/// How many templates the corpus holds (llama-cpp-python 0.3.36's vendored llama.cpp).
const CORPUS_SIZE: usize = 70;

fn golden() -> Value {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/chat_templates_corpus.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Renders every case of `spec`; returns (cases passed, cases, the first failure described).
fn check_template(
    spec: &Value,
    source: &str,
    conversations: &Value,
    clock: Clock,
) -> (usize, usize, Option<String>) {
    let cases = spec["cases"].as_array().unwrap();
    let t = match ChatTemplate::with_clock(
        source,
        opt_str(&spec["bos_token"]),
        opt_str(&spec["eos_token"]),
        clock,
    ) {
        Ok(t) => t,
        Err(e) => return (0, cases.len(), Some(format!("does not compile: {e:#}"))),
    };
    let mut plain: BTreeMap<&str, String> = BTreeMap::new();
    let (mut passed, mut first_failure) = (0, None);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let conv = case["conversation"].as_str().unwrap();
        let messages: Vec<Message> = conversations[conv]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let got = t.render(&messages, case["add_generation_prompt"].as_bool().unwrap());
        let expected = match (case.get("expected"), case.get("suffix")) {
            (Some(e), _) => Some(e.as_str().unwrap().to_string()),
            (None, Some(s)) => Some(format!("{}{}", plain[conv], s.as_str().unwrap())),
            (None, None) => None,
        };
        if let (Some(e), false) = (&expected, case["add_generation_prompt"].as_bool().unwrap()) {
            plain.insert(conv, e.clone());
        }
        let failure = match (expected, got) {
            (Some(want), Ok(got)) if got == want => None,
            (Some(want), Ok(got)) => Some(format!("{name}: differs: want {want:?}, got {got:?}")),
            (Some(_), Err(e)) => Some(format!("{name}: fails: {e:#}")),
            (None, Ok(got)) => Some(format!(
                "{name}: renders {got:?} where transformers fails with {}",
                case["error"]
            )),
            (None, Err(e)) => {
                let err = case["error"].as_str().unwrap();
                let ours = format!("{e:#}");
                match err.strip_prefix("TemplateError: ") {
                    Some(msg) if case["raised"] == true => {
                        let want = format!("the chat template rejected the conversation: {msg}");
                        (ours != want)
                            .then(|| format!("{name}: fails with {ours:?}, want {want:?}"))
                    }
                    _ => None,
                }
            }
        };
        match failure {
            None => passed += 1,
            Some(f) => {
                first_failure.get_or_insert(f);
            }
        }
    }
    (passed, cases.len(), first_failure)
}

#[test]
fn real_templates_render_like_transformers() {
    let golden = golden();
    // The oracle's strftime_now time, as seconds to a naive date-time read as UTC.
    let clock = Clock::Fixed(golden["fixed_now"]["seconds"].as_i64().unwrap());
    let conversations = &golden["conversations"];
    let templates = golden["templates"].as_array().unwrap();
    let corpus = templates
        .iter()
        .filter(|t| !t["name"].as_str().unwrap().starts_with("gen-"))
        .count();
    assert_eq!(corpus, CORPUS_SIZE);
    assert!(
        templates.len() > corpus,
        "the hand-written gen-* templates are missing"
    );
    let mut sources: BTreeMap<&str, &str> = BTreeMap::new();
    let mut table = String::new();
    let mut unexpected = Vec::new();
    let (mut all_passed, mut all_cases) = (0, 0);
    for spec in templates {
        let name = spec["name"].as_str().unwrap();
        let source = match spec.get("template") {
            Some(s) => s.as_str().unwrap(),
            None => sources[spec["same_as"].as_str().unwrap()],
        };
        sources.insert(name, source);
        let (passed, total, failure) = check_template(spec, source, conversations, clock);
        assert!(total >= 8, "{name}: only {total} cases");
        all_passed += passed;
        all_cases += total;
        table.push_str(&format!("{name:<50} {passed}/{total}\n"));
        let known = NOT_SUPPORTED.iter().find(|(n, _, _)| *n == name);
        match (known, &failure) {
            (None, None) => {}
            (None, Some(f)) => unexpected.push(format!("{name} fails: {f}")),
            (Some(_), None) => unexpected.push(format!(
                "{name} now passes: remove it from NOT_SUPPORTED and docs/TESTING.md"
            )),
            (Some((_, _, how)), Some(f)) if f.contains(how) => {}
            (Some((_, _, how)), Some(f)) => unexpected.push(format!(
                "{name} fails differently: {f} (listed as failing with {how:?})"
            )),
        }
    }
    for (n, why, _) in NOT_SUPPORTED {
        assert!(
            sources.contains_key(n),
            "NOT_SUPPORTED names {n}, not in the corpus"
        );
        println!("not supported: {n}: {why}");
    }
    println!("{table}total: {all_passed}/{all_cases} cases");
    assert!(unexpected.is_empty(), "{table}\n{}", unexpected.join("\n"));
}
