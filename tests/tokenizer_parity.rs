//! Tokenizer tests: exact parity with llama.cpp's tokenizer (golden ids recorded by the
//! scripts in tests/oracle/), UTF-8-safe streaming decode, the tokenizer.json round trip, the
//! errors for unsupported GGUF tokenizers, and a decode(encode(s)) == s property test.
//!
//! The real model file must be present (run `models/fetch.sh`); without it these tests fail.

#[path = "tokenizer_parity/llamacpp_vocabs.rs"]
mod llamacpp_vocabs;

use candle_core::quantized::gguf_file::{self, Content, Value};
use gen::tokenizer::{supported_pre_tokenizers, TokenStream, Tokenizer};
use proptest::prelude::*;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn model_path() -> PathBuf {
    root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The real model's GGUF header. Panics (never skips) when the file is missing.
fn read_content() -> Content {
    let path = model_path();
    assert!(
        path.is_file(),
        "{} is missing: run models/fetch.sh to download it (the tokenizer parity tests need the real model)",
        path.display()
    );
    let mut f = std::fs::File::open(&path).unwrap();
    Content::read(&mut f).unwrap()
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_gguf(&read_content()).unwrap())
}

fn oracle(name: &str) -> Json {
    let path = root().join("tests/oracle").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate it with the script beside it)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn ids_of(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// (text, llama.cpp ids) for every case and greedy prompt of llamacpp_tokenize.json.
fn golden_cases() -> Vec<(String, Vec<u32>)> {
    let g = oracle("llamacpp_tokenize.json");
    let mut out: Vec<(String, Vec<u32>)> = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["text"].as_str().unwrap().to_string(), ids_of(&c["ids"])))
        .collect();
    for p in g["greedy_prompts"].as_array().unwrap() {
        out.push((p["text"].as_str().unwrap().to_string(), ids_of(&p["ids"])));
    }
    out
}

/// Every control/special token text of the real vocabulary.
fn special_texts() -> Vec<String> {
    let t = tokenizer();
    (0..17).map(|id| t.id_to_token(id).unwrap()).collect()
}

