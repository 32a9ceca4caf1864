//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type` for a Llama-architecture
//! model without an importance matrix, overrides or `--pure`. Which tensors are quantized at
//! all (2-d and up, named `*weight`, not norms and a list of small tables), the mixes of the
//! `_S`/`_M`/`_L` file types (more bits for `attn_v` and `ffn_down` in some layers, for the
//! output and the tied embeddings), and the fallback when a row is not a whole number of
//! blocks (a 576-wide row cannot hold 256-element K-quant blocks: Q4_K falls back to Q5_0 …).
//!
//! The layer counters follow llama.cpp: tensors are visited in its order (see
//! [`llama_order`]), `attn_v` layers are counted over the tensors present, `ffn_down` layers
//! are `block_count`.

use super::gguf::n_dims;
use super::types::{file_type_info, GgmlType};
use crate::config::FileType;
use anyhow::{bail, Result};
use std::cmp::Ordering;

/// What the rules need to know about the model (llama.cpp's hparams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShape {
    /// `llama.block_count`.
    pub n_layer: usize,
    /// `llama.attention.head_count` (of layer 0).
    pub n_head: usize,
    /// `llama.attention.head_count_kv` (of layer 0; `n_head` when absent).
    pub n_head_kv: usize,
    /// `llama.expert_count` (0 when absent).
    pub n_expert: usize,
}

