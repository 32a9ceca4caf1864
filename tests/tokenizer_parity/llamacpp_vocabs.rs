//! llama.cpp's own tokenizer test suite (tests/test-tokenizer-0): for every vocabulary-only GGUF
//! in models/vocab/ (fetched by models/fetch_vocabs.sh) with `.inp`/`.out` cases, gen's
//! tokenizer built from the GGUF must give the expected ids for every case, encoding as
//! test-tokenizer-0 does (no BOS/EOS, special-token texts read as text). A vocabulary whose
//! tokenizer model gen does not implement must fail to build with an error naming that model.

use gen::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

/// Vocabularies gen implements: every case must pass.
const SUPPORTED: &[&str] = &[
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// Vocabularies gen does not implement, with the `tokenizer.ggml.model` the error must name.
const UNSUPPORTED: &[(&str, &str)] = &[("bert-bge", "bert"), ("gemma-4", "gemma4")];

fn vocab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vocab")
}

/// The cases of one vocabulary, read as test-tokenizer-0 reads them: inputs separated by
/// `\n__ggml_vocab_test__\n`, one line of space-separated ids per input.
fn cases(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let read = |ext: &str| {
        let p = PathBuf::from(format!("{}.{ext}", gguf.display()));
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run models/fetch.sh", p.display()))
    };
    let (inp, out) = (read("inp"), read("out"));
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(sep) {
            Some(at) => {
                inputs.push(rest[..at].to_string());
                rest = &rest[at + sep.len()..];
            }
            None => {
                inputs.push(rest.to_string());
                rest = "";
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: inputs and outputs differ in number",
        gguf.display()
    );
    assert!(!inputs.is_empty(), "{}: no cases", gguf.display());
    inputs.into_iter().zip(outputs).collect()
}

/// One vocabulary's result: passed/total, and the first mismatches.
struct Outcome {
    name: String,
    passed: usize,
    total: usize,
    failures: Vec<String>,
    /// The build error, for a vocabulary gen does not implement.
    refused: Option<String>,
}

fn run_vocab(name: &str, gguf: &Path) -> Outcome {
    let cases = cases(gguf);
    let total = cases.len();
    let tok = match Tokenizer::from_gguf_file(gguf) {
        Ok(t) => t,
        Err(e) => {
            return Outcome {
                name: name.into(),
                passed: 0,
                total,
                failures: Vec::new(),
                refused: Some(format!("{e:#}")),
            }
        }
    };
    let mut passed = 0;
    let mut failures = Vec::new();
    for (text, want) in &cases {
        match tok.encode_plain(text) {
            Ok(got) if &got == want => passed += 1,
            Ok(got) => failures.push(format!("{text:?}: got {got:?}, llama.cpp {want:?}")),
            Err(e) => failures.push(format!("{text:?}: error {e:#}")),
        }
    }
    Outcome {
        name: name.into(),
        passed,
        total,
        failures,
        refused: None,
    }
}

#[test]
fn llamacpp_vocab_suite() {
    let dir = vocab_dir();
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run models/fetch.sh to fetch llama.cpp's test vocabularies",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .filter(|p| PathBuf::from(format!("{}.inp", p.display())).is_file())
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy();
            (stem.trim_start_matches("ggml-vocab-").to_string(), p)
        })
        .collect();
    found.sort();
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for want in SUPPORTED.iter().chain(UNSUPPORTED.iter().map(|(n, _)| n)) {
        assert!(
            names.contains(want),
            "models/vocab/ggml-vocab-{want}.gguf (with .inp/.out) is missing; run models/fetch.sh"
        );
    }

    let outcomes: Vec<Outcome> = found.iter().map(|(n, p)| run_vocab(n, p)).collect();
    println!("{:<16} {:>14}", "vocab", "passed/total");
    for o in &outcomes {
        let note = o
            .refused
            .as_deref()
            .map(|e| format!("  (not supported: {e})"))
            .unwrap_or_default();
        println!("{:<16} {:>9}/{:<4}{note}", o.name, o.passed, o.total);
    }
    let mut problems = Vec::new();
    for o in &outcomes {
        if let Some((_, model)) = UNSUPPORTED.iter().find(|(n, _)| *n == o.name) {
            match &o.refused {
                Some(e)
                    if e.contains(&format!("\"{model}\""))
                        && e.contains("tokenizer.ggml.model") => {}
                Some(e) => problems.push(format!(
                    "{}: the error does not name the tokenizer model \"{model}\": {e}",
                    o.name
                )),
                None => problems.push(format!(
                    "{}: expected to be refused (tokenizer model \"{model}\"), but it built",
                    o.name
                )),
            }
            continue;
        }
        // Anything not listed as unsupported must pass, new files included.
        if let Some(e) = &o.refused {
            problems.push(format!("{}: failed to build: {e}", o.name));
        }
        for f in o.failures.iter().take(5) {
            problems.push(format!("{}: {f}", o.name));
        }
        if o.passed != o.total && o.refused.is_none() {
            problems.push(format!("{}: {}/{} cases passed", o.name, o.passed, o.total));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The SentencePiece vocabulary of the suite (Llama 2's).
fn llama_spm() -> Tokenizer {
    let p = vocab_dir().join("ggml-vocab-llama-spm.gguf");
    assert!(
        p.is_file(),
        "{} is missing; run models/fetch.sh",
        p.display()
    );
    Tokenizer::from_gguf_file(&p).unwrap()
}

#[test]
fn sentencepiece_adds_bos_parses_specials_and_decodes_back() {
    let t = llama_spm();
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.add_bos(), t.add_eos()),
        (Some(1), Some(2), true, false)
    );
    assert_eq!(t.summary(), "SentencePiece (llama), 32000 tokens, add_bos");
    assert_eq!(t.eog_ids(), &[2]);
    let ids = t.encode("Hello world</s>  x").unwrap();
    assert_eq!(ids[0], 1);
    assert!(ids.contains(&2), "{ids:?}");
    // As text, `</s>` is characters, not the EOS id.
    assert!(!t.encode_plain("Hello</s>").unwrap().contains(&2));
    for text in [
        "Hello world",
        "  two spaces",
        "emoji 🦙 and ünïcödé\n\ttabs",
        "",
    ] {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode_text(&ids, false).unwrap(), text);
        assert_eq!(t.decode(&ids).unwrap(), format!("<s>{text}"));
    }
    // A continuation (no BOS in front) keeps its leading space, as llama.cpp prints it.
    let ids = t.encode_plain("Hello world").unwrap();
    assert_eq!(t.decode(&ids).unwrap(), " Hello world");
    assert!(t
        .to_json_string()
        .unwrap_err()
        .to_string()
        .contains("SentencePiece"));
}

#[test]
fn sentencepiece_streams_multibyte_characters_whole() {
    let t = llama_spm();
    // 🦙 is not in the vocabulary: four byte tokens, which must come out as one chunk.
    let ids = t.encode_plain(" 🦙 llama").unwrap();
    let mut stream = t.stream();
    let mut chunks = Vec::new();
    for &id in &ids {
        if let Some(c) = stream.next(id).unwrap() {
            chunks.push(c);
        }
    }
    chunks.push(stream.finish().unwrap());
    assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
    assert_eq!(chunks.concat(), t.decode(&ids).unwrap());
    assert!(chunks.iter().any(|c| c.contains('🦙')));
}
