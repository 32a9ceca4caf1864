//! Text ↔ token ids. This module owns the tokenizer: building it from a GGUF file's
//! `tokenizer.ggml.*` metadata (matching llama.cpp's tokenization exactly for the supported
//! byte-level BPE pre-tokenizers) or from a Hugging Face `tokenizer.json`, encoding (special
//! tokens written in the text become their single ids; BOS only when the model asks for it),
//! decoding, streamed decoding ([`TokenStream`]), and writing the tokenizer back out as
//! `tokenizer.json` + `tokenizer_config.json` for `gen convert`.
//!
//! Two backends sit behind the one [`Tokenizer`]: byte-level BPE (from tokenizer.json, or a GGUF
//! `gpt2` vocabulary turned into the equivalent pipeline, see `gguf.rs` and `pretokenizer.rs`)
//! runs on the Hugging Face `tokenizers` crate, which is also what makes
//! [`Tokenizer::to_json_string`] possible; SentencePiece GGUF vocabularies (`llama`) run on our
//! own encoder (`spm.rs`), because llama.cpp's merge order is not one the crate offers.

mod gguf;
mod pretokenizer;
mod spm;
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

/// The encoder and decoder proper.
#[derive(Clone)]
enum Backend {
    /// A Hugging Face pipeline. `plain` is a copy that reads special-token texts as text, made
    /// on first use of [`Tokenizer::encode_plain`] (the crate keeps that switch on the
    /// tokenizer, not per call).
    Hf {
        inner: Box<tokenizers::Tokenizer>,
        plain: std::sync::OnceLock<Box<tokenizers::Tokenizer>>,
    },
    /// Our SentencePiece encoder.
    Spm(Box<spm::Spm>),
}

/// Where a tokenizer came from, for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A Hugging Face tokenizer.json.
    Json,
    /// A GGUF byte-level BPE vocabulary with this `tokenizer.ggml.pre`.
    GgufBpe { pre: String },
    /// A GGUF SentencePiece vocabulary.
    GgufSpm,
}

/// BOS/EOS as a vocabulary declares them, and the ids that end generation besides the named
/// end-of-turn tokens.
pub(crate) struct SpecialIds {
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// EOS, EOT, EOM ids from the metadata, in that order.
    pub eog_seed: Vec<u32>,
}