impl ModelShape {
    /// Query heads per KV head (0 when there are no KV heads), as llama.cpp's `n_gqa`.
    fn n_gqa(&self) -> usize {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's LLM_TYPE_70B: 80 Llama layers with grouped-query attention.
    fn is_70b(&self) -> bool {
        self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// One tensor as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct TensorDesc<'a> {
    pub name: &'a str,
    /// ggml's `ne`: `ne[0]` is the row length.
    pub ne: [u64; 4],
    pub ty: GgmlType,
}

/// The order llama.cpp's loader keeps tensors in, and so writes them: by layer number
/// (`blk.N.`; other tensors count as layer -1), then by name, byte by byte.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    layer_of(a)
        .cmp(&layer_of(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The N of a `blk.N.` prefix as C's `sscanf("blk.%d.")` reads it (leading spaces and a sign
/// allowed, the rest ignored); -1 without one.
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => (1, rest),
    };
    let end = digits.bytes().take_while(u8::is_ascii_digit).count();
    if end == 0 {
        return -1;
    }
    // sscanf's %d into an int: wider values are out of its range; saturate rather than wrap.
    let v: i64 = digits[..end].parse().unwrap_or(i64::MAX);
    (sign * v).clamp(i32::MIN as i64, i32::MAX as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

impl Category {
    fn of(name: &str) -> Self {
        use Category as C;
        if name == "output.weight" {
            C::Output
        } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            C::TokenEmbd
        } else if name.contains("attn_qkv.weight") {
            C::AttentionQkv
        } else if name.contains("attn_kv_b.weight") {
            C::AttentionKvB
        } else if name.contains("attn_v.weight") {
            C::AttentionV
        } else if name.contains("attn_k.weight") {
            C::AttentionK
        } else if name.contains("attn_q.weight") {
            C::AttentionQ
        } else if name.contains("attn_output.weight") {
            C::AttentionOutput
        } else if name.contains("ffn_up") {
            C::FfnUp
        } else if name.contains("ffn_gate") {
            C::FfnGate
        } else if name.contains("ffn_down") {
            C::FfnDown
        } else {
            C::Other
        }
    }

    /// The tensors counted as `attn_v` (quantized with more bits in some mixes).
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
        )
    }
}

/// Name fragments of tensors llama.cpp never quantizes (small tables, routing, other
/// architectures' tensors a Llama file could still carry).
const KEEP_IF_CONTAINS: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// Whether llama.cpp quantizes this tensor at all (`tensor_allows_quantization`); the others
/// are copied as they are.
pub fn allows_quantization(t: &TensorDesc) -> bool {
    if n_dims(&t.ne) < 2 {
        return false;
    }
    let name = t.name;
    // llama.cpp tests `name.rfind("weight") == name.size() - 6`, which a 5-byte name passes
    // too (both sides are npos); kept so that the same tensors are quantized.
    let ends_in_weight = name.ends_with("weight") || name.len() == 5;
    ends_in_weight
        && !KEEP_IF_CONTAINS.iter().any(|k| name.contains(k))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// The per-tensor type choice for one model and file type, with its counters.
pub struct TypeChooser {
    ftype: FileType,
    shape: ModelShape,
    /// Tied embeddings: no `output.weight`, so `token_embd` gets the output's rules.
    tied_embeddings: bool,
    n_attention_wv: usize,
    i_attention_wv: usize,
    i_ffn_down: usize,
    i_ffn_gate: usize,
    i_ffn_up: usize,
    /// Tensors that fell back to another type because their rows do not fit its blocks.
    pub n_fallback: usize,
}

impl TypeChooser {
    /// A chooser for the model whose tensors are `names` (all of them, in any order).
    pub fn new<'a>(
        ftype: FileType,
        shape: ModelShape,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut n_attention_wv = 0;
        let mut tied_embeddings = true;
        for name in names {
            let c = Category::of(name);
            if c.is_attn_v() {
                n_attention_wv += 1;
            }
            if c == Category::Output {
                tied_embeddings = false;
            }
        }
        Self {
            ftype,
            shape,
            tied_embeddings,
            n_attention_wv,
            i_attention_wv: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
            n_fallback: 0,
        }
    }

    /// The type tensor `t` is written as. Call once per tensor, in [`llama_order`]: the layer
    /// counters advance as llama.cpp's do.
    pub fn choose(&mut self, t: &TensorDesc) -> Result<GgmlType> {
        if !allows_quantization(t) {
            return Ok(t.ty);
        }
        let default = file_type_info(self.ftype).1;
        if !default.is_quantized() {
            return Ok(default);
        }
        let mixed = self.mix(default, t)?;
        self.fallback(t, mixed)
    }

    /// llama.cpp's `llama_tensor_get_type_impl`, the branches its non-IQ file types reach.
    fn mix(&mut self, default: GgmlType, t: &TensorDesc) -> Result<GgmlType> {
        use FileType as F;
        use GgmlType as T;
        let ftype = self.ftype;
        let category = Category::of(t.name);
        let n_gqa = self.shape.n_gqa();
        let n_expert = self.shape.n_expert;
        let use_more_bits = |i: usize, n: usize| {
            let (i, n) = (i as i64, n as i64);
            i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
        };
        let mut new_type = default;
        if category == Category::Output || (self.tied_embeddings && category == Category::TokenEmbd)
        {
            let nx = t.ne[0] as usize;
            new_type = if !nx.is_multiple_of(new_type.block_size()) {
                T::Q8_0
            } else if new_type != T::Q8_0 {
                T::Q6_K
            } else {
                new_type
            };
        } else if category == Category::TokenEmbd {
            // Untied embeddings keep the default type for these file types.
        } else if category.is_attn_v() {
            match ftype {
                F::Q2_K => new_type = if n_gqa >= 4 { T::Q4_K } else { T::Q3_K },
                F::Q3_K_M => {
                    new_type = if self.i_attention_wv < 2 {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    }
                }
                F::Q3_K_L => new_type = T::Q5_K,
                F::Q4_K_M | F::Q5_K_M
                    if use_more_bits(self.i_attention_wv, self.n_attention_wv) =>
                {
                    new_type = T::Q6_K
                }
                F::Q4_K_S if self.i_attention_wv < 4 => new_type = T::Q5_K,
                _ => {}
            }
            if self.shape.is_70b() && matches!(new_type, T::Q3_K | T::Q4_K) {
                // Eight heads share each attn_v there, so it is small: more bits cost little.
                new_type = T::Q5_K;
            }
            if n_expert == 8 {
                new_type = T::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if category == Category::AttentionK {
            if n_expert == 8 {
                new_type = T::Q8_0;
            }
        } else if category == Category::AttentionQ {
            // Only IQ file types change attn_q.
        } else if category == Category::FfnDown {
            let (i_layer, n_layer) = self.layer_info(self.i_ffn_down, t.name)?;
            match ftype {
                F::Q2_K => new_type = T::Q3_K,
                F::Q3_K_M => {
                    // llama.cpp's `arch != FALCON || use_more_bits`: always Q4_K for Llama.
                    new_type = if i_layer < n_layer / 16 {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    }
                }
                F::Q3_K_L => new_type = T::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i_layer, n_layer) => new_type = T::Q6_K,
                F::Q4_K_S if i_layer < n_layer / 8 => new_type = T::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if category == Category::AttentionOutput {
            if n_expert == 8 {
                if matches!(
                    ftype,
                    F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M
                ) {
                    new_type = T::Q5_K;
                }
            } else {
                match ftype {
                    F::Q2_K => new_type = T::Q3_K,
                    F::Q3_K_M => new_type = T::Q4_K,
                    F::Q3_K_L => new_type = T::Q5_K,
                    _ => {}
                }
            }
        } else if category == Category::AttentionQkv {
            match ftype {
                F::Q3_K_M | F::Q3_K_L => new_type = T::Q4_K,
                F::Q4_K_M => new_type = T::Q5_K,
                F::Q5_K_M => new_type = T::Q6_K,
                _ => {}
            }
        } else if category == Category::FfnGate {
            // Only IQ3_XS changes ffn_gate; the layer is still checked as llama.cpp does.
            self.layer_info(self.i_ffn_gate, t.name)?;
            self.i_ffn_gate += 1;
        } else if category == Category::FfnUp {
            self.layer_info(self.i_ffn_up, t.name)?;
            self.i_ffn_up += 1;
        }
        Ok(new_type)
    }

    /// The layer index and count for a per-layer rule: the counter, or with experts the
    /// `blk.N.` of the name (experts need not be stored layer by layer).
    fn layer_info(&self, counter: usize, name: &str) -> Result<(usize, usize)> {
        let n_layer = self.shape.n_layer;
        if self.shape.n_expert <= 1 {
            return Ok((counter, n_layer));
        }
        match usize::try_from(layer_of(name)) {
            Ok(layer) if layer < n_layer => Ok((layer, n_layer)),
            _ => bail!(
                "tensor `{name}` has no `blk.N.` prefix with N below the model's {n_layer} layers (llama.block_count)"
            ),
        }
    }

    /// A compatible type when the row length is not a multiple of `target`'s block size
    /// (`tensor_type_fallback`): the K-quants fall back to a 32-element type, and what still
    /// does not fit becomes F16.
    fn fallback(&mut self, t: &TensorDesc, target: GgmlType) -> Result<GgmlType> {
        use GgmlType as T;
        let ncols = t.ne[0] as usize;
        if ncols.is_multiple_of(target.block_size()) {
            return Ok(target);
        }
        self.n_fallback += 1;
        let fallback = match target {
            T::IQ1_S
            | T::IQ1_M
            | T::IQ2_XXS
            | T::IQ2_XS
            | T::IQ2_S
            | T::IQ3_XXS
            | T::IQ3_S
            | T::IQ4_XS => T::IQ4_NL,
            T::Q2_0 | T::Q2_K | T::Q3_K | T::TQ1_0 | T::TQ2_0 => T::Q4_0,
            T::Q4_K => T::Q5_0,
            T::Q5_K => T::Q5_1,
            T::Q6_K => T::Q8_0,
            other if other.block_size() <= 32 => other,
            other => bail!(
                "no fallback type for {other} (tensor `{}`, rows of {ncols})",
                t.name
            ),
        };
        Ok(if ncols.is_multiple_of(fallback.block_size()) {
            fallback
        } else {
            T::F16
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(name: &str, ne0: u64, ne1: u64) -> TensorDesc<'_> {
        TensorDesc {
            name,
            ne: [ne0, ne1, 1, 1],
            ty: GgmlType::Q4_1,
        }
    }

    fn smollm() -> ModelShape {
        ModelShape {
            n_layer: 30,
            n_head: 9,
            n_head_kv: 3,
            n_expert: 0,
        }
    }

    #[test]
    fn order_is_by_layer_then_name() {
        let mut names = vec![
            "blk.10.attn_q.weight",
            "token_embd.weight",
            "blk.2.ffn_up.weight",
            "blk.2.attn_k.weight",
            "output_norm.weight",
            "blk.0.ffn_down.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            [
                "output_norm.weight",
                "token_embd.weight",
                "blk.0.ffn_down.weight",
                "blk.2.attn_k.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight",
            ]
        );
        assert_eq!(layer_of("blk.x.y"), -1);
        assert_eq!(layer_of("blk.7"), 7);
    }

    #[test]
    fn norms_and_vectors_are_not_quantized() {
        assert!(!allows_quantization(&desc(
            "blk.0.attn_norm.weight",
            576,
            1
        )));
        assert!(!allows_quantization(&desc("blk.0.attn_q.bias", 576, 576)));
        assert!(!allows_quantization(&desc(
            "blk.0.ffn_gate_inp.weight",
            576,
            8
        )));
        assert!(allows_quantization(&desc("blk.0.attn_q.weight", 576, 576)));
        assert!(
            allows_quantization(&desc("abcde", 64, 64)),
            "llama.cpp's npos quirk"
        );
    }

    /// Q4_K_M on a 576-wide model: K-quant rows fall back (Q4_K → Q5_0, Q6_K → Q8_0), the
    /// 1536-wide ffn_down keeps K-quants, with Q6_K in the layers `use_more_bits` picks.
    #[test]
    fn q4_k_m_mix_on_a_576_wide_model() {
        let names: Vec<String> = (0..30)
            .flat_map(|i| ["attn_v", "ffn_down", "attn_q"].map(|n| format!("blk.{i}.{n}.weight")))
            .chain(["token_embd.weight".to_string()])
            .collect();
        let mut c = TypeChooser::new(FileType::Q4_K_M, smollm(), names.iter().map(|s| s.as_str()));
        let mut t = desc("token_embd.weight", 576, 49152);
        t.ty = GgmlType::Q8_0;
        assert_eq!(
            c.choose(&t).unwrap(),
            GgmlType::Q8_0,
            "tied embeddings: output rules"
        );
        let mut downs = Vec::new();
        let mut vs = Vec::new();
        for i in 0..30 {
            let v = format!("blk.{i}.attn_v.weight");
            vs.push(c.choose(&desc(&v, 576, 192)).unwrap());
            let d = format!("blk.{i}.ffn_down.weight");
            downs.push(c.choose(&desc(&d, 1536, 576)).unwrap());
            let q = format!("blk.{i}.attn_q.weight");
            assert_eq!(c.choose(&desc(&q, 576, 576)).unwrap(), GgmlType::Q5_0);
        }
        let more: Vec<usize> = (0..30).filter(|&i| downs[i] == GgmlType::Q6_K).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        assert!(downs
            .iter()
            .all(|&t| t == GgmlType::Q6_K || t == GgmlType::Q4_K));
        // attn_v is 576 wide: its Q6_K falls back to Q8_0, its Q4_K to Q5_0.
        for (i, &v) in vs.iter().enumerate() {
            let want = if more.contains(&i) {
                GgmlType::Q8_0
            } else {
                GgmlType::Q5_0
            };
            assert_eq!(v, want, "layer {i}");
        }
    }

    #[test]
    fn plain_float_file_types_apply_to_every_matrix() {
        let mut c = TypeChooser::new(FileType::F16, smollm(), ["token_embd.weight"]);
        assert_eq!(
            c.choose(&desc("token_embd.weight", 576, 10)).unwrap(),
            GgmlType::F16
        );
        assert_eq!(
            c.choose(&desc("blk.0.attn_norm.weight", 576, 1)).unwrap(),
            GgmlType::Q4_1
        );
    }

    #[test]
    fn rows_that_fit_no_block_become_f16() {
        let mut c = TypeChooser::new(FileType::Q4_0, smollm(), ["x.weight"]);
        assert_eq!(c.choose(&desc("x.weight", 48, 4)).unwrap(), GgmlType::F16);
        assert_eq!(c.n_fallback, 1);
    }
}
