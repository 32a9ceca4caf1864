//! The `tokenizer.*` keys convert_hf_to_gguf.py writes for a byte-level BPE tokenizer (its
//! `_set_vocab_gpt2`: SmolLM2, Llama 3, Qwen and most Hub models since): the token list with
//! llama.cpp's token types, the pre-tokenizer's name found by hashing one fixed text's token
//! ids, the merges, and gguf-py's `SpecialVocab` (special token ids, add-BOS/EOS flags, the
//! chat template). SentencePiece vocabularies (`tokenizer.model`, or a tokenizer.json with
//! byte fallback) are refused with a clear error.

use crate::quant::gguf::{Kv, Value};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::Tokenizer;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// convert_hf_to_gguf.py's pre-tokenizer table (tests/oracle/pretok_hashes.py made it): the
/// text that is encoded, then `sha256-of-ids name` lines.
const PRETOK_HASHES: &str = include_str!("pretok_hashes.txt");

/// The tokenizer keys, in the order convert_hf_to_gguf.py writes them.
pub fn kvs(folder: &Path, vocab_size: usize, raw_config: &Json) -> Result<Vec<Kv>> {
    if folder.join("tokenizer.model").is_file() {
        bail!(
            "{} holds a SentencePiece tokenizer.model; gen convert writes byte-level BPE vocabularies only (use llama.cpp's convert_hf_to_gguf.py for this one)",
            folder.display()
        );
    }
    let tok_path = folder.join("tokenizer.json");
    let tok_json = read_json(&tok_path)?.with_context(|| {
        format!(
            "{} has no tokenizer.json; gen convert needs the model's fast tokenizer",
            folder.display()
        )
    })?;
    let model = &tok_json["model"];
    if model["type"] != "BPE" {
        bail!(
            "{} is a {} tokenizer; gen convert writes byte-level BPE vocabularies only",
            tok_path.display(),
            model["type"]
        );
    }
    // convert_hf_to_gguf.py reads these as a SentencePiece-style (llama) vocabulary.
    if model["byte_fallback"] == true && tok_json["decoder"]["type"] == "Sequence" {
        bail!(
            "{} is a SentencePiece-style BPE (byte fallback); gen convert writes byte-level BPE vocabularies only",
            tok_path.display()
        );
    }
    let tok_config = read_json(&folder.join("tokenizer_config.json"))?;
    let tokenizer = Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", tok_path.display()))?;

    let mut out = Vec::new();
    if let Some(b) = tok_config
        .as_ref()
        .and_then(|c| c.get("add_prefix_space"))
        .and_then(Json::as_bool)
    {
        out.push(kv("tokenizer.ggml.add_space_prefix", Value::bool(b)));
    }
    let (tokens, types) = token_list(&tokenizer, vocab_size, &tok_path)?;
    out.push(kv("tokenizer.ggml.model", Value::str("gpt2")));
    out.push(kv(
        "tokenizer.ggml.pre",
        Value::str(&pre_tokenizer(&tokenizer)?),
    ));
    out.push(kv(
        "tokenizer.ggml.tokens",
        Value::StrArray(tokens.into_iter().map(String::into_bytes).collect()),
    ));
    out.push(kv("tokenizer.ggml.token_type", Value::i32_array(&types)));
    special_vocab(folder, &tok_json, tok_config, raw_config, &mut out)?;
    Ok(out)
}

fn kv(key: &str, value: Value) -> Kv {
    Kv {
        key: key.to_string(),
        value,
    }
}

/// Sets `key` in place when present (gguf-py overwrites a duplicated key where it stands),
/// else appends it.
pub fn set(kvs: &mut Vec<Kv>, key: &str, value: Value) {
    match kvs.iter_mut().find(|k| k.key == key) {
        Some(k) => k.value = value,
        None => kvs.push(kv(key, value)),
    }
}

/// A JSON file, or `None` when it does not exist.
pub fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(Some(v))
}

