//! The model's resolved shape and hyper-parameters, read once from `config.json` (+
//! `generation_config.json`) or from GGUF metadata, validated, and never re-parsed.

pub use super::family::{Activation, Family};
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde::Deserialize;
use std::path::Path;

/// How the rows of the Q and K projections are laid out for rotary embeddings, and whose
/// rounding the angles follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Hugging Face layout: rotate the first half of each head against the second half, with
    /// transformers' angles.
    HalfSplit,
    /// GGUF/Meta layout: rotate adjacent pairs (llama.cpp permutes Llama's Q/K rows when
    /// converting), with ggml's angles (`LLAMA_ROPE_TYPE_NORM`).
    Interleaved,
    /// Halves of each head as transformers stores them, with ggml's angles and rounding
    /// (`LLAMA_ROPE_TYPE_NEOX`: GGUF Qwen2, Qwen3, Gemma 3).
    Neox,
}

/// Which layers attend through the sliding window (the others see the whole context).
#[derive(Debug, Clone, PartialEq)]
pub enum SlidingLayers {
    /// Every layer (Mistral).
    All,
    /// All but every `n`th (layers `n - 1`, `2n - 1`, … are global): Gemma 3's 5 local : 1
    /// global, llama.cpp's `set_swa_pattern`.
    AllButEvery(usize),
    /// Layer by layer (`layer_types` in config.json, or a GGUF pattern array).
    Listed(Vec<bool>),
}

impl SlidingLayers {
    fn contains(&self, layer: usize) -> bool {
        match self {
            SlidingLayers::All => true,
            SlidingLayers::AllButEvery(n) => *n == 0 || !(layer + 1).is_multiple_of(*n),
            SlidingLayers::Listed(l) => l.get(layer).copied().unwrap_or(false),
        }
    }
}

/// Sliding-window attention: a query at position `p` sees keys at `p - size + 1 ..= p` in the
/// layers it applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    pub size: usize,
    pub layers: SlidingLayers,
    /// The RoPE base of the sliding layers (Gemma 3: 10 000 while global layers use 1 000 000).
    pub rope_theta: f32,
}

/// Llama 3 style frequency-dependent RoPE scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// Fully resolved configuration of a model of any supported [`Family`]; field names follow
/// Hugging Face's `LlamaConfig`, the families' extras after them.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub family: Family,
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
    /// Whether q, k and v have biases (Qwen2; `attention_bias` in a Llama config.json).
    pub attention_bias: bool,
    /// Linear RoPE scaling: positions are multiplied by this (1 = none; `rope_scaling` of
    /// type `linear` with factor f gives 1 / f). Global layers only, as in llama.cpp and
    /// transformers' Gemma 3.
    pub rope_freq_scale: f32,
    /// Attention scores are scaled by `1 / √query_pre_attn_scalar` (the head size, except
    /// where Gemma says otherwise).
    pub query_pre_attn_scalar: f32,
    pub sliding_window: Option<SlidingWindow>,
}

