//! Text ↔ token ids. This module owns the tokenizer: building it from a GGUF file's
//! `tokenizer.ggml.*` metadata (matching llama.cpp's tokenization exactly for the supported
//! byte-level BPE pre-tokenizers) or from a Hugging Face `tokenizer.json`, encoding (special
//! tokens written in the text become their single ids; BOS only when the model asks for it),
//! decoding, streamed decoding ([`TokenStream`]), and writing the tokenizer back out as
//! `tokenizer.json` + `tokenizer_config.json` for `gen convert`.
//!
//! Everything runs on the Hugging Face `tokenizers` crate; a GGUF vocabulary is turned into the
//! equivalent `tokenizers` pipeline (see `gguf.rs` and `pretokenizer.rs`), which is also what
//! makes [`Tokenizer::to_json_string`] possible.

mod gguf;
mod pretokenizer;
mod stream;

pub use pretokenizer::supported_pre_tokenizers;
pub use stream::TokenStream;

use anyhow::{anyhow, Context, Result};
use candle_core::quantized::gguf_file;
use std::path::Path;
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::PostProcessorWrapper;

/// Token texts that end generation when they are special tokens of the vocabulary (llama.cpp's
/// end-of-generation list, `special_eog_ids`).
pub(crate) const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// A tokenizer for one model: a Hugging Face `tokenizers` pipeline plus what this project needs
/// around it (BOS/EOS ids, whether BOS is prepended, the chat template).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    vocab_size: usize,
    eog_ids: Vec<u32>,
    /// Ids of the control tokens (special added tokens: `<|im_start|>`, `<|im_end|>`, ...),
    /// sorted; generated text leaves them out unless asked to show them.
    control_ids: Vec<u32>,
    chat_template: Option<String>,
    /// The longest token's text in bytes (computed on first use).
    longest_token: std::sync::OnceLock<usize>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

/// The ids a post-processor puts before and after a sequence.
struct Added {
    front: Vec<u32>,
    back: Vec<u32>,
}

/// Finds what `inner`'s post-processor adds around an encoding, by encoding a probe text with
/// and without special tokens.
fn probe_added(inner: &tokenizers::Tokenizer) -> Result<Added> {
    let probe = "a";
    let plain = inner
        .encode(probe, false)
        .map_err(|e| anyhow!("encoding a probe text: {e}"))?;
    let full = inner
        .encode(probe, true)
        .map_err(|e| anyhow!("encoding a probe text: {e}"))?;
    let (plain, full) = (plain.get_ids(), full.get_ids());
    if plain.is_empty() {
        return Ok(Added {
            front: full.to_vec(),
            back: Vec::new(),
        });
    }
    let at = (0..=full.len().saturating_sub(plain.len())).find(|&i| full[i..].starts_with(plain));
    Ok(match at {
        Some(i) => Added {
            front: full[..i].to_vec(),
            back: full[i + plain.len()..].to_vec(),
        },
        None => Added {
            front: Vec::new(),
            back: Vec::new(),
        },
    })
}