#[test]
fn llamacpp_parity_on_golden_strings() {
    let t = tokenizer();
    let g = oracle("llamacpp_tokenize.json");
    let cases = g["cases"].as_array().unwrap();
    assert!(
        cases.len() >= 45,
        "the oracle file should hold at least 45 cases, it has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (text, want) in golden_cases() {
        let got = t.encode(&text).unwrap();
        if got != want {
            failures.push(format!(
                "{text:?}\n  llama.cpp: {want:?}\n  gen:       {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the golden strings tokenize differently:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_reproduces_the_golden_strings() {
    let t = tokenizer();
    let g = oracle("llamacpp_tokenize.json");
    for c in g["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let ids = ids_of(&c["ids"]);
        let decoded = t.decode(&ids).unwrap();
        assert_eq!(decoded, text, "decode(ids) of {text:?}");
        // llama.cpp's detokenize with special=true renders control tokens as text, as we do.
        assert_eq!(
            decoded,
            c["detok_special"].as_str().unwrap(),
            "llama.cpp detokenized {text:?} differently"
        );
        let has_special = special_texts().iter().any(|s| text.contains(s.as_str()));
        if !has_special {
            assert_eq!(
                decoded,
                c["detok"].as_str().unwrap(),
                "llama.cpp detokenized {text:?} differently"
            );
        }
    }
}

#[test]
fn special_tokens_and_bos_match_llamacpp() {
    let t = tokenizer();
    let s = &oracle("llamacpp_tokenize.json")["special"];
    assert_eq!(t.bos_id(), Some(s["bos"].as_u64().unwrap() as u32));
    assert_eq!(t.eos_id(), Some(s["eos"].as_u64().unwrap() as u32));
    assert_eq!(t.add_bos(), s["add_bos"].as_bool().unwrap());
    assert_eq!(t.vocab_size(), s["n_vocab"].as_u64().unwrap() as usize);
    assert!(!t.add_eos());
    for key in ["im_start", "im_end", "endoftext"] {
        let id = s[key].as_u64().unwrap() as u32;
        let text = t.id_to_token(id).unwrap();
        assert_eq!(t.token_to_id(&text), Some(id));
        assert_eq!(
            t.encode(&text).unwrap(),
            vec![id],
            "{text} should encode to its single id"
        );
    }
    // <|im_end|> (EOS) and <|endoftext|> both end generation.
    assert_eq!(t.eog_ids(), &[2, 0]);
    assert!(t.chat_template().unwrap().contains("<|im_start|>"));
    assert_eq!(t.id_to_token(u32::MAX), None);
    assert!(t
        .decode(&[49152])
        .unwrap_err()
        .to_string()
        .contains("49152"));
}

/// llama.cpp's ids for the same strings with `tokenizer.ggml.pre` swapped for other supported
/// pre-tokenizers (tests/oracle/llamacpp_pretok_variants.py).
#[test]
fn llamacpp_parity_for_other_pre_tokenizers() {
    let g = oracle("llamacpp_pretok_variants.json");
    let mut content = read_content();
    let original = content.metadata.clone();
    let mut failures = Vec::new();
    let mut checked = 0;
    for v in g["variants"].as_array().unwrap() {
        content.metadata = original.clone();
        if let Some(pre) = v["pre"].as_str() {
            content
                .metadata
                .insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        }
        for k in v["drop_keys"].as_array().unwrap() {
            content.metadata.remove(k.as_str().unwrap());
        }
        let name = v["name"].as_str().unwrap();
        let t = Tokenizer::from_gguf(&content).unwrap_or_else(|e| panic!("variant {name}: {e:#}"));
        assert_eq!(
            t.add_bos(),
            v["add_bos"].as_bool().unwrap(),
            "variant {name}: add_bos"
        );
        for c in v["cases"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            let want = ids_of(&c["ids"]);
            let got = t.encode(text).unwrap();
            checked += 1;
            if got != want {
                failures.push(format!(
                    "[{name}] {text:?}\n  llama.cpp: {want:?}\n  gen:       {got:?}"
                ));
            }
        }
    }
    assert!(checked > 400, "only {checked} cases checked");
    assert!(
        failures.is_empty(),
        "{} cases differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const STREAM_TEXTS: &[&str] = &[
    "👋🏽 hi 🚀",
    "👨‍👩‍👧‍👦 family",
    "你好，世界",
    "日本語のテキスト",
    "안녕하세요",
    "mixed 😀 text 🇫🇷 and Ærøskøbing ∑ ≤ 10",
    "<|im_start|>user\n🙂🙃<|im_end|>\n",
    "🦀🦀🦀 crabs",
];

/// Pushes `ids` through a stream; returns the chunks and how many pushes returned nothing.
fn stream_chunks(t: &Tokenizer, ids: &[u32]) -> (Vec<String>, usize, String) {
    let mut stream = TokenStream::new(t);
    let mut chunks = Vec::new();
    let mut held = 0;
    for &id in ids {
        match stream.next(id).unwrap() {
            Some(c) => chunks.push(c),
            None => held += 1,
        }
    }
    (chunks, held, stream.finish().unwrap())
}

#[test]
fn streaming_decode_concatenates_to_decode() {
    let t = tokenizer();
    let mut total_held = 0;
    for text in STREAM_TEXTS {
        let ids = t.encode(text).unwrap();
        let (chunks, held, rest) = stream_chunks(t, &ids);
        total_held += held;
        for c in &chunks {
            assert!(
                !c.contains('\u{FFFD}'),
                "chunk {c:?} of {text:?} holds a replacement character"
            );
            assert!(!c.is_empty());
        }
        assert_eq!(rest, "", "{text:?}: nothing should be left at the end");
        let joined: String = chunks.concat();
        assert_eq!(joined, t.decode(&ids).unwrap(), "{text:?}");
        assert_eq!(joined, *text);
    }
    // The emoji and CJK texts must really have split characters across tokens.
    assert!(
        total_held > 10,
        "only {total_held} tokens were held back; the test no longer exercises split characters"
    );
}

#[test]
fn streaming_flushes_an_incomplete_character_at_finish() {
    let t = tokenizer();
    let ids = t.encode("ok 🚀").unwrap();
    let partial = &ids[..ids.len() - 1];
    let (chunks, held, rest) = stream_chunks(t, partial);
    assert!(held >= 1);
    assert_eq!(chunks.concat(), "ok");
    assert_eq!(
        format!("{}{rest}", chunks.concat()),
        t.decode(partial).unwrap()
    );
    assert!(rest.ends_with('\u{FFFD}'));
    // tokenizer.stream() is the same thing.
    let mut s = t.stream();
    assert_eq!(s.next(ids[0]).unwrap().as_deref(), Some("ok"));
    assert_eq!(s.finish().unwrap(), "");
}

/// `finish_complete` leaves out the bytes of a character the last ids began but did not
/// finish (generation cut by --max-tokens), and says how many ids that was; complete text
/// still held by the stream comes out.
#[test]
fn streaming_finish_complete_drops_an_unfinished_character() {
    let t = tokenizer();
    let ids = t.encode("ok 🚀").unwrap();
    let partial = &ids[..ids.len() - 1];
    let mut s = t.stream();
    let mut text = String::new();
    for &id in partial {
        text.extend(s.next(id).unwrap());
    }
    let (rest, cut) = s.finish_complete().unwrap();
    assert_eq!(format!("{text}{rest}"), "ok");
    assert!(cut >= 1 && cut < partial.len(), "{cut}");
    // Nothing unfinished: nothing cut.
    let mut s = t.stream();
    for &id in &ids {
        s.next(id).unwrap();
    }
    assert_eq!(s.finish_complete().unwrap(), (String::new(), 0));
}

/// Control tokens are left out of a stream that hides them, and `decode_text` agrees.
#[test]
fn control_tokens_can_be_left_out_of_the_text() {
    let t = tokenizer();
    let ids = t.encode("<|im_start|>user\nhi<|im_end|>\n").unwrap();
    assert!(ids.iter().any(|&i| t.is_control(i)));
    let mut s = t.stream().show_control(false);
    let mut text = String::new();
    for &id in &ids {
        text.extend(s.next(id).unwrap());
    }
    text.push_str(&s.finish().unwrap());
    assert_eq!(text, "user\nhi\n");
    assert_eq!(t.decode_text(&ids, false).unwrap(), text);
    assert_eq!(t.decode_text(&ids, true).unwrap(), t.decode(&ids).unwrap());
}

#[test]
fn tokenizer_json_round_trip() {
    let t = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, t.to_json_string().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        t.to_config_json_string().unwrap(),
    )
    .unwrap();

    let loaded = Tokenizer::from_json_file(&json_path).unwrap();
    // Hugging Face `tokenizers` itself must load the file to the same behaviour.
    let hf = tokenizers::Tokenizer::from_file(&json_path).unwrap();
    for (text, want) in golden_cases() {
        assert_eq!(
            loaded.encode(&text).unwrap(),
            want,
            "from_json_file: {text:?}"
        );
        assert_eq!(
            hf.encode(text.as_str(), true).unwrap().get_ids(),
            want.as_slice(),
            "HF tokenizers: {text:?}"
        );
        assert_eq!(loaded.decode(&want).unwrap(), text);
    }
    assert_eq!(loaded.bos_id(), t.bos_id());
    assert_eq!(loaded.eos_id(), t.eos_id());
    assert_eq!(loaded.add_bos(), t.add_bos());
    assert_eq!(loaded.vocab_size(), t.vocab_size());
    assert_eq!(loaded.eog_ids(), t.eog_ids());
    assert_eq!(loaded.chat_template(), t.chat_template());

    // Without the config beside it, the ids are still the same (BOS/EOS ids are then unknown).
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    let bare = Tokenizer::from_json_file(&json_path).unwrap();
    assert_eq!(
        bare.encode("<|im_start|>user\n12 apples").unwrap(),
        t.encode("<|im_start|>user\n12 apples").unwrap()
    );
}

#[test]
fn bos_is_added_when_the_gguf_asks_and_survives_the_round_trip() {
    let mut content = read_content();
    content
        .metadata
        .insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    let t = Tokenizer::from_gguf(&content).unwrap();
    assert!(t.add_bos());
    let plain = tokenizer().encode("Hello world").unwrap();
    let with_bos = t.encode("Hello world").unwrap();
    assert_eq!(with_bos[0], 1);
    assert_eq!(&with_bos[1..], plain.as_slice());

    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, t.to_json_string().unwrap()).unwrap();
    let loaded = Tokenizer::from_json_file(&json_path).unwrap();
    assert!(loaded.add_bos());
    assert_eq!(loaded.bos_id(), Some(1));
    assert_eq!(loaded.encode("Hello world").unwrap(), with_bos);
    let hf = tokenizers::Tokenizer::from_file(&json_path).unwrap();
    assert_eq!(
        hf.encode("Hello world", true).unwrap().get_ids(),
        with_bos.as_slice()
    );
}

#[test]
fn tokenizer_config_add_bos_is_honoured_for_a_plain_tokenizer_json() {
    // A tokenizer.json whose post-processor adds nothing, with add_bos_token in the config:
    // BOS is added once (and not twice after another round trip).
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, tokenizer().to_json_string().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"add_bos_token": true, "bos_token": {"content": "<|im_start|>", "special": true}, "eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let t = Tokenizer::from_json_file(&json_path).unwrap();
    assert!(t.add_bos());
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    let ids = t.encode("hi").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(&ids[1..], tokenizer().encode("hi").unwrap().as_slice());

    std::fs::write(&json_path, t.to_json_string().unwrap()).unwrap();
    let again = Tokenizer::from_json_file(&json_path).unwrap();
    assert_eq!(again.encode("hi").unwrap(), ids);
}

/// A tiny byte-level BPE GGUF written with candle's writer and read back.
fn tiny_gguf(model: &str, pre: Option<&str>) -> Content {
    // The 256 GPT-2 byte characters, then two merged tokens.
    let mut tokens: Vec<String> = Vec::new();
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut n = 0;
    for b in 0..256u32 {
        if printable(b) {
            tokens.push(char::from_u32(b).unwrap().to_string());
        } else {
            tokens.push(char::from_u32(256 + n).unwrap().to_string());
            n += 1;
        }
    }
    tokens.push("ab".into());
    tokens.push("Ġab".into());
    tokens.push("<|end|>".into());
    let mut types = vec![Value::I32(1); tokens.len()];
    *types.last_mut().unwrap() = Value::I32(3);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("tokenizer.ggml.model".into(), Value::String(model.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vec![
                Value::String("a b".into()),
                Value::String("Ġ ab".into()),
            ]),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32(tokens.len() as u32 - 1),
        ),
    ];
    if let Some(p) = pre {
        meta.push(("tokenizer.ggml.pre".into(), Value::String(p.into())));
    }
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &refs, &[]).unwrap();
    buf.set_position(0);
    Content::read(&mut buf).unwrap()
}

#[test]
fn tiny_gguf_vocabulary_works() {
    let t = Tokenizer::from_gguf(&tiny_gguf("gpt2", Some("gpt-2"))).unwrap();
    let id_ab = t.token_to_id("ab").unwrap();
    let id_gab = t.token_to_id("Ġab").unwrap();
    let end = t.token_to_id("<|end|>").unwrap();
    assert_eq!(t.encode("ab ab<|end|>").unwrap(), vec![id_ab, id_gab, end]);
    assert_eq!(t.decode(&[id_ab, id_gab, end]).unwrap(), "ab ab<|end|>");
    assert_eq!(t.vocab_size(), 259);
    assert_eq!(t.eos_id(), Some(end));
    assert_eq!(t.eog_ids(), &[end]);
    assert!(!t.add_bos());
}

#[test]
fn unknown_pre_tokenizer_is_an_error_naming_it() {
    let err = Tokenizer::from_gguf(&tiny_gguf("gpt2", Some("not-a-real-pre"))).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not-a-real-pre"), "{msg}");
    assert!(msg.contains("tokenizer.ggml.pre"), "{msg}");
    assert!(
        msg.contains("smollm") && msg.contains("llama-bpe") && msg.contains("qwen2"),
        "should list what is supported: {msg}"
    );
    assert!(supported_pre_tokenizers().contains(&"smollm"));
}

#[test]
fn unsupported_models_and_broken_vocabularies_are_clear_errors() {
    let msg = format!(
        "{:#}",
        Tokenizer::from_gguf(&tiny_gguf("bert", None)).unwrap_err()
    );
    assert!(
        msg.contains("\"bert\"")
            && msg.contains("tokenizer.ggml.model")
            && msg.contains("WordPiece"),
        "{msg}"
    );
    let mut content = tiny_gguf("gpt2", Some("gpt-2"));
    content.metadata.remove("tokenizer.ggml.merges");
    let msg = format!("{:#}", Tokenizer::from_gguf(&content).unwrap_err());
    assert!(msg.contains("tokenizer.ggml.merges"), "{msg}");

    // SentencePiece: scores of the wrong length or type, a BOS id out of range, a byte token
    // that is not <0xXX>, tokens that are not strings.
    let spm = || tiny_gguf("llama", None);
    /// What a case does to a good vocabulary.
    type Breakage = fn(&mut Content);
    let cases: Vec<(&str, Breakage)> = vec![
        ("tokenizer.ggml.scores", |c: &mut Content| {
            c.metadata.insert(
                "tokenizer.ggml.scores".into(),
                Value::Array(vec![Value::F32(0.0); 3]),
            );
        }),
        ("tokenizer.ggml.scores", |c: &mut Content| {
            c.metadata
                .insert("tokenizer.ggml.scores".into(), Value::String("x".into()));
        }),
        ("tokenizer.ggml.bos_token_id", |c: &mut Content| {
            c.metadata
                .insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1 << 20));
        }),
        ("<0xXX>", |c: &mut Content| {
            let mut types = vec![Value::I32(1); 259];
            types[0] = Value::I32(6);
            c.metadata
                .insert("tokenizer.ggml.token_type".into(), Value::Array(types));
        }),
        ("tokenizer.ggml.tokens", |c: &mut Content| {
            c.metadata.insert(
                "tokenizer.ggml.tokens".into(),
                Value::Array(vec![Value::U32(1)]),
            );
        }),
        ("tokenizer.ggml.token_type", |c: &mut Content| {
            c.metadata.insert(
                "tokenizer.ggml.token_type".into(),
                Value::Array(vec![Value::I32(1)]),
            );
        }),
    ];
    for (want, break_it) in cases {
        let mut c = spm();
        break_it(&mut c);
        let msg = format!("{:#}", Tokenizer::from_gguf(&c).unwrap_err());
        assert!(msg.contains(want), "expected {want} in: {msg}");
    }
}