impl LlamaConfig {
    /// Whether layer `i` attends through the sliding window, and its size if so.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        self.sliding_window
            .as_ref()
            .filter(|w| w.layers.contains(layer))
            .map(|w| w.size)
    }

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
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !positive(self.rope_freq_scale) || !positive(self.query_pre_attn_scalar) {
            bail!(
                "model config: the RoPE scaling factor ({}) and query_pre_attn_scalar ({}) must be positive",
                1.0 / self.rope_freq_scale,
                self.query_pre_attn_scalar
            );
        }
        if let Some(w) = &self.sliding_window {
            if w.size == 0 || !positive(w.rope_theta) {
                bail!(
                    "model config: the sliding window ({}) and its RoPE base ({}) must be positive",
                    w.size,
                    w.rope_theta
                );
            }
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

    /// Reads the `{arch}.*` and `tokenizer.ggml.*` metadata of a GGUF file.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .map(|v| v.to_string().cloned())
            .transpose()
            .context("GGUF key `general.architecture` is not a string")?
            .unwrap_or_default();
        let Some(family) = Family::from_gguf(&arch) else {
            bail!(
                "unsupported architecture `{arch}` (GGUF key general.architecture); gen runs {}",
                Family::supported_list()
            );
        };
        let key = |k: &str| format!("{arch}.{k}");
        let get = |k: &str| -> Result<&gguf_file::Value> {
            let k = key(k);
            md.get(&k).with_context(|| {
                format!(
                    "GGUF metadata key `{k}` is missing; the file is not a complete {arch} GGUF"
                )
            })
        };
        let get_usize = |k: &str| -> Result<usize> {
            Ok(value_u64(get(k)?).with_context(|| format!("GGUF key `{}`", key(k)))? as usize)
        };
        let get_f32 = |k: &str| -> Result<f32> {
            get(k)?
                .to_f32()
                .map_err(anyhow::Error::from)
                .with_context(|| format!("GGUF key `{}`", key(k)))
        };
        let has = |k: &str| md.contains_key(&key(k));
        let hidden_size = get_usize("embedding_length")?;
        let num_attention_heads = get_usize("attention.head_count")?;
        let num_key_value_heads = match has("attention.head_count_kv") {
            true => get_usize("attention.head_count_kv")?,
            false => num_attention_heads,
        };
        let head_dim = match has("attention.key_length") {
            true => get_usize("attention.key_length")?,
            false if num_attention_heads > 0 => hidden_size / num_attention_heads,
            false => 0,
        };
        let token_embd = content
            .tensor_infos
            .get("token_embd.weight")
            .context("GGUF tensor `token_embd.weight` is missing")?;
        let vocab_size = match has("vocab_size") {
            true => get_usize("vocab_size")?,
            false => token_embd.shape.dims().first().copied().with_context(|| {
                format!(
                    "GGUF tensor `token_embd.weight` has no dimensions (and there is no `{}`)",
                    key("vocab_size")
                )
            })?,
        };
        let opt_u32 = |key: &str| {
            md.get(key)
                .and_then(|v| value_u64(v).ok())
                .map(|v| v as u32)
        };
        let rope_theta = match has("rope.freq_base") {
            true => get_f32("rope.freq_base")?,
            false => 10_000.0,
        };
        // llama.cpp reads `rope.scaling.factor` whatever the type says; linear (or none) is
        // all it means for these families (llama3 scaling is baked into `rope_freqs.weight`).
        if has("rope.scaling.type") {
            let t = get("rope.scaling.type")?
                .to_string()
                .cloned()
                .with_context(|| {
                    format!("GGUF key `{}` is not a string", key("rope.scaling.type"))
                })?;
            if !matches!(t.as_str(), "linear" | "none" | "") {
                bail!(
                    "GGUF key `{}` is `{t}`, a RoPE scaling gen does not implement (supported: linear, none)",
                    key("rope.scaling.type")
                );
            }
        }
        let rope_freq_scale = match has("rope.scaling.factor") {
            // llama.cpp reads a factor of 0 as "no scaling".
            true => match get_f32("rope.scaling.factor")? {
                0.0 => 1.0,
                f => 1.0 / f,
            },
            false => 1.0,
        };
        let sliding_window = if family == Family::Gemma3 && has("attention.sliding_window") {
            let size = get_usize("attention.sliding_window")?;
            let layers = match get("attention.sliding_window_pattern") {
                Err(_) => SlidingLayers::AllButEvery(6),
                Ok(gguf_file::Value::Array(a)) => SlidingLayers::Listed(
                    a.iter()
                        .map(|v| v.to_bool().map_err(anyhow::Error::from))
                        .collect::<Result<_>>()
                        .with_context(|| {
                            format!("GGUF key `{}`", key("attention.sliding_window_pattern"))
                        })?,
                ),
                Ok(v) => SlidingLayers::AllButEvery(value_u64(v).with_context(|| {
                    format!("GGUF key `{}`", key("attention.sliding_window_pattern"))
                })? as usize),
            };
            let rope_theta = match has("rope.freq_base_swa") {
                true => get_f32("rope.freq_base_swa")?,
                false => 10_000.0,
            };
            (size > 0).then_some(SlidingWindow {
                size,
                layers,
                rope_theta,
            })
        } else {
            None
        };
        if has("rope.dimension_count") {
            let rot = get_usize("rope.dimension_count")?;
            if rot != head_dim {
                bail!(
                    "GGUF key `{}` is {rot} but the head size is {head_dim}: partial rotary embeddings (Phi-4-mini, ...) are not supported",
                    key("rope.dimension_count")
                );
            }
        }
        for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
            if content.tensor_infos.contains_key(t) {
                bail!("tensor `{t}`: long-context RoPE factors (Phi-3 128k's longrope) are not supported; the 4k-context models are");
            }
        }
        let num_hidden_layers = get_usize("block_count")?;
        // llama.cpp's `f_attention_scale` for Gemma 3: the head size, except the 27B (62
        // layers), which scales by hidden / heads (`query_pre_attn_scalar` = 168).
        let query_pre_attn_scalar =
            if family == Family::Gemma3 && num_hidden_layers == 62 && num_attention_heads > 0 {
                (hidden_size / num_attention_heads) as f32
            } else {
                head_dim as f32
            };
        let cfg = Self {
            family,
            hidden_size,
            intermediate_size: get_usize("feed_forward_length")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: get_f32("attention.layer_norm_rms_epsilon")? as f64,
            rope_theta,
            max_position_embeddings: get_usize("context_length")?,
            // GGUF bakes llama3 scaling into the `rope_freqs.weight` tensor, read by the model.
            rope_scaling: None,
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            rope_layout: if family.gguf_rope_interleaved() {
                RopeLayout::Interleaved
            } else {
                RopeLayout::Neox
            },
            bos_token_id: opt_u32("tokenizer.ggml.bos_token_id"),
            eos_token_ids: opt_u32("tokenizer.ggml.eos_token_id").into_iter().collect(),
            attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            rope_freq_scale,
            query_pre_attn_scalar,
            sliding_window,
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

#[derive(Debug, Clone, Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f32>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

/// transformers 5's `rope_parameters`: one set, or one per layer type (Gemma 3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HfRopeParameters {
    PerLayerType {
        full_attention: HfRopeScaling,
        sliding_attention: Option<HfRopeScaling>,
    },
    One(HfRopeScaling),
}

