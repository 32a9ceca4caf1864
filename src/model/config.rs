//! The model's resolved shape and hyper-parameters, read once from `config.json` (+
//! `generation_config.json`) or from GGUF metadata, validated, and never re-parsed.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;
use std::path::Path;

/// How the rows of the Q and K projections are laid out for rotary embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Hugging Face layout: rotate the first half of each head against the second half.
    HalfSplit,
    /// GGUF/Meta layout: rotate adjacent pairs (llama.cpp permutes Q/K rows when converting).
    Interleaved,
}

/// Llama 3 style frequency-dependent RoPE scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// Fully resolved Llama configuration; field names follow Hugging Face's `LlamaConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub tie_word_embeddings: bool,
    pub rope_layout: RopeLayout,
    pub bos_token_id: Option<u32>,
    /// Every id that ends generation (config.json and generation_config.json may list several).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Checks that the shapes divide as the forward pass needs; names the offending keys.
    pub fn validate(&self) -> Result<()> {
        let nonzero = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in nonzero {
            if v == 0 {
                bail!("model config: `{key}` is 0; it must be a positive integer");
            }
        }
        // The forward pass multiplies these sizes pairwise (heads × head_dim, vocab × hidden):
        // bounded as llama.cpp's u32 hyperparameters are, no product can wrap.
        let widths = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
        ];
        for (key, v) in widths {
            if v > u32::MAX as usize {
                bail!(
                    "model config: `{key}` is {v}, more than any model has (at most {})",
                    u32::MAX
                );
            }
        }
        if let Some(s) = &self.rope_scaling {
            let positive = |v: f32| v.is_finite() && v > 0.0;
            if !(positive(s.factor)
                && positive(s.low_freq_factor)
                && positive(s.high_freq_factor)
                && s.low_freq_factor < s.high_freq_factor
                && s.original_max_position_embeddings > 0)
            {
                bail!(
                    "model config: rope_scaling needs a positive factor ({}), 0 < low_freq_factor ({}) < high_freq_factor ({}) and a positive original_max_position_embeddings ({})",
                    s.factor,
                    s.low_freq_factor,
                    s.high_freq_factor,
                    s.original_max_position_embeddings
                );
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "model config: num_attention_heads ({}) is not a multiple of num_key_value_heads ({}); \
                 grouped-query attention needs every KV head to serve the same number of query heads",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            bail!(
                "model config: head_dim ({}) must be even for rotary embeddings",
                self.head_dim
            );
        }
        if self.rms_norm_eps.is_nan()
            || self.rms_norm_eps <= 0.0
            || !self.rope_theta.is_finite()
            || self.rope_theta <= 0.0
        {
            bail!(
                "model config: rms_norm_eps ({}) and rope_theta ({}) must be positive",
                self.rms_norm_eps,
                self.rope_theta
            );
        }
        if let Some(id) = self
            .eos_token_ids
            .iter()
            .find(|&&id| id as usize >= self.vocab_size)
        {
            bail!(
                "model config: eos_token_id {id} is outside the vocabulary (size {})",
                self.vocab_size
            );
        }
        Ok(())
    }

    /// Reads `config.json` in `dir`, plus `generation_config.json` when present (its EOS ids are
    /// added to the config's).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        crate::weights::source::check_regular_file(&path)?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {}: a safetensors model folder needs its config.json",
                path.display()
            )
        })?;
        let raw: HfConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as a Llama config.json", path.display()))?;
        let mut cfg = raw
            .resolve()
            .with_context(|| format!("in {}", path.display()))?;
        let gen_path = dir.join("generation_config.json");
        if gen_path.exists() {
            crate::weights::source::check_regular_file(&gen_path)?;
            let text = std::fs::read_to_string(&gen_path)
                .with_context(|| format!("reading {}", gen_path.display()))?;
            let gen: HfGenerationConfig = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", gen_path.display()))?;
            for id in gen.eos_token_id.map(IdList::into_vec).unwrap_or_default() {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
            if cfg.bos_token_id.is_none() {
                cfg.bos_token_id = gen.bos_token_id;
            }
        }
        cfg.validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// Reads the `llama.*` and `tokenizer.ggml.*` metadata of a GGUF file.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .map(|v| v.to_string().cloned())
            .transpose()
            .context("GGUF key `general.architecture` is not a string")?
            .unwrap_or_default();
        if arch != "llama" {
            bail!(
                "unsupported architecture `{arch}` (GGUF key general.architecture); gen runs Llama-architecture models only"
            );
        }
        let get = |key: &str| -> Result<&gguf_file::Value> {
            md.get(key).with_context(|| {
                format!(
                    "GGUF metadata key `{key}` is missing; the file is not a complete llama GGUF"
                )
            })
        };
        let get_usize = |key: &str| -> Result<usize> {
            Ok(value_u64(get(key)?).with_context(|| format!("GGUF key `{key}`"))? as usize)
        };
        let get_f32 = |key: &str| -> Result<f32> {
            get(key)?
                .to_f32()
                .map_err(anyhow::Error::from)
                .with_context(|| format!("GGUF key `{key}`"))
        };
        let hidden_size = get_usize("llama.embedding_length")?;
        let num_attention_heads = get_usize("llama.attention.head_count")?;
        let num_key_value_heads = match md.get("llama.attention.head_count_kv") {
            Some(_) => get_usize("llama.attention.head_count_kv")?,
            None => num_attention_heads,
        };
        let head_dim = match md.get("llama.attention.key_length") {
            Some(_) => get_usize("llama.attention.key_length")?,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let token_embd = content
            .tensor_infos
            .get("token_embd.weight")
            .context("GGUF tensor `token_embd.weight` is missing")?;
        let vocab_size = match md.get("llama.vocab_size") {
            Some(_) => get_usize("llama.vocab_size")?,
            None => token_embd.shape.dims().first().copied().context(
                "GGUF tensor `token_embd.weight` has no dimensions (and there is no `llama.vocab_size`)",
            )?,
        };
        let opt_u32 = |key: &str| {
            md.get(key)
                .and_then(|v| value_u64(v).ok())
                .map(|v| v as u32)
        };
        let cfg = Self {
            hidden_size,
            intermediate_size: get_usize("llama.feed_forward_length")?,
            num_hidden_layers: get_usize("llama.block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: get_f32("llama.attention.layer_norm_rms_epsilon")? as f64,
            rope_theta: match md.get("llama.rope.freq_base") {
                Some(_) => get_f32("llama.rope.freq_base")?,
                None => 10_000.0,
            },
            max_position_embeddings: get_usize("llama.context_length")?,
            // GGUF bakes llama3 scaling into the `rope_freqs.weight` tensor, read by the model.
            rope_scaling: None,
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            rope_layout: RopeLayout::Interleaved,
            bos_token_id: opt_u32("tokenizer.ggml.bos_token_id"),
            eos_token_ids: opt_u32("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        cfg.validate().context("in the GGUF metadata")?;
        Ok(cfg)
    }
}

fn value_u64(v: &gguf_file::Value) -> Result<u64> {
    use gguf_file::Value::*;
    Ok(match v {
        U8(x) => *x as u64,
        U16(x) => *x as u64,
        U32(x) => *x as u64,
        U64(x) => *x,
        I8(x) if *x >= 0 => *x as u64,
        I16(x) if *x >= 0 => *x as u64,
        I32(x) if *x >= 0 => *x as u64,
        I64(x) if *x >= 0 => *x as u64,
        other => bail!("expected a non-negative integer, found {other:?}"),
    })
}

/// One id or a list of ids, as `eos_token_id` may be written either way.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum IdList {
    One(u32),
    Many(Vec<u32>),
}

impl IdList {
    fn into_vec(self) -> Vec<u32> {
        match self {
            IdList::One(id) => vec![id],
            IdList::Many(ids) => ids,
        }
    }
}

#[derive(Debug, Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: String,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

/// `config.json` as Hugging Face writes it for `LlamaForCausalLM`.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    rope_scaling: Option<HfRopeScaling>,
    #[serde(default)]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<IdList>,
}

#[derive(Debug, Deserialize)]
struct HfGenerationConfig {
    bos_token_id: Option<u32>,
    eos_token_id: Option<IdList>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f32 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

impl HfConfig {
    fn resolve(self) -> Result<LlamaConfig> {
        let is_llama = self.model_type.as_deref().is_none_or(|t| t == "llama")
            && self.architectures.iter().all(|a| a == "LlamaForCausalLM");
        if !is_llama {
            bail!(
                "unsupported architecture (model_type {:?}, architectures {:?}); gen runs Llama-architecture models only",
                self.model_type,
                self.architectures
            );
        }
        let rope_scaling = match self.rope_scaling {
            None => None,
            Some(s) if s.rope_type == "llama3" => {
                let need = |v: Option<f32>, k: &str| {
                    v.with_context(|| format!("rope_scaling of type llama3 needs `{k}`"))
                };
                Some(Llama3RopeScaling {
                    factor: need(s.factor, "factor")?,
                    low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: s.original_max_position_embeddings.context(
                        "rope_scaling of type llama3 needs `original_max_position_embeddings`",
                    )?,
                })
            }
            Some(s) if s.rope_type == "default" => None,
            Some(s) => bail!(
                "rope_scaling type `{}` is not supported (supported: llama3, default)",
                s.rope_type
            ),
        };
        let num_key_value_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if self.num_attention_heads > 0 => {
                if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
                    bail!(
                        "hidden_size ({}) is not divisible by num_attention_heads ({}) and no head_dim is given",
                        self.hidden_size,
                        self.num_attention_heads
                    );
                }
                self.hidden_size / self.num_attention_heads
            }
            None => 0,
        };
        Ok(LlamaConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: self.vocab_size,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings,
            rope_layout: RopeLayout::HalfSplit,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self.eos_token_id.map(IdList::into_vec).unwrap_or_default(),
        })
    }
}

/// The `config.json` text for a configuration (used by `gen convert` and test fixtures).
pub fn to_hf_config_json(cfg: &LlamaConfig) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
    });
    if let Some(id) = cfg.bos_token_id {
        v["bos_token_id"] = id.into();
    }
    match cfg.eos_token_ids.as_slice() {
        [] => {}
        [one] => v["eos_token_id"] = (*one).into(),
        many => v["eos_token_id"] = many.to_vec().into(),
    }
    if let Some(s) = &cfg.rope_scaling {
        v["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    }
    v
}