/// A tokenizer for one model: the encoder ([`Backend`]) plus what this project needs around it
/// (BOS/EOS ids, whether BOS is prepended, the chat template).
#[derive(Clone)]
pub struct Tokenizer {
    backend: Backend,
    origin: Origin,
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
        let ids = SpecialIds {
            bos_id,
            eos_id,
            add_bos: false,
            add_eos: false,
            eog_seed: eos_id.into_iter().collect(),
        };
        Self::from_parts(inner, Origin::Json, ids, vocab_size, chat_template)
    }

    /// Finishes a Hugging Face backed tokenizer: whether BOS/EOS get added is read off the
    /// pipeline's post-processor (`ids.add_bos`/`add_eos` are ignored), and which ids end
    /// generation.
    fn from_parts(
        inner: tokenizers::Tokenizer,
        origin: Origin,
        ids: SpecialIds,
        vocab_size: usize,
        chat_template: Option<String>,
    ) -> Result<Self> {
        let added = probe_added(&inner)?;
        let add_bos = ids.bos_id.is_some() && added.front.first().copied() == ids.bos_id;
        let add_eos = ids.eos_id.is_some() && added.back.last().copied() == ids.eos_id;
        let specials = inner.get_added_vocabulary().get_vocab();
        let eog_ids = end_of_generation(
            &ids.eog_seed,
            |name| specials.get(name).copied(),
            |id| inner.id_to_token(id),
        );
        let mut control_ids: Vec<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        control_ids.sort_unstable();
        Ok(Self {
            backend: Backend::Hf {
                inner: Box::new(inner),
                plain: std::sync::OnceLock::new(),
            },
            origin,
            bos_id: ids.bos_id,
            eos_id: ids.eos_id,
            add_bos,
            add_eos,
            vocab_size,
            eog_ids,
            control_ids,
            chat_template,
            longest_token: std::sync::OnceLock::new(),
        })
    }

    /// Finishes a SentencePiece tokenizer. Control and unknown tokens are the ones generated
    /// text leaves out (llama.cpp's `token_to_piece` without `special`).
    fn from_spm(spm: spm::Spm, ids: SpecialIds, chat_template: Option<String>) -> Result<Self> {
        let eog_ids = end_of_generation(
            &ids.eog_seed,
            |name| {
                spm.token_to_id(name)
                    .filter(|&id| spm.kind(id) == Some(spm::Kind::Control))
            },
            |id| spm.id_to_token(id).map(str::to_string),
        );
        let control_ids: Vec<u32> = (0..spm.len())
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&id| matches!(spm.kind(id), Some(spm::Kind::Control | spm::Kind::Unknown)))
            .collect();
        Ok(Self {
            vocab_size: spm.len(),
            backend: Backend::Spm(Box::new(spm)),
            origin: Origin::GgufSpm,
            bos_id: ids.bos_id,
            eos_id: ids.eos_id,
            add_bos: ids.add_bos,
            add_eos: ids.add_eos,
            eog_ids,
            control_ids,
            chat_template,
            longest_token: std::sync::OnceLock::new(),
        })
    }

    /// One line saying what was built, for `-v`: `SentencePiece (llama), 32000 tokens, add_bos`.
    pub fn summary(&self) -> String {
        let what = match &self.origin {
            Origin::Json => "Hugging Face tokenizer.json".to_string(),
            Origin::GgufBpe { pre } => format!("byte-level BPE, pre-tokenizer {pre}"),
            Origin::GgufSpm => "SentencePiece (llama)".to_string(),
        };
        let mut line = format!("{what}, {} tokens", self.vocab_size);
        if let Backend::Spm(spm) = &self.backend {
            if !spm.add_space_prefix() {
                line.push_str(", no space prefix");
            }
        }
        for (on, name) in [(self.add_bos, "add_bos"), (self.add_eos, "add_eos")] {
            if on {
                line.push_str(", ");
                line.push_str(name);
            }
        }
        line
    }

    /// Encodes text. Special tokens written in the text (e.g. `<|im_start|>`) become their
    /// single ids; BOS is prepended (and EOS appended) only when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let fail =
            |e: &dyn std::fmt::Display| anyhow!("encoding {} bytes of text: {e}", text.len());
        match &self.backend {
            Backend::Hf { inner, .. } => Ok(inner
                .encode(text, true)
                .map_err(|e| fail(&e))?
                .get_ids()
                .to_vec()),
            Backend::Spm(spm) => {
                let body = spm
                    .encode(text, spm::Specials::Parse)
                    .map_err(|e| fail(&e))?;
                let bos = self.bos_id.filter(|_| self.add_bos);
                let eos = self.eos_id.filter(|_| self.add_eos);
                Ok(bos.into_iter().chain(body).chain(eos).collect())
            }
        }
    }

    /// Encodes text as llama.cpp's `tokenize(text, add_special = false, parse_special = false)`
    /// (what its tokenizer test suite checks): no BOS/EOS, and the texts of control and unknown
    /// tokens are ordinary text; user-defined tokens are still matched whole.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let fail =
            |e: &dyn std::fmt::Display| anyhow!("encoding {} bytes of text: {e}", text.len());
        match &self.backend {
            Backend::Hf { inner, plain } => {
                let plain = plain.get_or_init(|| {
                    let mut copy = inner.clone();
                    copy.set_encode_special_tokens(true);
                    copy
                });
                Ok(plain
                    .encode(text, false)
                    .map_err(|e| fail(&e))?
                    .get_ids()
                    .to_vec())
            }
            Backend::Spm(spm) => spm
                .encode(text, spm::Specials::AsText)
                .map_err(|e| fail(&e)),
        }
    }

    /// Decodes ids to text, special tokens included as their text. Bytes that do not form
    /// valid UTF-8 become U+FFFD. Ids outside the vocabulary are an error. For SentencePiece,
    /// the space the encoder puts in front of the text is removed again when the ids start
    /// with BOS (as a whole encoded text does); any other first piece keeps its space, so that
    /// a generated continuation reads as llama.cpp prints it.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_shown(ids, |_| true)
    }

    /// [`Tokenizer::decode`] of the ids for which `show` is true, the others given no text.
    fn decode_shown(&self, ids: &[u32], show: impl Fn(u32) -> bool) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            anyhow::bail!(
                "cannot decode token id {bad}: the vocabulary has {} tokens",
                self.vocab_size
            );
        }
        match &self.backend {
            Backend::Hf { inner, .. } => {
                if let Some(bad) = ids.iter().find(|&&id| inner.id_to_token(id).is_none()) {
                    anyhow::bail!(
                        "cannot decode token id {bad}: the vocabulary has no token with that id"
                    );
                }
                let kept: Vec<u32> = ids.iter().copied().filter(|&id| show(id)).collect();
                inner
                    .decode(&kept, false)
                    .map_err(|e| anyhow!("decoding {} token ids: {e}", ids.len()))
            }
            Backend::Spm(spm) => spm.decode(ids, self.bos_id, show),
        }
    }

    /// The length in bytes of the longest token's text in the vocabulary: a bound on how much
    /// text one token stands for (its stored form is never shorter than the text: byte-level
    /// BPE writes a byte as a character of 1–2 bytes, SentencePiece a space as 3 bytes).
    pub fn longest_token_bytes(&self) -> usize {
        *self.longest_token.get_or_init(|| {
            match &self.backend {
                Backend::Hf { inner, .. } => inner
                    .get_vocab(true)
                    .keys()
                    .map(String::len)
                    .max()
                    .unwrap_or(1),
                Backend::Spm(spm) => spm.longest_token_bytes(),
            }
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
        self.decode_shown(ids, |id| !self.is_control(id))
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
        match &self.backend {
            Backend::Hf { inner, .. } => inner.token_to_id(tok),
            Backend::Spm(spm) => spm.token_to_id(tok),
        }
    }

    /// The vocabulary text of an id (byte-level form for ordinary tokens), if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.backend {
            Backend::Hf { inner, .. } => inner.id_to_token(id),
            Backend::Spm(spm) => spm.id_to_token(id).map(str::to_string),
        }
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

    /// Serialises the tokenizer as a Hugging Face `tokenizer.json`. Loading it with
    /// [`Tokenizer::from_json_file`] or with HF `tokenizers` gives the same ids for every text
    /// (BOS/EOS handling is part of its post-processor). A SentencePiece GGUF vocabulary is an
    /// error: no `tokenizers` model merges as llama.cpp's SentencePiece encoder does, so the
    /// file would tokenize differently.
    pub fn to_json_string(&self) -> Result<String> {
        match &self.backend {
            Backend::Hf { inner, .. } => inner
                .to_string(true)
                .map_err(|e| anyhow!("serialising the tokenizer as tokenizer.json: {e}")),
            Backend::Spm(_) => anyhow::bail!(
                "cannot write a tokenizer.json for a SentencePiece GGUF vocabulary: the Hugging Face \
                 models do not merge as llama.cpp does, so it would tokenize differently; copy the \
                 model's original tokenizer.json (and tokenizer.model) instead"
            ),
        }
    }

    /// A `tokenizer_config.json` to write beside [`Tokenizer::to_json_string`]'s output: BOS/EOS
    /// token texts, `add_bos_token`/`add_eos_token`, no space clean-up, and the chat template.
    pub fn to_config_json_string(&self) -> Result<String> {
        let text = |id: Option<u32>| id.and_then(|id| self.id_to_token(id));
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

/// The ids that end generation, as llama.cpp's `special_eog_ids`: `seed` (EOS, EOT, EOM) and
/// every special token named in [`EOG_NAMES`] (`named` finds one), seed first. As llama.cpp,
/// `<|end|>` is dropped when `<|return|>` and `<|call|>` (or `<|calls|>` and `<|flush|>`) are
/// there too (gpt-oss ends a message with it, not the generation), and `</s>` when
/// `<|tool_response>` or `<|plamo:eos|>` is (there it is ordinary text).
fn end_of_generation(
    seed: &[u32],
    named: impl Fn(&str) -> Option<u32>,
    text_of: impl Fn(u32) -> Option<String>,
) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    for id in seed
        .iter()
        .copied()
        .chain(EOG_NAMES.iter().filter_map(|n| named(n)))
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let texts: Vec<Option<String>> = ids.iter().map(|&id| text_of(id)).collect();
    let has = |t: &str| texts.iter().any(|x| x.as_deref() == Some(t));
    let mut drop = Vec::new();
    let call = has("<|call|>") || has("<|calls|>");
    if has("<|end|>") && call && (has("<|return|>") || has("<|flush|>")) {
        drop.push("<|end|>");
    }
    if (has("<|tool_response>") || has("<|plamo:eos|>")) && has("</s>") {
        drop.push("</s>");
    }
    ids.into_iter()
        .zip(texts)
        .filter(|(_, t)| !t.as_deref().is_some_and(|t| drop.contains(&t)))
        .map(|(id, _)| id)
        .collect()
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