/// `config.json` as Hugging Face writes it for the supported families (the keys of
/// transformers 4 and of transformers 5, which moved RoPE settings into `rope_parameters`).
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
    rope_theta: Option<f32>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    rope_scaling: Option<HfRopeScaling>,
    rope_parameters: Option<HfRopeParameters>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<IdList>,
    attention_bias: Option<bool>,
    #[serde(alias = "hidden_activation")]
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    partial_rotary_factor: Option<f64>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<usize>,
    rope_local_base_freq: Option<f32>,
    query_pre_attn_scalar: Option<f32>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct HfGenerationConfig {
    bos_token_id: Option<u32>,
    eos_token_id: Option<IdList>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

/// What a `rope_scaling` (or `rope_parameters`) entry means: llama3 scaling, a linear factor,
/// or nothing.
fn resolve_rope_scaling(s: &HfRopeScaling) -> Result<(Option<Llama3RopeScaling>, f32)> {
    match s.rope_type.as_deref().unwrap_or("default") {
        "default" => Ok((None, 1.0)),
        "linear" => {
            let f = s
                .factor
                .context("rope_scaling of type linear needs `factor`")?;
            Ok((None, 1.0 / f))
        }
        "llama3" => {
            let need = |v: Option<f32>, k: &str| {
                v.with_context(|| format!("rope_scaling of type llama3 needs `{k}`"))
            };
            Ok((
                Some(Llama3RopeScaling {
                    factor: need(s.factor, "factor")?,
                    low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: s.original_max_position_embeddings.context(
                        "rope_scaling of type llama3 needs `original_max_position_embeddings`",
                    )?,
                }),
                1.0,
            ))
        }
        other => bail!(
            "rope_scaling type `{other}` is not supported (supported: llama3, linear, default)"
        ),
    }
}

impl HfConfig {
    fn resolve(self) -> Result<LlamaConfig> {
        let family = self
            .model_type
            .as_deref()
            .map_or(Some(Family::Llama), Family::from_model_type);
        let Some(family) = family.filter(|f| {
            self.architectures
                .iter()
                .all(|a| f.accepts_hf_architecture(a))
        }) else {
            bail!(
                "unsupported architecture (model_type {:?}, architectures {:?}); gen runs {} (model_type {})",
                self.model_type,
                self.architectures,
                Family::supported_list(),
                Family::ALL.map(Family::hf_model_type).join(", ")
            );
        };
        if let Some(f) = self.partial_rotary_factor.filter(|&f| f != 1.0) {
            bail!("partial_rotary_factor {f}: partial rotary embeddings are not supported");
        }
        if let Some(c) = self.final_logit_softcapping.or(self.attn_logit_softcapping) {
            bail!("logit soft-capping ({c}) is not supported; Gemma 3 has none (Gemma 2 does)");
        }
        let act = self.hidden_act.as_deref();
        let act_ok = match family.activation() {
            Activation::Silu => act.is_none_or(|a| a == "silu"),
            Activation::GeluTanh => act.is_none_or(|a| a == "gelu_pytorch_tanh"),
        };
        if !act_ok {
            bail!(
                "hidden_act `{}` is not what gen computes for {} models",
                act.unwrap_or(""),
                family.gguf_name()
            );
        }
        // transformers 4: rope_theta + rope_scaling (+ Gemma's rope_local_base_freq);
        // transformers 5: rope_parameters, one set or one per layer type.
        let (full, local) = match self.rope_parameters {
            Some(HfRopeParameters::PerLayerType {
                full_attention,
                sliding_attention,
            }) => (Some(full_attention), sliding_attention),
            Some(HfRopeParameters::One(p)) => (Some(p), None),
            None => (self.rope_scaling.clone(), None),
        };
        let rope_theta = full
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(if family == Family::Gemma3 {
                1_000_000.0
            } else {
                10_000.0
            });
        let (rope_scaling, rope_freq_scale) = match &full {
            Some(p) => resolve_rope_scaling(p)?,
            None => (None, 1.0),
        };
        let local_theta = local
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_local_base_freq)
            .unwrap_or(10_000.0);
        let sliding_window = match family {
            Family::Gemma3 => {
                let layers = match &self.layer_types {
                    Some(t) => {
                        SlidingLayers::Listed(t.iter().map(|t| t == "sliding_attention").collect())
                    }
                    None => SlidingLayers::AllButEvery(self.sliding_window_pattern.unwrap_or(6)),
                };
                self.sliding_window.map(|size| SlidingWindow {
                    size,
                    layers,
                    rope_theta: local_theta,
                })
            }
            Family::Qwen2 | Family::Qwen3 if self.use_sliding_window == Some(true) => {
                bail!(
                    "use_sliding_window is true: Qwen's sliding-window attention is not supported"
                )
            }
            Family::Qwen2 | Family::Qwen3 => None,
            // Mistral and Phi-3 (as transformers applies theirs): every layer, one RoPE base.
            Family::Llama | Family::Phi3 => self.sliding_window.map(|size| SlidingWindow {
                size,
                layers: SlidingLayers::All,
                rope_theta,
            }),
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
            family,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: self.vocab_size,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(family == Family::Gemma3),
            rope_layout: RopeLayout::HalfSplit,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self.eos_token_id.map(IdList::into_vec).unwrap_or_default(),
            attention_bias: self.attention_bias.unwrap_or(family.qkv_bias()),
            rope_freq_scale,
            query_pre_attn_scalar: self.query_pre_attn_scalar.unwrap_or(head_dim as f32),
            sliding_window,
        })
    }
}