/// `bos_token` / `eos_token` in a tokenizer_config.json: a string or an AddedToken object.
fn config_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata (`tokenizer.ggml.*`): vocabulary,
    /// merges, token types (control, user-defined and unknown tokens are matched whole in text),
    /// BOS/EOS ids and `add_bos_token`, and the pre-tokenizer named by `tokenizer.ggml.pre`
    /// (see [`supported_pre_tokenizers`]; any other name is an error). SentencePiece (`llama`)
    /// vocabularies are not supported yet and give an error saying to use tokenizer.json.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        gguf::from_gguf(content)
    }

    /// Reads a GGUF file's header and builds the tokenizer from its metadata, as
    /// [`Tokenizer::from_gguf`].
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the GGUF file {}", path.display()))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let content = crate::weights::read_gguf_header(&mut reader).with_context(|| {
            format!(
                "reading the GGUF header of {} (is it a GGUF file?)",
                path.display()
            )
        })?;
        Self::from_gguf(&content)
            .with_context(|| format!("building the tokenizer from {}", path.display()))
    }

    /// Loads a Hugging Face `tokenizer.json`. Its post-processor decides whether BOS/EOS are
    /// added; when it does not add BOS but a `tokenizer_config.json` beside the file sets
    /// `add_bos_token: true` (with a `bos_token` in the vocabulary), BOS is added on top of it
    /// (likewise `add_eos_token`). The config also supplies the BOS/EOS token texts and the chat
    /// template. Truncation and padding stored in the json are turned off.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let mut inner = read_hf_json(path)?;
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("turning off truncation for {}: {e}", path.display()))?;
        inner.with_padding(None);
        inner.set_encode_special_tokens(false);

        let config_path = path.with_file_name("tokenizer_config.json");
        let config: serde_json::Value = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "parsing {} as JSON; fix or remove the file (it is optional)",
                    config_path.display()
                )
            })?
        } else {
            serde_json::Value::Null
        };
        let lookup = |key: &str| -> Result<Option<(String, u32)>> {
            match config_token(&config, key) {
                None => Ok(None),
                Some(t) => {
                    let id = inner.token_to_id(&t).with_context(|| {
                        format!(
                            "{} names `{key}` = {t:?}, which is not in {}; fix the config",
                            config_path.display(),
                            path.display()
                        )
                    })?;
                    Ok(Some((t, id)))
                }
            }
        };
        let bos = lookup("bos_token")?;
        let eos = lookup("eos_token")?;
        let want_bos = config
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let want_eos = config
            .get("add_eos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);

        let added = probe_added(&inner)?;
        // Without a config, a single token the post-processor puts in front is the BOS.
        let bos_id = bos.as_ref().map(|b| b.1).or(match added.front.as_slice() {
            [id] => Some(*id),
            _ => None,
        });
        let eos_id = eos.as_ref().map(|e| e.1).or(match added.back.as_slice() {
            [id] => Some(*id),
            _ => None,
        });
        let missing_bos = want_bos && added.front.first().copied() != bos_id;
        let missing_eos = want_eos && added.back.last().copied() != eos_id;
        if missing_bos || missing_eos {
            let need = |want: bool,
                        tok: Option<(String, u32)>,
                        key: &str|
             -> Result<Option<(String, u32)>> {
                if !want {
                    return Ok(None);
                }
                tok.map(Some).with_context(|| {
                    format!(
                        "{} sets add_{key}_token but has no `{key}_token`; add it or set add_{key}_token to false",
                        config_path.display()
                    )
                })
            };
            let template = gguf::template(
                need(missing_bos, bos, "bos")?,
                need(missing_eos, eos, "eos")?,
            )?;
            let processor: PostProcessorWrapper = match inner.get_post_processor() {
                Some(existing) => {
                    ProcessorSequence::new(vec![existing.clone(), template.into()]).into()
                }
                None => template.into(),
            };
            inner.with_post_processor(Some(processor));
        }
        let chat_template = config
            .get("chat_template")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        Self::from_parts(inner, bos_id, eos_id, vocab_size, chat_template)
    }

    /// Finishes construction: works out whether BOS/EOS get added and which ids end generation.
    fn from_parts(
        inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        vocab_size: usize,
        chat_template: Option<String>,
    ) -> Result<Self> {
        let added = probe_added(&inner)?;
        let add_bos = bos_id.is_some() && added.front.first().copied() == bos_id;
        let add_eos = eos_id.is_some() && added.back.last().copied() == eos_id;
        let specials = inner.get_added_vocabulary();
        let mut eog_ids: Vec<u32> = eos_id.into_iter().collect();
        for name in EOG_NAMES {
            if let Some(id) = specials.get_vocab().get(*name) {
                if !eog_ids.contains(id) {
                    eog_ids.push(*id);
                }
            }
        }
        let mut control_ids: Vec<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        control_ids.sort_unstable();
        Ok(Self {
            inner,
            bos_id,
            eos_id,
            add_bos,
            add_eos,
            vocab_size,
            eog_ids,
            control_ids,
            chat_template,
            longest_token: std::sync::OnceLock::new(),
        })
    }

    /// Encodes text. Special tokens written in the text (e.g. `<|im_start|>`) become their
    /// single ids; BOS is prepended (and EOS appended) only when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| anyhow!("encoding {} bytes of text: {e}", text.len()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text, special tokens included as their text. Bytes that do not form
    /// valid UTF-8 become U+FFFD. Ids outside the vocabulary are an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            anyhow::bail!(
                "cannot decode token id {bad}: the vocabulary has {} tokens",
                self.vocab_size
            );
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow!("decoding {} token ids: {e}", ids.len()))
    }

    /// The length in bytes of the longest token's text in the vocabulary: a bound on how much
    /// text one token stands for (its stored form is never shorter than the text: byte-level
    /// BPE writes a byte as a character of 1–2 bytes, SentencePiece a space as 3 bytes).
    pub fn longest_token_bytes(&self) -> usize {
        *self.longest_token.get_or_init(|| {
            self.inner
                .get_vocab(true)
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(1)
                .max(1)
        })
    }

    /// Whether `id` is a control token (a special added token such as `<|im_end|>`).
    pub fn is_control(&self, id: u32) -> bool {
        self.control_ids.binary_search(&id).is_ok()
    }

    /// The text of generated ids: as [`Tokenizer::decode`], leaving control tokens out unless
    /// `special` (llama.cpp prints them only with `--special`).
    pub fn decode_text(&self, ids: &[u32], special: bool) -> Result<String> {
        if special {
            return self.decode(ids);
        }
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| !self.is_control(id))
            .collect();
        self.decode(&kept)
    }

    /// Starts a streaming decode (see [`TokenStream`]).
    pub fn stream(&self) -> TokenStream<'_> {
        TokenStream::new(self)
    }

    /// Number of token ids (one more than the largest id), special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token given its vocabulary text (byte-level form, e.g. `"Ġhello"`), or of a
    /// special token given its text.
    pub fn token_to_id(&self, tok: &str) -> Option<u32> {
        self.inner.token_to_id(tok)
    }

    /// The vocabulary text of an id (byte-level form for ordinary tokens), if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The BOS token id, if the vocabulary has one (whether or not it is added).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether [`Tokenizer::encode`] prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The EOS token id, if the vocabulary names one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether [`Tokenizer::encode`] appends EOS (rare; some embedding models).
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Ids that end generation, as llama.cpp decides: EOS plus the special tokens named like an
    /// end of turn or of text (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, ...). EOS, when
    /// known, comes first.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog_ids
    }

    /// The chat template stored with the tokenizer (GGUF `tokenizer.chat_template`, or
    /// `chat_template` in tokenizer_config.json), if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The underlying Hugging Face tokenizer.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Serialises the tokenizer as a Hugging Face `tokenizer.json`. Loading it with
    /// [`Tokenizer::from_json_file`] or with HF `tokenizers` gives the same ids for every text
    /// (BOS/EOS handling is part of its post-processor).
    pub fn to_json_string(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow!("serialising the tokenizer as tokenizer.json: {e}"))
    }

    /// A `tokenizer_config.json` to write beside [`Tokenizer::to_json_string`]'s output: BOS/EOS
    /// token texts, `add_bos_token`/`add_eos_token`, no space clean-up, and the chat template.
    pub fn to_config_json_string(&self) -> Result<String> {
        let text = |id: Option<u32>| id.and_then(|id| self.inner.id_to_token(id));
        let mut config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": text(self.bos_id),
            "eos_token": text(self.eos_id),
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            "clean_up_tokenization_spaces": false,
        });
        if let (Some(t), Some(map)) = (&self.chat_template, config.as_object_mut()) {
            map.insert(
                "chat_template".to_string(),
                serde_json::Value::String(t.clone()),
            );
        }
        serde_json::to_string_pretty(&config).context("serialising tokenizer_config.json")
    }
}

/// Parses a Hugging Face `tokenizer.json`. The tokenizers crate (0.22) panics, through an
/// `expect`, on some malformed sections (a syntax error inside `decoder` was found by fuzzing)
/// instead of returning an error, so the JSON is checked first and a panic left in the crate
/// is caught and reported as the error it should have been.
fn read_hf_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let invalid = |e: &dyn std::fmt::Display| {
        anyhow!(
            "loading {}: {e}; it must be a Hugging Face tokenizer.json (from the model's repository)",
            path.display()
        )
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| invalid(&e))?;
    // Silenced, the default hook would print the panic; nothing else runs while a model loads.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(&bytes));
    std::panic::set_hook(hook);
    match parsed {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(invalid(&e)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "malformed section".into());
            Err(invalid(&format!(
                "the tokenizers library rejected it ({why})"
            )))
        }
    }
}
