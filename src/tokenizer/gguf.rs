//! Builds a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, reproducing what
//! llama.cpp's `llama_vocab::impl::load` does for byte-level BPE (`tokenizer.ggml.model = gpt2`)
//! vocabularies: vocabulary and merge ranks, the pre-tokenizer named by `tokenizer.ggml.pre`,
//! which tokens are matched as whole special tokens in text, and BOS/EOS handling.

use super::{pretokenizer, Tokenizer};
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

/// llama.cpp token types (`llama_token_type`).
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

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
        "gpt2" => {}
        "llama" => bail!(
            "SentencePiece (`llama`) GGUF vocabularies are not supported yet (`{KEY_MODEL}` = \"llama\"); use the model's tokenizer.json"
        ),
        other => bail!(
            "unsupported GGUF tokenizer `{KEY_MODEL}` = \"{other}\": only byte-level BPE (\"gpt2\") vocabularies are supported; use the model's tokenizer.json"
        ),
    }

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

    let raw_tokens = get_string_array(content, KEY_TOKENS)?.with_context(|| {
        format!("GGUF metadata has no `{KEY_TOKENS}` (the vocabulary); load the model's tokenizer.json instead")
    })?;
    // llama.cpp renames empty tokens so that they stay distinct.
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
    let n_tokens = tokens.len();
    if n_tokens == 0 {
        bail!("GGUF metadata `{KEY_TOKENS}` is empty; load the model's tokenizer.json instead");
    }
    let n_tokens_u32 = u32::try_from(n_tokens).with_context(|| {
        format!("`{KEY_TOKENS}` has {n_tokens} entries, more than u32 ids allow")
    })?;

    let types = get_int_array(content, KEY_TYPES)?;
    if let Some(t) = &types {
        if t.len() < n_tokens {
            bail!("GGUF metadata `{KEY_TYPES}` has {} entries but `{KEY_TOKENS}` has {n_tokens}; the file is malformed, re-convert it", t.len());
        }
    }

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
    if add_bos && bos_id.is_none() {
        bail!("the GGUF tokenizer asks for a BOS token (`{KEY_ADD_BOS}` or pre-tokenizer \"{pre}\") but has no `{KEY_BOS}`; the file is malformed, re-convert it");
    }
    if add_eos && eos_id.is_none() {
        bail!(
            "GGUF metadata `{KEY_ADD_EOS}` is true but there is no `{KEY_EOS}`; the file is malformed, re-convert it"
        );
    }

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
    Tokenizer::from_parts(inner, bos_id, eos_id, n_tokens_u32 as usize, chat_template)
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

fn is_auto_special(text: &str) -> bool {
    super::EOG_NAMES.contains(&text) || AUTO_SPECIAL_EXTRA.contains(&text)
}