#[test]
fn a_tiny_sentencepiece_vocabulary_builds_with_llamacpp_defaults() {
    let t = Tokenizer::from_gguf(&tiny_gguf("llama", None)).unwrap();
    // No BOS key: llama.cpp's SentencePiece default id 1, added by default.
    assert_eq!((t.bos_id(), t.add_bos()), (Some(1), true));
    assert_eq!(
        t.decode(&[5000]).unwrap_err().to_string(),
        "cannot decode token id 5000: the vocabulary has 259 tokens"
    );
}

fn without_special_text(s: &str) -> bool {
    special_texts().iter().all(|sp| !s.contains(sp.as_str()))
}

/// GPT-2's byte-level character for a byte.
fn byte_char(b: u8) -> char {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let b = u32::from(b);
    if printable(b) {
        return char::from_u32(b).unwrap();
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap()
}

/// Whether every UTF-8 byte of `s` has a token. SmolLM2's vocabulary lacks a few bytes
/// (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5..=0xFF), so U+0004 or any
/// character in U+40000..=U+BFFFF cannot be encoded; llama.cpp drops them too.
fn representable(s: &str) -> bool {
    let t = tokenizer();
    s.bytes()
        .all(|b| t.token_to_id(&byte_char(b).to_string()).is_some())
}

#[test]
fn characters_with_bytes_missing_from_the_vocabulary_are_dropped_like_llamacpp() {
    let t = tokenizer();
    assert!(
        !representable("\u{4}") && !representable("\u{42019}") && representable("é你😀\u{10FFFF}")
    );
    assert_eq!(t.decode(&t.encode("a\u{4}b").unwrap()).unwrap(), "ab");
    // Their other bytes stay, and nothing merges across the dropped byte (the exact ids are
    // checked against llama.cpp in llamacpp_pretok_variants.json).
    let ids = t.encode("\u{42019}\u{42019}").unwrap();
    assert_eq!(ids.len(), 6, "{ids:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(s in any::<String>()) {
        prop_assume!(without_special_text(&s) && representable(&s));
        let t = tokenizer();
        let ids = t.encode(&s).unwrap();
        prop_assert_eq!(t.decode(&ids).unwrap(), s);
    }

    #[test]
    fn decode_inverts_encode_on_texty_strings(s in "[a-zA-Z0-9 \\n\\t.,'!?é你😀-]{0,40}") {
        let t = tokenizer();
        let ids = t.encode(&s).unwrap();
        prop_assert_eq!(t.decode(&ids).unwrap(), s.clone());
        let (chunks, _, rest) = stream_chunks(t, &ids);
        prop_assert_eq!(format!("{}{rest}", chunks.concat()), s);
    }
}
