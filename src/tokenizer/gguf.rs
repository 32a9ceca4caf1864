//! Builds a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, reproducing what
//! llama.cpp's `llama_vocab::impl::load` does: for byte-level BPE (`tokenizer.ggml.model =
//! gpt2`) the vocabulary and merge ranks, the pre-tokenizer named by `tokenizer.ggml.pre` and
//! which tokens are matched as whole special tokens in text, turned into a Hugging Face
//! pipeline; for SentencePiece (`llama`) the vocabulary, scores and token types for our own
//! encoder (`spm.rs`); for both, BOS/EOS handling and the end-of-generation seeds.

use super::spm::{Kind, Spm, SpmVocab};
use super::{pretokenizer, Origin, SpecialIds, Tokenizer};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";

/// llama.cpp token types (`llama_token_type`).
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

/// Besides the end-of-generation names ([`super::EOG_NAMES`]), the token texts llama.cpp
/// promotes to control tokens whatever their stored type (its FIM auto-detection in
/// `llama_vocab::impl::load`), plus the gpt-oss tokens it forces to user-defined. Either way
/// llama.cpp then matches them as whole tokens in text.
const AUTO_SPECIAL_EXTRA: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
    "<|channel|>",
    "<|message|>",
    "<|start|>",
    "<|constrain|>",
];

fn get<'a>(content: &'a Content, key: &str) -> Option<&'a Value> {
    content.metadata.get(key)
}

