//! Our Llama: one forward pass for dense (safetensors) and quantized (GGUF) weights, reading and
//! writing a caller-owned [`KvCache`]. Follows Hugging Face's `modeling_llama.py`; where GGUF
//! differs (interleaved RoPE rows, llama3 scaling baked into `rope_freqs`) the config says so.
//! The other families ([`super::family::Family`]: Qwen2, Qwen3, Gemma 3) are this pass with
//! their extras switched on by the config: q/k/v biases, q/k norms, post-norms, GeGLU, scaled
//! embeddings, sliding-window layers with their own RoPE base.

use super::config::{LlamaConfig, RopeLayout};
use super::family::Activation;
use super::kv_cache::KvCache;
use super::linear::{Linear, Projections};
use crate::kernels::activation::{geglu_tanh, swiglu};
use crate::kernels::attention::attention_as;
use crate::weights::{TensorName, Weights};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// Which positions the forward pass returns logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position of each sequence: `(batch, vocab)`.
    Last,
    /// Every position: `(batch, seq, vocab)` (perplexity, teacher forcing).
    All,
}

struct RmsNorm {
    weight: Tensor, // (hidden,)
    /// The same weight on the host, read once at load for the CPU path.
    weight_host: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    fn new(weight: Tensor, eps: f32) -> Result<Self> {
        let weight_host = weight.to_vec1::<f32>()?;
        if let Some(i) = weight_host.iter().position(|w| !w.is_finite()) {
            bail!(
                "norm weight {i} is {}: the weights are corrupt",
                weight_host[i]
            );
        }
        Ok(Self {
            weight,
            weight_host,
            eps,
        })
    }

    /// ggml's rounding on the CPU: the sum of squares in f64, `scale = 1 / sqrt(mean + eps)` in
    /// f32, then `x * scale * weight`. The next quantized matmul rounds activations to int8, so
    /// matching llama.cpp's last bits here keeps those roundings identical.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps,
            )?);
        }
        let dims = x.dims().to_vec();
        let n = *dims.last().context("rms_norm of a scalar")?;
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        for row in v.chunks_mut(n) {
            let sum: f64 = row.iter().map(|&a| (a * a) as f64).sum();
            let mean = (sum / n as f64) as f32;
            let scale = 1.0 / (mean + self.eps).sqrt();
            for (a, &g) in row.iter_mut().zip(&self.weight_host) {
                *a = (*a * scale) * g;
            }
        }
        Ok(Tensor::from_vec(v, dims, x.device())?)
    }
}

struct Attention {
    /// q, k and v.
    qkv: Projections,
    /// Their biases (Qwen2), each `(rows,)`.
    bias: Option<[Tensor; 3]>,
    /// RMSNorm of each query and of each key head before RoPE (Qwen3, Gemma 3).
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    o_proj: Linear,
}

struct Mlp {
    /// gate and up.
    gate_up: Projections,
    down_proj: Linear,
    activation: Activation,
    /// ggml's GELU rounding (GGUF weights) rather than transformers' (see `geglu_tanh`).
    ggml_gelu: bool,
}

struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    /// Gemma's norm of attention's output before the residual.
    post_attention_norm: Option<RmsNorm>,
    /// The norm before the MLP (Hugging Face Llama calls it `post_attention_layernorm`).
    pre_mlp_norm: RmsNorm,
    mlp: Mlp,
    /// Gemma's norm of the MLP's output before the residual.
    post_mlp_norm: Option<RmsNorm>,
    /// The sliding window this layer attends through, if any.
    window: Option<usize>,
}

/// One layer's tensor names in both layouts: `model.layers.{i}.{hf}.weight` and
/// `blk.{i}.{gguf}.weight`.
fn layer_tensor(i: usize, hf: &str, gguf: &str) -> TensorName {
    layer_tensor_part(i, hf, gguf, "weight")
}

/// `layer_tensor` for another part than the weight (`bias`).
fn layer_tensor_part(i: usize, hf: &str, gguf: &str, part: &str) -> TensorName {
    TensorName::new(
        format!("model.layers.{i}.{hf}.{part}"),
        format!("blk.{i}.{gguf}.{part}"),
    )
}

