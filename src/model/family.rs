//! The architectures gen runs and what sets each apart from Llama, as data the one forward pass
//! reads ([`super::llama::Llama`]): biases on q/k/v (Qwen2), RMSNorm of each query and key head
//! before RoPE (Qwen3, Gemma 3), norms after attention and after the MLP (Gemma 3), the MLP's
//! activation, embeddings scaled by √hidden (Gemma), q/k/v and gate/up stored as one matrix
//! each (Phi-3), and how GGUF lays out the rotary pairs.
//! Everything a file can vary (sizes, RoPE bases, the sliding window) lives in the config.

/// One supported architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 1/2/3.x, TinyLlama, Mistral, SmolLM.
    Llama,
    /// Qwen2, Qwen2.5.
    Qwen2,
    /// Qwen3 (dense).
    Qwen3,
    /// Gemma 3 (text).
    Gemma3,
    /// Phi-3 (mini, medium; the 4k-context models: the 128k ones' "longrope" is refused).
    Phi3,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU).
    Silu,
    /// GELU with the tanh approximation (GeGLU; `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Family {
    /// The Hugging Face name of this family's tensor called `gguf` in a GGUF file.
    pub fn hf_tensor_name(self, gguf: &str) -> Option<String> {
        let family = self;
        let fixed = match gguf {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(f) = fixed {
            return Some(f.to_string());
        }
        let rest = gguf.strip_prefix("blk.")?;
        let (layer, part) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let gemma = family.post_norms();
        let hf = match part {
            "attn_norm.weight" => "input_layernorm.weight",
            "attn_q.weight" => "self_attn.q_proj.weight",
            "attn_k.weight" => "self_attn.k_proj.weight",
            "attn_v.weight" => "self_attn.v_proj.weight",
            "attn_q.bias" if family.qkv_bias() => "self_attn.q_proj.bias",
            "attn_k.bias" if family.qkv_bias() => "self_attn.k_proj.bias",
            "attn_v.bias" if family.qkv_bias() => "self_attn.v_proj.bias",
            "attn_q_norm.weight" if family.qk_norm() => "self_attn.q_norm.weight",
            "attn_k_norm.weight" if family.qk_norm() => "self_attn.k_norm.weight",
            "attn_output.weight" => "self_attn.o_proj.weight",
            "post_attention_norm.weight" if gemma => "post_attention_layernorm.weight",
            "ffn_norm.weight" if gemma => "pre_feedforward_layernorm.weight",
            "post_ffw_norm.weight" if gemma => "post_feedforward_layernorm.weight",
            "ffn_norm.weight" => "post_attention_layernorm.weight",
            "attn_qkv.weight" if family.fused_projections() => "self_attn.qkv_proj.weight",
            "ffn_up.weight" if family.fused_projections() => "mlp.gate_up_proj.weight",
            "ffn_gate.weight" => "mlp.gate_proj.weight",
            "ffn_up.weight" => "mlp.up_proj.weight",
            "ffn_down.weight" => "mlp.down_proj.weight",
            _ => return None,
        };
        Some(format!("model.layers.{layer}.{hf}"))
    }

    /// Every family, in the order error messages list them.
    pub const ALL: [Family; 5] = [
        Family::Llama,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma3,
        Family::Phi3,
    ];

    /// GGUF `general.architecture`, also the prefix of the family's metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
        }
    }

    /// The family of a GGUF `general.architecture`.
    pub fn from_gguf(arch: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.gguf_name() == arch)
    }

    /// The family of a `config.json` `model_type`. Mistral is a Llama with a sliding window
    /// (which the config carries).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Some(match model_type {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gemma3_text" => Family::Gemma3,
            "phi3" => Family::Phi3,
            _ => return None,
        })
    }

    /// The `config.json` `architectures` entry transformers writes for the family.
    pub fn hf_architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Gemma3 => "Gemma3ForCausalLM",
            Family::Phi3 => "Phi3ForCausalLM",
        }
    }

    /// Whether a `config.json` `architectures` entry names this family's causal LM.
    pub fn accepts_hf_architecture(self, name: &str) -> bool {
        name == self.hf_architecture() || (self == Family::Llama && name == "MistralForCausalLM")
    }

    /// The `config.json` `model_type` transformers writes for the family.
    pub fn hf_model_type(self) -> &'static str {
        match self {
            Family::Gemma3 => "gemma3_text",
            other => other.gguf_name(),
        }
    }

    /// Whether q, k and v have biases.
    pub fn qkv_bias(self) -> bool {
        self == Family::Qwen2
    }

    /// Whether each query and key head goes through its own RMSNorm before RoPE.
    pub fn qk_norm(self) -> bool {
        matches!(self, Family::Qwen3 | Family::Gemma3)
    }

    /// Whether attention's and the MLP's outputs are normed before joining the residual
    /// (Gemma's "sandwich" norms).
    pub fn post_norms(self) -> bool {
        self == Family::Gemma3
    }

    /// The MLP's gate activation.
    pub fn activation(self) -> Activation {
        match self {
            Family::Gemma3 => Activation::GeluTanh,
            _ => Activation::Silu,
        }
    }

    /// Whether q, k and v are one stored matrix, and gate and up another (Phi-3's `qkv_proj`
    /// and `gate_up_proj`; GGUF `attn_qkv` and an `ffn_up` of twice the width, gate first).
    pub fn fused_projections(self) -> bool {
        self == Family::Phi3
    }

    /// Whether token embeddings are multiplied by √hidden before the first layer.
    pub fn scales_embeddings(self) -> bool {
        self == Family::Gemma3
    }

    /// Whether transformers stores RMSNorm weights as `w - 1` (Gemma computes `x̂ · (1 + w)`;
    /// llama.cpp's converter adds the 1 into the GGUF, so there the weight is used as is).
    pub fn hf_norm_adds_one(self) -> bool {
        self == Family::Gemma3
    }

    /// Whether GGUF keeps rotary pairs interleaved (llama.cpp's `LLAMA_ROPE_TYPE_NORM`; its
    /// converter permutes Llama's Q/K rows into that order) rather than as halves of each head
    /// (`LLAMA_ROPE_TYPE_NEOX`, the rows as transformers stores them).
    pub fn gguf_rope_interleaved(self) -> bool {
        self == Family::Llama
    }

    /// "llama, qwen2, qwen3, gemma3", for error messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Family::gguf_name).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Family::ALL {
            assert_eq!(Family::from_gguf(f.gguf_name()), Some(f));
            assert_eq!(Family::from_model_type(f.hf_model_type()), Some(f));
        }
        assert_eq!(Family::from_model_type("mistral"), Some(Family::Llama));
        assert_eq!(Family::from_gguf("phi2"), None);
        assert_eq!(
            Family::supported_list(),
            "llama, qwen2, qwen3, gemma3, phi3"
        );
    }
}