fn get_string(content: &Content, key: &str) -> Result<Option<String>> {
    match get(content, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => bail!(
            "GGUF metadata `{key}` should be a string but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        ),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => i64::from(*x),
        Value::I8(x) => i64::from(*x),
        Value::U16(x) => i64::from(*x),
        Value::I16(x) => i64::from(*x),
        Value::U32(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

/// Reads an optional token id and checks it is inside the vocabulary.
fn get_token_id(content: &Content, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(v) = get(content, key) else {
        return Ok(None);
    };
    let id = as_i64(v).with_context(|| {
        format!(
            "GGUF metadata `{key}` should be an integer token id but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        )
    })?;
    if id < 0 {
        // Some converters write -1 for "no such token".
        return Ok(None);
    }
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n_tokens => Ok(Some(id)),
        _ => bail!("GGUF metadata `{key}` = {id} is outside the vocabulary of {n_tokens} tokens; the file is malformed, re-convert it"),
    }
}

fn get_bool(content: &Content, key: &str) -> Result<Option<bool>> {
    match get(content, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => bail!(
            "GGUF metadata `{key}` should be a bool but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        ),
    }
}

fn get_string_array<'a>(content: &'a Content, key: &str) -> Result<Option<Vec<&'a str>>> {
    let Some(v) = get(content, key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        bail!(
            "GGUF metadata `{key}` should be an array of strings but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        )
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.as_str()),
            other => Err(anyhow!(
                "GGUF metadata `{key}`[{i}] should be a string but is {:?}; the file is malformed, re-convert it",
                other.value_type()
            )),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn get_int_array(content: &Content, key: &str) -> Result<Option<Vec<i64>>> {
    let Some(v) = get(content, key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        bail!(
            "GGUF metadata `{key}` should be an array of integers but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        )
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            as_i64(item).with_context(|| {
                format!(
                    "GGUF metadata `{key}`[{i}] should be an integer but is {:?}; the file is malformed, re-convert it",
                    item.value_type()
                )
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Builds the tokenizer described by a GGUF file's metadata.
pub(super) fn from_gguf(content: &Content) -> Result<Tokenizer> {
    let model = get_string(content, KEY_MODEL)?.with_context(|| {
        format!("GGUF metadata has no `{KEY_MODEL}`, so the file carries no tokenizer; load the model's tokenizer.json instead")
    })?;
    match model.as_str() {
        "gpt2" => bpe_from_gguf(content),
        "llama" => spm_from_gguf(content),
        other => bail!(
            "unsupported GGUF tokenizer `{KEY_MODEL}` = \"{other}\" ({}): supported are byte-level BPE (\"gpt2\") and SentencePiece (\"llama\"); use the model's tokenizer.json",
            model_description(other)
        ),
    }
}

/// What llama.cpp calls each `tokenizer.ggml.model` value, for the error about one we lack.
fn model_description(model: &str) -> &'static str {
    match model {
        "bert" => "WordPiece, llama.cpp's WPM",
        "t5" => "Unigram, llama.cpp's UGM",
        "rwkv" => "RWKV's trie tokenizer",
        "gemma4" => "Gemma 4's SentencePiece-style BPE",
        "plamo2" => "PLaMo-2's tokenizer",
        "no_vocab" | "none" => "no vocabulary at all",
        _ => "a tokenizer llama.cpp may know but gen does not",
    }
}

/// The vocabulary texts; llama.cpp renames empty tokens so that they stay distinct.
fn read_tokens(content: &Content) -> Result<Vec<String>> {
    let raw_tokens = get_string_array(content, KEY_TOKENS)?.with_context(|| {
        format!("GGUF metadata has no `{KEY_TOKENS}` (the vocabulary); load the model's tokenizer.json instead")
    })?;
    let tokens: Vec<String> = raw_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                (*t).to_string()
            }
        })
        .collect();
    if tokens.is_empty() {
        bail!("GGUF metadata `{KEY_TOKENS}` is empty; load the model's tokenizer.json instead");
    }
    u32::try_from(tokens.len()).with_context(|| {
        format!(
            "`{KEY_TOKENS}` has {} entries, more than u32 ids allow",
            tokens.len()
        )
    })?;
    Ok(tokens)
}

/// `tokenizer.ggml.token_type`, checked to cover every token.
fn read_types(content: &Content, n_tokens: usize) -> Result<Option<Vec<i64>>> {
    let types = get_int_array(content, KEY_TYPES)?;
    if let Some(t) = &types {
        if t.len() < n_tokens {
            bail!("GGUF metadata `{KEY_TYPES}` has {} entries but `{KEY_TOKENS}` has {n_tokens}; the file is malformed, re-convert it", t.len());
        }
    }
    Ok(types)
}

/// Ids that end generation besides the named ones: EOS, then `eot_token_id` and `eom_token_id`
/// (llama.cpp's `special_eog_ids` seeds).
fn eog_seed(content: &Content, eos_id: Option<u32>, n_tokens: usize) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = eos_id.into_iter().collect();
    for key in [KEY_EOT, KEY_EOM] {
        if let Some(id) = get_token_id(content, key, n_tokens)? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// Builds a SentencePiece tokenizer (`tokenizer.ggml.model = llama`) as llama.cpp loads one:
/// scores (f32 or i32; all 0 when absent), token types, `add_space_prefix` (default true), BOS
/// added by default (`add_bos_token` overrides), EOS when `add_eos_token`, and the default ids
/// BOS 1, EOS 2 when the keys are absent.
fn spm_from_gguf(content: &Content) -> Result<Tokenizer> {
    let tokens = read_tokens(content)?;
    let n_tokens = tokens.len();
    let types = read_types(content, n_tokens)?;
    let scores = match get(content, KEY_SCORES) {
        None => vec![0.0; n_tokens],
        Some(Value::Array(items)) => {
            if items.len() < n_tokens {
                bail!("GGUF metadata `{KEY_SCORES}` has {} entries but `{KEY_TOKENS}` has {n_tokens}; the file is malformed, re-convert it", items.len());
            }
            items[..n_tokens]
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::F32(x) => Ok(*x),
                    Value::I32(x) => Ok(*x as f32),
                    other => Err(anyhow!(
                        "GGUF metadata `{KEY_SCORES}`[{i}] should be an f32 but is {:?}; the file is malformed, re-convert it",
                        other.value_type()
                    )),
                })
                .collect::<Result<Vec<f32>>>()?
        }
        Some(v) => bail!(
            "GGUF metadata `{KEY_SCORES}` should be an array of f32 but is {:?}; the file is malformed, re-convert it",
            v.value_type()
        ),
    };
    let kinds = tokens
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let ty = types.as_ref().map_or(TYPE_NORMAL, |t| t[i]);
            spm_kind(i, text, ty)
        })
        .collect::<Result<Vec<_>>>()?;
    let add_space_prefix = get_bool(content, KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
    // llama.cpp's SentencePiece defaults, used when the key is absent.
    let default_id = |id: u32| ((id as usize) < n_tokens).then_some(id);
    let bos_id = match get(content, KEY_BOS) {
        None => default_id(1),
        Some(_) => get_token_id(content, KEY_BOS, n_tokens)?,
    };
    let eos_id = match get(content, KEY_EOS) {
        None => default_id(2),
        Some(_) => get_token_id(content, KEY_EOS, n_tokens)?,
    };
    let add_bos = get_bool(content, KEY_ADD_BOS)?.unwrap_or(true);
    let add_eos = get_bool(content, KEY_ADD_EOS)?.unwrap_or(false);
    check_bos_eos(
        add_bos,
        bos_id,
        add_eos,
        eos_id,
        "the SentencePiece default",
    )?;
    let eog_seed = eog_seed(content, eos_id, n_tokens)?;
    let spm = Spm::new(SpmVocab {
        texts: tokens,
        scores,
        kinds,
        add_space_prefix,
    })?;
    let chat_template = get_string(content, KEY_CHAT_TEMPLATE)?;
    Tokenizer::from_spm(
        spm,
        SpecialIds {
            bos_id,
            eos_id,
            add_bos,
            add_eos,
            eog_seed,
        },
        chat_template,
    )
}

/// A SentencePiece token's kind from its GGUF type; the names llama.cpp promotes to control
/// tokens (end of turn, FIM) are control whatever their stored type.
fn spm_kind(id: usize, text: &str, ty: i64) -> Result<Kind> {
    if is_auto_special(text) {
        return Ok(Kind::Control);
    }
    Ok(match ty {
        TYPE_NORMAL => Kind::Normal,
        TYPE_UNKNOWN => Kind::Unknown,
        TYPE_CONTROL => Kind::Control,
        TYPE_USER_DEFINED => Kind::UserDefined,
        TYPE_BYTE => {
            // llama.cpp reads the two hex digits of `<0xXX>`.
            let byte = text
                .strip_prefix("<0x")
                .and_then(|t| t.strip_suffix('>'))
                .filter(|h| h.len() == 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            Kind::Byte(byte.with_context(|| {
                format!("GGUF token {id} has the byte type but its text {text:?} is not of the form <0xXX>; the file is malformed, re-convert it")
            })?)
        }
        _ => Kind::Unused,
    })
}

fn check_bos_eos(
    add_bos: bool,
    bos_id: Option<u32>,
    add_eos: bool,
    eos_id: Option<u32>,
    why_bos: &str,
) -> Result<()> {
    if add_bos && bos_id.is_none() {
        bail!("the GGUF tokenizer asks for a BOS token (`{KEY_ADD_BOS}` or {why_bos}) but has no `{KEY_BOS}`; the file is malformed, re-convert it");
    }
    if add_eos && eos_id.is_none() {
        bail!(
            "GGUF metadata `{KEY_ADD_EOS}` is true but there is no `{KEY_EOS}`; the file is malformed, re-convert it"
        );
    }
    Ok(())
}

/// Builds a byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`).
fn bpe_from_gguf(content: &Content) -> Result<Tokenizer> {
    // llama.cpp treats a missing or empty `tokenizer.ggml.pre` as "default".
    let pre = get_string(content, KEY_PRE)?
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let spec = pretokenizer::lookup(&pre).with_context(|| {
        format!(
            "unsupported pre-tokenizer `{KEY_PRE}` = \"{pre}\"; supported: {}. Use the model's tokenizer.json instead",
            pretokenizer::supported_pre_tokenizers().join(", ")
        )
    })?;

    let tokens = read_tokens(content)?;
    let n_tokens = tokens.len();
    let types = read_types(content, n_tokens)?;

    let raw_merges = get_string_array(content, KEY_MERGES)?
        .with_context(|| format!("GGUF metadata has no `{KEY_MERGES}`, which a BPE (gpt2) vocabulary needs; load the model's tokenizer.json instead"))?;
    let merges = raw_merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // Like llama.cpp: split at the first space after the first byte.
            let first = m.chars().next().map_or(0, char::len_utf8);
            let pos = m.get(first..).and_then(|rest| rest.find(' ')).map(|p| p + first);
            match pos {
                Some(p) => Ok((m[..p].to_string(), m[p + 1..].to_string())),
                None => Err(anyhow!(
                    "GGUF metadata `{KEY_MERGES}`[{i}] = {m:?} is not of the form \"left right\"; the file is malformed, re-convert it"
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;

    let bos_id = get_token_id(content, KEY_BOS, n_tokens)?;
    let eos_id = get_token_id(content, KEY_EOS, n_tokens)?;
    let add_bos = get_bool(content, KEY_ADD_BOS)?.unwrap_or(spec.add_bos);
    let add_eos = get_bool(content, KEY_ADD_EOS)?.unwrap_or(false);
    check_bos_eos(
        add_bos,
        bos_id,
        add_eos,
        eos_id,
        &format!("pre-tokenizer \"{pre}\""),
    )?;
    let eog_seed = eog_seed(content, eos_id, n_tokens)?;

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    // Byte-level characters the vocabulary lacks (see `pretokenizer::build`).
    let missing: Vec<char> = pretokenizer::byte_chars()
        .into_iter()
        .filter(|c| !vocab.contains_key(c.to_string().as_str()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| anyhow!("building the BPE model from `{KEY_TOKENS}` and `{KEY_MERGES}`: {e}; the file is malformed, re-convert it"))?;

    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pretokenizer::build(spec.family, &missing)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));

    // Tokens llama.cpp matches whole in text (its special-token cache): control, user-defined
    // and unknown types, plus the control-looking tokens it promotes by name.
    let mut control = Vec::new();
    let mut user_defined = Vec::new();
    for (i, text) in tokens.iter().enumerate() {
        let ty = types.as_ref().map(|t| t[i]);
        if ty == Some(TYPE_USER_DEFINED) && !is_auto_special(text) {
            user_defined.push(AddedToken::from(text.clone(), false).normalized(false));
        } else if matches!(ty, Some(TYPE_CONTROL | TYPE_UNKNOWN | TYPE_USER_DEFINED))
            || is_auto_special(text)
        {
            control.push(AddedToken::from(text.clone(), true).normalized(false));
        }
    }
    inner.add_special_tokens(&control);
    inner.add_tokens(&user_defined);

    if add_bos || add_eos {
        let bos = bos_id
            .filter(|_| add_bos)
            .map(|id| (tokens[id as usize].clone(), id));
        let eos = eos_id
            .filter(|_| add_eos)
            .map(|id| (tokens[id as usize].clone(), id));
        inner.with_post_processor(Some(template(bos, eos)?));
    }

    let chat_template = get_string(content, KEY_CHAT_TEMPLATE)?;
    Tokenizer::from_parts(
        inner,
        Origin::GgufBpe { pre },
        SpecialIds {
            bos_id,
            eos_id,
            add_bos,
            add_eos,
            eog_seed,
        },
        n_tokens,
        chat_template,
    )
}

/// A post-processor that puts BOS in front and/or EOS at the end of every encoding (and of both
/// halves of a pair). Built from its JSON form so that any token text works, even one with `:`
/// or a leading `$`, which the string template syntax would misread.
pub(super) fn template(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> Result<TemplateProcessing> {
    let special =
        |t: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence =
        |id: &str, type_id: u32| serde_json::json!({"Sequence": {"id": id, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = serde_json::Map::new();
    for (seq, type_id) in [("A", 0u32), ("B", 1u32)] {
        if let Some((t, _)) = &bos {
            pair.push(special(t, type_id));
        }
        pair.push(sequence(seq, type_id));
        if let Some((t, _)) = &eos {
            pair.push(special(t, type_id));
        }
    }
    if let Some((t, _)) = &bos {
        single.push(special(t, 0));
    }
    single.push(sequence("A", 0));
    if let Some((t, _)) = &eos {
        single.push(special(t, 0));
    }
    for (t, id) in bos.iter().chain(eos.iter()) {
        specials.insert(
            t.clone(),
            serde_json::json!({"id": t, "ids": [id], "tokens": [t]}),
        );
    }
    let json = serde_json::json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials});
    serde_json::from_value(json).context("internal: building the BOS/EOS post-processor")
}

/// Whether llama.cpp makes `text` a control token whatever its stored type.
pub(super) fn is_auto_special(text: &str) -> bool {
    super::EOG_NAMES.contains(&text) || AUTO_SPECIAL_EXTRA.contains(&text)
}