impl RmsNorm {
    /// A norm over `size` features. Gemma's safetensors store `w - 1` (transformers computes
    /// `x̂ · (1 + w)`), GGUF `w` itself (llama.cpp's converter adds the 1).
    fn load(
        weights: &mut Weights,
        name: &TensorName,
        cfg: &LlamaConfig,
        size: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut weight = weights.dense(name, &[size], device)?;
        if cfg.family.hf_norm_adds_one() && weights.gguf_content().is_none() {
            weight = (weight + 1.0)?;
        }
        Self::new(weight, cfg.rms_norm_eps as f32).with_context(|| format!("tensor `{}`", name.hf))
    }
}

/// Layer `i`'s matrix `(rows, cols)` as a linear layer.
fn layer_linear(
    weights: &mut Weights,
    i: usize,
    (hf, gguf): (&str, &str),
    (rows, cols): (usize, usize),
    device: &Device,
) -> Result<Linear> {
    Ok(weights
        .matrix(&layer_tensor(i, hf, gguf), rows, cols, device)?
        .into())
}

impl Attention {
    fn load(weights: &mut Weights, cfg: &LlamaConfig, i: usize, device: &Device) -> Result<Self> {
        let h = cfg.hidden_size;
        let q_out = cfg.num_attention_heads * cfg.head_dim;
        let kv_out = cfg.num_key_value_heads * cfg.head_dim;
        let mut m = |hf: &str, gguf: &str, rows: usize, cols: usize| {
            layer_linear(weights, i, (hf, gguf), (rows, cols), device)
        };
        let qkv = if cfg.family.fused_projections() {
            let w = m("self_attn.qkv_proj", "attn_qkv", q_out + 2 * kv_out, h)?;
            Projections::fused(w, vec![q_out, kv_out, kv_out])
        } else {
            Projections::new(vec![
                (m("self_attn.q_proj", "attn_q", q_out, h)?, q_out),
                (m("self_attn.k_proj", "attn_k", kv_out, h)?, kv_out),
                (m("self_attn.v_proj", "attn_v", kv_out, h)?, kv_out),
            ])?
        };
        let o_proj = m("self_attn.o_proj", "attn_output", h, q_out)?;
        let bias = if cfg.attention_bias {
            let mut b = |hf: &str, gguf: &str, rows: usize| {
                weights.dense(&layer_tensor_part(i, hf, gguf, "bias"), &[rows], device)
            };
            Some([
                b("self_attn.q_proj", "attn_q", q_out)?,
                b("self_attn.k_proj", "attn_k", kv_out)?,
                b("self_attn.v_proj", "attn_v", kv_out)?,
            ])
        } else {
            None
        };
        let (q_norm, k_norm) = if cfg.family.qk_norm() {
            let mut n = |hf: &str, gguf: &str| {
                RmsNorm::load(
                    weights,
                    &layer_tensor(i, hf, gguf),
                    cfg,
                    cfg.head_dim,
                    device,
                )
            };
            (
                Some(n("self_attn.q_norm", "attn_q_norm")?),
                Some(n("self_attn.k_norm", "attn_k_norm")?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            qkv,
            bias,
            q_norm,
            k_norm,
            o_proj,
        })
    }
}

impl Mlp {
    fn load(weights: &mut Weights, cfg: &LlamaConfig, i: usize, device: &Device) -> Result<Self> {
        let (h, ffn) = (cfg.hidden_size, cfg.intermediate_size);
        let mut m = |hf: &str, gguf: &str, rows: usize, cols: usize| {
            layer_linear(weights, i, (hf, gguf), (rows, cols), device)
        };
        let gate_up = if cfg.family.fused_projections() {
            Projections::fused(m("mlp.gate_up_proj", "ffn_up", 2 * ffn, h)?, vec![ffn, ffn])
        } else {
            Projections::new(vec![
                (m("mlp.gate_proj", "ffn_gate", ffn, h)?, ffn),
                (m("mlp.up_proj", "ffn_up", ffn, h)?, ffn),
            ])?
        };
        let down_proj = m("mlp.down_proj", "ffn_down", h, ffn)?;
        Ok(Self {
            gate_up,
            down_proj,
            activation: cfg.family.activation(),
            ggml_gelu: weights.gguf_content().is_some(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = <[Tensor; 2]>::try_from(self.gate_up.forward(x)?)
            .map_err(|_| anyhow::anyhow!("the MLP has two input projections"))?;
        let h = match self.activation {
            Activation::Silu => swiglu(&gate, &up)?,
            Activation::GeluTanh => geglu_tanh(&gate, &up, self.ggml_gelu)?,
        };
        self.down_proj.forward(&h)
    }
}

impl Block {
    fn load(weights: &mut Weights, cfg: &LlamaConfig, i: usize, device: &Device) -> Result<Self> {
        let norm = |weights: &mut Weights, hf: &str, gguf: &str| {
            RmsNorm::load(
                weights,
                &layer_tensor(i, hf, gguf),
                cfg,
                cfg.hidden_size,
                device,
            )
        };
        let input_layernorm = norm(weights, "input_layernorm", "attn_norm")?;
        let self_attn = Attention::load(weights, cfg, i, device)?;
        // Gemma's four norms; in Llama's two, Hugging Face's `post_attention_layernorm` is the
        // one before the MLP.
        let (post_attention_norm, pre_mlp_norm, post_mlp_norm) = if cfg.family.post_norms() {
            (
                Some(norm(
                    weights,
                    "post_attention_layernorm",
                    "post_attention_norm",
                )?),
                norm(weights, "pre_feedforward_layernorm", "ffn_norm")?,
                Some(norm(
                    weights,
                    "post_feedforward_layernorm",
                    "post_ffw_norm",
                )?),
            )
        } else {
            (
                None,
                norm(weights, "post_attention_layernorm", "ffn_norm")?,
                None,
            )
        };
        Ok(Self {
            input_layernorm,
            self_attn,
            post_attention_norm,
            pre_mlp_norm,
            mlp: Mlp::load(weights, cfg, i, device)?,
            post_mlp_norm,
            window: cfg.window_of(i),
        })
    }
}

/// Rotary embeddings: the per-pair frequencies, from which each forward call computes the
/// angles of its own positions (a table for the model's whole context would be allocated
/// whatever `--ctx-size` says, and a hostile `context_length` would exhaust memory).
struct Rope {
    /// transformers' `inv_freq` (llama3 scaling applied), for the half-split layout.
    inv_freq: Vec<f32>,
    /// ggml's `base^(-2/d)`, for the interleaved layout.
    theta_scale: f32,
    /// GGUF `rope_freqs.weight` (llama3 scaling baked into the file), ggml's layouts.
    freq_factors: Option<Vec<f32>>,
    /// Linear scaling, ggml's layouts: angles are multiplied by it (transformers divides
    /// `inv_freq` by the factor instead).
    freq_scale: f32,
    layout: RopeLayout,
}

/// A loaded Llama model. Immutable after loading; all per-sequence state lives in [`KvCache`].
pub struct Llama {
    cfg: LlamaConfig,
    embed_tokens: Linear, // (vocab, hidden)
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear, // (vocab, hidden)
    rope: Rope,
    /// The sliding-window layers' RoPE, where its base differs (Gemma 3).
    rope_local: Option<Rope>,
    device: Device,
    /// What new KV caches store keys and values as (see [`Llama::set_cache_dtype`]).
    cache_dtype: DType,
}

impl Llama {
    /// Builds the model from a weight source and its resolved config.
    pub fn load(weights: &mut Weights, cfg: LlamaConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let embed_name = TensorName::new("model.embed_tokens.weight", "token_embd.weight");
        let embed_tokens: Linear = weights
            .matrix(&embed_name, cfg.vocab_size, h, device)?
            .into();
        // Grown one layer at a time: a hostile layer count fails at its first missing tensor
        // instead of reserving memory for every layer up front.
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            layers.push(Block::load(weights, &cfg, i, device)?);
        }
        let norm = RmsNorm::load(
            weights,
            &TensorName::new("model.norm.weight", "output_norm.weight"),
            &cfg,
            cfg.hidden_size,
            device,
        )?;
        let head_name = TensorName::new("lm_head.weight", "output.weight");
        let lm_head = if !cfg.tie_word_embeddings && weights.contains(&head_name) {
            weights
                .matrix(&head_name, cfg.vocab_size, h, device)?
                .into()
        } else if cfg.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            bail!("the weights have no `lm_head.weight` and tie_word_embeddings is false; set tie_word_embeddings to true in config.json if the output head shares the embedding");
        };
        let freq_name = TensorName::new("rope_freqs.weight", "rope_freqs.weight");
        let freq_factors = if weights.gguf_content().is_some() && weights.contains(&freq_name) {
            Some(
                weights
                    .dense(&freq_name, &[cfg.head_dim / 2], device)?
                    .to_vec1::<f32>()?,
            )
        } else {
            None
        };
        if let Some(f) = &freq_factors {
            if let Some(bad) = f.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                bail!("tensor `rope_freqs.weight` holds {bad}; RoPE frequency factors must be positive numbers (the file is corrupt)");
            }
        }
        let rope = Rope::new(
            &cfg,
            cfg.rope_theta,
            cfg.rope_freq_scale,
            freq_factors.as_deref(),
        );
        let rope_local = cfg
            .sliding_window
            .as_ref()
            .filter(|w| w.rope_theta != cfg.rope_theta || cfg.rope_freq_scale != 1.0)
            .map(|w| Rope::new(&cfg, w.rope_theta, 1.0, None));
        // Each format's home default: llama.cpp caches f16, transformers the model's dtype
        // (f32 here). The CPU attention reads f16 directly; other devices keep f32.
        let cache_dtype = if weights.gguf_content().is_some() && device.is_cpu() {
            DType::F16
        } else {
            DType::F32
        };
        Ok(Self {
            cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            rope_local,
            device: device.clone(),
            cache_dtype,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        self.new_cache_for(self.cfg.max_position_embeddings)
    }

    /// A fresh KV cache for at most `ctx` positions.
    pub fn new_cache_for(&self, ctx: usize) -> KvCache {
        KvCache::with_dtype(self.cfg.num_hidden_layers, ctx, self.cache_dtype)
    }

    /// What new KV caches store keys and values as: f32, or f16 (llama.cpp's default: half
    /// the memory, and half the reading per token at long contexts). Defaults to f16 for GGUF
    /// weights on the CPU and f32 otherwise.
    pub fn set_cache_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::F16) {
            bail!("the KV cache holds f32 or f16, not {dtype:?}");
        }
        self.cache_dtype = dtype;
        Ok(())
    }