/// Every id below `vocab_size` with its text and type, as `get_vocab_base` lists them.
fn token_list(tok: &Tokenizer, vocab_size: usize, path: &Path) -> Result<(Vec<String>, Vec<i32>)> {
    let vocab = tok.get_vocab(true);
    let mut reverse: Vec<Option<String>> = vec![None; vocab_size];
    for (text, &id) in &vocab {
        match reverse.get_mut(id as usize) {
            Some(slot) => *slot = Some(text.clone()),
            None => bail!(
                "{} has token id {id} ({text:?}), beyond config.json's vocab_size {vocab_size}",
                path.display()
            ),
        }
    }
    let added = tok.get_added_tokens_decoder();
    let added_contents: std::collections::HashSet<&str> =
        added.values().map(|t| t.content.as_str()).collect();
    let (mut tokens, mut types) = (
        Vec::with_capacity(vocab_size),
        Vec::with_capacity(vocab_size),
    );
    for (i, text) in reverse.into_iter().enumerate() {
        let Some(mut text) = text else {
            tokens.push(format!("[PAD{i}]"));
            types.push(UNUSED);
            continue;
        };
        let mut ty = NORMAL;
        if added_contents.contains(text.as_str()) {
            let info = added.get(&(i as u32)).with_context(|| {
                format!(
                    "{}: added token {text:?} is listed under another id than {i}",
                    path.display()
                )
            })?;
            // llama.cpp expects CONTROL and USER_DEFINED tokens pre-normalized.
            if !info.normalized {
                let enc = tok
                    .encode(text.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("encoding {text:?}: {e}"))?;
                text = tok
                    .decode(enc.get_ids(), false)
                    .map_err(|e| anyhow::anyhow!("decoding {text:?}: {e}"))?;
            }
            if info.special || looks_special(&text) {
                ty = CONTROL;
            } else {
                text = text.replace('\u{2581}', " ");
                ty = USER_DEFINED;
            }
        }
        tokens.push(text);
        types.push(ty);
    }
    Ok((tokens, types))
}