/// The `config.json` text for a configuration (used by `gen convert` and test fixtures).
pub fn to_hf_config_json(cfg: &LlamaConfig) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": [cfg.family.hf_architecture()],
        "model_type": cfg.family.hf_model_type(),
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
        "hidden_act": match cfg.family.activation() {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        },
        "attention_bias": cfg.attention_bias,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
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
    if cfg.rope_freq_scale != 1.0 {
        v["rope_scaling"] =
            serde_json::json!({"rope_type": "linear", "factor": 1.0 / cfg.rope_freq_scale});
    }
    if let Some(w) = &cfg.sliding_window {
        v["sliding_window"] = w.size.into();
        v["rope_local_base_freq"] = w.rope_theta.into();
        v["layer_types"] = (0..cfg.num_hidden_layers)
            .map(|i| {
                if cfg.window_of(i).is_some() {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect::<Vec<_>>()
            .into();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<LlamaConfig> {
        let raw: HfConfig = serde_json::from_str(text)?;
        let cfg = raw.resolve()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// config.json as the Hub ships it for Qwen2.5-0.5B-Instruct (transformers 4 keys): the
    /// sliding window is there but switched off, biases implied by the family.
    #[test]
    fn qwen2_5_config() {
        let cfg = resolve(
            r#"{"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
            "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
            "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
            "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true,
            "use_sliding_window": false, "vocab_size": 151936}"#,
        )
        .unwrap();
        assert_eq!(cfg.family, Family::Qwen2);
        assert!(cfg.attention_bias && cfg.tie_word_embeddings);
        assert_eq!((cfg.head_dim, cfg.rope_theta), (64, 1e6));
        assert_eq!(cfg.sliding_window, None);
        assert_eq!(cfg.query_pre_attn_scalar, 64.0);
    }

    /// Qwen3-0.6B: head size 128 with 16 heads over a hidden size of 1024.
    #[test]
    fn qwen3_config() {
        let cfg = resolve(
            r#"{"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
            "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
            "hidden_size": 1024, "intermediate_size": 3072, "max_position_embeddings": 40960,
            "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16,
            "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
            "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
            "tie_word_embeddings": true, "use_sliding_window": false, "vocab_size": 151936}"#,
        )
        .unwrap();
        assert_eq!(cfg.family, Family::Qwen3);
        assert!(!cfg.attention_bias);
        assert_eq!((cfg.head_dim, cfg.num_attention_heads), (128, 16));
    }

    /// Gemma 3 1B (transformers 4 keys: `sliding_window_pattern`, `rope_local_base_freq`) and
    /// the same model as transformers 5 writes it (`layer_types`, `rope_parameters`).
    #[test]
    fn gemma3_configs_old_and_new() {
        let old = resolve(
            r#"{"architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
            "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid",
            "eos_token_id": [1, 106], "final_logit_softcapping": null, "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
            "intermediate_size": 6912, "max_position_embeddings": 32768,
            "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26,
            "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
            "rope_local_base_freq": 10000, "rope_scaling": null, "rope_theta": 1000000,
            "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144}"#,
        )
        .unwrap();
        assert_eq!(old.family, Family::Gemma3);
        assert!(old.tie_word_embeddings, "Gemma ties its head by default");
        assert_eq!(old.eos_token_ids, [1, 106]);
        let local: Vec<usize> = (0..26).filter(|&i| old.window_of(i).is_some()).collect();
        assert_eq!(local.len(), 22);
        assert!(old.window_of(5).is_none() && old.window_of(4) == Some(512));
        assert_eq!(old.sliding_window.as_ref().unwrap().rope_theta, 10_000.0);
        let layer_types: Vec<&str> = (0..26)
            .map(|i| {
                if (i + 1) % 6 == 0 {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
            .collect();
        let new = resolve(&format!(
            r#"{{"architectures": ["Gemma3ForCausalLM"], "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
            "intermediate_size": 6912, "max_position_embeddings": 32768,
            "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26,
            "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
            "sliding_window": 512, "layer_types": {}, "vocab_size": 262144,
            "rope_parameters": {{"sliding_attention": {{"rope_type": "default", "rope_theta": 10000.0}},
                                 "full_attention": {{"rope_type": "default", "rope_theta": 1000000.0}}}},
            "bos_token_id": 2, "eos_token_id": [1, 106]}}"#,
            serde_json::to_string(&layer_types).unwrap()
        ))
        .unwrap();
        let norm = |c: &LlamaConfig| (0..26).map(|i| c.window_of(i)).collect::<Vec<_>>();
        assert_eq!(norm(&old), norm(&new));
        assert_eq!(
            (old.rope_theta, old.query_pre_attn_scalar),
            (new.rope_theta, new.query_pre_attn_scalar)
        );
        // Gemma 3 4B's linear scaling of the global layers.
        let scaled = resolve(
            r#"{"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 16, "vocab_size": 300, "sliding_window": 8,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}"#,
        )
        .unwrap();
        assert_eq!(scaled.rope_freq_scale, 0.125);
    }

    /// Mistral 7B v0.1 (a sliding window on every layer), and what stays refused with the
    /// supported list: Gemma 2 (soft-capping), Phi-3, Qwen's sliding window.
    #[test]
    fn mistral_and_refusals() {
        let m = resolve(
            r#"{"architectures": ["MistralForCausalLM"], "model_type": "mistral",
            "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
            "rope_theta": 10000.0, "sliding_window": 4096, "max_position_embeddings": 32768}"#,
        )
        .unwrap();
        assert_eq!(m.family, Family::Llama);
        assert!((0..32).all(|i| m.window_of(i) == Some(4096)));
        let phi = resolve(
            r#"{"architectures": ["Phi2ForCausalLM"], "model_type": "phi", "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 300}"#,
        );
        let err = format!("{:#}", phi.unwrap_err());
        assert!(
            err.contains("unsupported architecture")
                && err.contains("llama, qwen2, qwen3, gemma3, phi3"),
            "{err}"
        );
        let qwen_swa = resolve(
            r#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
            "use_sliding_window": true, "sliding_window": 16}"#,
        );
        assert!(format!("{:#}", qwen_swa.unwrap_err()).contains("use_sliding_window"));
        let capped = resolve(
            r#"{"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
            "final_logit_softcapping": 30.0}"#,
        );
        assert!(format!("{:#}", capped.unwrap_err()).contains("soft-capping"));
    }
}