    /// How many weight matrices are stored as each type and which kernel runs them
    /// ([`Linear::kernel`]), most common first; the output head counts when it is its own.
    pub fn kernels(&self) -> Vec<(String, usize)> {
        let mut all = vec![self.embed_tokens.kernel()];
        if !self.cfg.tie_word_embeddings {
            all.push(self.lm_head.kernel());
        }
        for l in &self.layers {
            all.extend(l.self_attn.qkv.kernels());
            all.push(l.self_attn.o_proj.kernel());
            all.extend(l.mlp.gate_up.kernels());
            all.push(l.mlp.down_proj.kernel());
        }
        let mut counts = std::collections::BTreeMap::new();
        for k in all {
            *counts.entry(k).or_insert(0) += 1;
        }
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    /// Whether any product over `rows` input rows runs on rayon's pool ([`Linear::on_rayon`]).
    fn products_on_rayon(&self, rows: usize) -> bool {
        self.lm_head.on_rayon(rows)
            || self.layers.iter().any(|l| {
                l.self_attn.qkv.on_rayon(rows)
                    || l.self_attn.o_proj.on_rayon(rows)
                    || l.mlp.gate_up.on_rayon(rows)
                    || l.mlp.down_proj.on_rayon(rows)
            })
    }

    /// Whether some product sums a row differently when it comes with others
    /// ([`Linear::batch_changes_sums`]).
    fn batch_changes_sums(&self) -> bool {
        self.lm_head.batch_changes_sums()
            || self.layers.iter().any(|l| {
                l.self_attn.qkv.batch_changes_sums()
                    || l.self_attn.o_proj.batch_changes_sums()
                    || l.mlp.gate_up.batch_changes_sums()
                    || l.mlp.down_proj.batch_changes_sums()
            })
    }

    /// What new KV caches store keys and values as.
    pub fn cache_dtype(&self) -> DType {
        self.cache_dtype
    }

    /// Runs `tokens` `(batch, seq)` through the model after what `cache` already holds, appends
    /// their keys and values to it, and returns f32 logits for the positions asked for.
    pub fn forward(&self, tokens: &Tensor, cache: &mut KvCache, which: Logits) -> Result<Tensor> {
        self.forward_as(tokens, cache, which, false)
    }

    /// [`Llama::forward`] with logits at every position `(batch, seq, vocab)`, each exactly,
    /// bit for bit, what a one-token step at that position gives: the products are the same
    /// row by row, and attention runs each query as the decode step does. This is the verify
    /// pass of speculative decoding, whose output must not depend on how many tokens were
    /// checked at once. (On the CPU; elsewhere attention is candle's and promises no such
    /// thing.)
    pub fn forward_as_steps(&self, tokens: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, s) = tokens
            .dims2()
            .context("forward: tokens must be (batch, seq)")?;
        // Dense weights compute rows exactly as one row only up to `dense::MAX_ROWS` rows at a
        // time (beyond, candle's blocked product takes over): longer inputs go in pieces. GGUF
        // f32/f16 matrices, and Q4_K in the repacked order, sum several rows in another order
        // than one (as llama.cpp does), so there each position is its own step.
        let piece = if self.batch_changes_sums() {
            1
        } else {
            crate::kernels::dense::MAX_ROWS
        };
        if s <= piece {
            return self.forward_as(tokens, cache, Logits::All, true);
        }
        let parts = (0..s)
            .step_by(piece)
            .map(|at| {
                let t = tokens.narrow(1, at, piece.min(s - at))?;
                self.forward_as(&t, cache, Logits::All, true)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }

    fn forward_as(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        which: Logits,
        as_steps: bool,
    ) -> Result<Tensor> {
        let (b, s) = tokens
            .dims2()
            .context("forward: tokens must be (batch, seq)")?;
        if rayon::current_thread_index().is_none() && self.products_on_rayon(b * s) {
            // candle's products run on rayon's pool, in many parallel regions per product;
            // from one of its threads they split work with the other workers directly instead
            // of each region being handed over from outside while this thread sleeps (measured
            // in docs/PERFORMANCE.md). Our own kernels use `crate::kernels::pool` and run from
            // the calling thread.
            return rayon::scope(|_| self.forward_as(tokens, cache, which, as_steps));
        }
        if s == 0 {
            bail!("forward: no tokens to process");
        }
        let pos = cache.len();
        if pos + s > self.cfg.max_position_embeddings {
            bail!(
                "context is full: {} positions requested, the model's context holds {}",
                pos + s,
                self.cfg.max_position_embeddings
            );
        }
        let mut x = self.embed_tokens.embedding(tokens)?; // (b, s, hidden)
        if self.cfg.family.scales_embeddings() {
            // llama.cpp's `sqrtf(n_embd)`, in f32.
            x = (x * f64::from((self.cfg.hidden_size as f32).sqrt()))?;
        }
        let angles = self.rope.angles(pos, s, &self.device)?;
        let local_angles = match &self.rope_local {
            Some(r) => Some(r.angles(pos, s, &self.device)?),
            None => None,
        };
        // The CPU attention applies the causal limit and the window itself.
        let mut masks: Vec<(Option<usize>, Tensor)> = Vec::new();
        for (i, block) in self.layers.iter().enumerate() {
            let mask = match block.window {
                _ if self.device.is_cpu() => None,
                None if s == 1 => None,
                w => match masks.iter().find(|(mw, _)| *mw == w) {
                    Some((_, m)) => Some(m.clone()),
                    None => {
                        let m = causal_mask(s, pos, w, &self.device)?;
                        masks.push((w, m.clone()));
                        Some(m)
                    }
                },
            };
            let (cos, sin) = match (&local_angles, block.window) {
                (Some(local), Some(_)) => (&local.0, &local.1),
                _ => (&angles.0, &angles.1),
            };
            let residual = &x;
            let h = block.input_layernorm.forward(&x)?;
            let mut h = self.attention(block, &h, (cos, sin), mask.as_ref(), cache, i, as_steps)?;
            if let Some(n) = &block.post_attention_norm {
                h = n.forward(&h)?;
            }
            let x1 = (residual + h)?;
            let h = block.pre_mlp_norm.forward(&x1)?;
            let mut h = block.mlp.forward(&h)?;
            if let Some(n) = &block.post_mlp_norm {
                h = n.forward(&h)?;
            }
            x = (x1 + h)?;
        }
        let x = match which {
            Logits::Last => x.narrow(1, s - 1, 1)?,
            Logits::All => x,
        };
        let x = self.norm.forward(&x)?;
        let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?; // (b, s', vocab)
        Ok(match which {
            Logits::Last => logits.reshape((b, self.cfg.vocab_size))?,
            Logits::All => logits,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        block: &Block,
        x: &Tensor, // (b, s, hidden)
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
        as_steps: bool,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, s, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let split = |t: Tensor, heads: usize| -> Result<Tensor> {
            Ok(t.reshape((b, s, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let attn = &block.self_attn;
        let [mut q, mut k, mut v] = <[Tensor; 3]>::try_from(attn.qkv.forward(x)?)
            .map_err(|_| anyhow::anyhow!("attention has three input projections"))?;
        if let Some([bq, bk, bv]) = &attn.bias {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
        let q = split(q, nh)?; // (b, nh, s, hd)
        let k = split(k, nkv)?; // (b, nkv, s, hd)
        let v = split(v, nkv)?; // (b, nkv, s, hd)
                                // Each head's RMSNorm runs over its last dimension, so the (b, heads, s, hd) layout
                                // needs no reshaping.
        let q = match &attn.q_norm {
            Some(n) => n.forward(&q)?,
            None => q,
        };
        let k = match &attn.k_norm {
            Some(n) => n.forward(&k)?,
            None => k,
        };
        // Both ropes share the layout; only the angles differ.
        let q = self.rope.apply(&q, cos, sin)?;
        let k = self.rope.apply(&k, cos, sin)?;
        let (k_all, v_all) = cache.append(layer, &k, &v)?; // (b, nkv, len, hd)
        let scale = 1.0 / f64::from(c.query_pre_attn_scalar).sqrt();
        if self.device.is_cpu() {
            let y = attention_as(&q, &k_all, &v_all, scale as f32, as_steps, block.window)?; // (b, s, nh * hd)
            return attn.o_proj.forward(&y);
        }
        let (k_all, v_all) = (k_all.to_dtype(q.dtype())?, v_all.to_dtype(q.dtype())?);
        let len = k_all.dim(2)?;
        let n_rep = nh / nkv;
        // Query heads that share a KV head are stacked along the sequence axis, so grouped-query
        // attention needs no copy of K and V.
        let q = q.reshape((b, nkv, n_rep * s, hd))?;
        let scores = (q.matmul(&k_all.t()?)? * scale)?; // (b, nkv, n_rep * s, len)
        let scores = match mask {
            Some(m) => scores
                .reshape((b, nkv, n_rep, s, len))?
                .broadcast_add(m)?
                .reshape((b, nkv, n_rep * s, len))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v_all)?; // (b, nkv, n_rep * s, hd)
        let y = y
            .reshape((b, nh, s, hd))?
            .transpose(1, 2)?
            .reshape((b, s, nh * hd))?;
        attn.o_proj.forward(&y)
    }
}

impl Rope {
    /// RoPE at base `theta` with linear scaling `freq_scale` (1 = none); llama3 scaling from
    /// the config (Hugging Face) or the file's frequency factors (GGUF).
    fn new(cfg: &LlamaConfig, theta: f32, freq_scale: f32, freq_factors: Option<&[f32]>) -> Self {
        let half = cfg.head_dim / 2;
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f32 / cfg.head_dim as f32))
            .collect();
        if freq_scale != 1.0 {
            // transformers' linear scaling: `inv_freq /= factor`.
            let factor = 1.0 / freq_scale;
            inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        if let Some(s) = &cfg.rope_scaling {
            // Llama 3.1's frequency-dependent scaling (HF `_compute_llama3_parameters`).
            let old = s.original_max_position_embeddings as f32;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        Self {
            inv_freq,
            theta_scale: theta.powf(-2.0 / cfg.head_dim as f32),
            freq_factors: freq_factors.map(<[f32]>::to_vec),
            freq_scale,
            layout: cfg.rope_layout,
        }
    }

    /// The cos and sin tables `(s, head_dim / 2)` of positions `pos..pos + s`, each row
    /// computed as for a table of every position.
    fn angles(&self, pos: usize, s: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let end = u32::try_from(pos + s).context("rope: position beyond u32")?;
        Ok(match self.layout {
            // transformers: inv_freq in f32, angles = position * inv_freq, then cos/sin.
            RopeLayout::HalfSplit => {
                let inv = Tensor::from_slice(&self.inv_freq, (1, half), device)?;
                let t = Tensor::arange(pos as u32, end, device)?
                    .to_dtype(DType::F32)?
                    .reshape((s, 1))?;
                let freqs = t.broadcast_mul(&inv)?; // (s, half)
                (freqs.cos()?, freqs.sin()?)
            }
            // ggml (`rope_yarn` with no extrapolation): theta starts at the position and is
            // multiplied by base^(-2/d) per pair, so angles round exactly as llama.cpp's do.
            RopeLayout::Interleaved | RopeLayout::Neox => {
                let mut cos = Vec::with_capacity(s * half);
                let mut sin = Vec::with_capacity(s * half);
                for p in pos..pos + s {
                    let mut theta = p as f32;
                    for i in 0..half {
                        let t = match &self.freq_factors {
                            Some(f) => theta / f[i],
                            None => theta,
                        };
                        // `freq_scale * theta_extrap`; multiplying by 1 is exact.
                        let t = self.freq_scale * t;
                        cos.push(t.cos());
                        sin.push(t.sin());
                        theta *= self.theta_scale;
                    }
                }
                (
                    Tensor::from_vec(cos, (s, half), device)?,
                    Tensor::from_vec(sin, (s, half), device)?,
                )
            }
        })
    }

    /// Rotates `x` `(b, heads, s, head_dim)` by the angles of its `s` positions (`cos`, `sin`:
    /// `(s, head_dim / 2)`).
    fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(match self.layout {
            RopeLayout::HalfSplit => candle_nn::rotary_emb::rope(x, cos, sin)?,
            RopeLayout::Interleaved if x.device().is_cpu() => rope_cpu(x, cos, sin, false)?,
            RopeLayout::Interleaved => candle_nn::rotary_emb::rope_i(x, cos, sin)?,
            RopeLayout::Neox if x.device().is_cpu() => rope_cpu(x, cos, sin, true)?,
            RopeLayout::Neox => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?,
        })
    }
}

/// RoPE on the CPU with ggml's rounding: llama.cpp's build (GCC, FMA enabled) contracts
/// `x0·cos - x1·sin` and `x0·sin + x1·cos` into one fused multiply-add each, on the first
/// product, so the rotated pair is `(fma(x0, cos, -(x1·sin)), fma(x0, sin, x1·cos))` (checked
/// bit for bit against llama.cpp's own rotated queries). The pair is adjacent values
/// (`LLAMA_ROPE_TYPE_NORM`) or, with `neox`, value `i` and value `i + d/2` (the same code in
/// ggml with another offset).
fn rope_cpu(x: &Tensor, cos: &Tensor, sin: &Tensor, neox: bool) -> Result<Tensor> {
    let (b, h, s, d) = x.dims4()?;
    let half = d / 2;
    if cos.dims() != [s, half] || sin.dims() != [s, half] || d % 2 != 0 {
        bail!(
            "rope: x {:?} does not fit the angle tables {:?}",
            x.dims(),
            cos.dims()
        );
    }
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    let cos = cos.flatten_all()?.to_vec1::<f32>()?;
    let sin = sin.flatten_all()?.to_vec1::<f32>()?;
    for (r, row) in v.chunks_exact_mut(d).enumerate() {
        let p = r % s; // rows run (b, h, s)
        let (c, sn) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        let (step, offset) = if neox { (1, half) } else { (2, 1) };
        for (i, (&c, &sn)) in c.iter().zip(sn).enumerate() {
            let (a, b) = (i * step, i * step + offset);
            let (x0, x1) = (row[a], row[b]);
            row[a] = x0.mul_add(c, -(x1 * sn));
            row[b] = x0.mul_add(sn, x1 * c);
        }
    }
    Ok(Tensor::from_vec(v, (b, h, s, d), x.device())?)
}

/// Additive mask `(s, pos + s)`: query `i` (at position `pos + i`) sees keys `0..=pos + i`,
/// or with a sliding window only the last `window` of them.
fn causal_mask(s: usize, pos: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let total = pos + s;
    let window = window.unwrap_or(usize::MAX);
    let data: Vec<f32> = (0..s)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > pos + i || pos + i - j >= window {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(data, (s, total), device)?)
}