/// convert_hf_to_gguf.py's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// The pre-tokenizer's name: the table's entry for the sha256 of `str(token ids)` of its
/// text, encoded with special tokens as `AutoTokenizer.encode` does.
fn pre_tokenizer(tok: &Tokenizer) -> Result<String> {
    let mut lines = PRETOK_HASHES.lines();
    let text: String = serde_json::from_str(lines.next().unwrap_or_default())
        .context("internal: pretok_hashes.txt does not start with the text")?;
    let enc = tok
        .encode(text.as_str(), true)
        .map_err(|e| anyhow::anyhow!("encoding the pre-tokenizer check text: {e}"))?;
    let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
    let hash: String = Sha256::digest(format!("[{}]", ids.join(", ")).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // The converter's ifs do not stop at a match: the last one wins.
    let name = lines
        .filter_map(|l| l.split_once(' '))
        .rfind(|(h, _)| *h == hash)
        .map(|(_, n)| n.to_string());
    name.with_context(|| {
        format!("the tokenizer's pre-tokenizer is not one llama.cpp knows (check hash {hash}); llama.cpp could not run it either")
    })
}

/// gguf-py's `SpecialVocab(folder, load_merges=True)` added to the file.
fn special_vocab(
    folder: &Path,
    tok_json: &Json,
    tok_config: Option<Json>,
    raw_config: &Json,
    out: &mut Vec<Kv>,
) -> Result<()> {
    let mut types: Vec<&str> = vec!["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
    let mut ids: Vec<(String, u32)> = Vec::new();
    let mut add: Vec<(String, bool)> = Vec::new();
    let set_add = |add: &mut Vec<(String, bool)>, typ: &str, v: bool, overwrite: bool| match add
        .iter_mut()
        .find(|(t, _)| t == typ)
    {
        Some(e) if overwrite => e.1 = v,
        Some(_) => {}
        None => add.push((typ.to_string(), v)),
    };

    let merges = merges(&tok_json["model"]["merges"])?;
    let mut cfg: Option<Map<String, Json>> = match tok_config {
        Some(Json::Object(m)) => Some(m),
        _ => None,
    };
    // Python's truthiness: a missing or empty tokenizer_config counts as absent.
    let has_cfg = |c: &Option<Map<String, Json>>| c.as_ref().is_some_and(|m| !m.is_empty());
    let get = |c: &Option<Map<String, Json>>, k: &str| -> Option<Json> {
        c.as_ref()
            .and_then(|m| m.get(k))
            .filter(|v| truthy(v))
            .cloned()
    };
    let put = |c: &mut Option<Map<String, Json>>, k: &str, v: &Json| {
        if let Some(m) = c.as_mut() {
            m.insert(k.to_string(), v.clone());
        }
    };
    let mut bos = get(&cfg, "bos_token");
    let mut cls = get(&cfg, "cls_token");
    let mut eos = get(&cfg, "eos_token");
    let mut sep = get(&cfg, "sep_token");
    if bos.is_none() && cls.is_some() && has_cfg(&cfg) {
        bos = cls.clone();
        put(&mut cfg, "bos_token", bos.as_ref().unwrap_or(&Json::Null));
    }
    if eos.is_none() && sep.is_some() && has_cfg(&cfg) {
        eos = sep.clone();
        put(&mut cfg, "eos_token", eos.as_ref().unwrap_or(&Json::Null));
    }
    let post = &tok_json["post_processor"];
    if truthy(post) {
        let processors: Vec<&Json> = match post.get("processors").and_then(Json::as_array) {
            Some(list) => list.iter().collect(),
            None => vec![post],
        };
        for p in processors {
            match p["type"].as_str() {
                Some("ByteLevel") => {
                    set_add(&mut add, "bos", false, false);
                    set_add(&mut add, "eos", false, false);
                }
                Some("RobertaProcessing") => {
                    for t in ["bos", "eos", "sep"] {
                        set_add(&mut add, t, true, true);
                    }
                    if cls.is_none() && has_cfg(&cfg) {
                        cls = Some(
                            p["cls"]
                                .get(0)
                                .cloned()
                                .unwrap_or_else(|| bos.clone().unwrap_or(Json::Null)),
                        );
                        put(&mut cfg, "cls_token", cls.as_ref().unwrap_or(&Json::Null));
                    }
                    if sep.is_none() && has_cfg(&cfg) {
                        sep = Some(
                            p["sep"]
                                .get(0)
                                .cloned()
                                .unwrap_or_else(|| eos.clone().unwrap_or(Json::Null)),
                        );
                        put(&mut cfg, "sep_token", sep.as_ref().unwrap_or(&Json::Null));
                    }
                }
                Some("TemplateProcessing") => {
                    let empty = Vec::new();
                    let single = p["single"].as_array().unwrap_or(&empty);
                    let pair = p["pair"].as_array().unwrap_or(&empty);
                    let special_id = |e: &Json| -> Option<Json> {
                        e.get("SpecialToken")
                            .and_then(|s| s.get("id"))
                            .filter(|v| truthy(v))
                            .cloned()
                    };
                    let mut first = None;
                    let mut last = None;
                    if single.len() > 1 {
                        first = special_id(&single[0]);
                        if let Some(f) = &first {
                            let known = Some(f) == bos.as_ref() || Some(f) == cls.as_ref();
                            if !has_cfg(&cfg) {
                                bos = Some(f.clone());
                            } else if !known {
                                if bos.is_none() {
                                    bos = Some(f.clone());
                                    put(&mut cfg, "bos_token", f);
                                }
                                if cls.is_none() {
                                    cls = Some(f.clone());
                                    put(&mut cfg, "cls_token", f);
                                }
                            }
                            let known = Some(f) == bos.as_ref() || Some(f) == cls.as_ref();
                            set_add(&mut add, "bos", known, true);
                        }
                        last = special_id(&single[single.len() - 1]);
                        if let Some(l) = &last {
                            if !has_cfg(&cfg) {
                                eos = Some(l.clone());
                            } else if Some(l) != eos.as_ref() {
                                let old = eos.clone().unwrap_or(Json::Null);
                                if !types.contains(&"eot") {
                                    types.push("eot");
                                    put(&mut cfg, "eot_token", &old);
                                } else if !types.contains(&"eom") {
                                    types.push("eom");
                                    put(&mut cfg, "eom_token", &old);
                                }
                                eos = Some(l.clone());
                                put(&mut cfg, "eos_token", l);
                            }
                            set_add(&mut add, "eos", Some(l) == eos.as_ref(), true);
                        }
                    }
                    if !pair.is_empty() {
                        let start = usize::from(first.is_some() && special_id(&pair[0]) == first);
                        let stop = if last.is_some() && special_id(&pair[pair.len() - 1]) == last {
                            pair.len() - 1
                        } else {
                            pair.len()
                        };
                        let pair = if start <= stop {
                            &pair[start..stop]
                        } else {
                            &[][..]
                        };
                        if !pair.is_empty() {
                            let seq = |e: &Json| e["Sequence"]["id"].as_str().map(str::to_string);
                            let (a, b) = (seq(&pair[0]), seq(&pair[pair.len() - 1]));
                            if a.as_deref() == Some("A")
                                && b.as_deref() == Some("B")
                                && pair.len() > 2
                            {
                                let middle = &pair[1..pair.len() - 1];
                                let is_sep_or_eos = |e: &Option<Json>| {
                                    e.is_some()
                                        && (e.as_ref() == sep.as_ref()
                                            || e.as_ref() == eos.as_ref())
                                };
                                let mut add_sep = false;
                                let m0 = special_id(&middle[0]);
                                if is_sep_or_eos(&m0) && last.is_none() {
                                    add_sep = true;
                                }
                                if middle.len() == 2 && is_sep_or_eos(&special_id(&middle[1])) {
                                    add_sep = true;
                                }
                                set_add(&mut add, "sep", add_sep, true);
                                if add_sep && sep.is_none() && has_cfg(&cfg) {
                                    put(&mut cfg, "sep_token", eos.as_ref().unwrap_or(&Json::Null));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut chat_template: Option<String> = None;
    if has_cfg(&cfg) {
        let cfg = cfg.clone().unwrap_or_default();
        let jinja = folder.join("chat_template.jinja");
        let alt: Option<Json> = if jinja.is_file() {
            if folder.join("additional_chat_templates").is_dir() {
                bail!(
                    "{} has additional_chat_templates/: several named chat templates are not supported by gen convert",
                    folder.display()
                );
            }
            Some(Json::String(
                std::fs::read_to_string(&jinja)
                    .with_context(|| format!("reading {}", jinja.display()))?,
            ))
        } else {
            read_json(&folder.join("chat_template.json"))?
                .and_then(|j| j.get("chat_template").cloned())
        };
        match cfg.get("chat_template").cloned().or(alt) {
            Some(Json::String(s)) => chat_template = Some(s),
            Some(Json::Array(_)) => bail!(
                "{}: several named chat templates are not supported by gen convert",
                folder.join("tokenizer_config.json").display()
            ),
            _ => {}
        }
        let added_tokens = tok_json["added_tokens"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for typ in &types {
            if let Some(b) = cfg.get(&format!("add_{typ}_token")).and_then(Json::as_bool) {
                set_add(&mut add, typ, b, false);
            }
            let content = match cfg.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => s.clone(),
                    _ => continue,
                },
                _ => continue,
            };
            let id = added_tokens
                .iter()
                .find(|t| t["content"].as_str() == Some(content.as_str()))
                .map(|t| &t["id"]);
            set_special(&mut ids, typ, id)?;
        }
    }
    for typ in &types {
        let mut id = raw_config.get(format!("{typ}_token_id"));
        if id.is_none_or(Json::is_null) {
            id = raw_config
                .get("text_config")
                .and_then(|t| t.get(format!("{typ}_token_id")));
        }
        set_special(&mut ids, typ, id)?;
    }
    if let Some(m) = merges {
        out.push(kv("tokenizer.ggml.merges", Value::StrArray(m)));
    }
    for (typ, id) in ids {
        // gguf-py's writer has no key for these types and skips them.
        let key = match typ.as_str() {
            "bos" | "eos" | "eot" | "eom" => format!("tokenizer.ggml.{typ}_token_id"),
            "unk" => "tokenizer.ggml.unknown_token_id".into(),
            "sep" => "tokenizer.ggml.seperator_token_id".into(),
            "pad" => "tokenizer.ggml.padding_token_id".into(),
            "mask" => "tokenizer.ggml.mask_token_id".into(),
            _ => continue,
        };
        out.push(kv(&key, Value::u32(id)));
    }
    for (typ, v) in add {
        if matches!(typ.as_str(), "bos" | "eos" | "sep") {
            out.push(kv(
                &format!("tokenizer.ggml.add_{typ}_token"),
                Value::bool(v),
            ));
        }
    }
    if let Some(t) = chat_template {
        out.push(kv("tokenizer.chat_template", Value::str(&t)));
    }
    let (lower, strip) = normalizer_flags(&tok_json["normalizer"]);
    if let Some(v) = lower {
        out.push(kv("tokenizer.ggml.normalizer.lowercase", Value::bool(v)));
    }
    if let Some(v) = strip {
        out.push(kv(
            "tokenizer.ggml.normalizer.strip_accents",
            Value::bool(v),
        ));
    }
    Ok(())
}

/// `_set_special_token`: the first id set for a type stays; only integers count.
fn set_special(ids: &mut Vec<(String, u32)>, typ: &str, id: Option<&Json>) -> Result<()> {
    let Some(id) = id.and_then(Json::as_i64) else {
        return Ok(());
    };
    let Ok(id) = u32::try_from(id) else {
        bail!("invalid id {id} for the {typ} token");
    };
    if !ids.iter().any(|(t, _)| t == typ) {
        ids.push((typ.to_string(), id));
    }
    Ok(())
}

/// The merges as llama.cpp stores them: `"a b"`, spaces inside a part written as U+0120.
fn merges(m: &Json) -> Result<Option<Vec<Vec<u8>>>> {
    let Some(list) = m.as_array().filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let s = match e {
            Json::String(s) => s.clone(),
            Json::Array(pair) if pair.len() == 2 => {
                let part = |v: &Json| -> Result<String> {
                    let s = v.as_str().context("a merge part is not a string")?;
                    Ok(s.chars()
                        .map(|c| if c == ' ' { '\u{120}' } else { c })
                        .collect())
                };
                format!("{} {}", part(&pair[0])?, part(&pair[1])?)
            }
            _ => bail!("tokenizer.json: unknown merges format"),
        };
        out.push(s.into_bytes());
    }
    Ok(Some(out))
}

/// gguf-py's `_parse_normalizer`: (lowercase, strip_accents) when the normalizer says.
fn normalizer_flags(n: &Json) -> (Option<bool>, Option<bool>) {
    let mut lower = None;
    let mut strip = None;
    fn walk(n: &Json, lower: &mut Option<bool>, strip: &mut Option<bool>) {
        match n["type"].as_str() {
            Some("Lowercase") => *lower = Some(true),
            Some("StripAccents") => *strip = Some(true),
            Some("BertNormalizer") => {
                if let Some(v) = n.get("lowercase") {
                    *lower = v.as_bool();
                }
                if let Some(v) = n.get("strip_accents") {
                    *strip = v.as_bool();
                }
            }
            Some("Sequence") => {
                for x in n["normalizers"].as_array().into_iter().flatten() {
                    walk(x, lower, strip);
                }
            }
            _ => {}
        }
    }
    walk(n, &mut lower, &mut strip);
    (lower, strip)
}

/// Python's truthiness of a JSON value.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}
