//! Quantization of a GGUF model to another file type, byte for byte as llama.cpp's
//! `llama_model_quantize` (no importance matrix) writes it: the same type for every tensor
//! ([`rules`]), the same block bytes ([`legacy`], [`kquants`], through [`codec`]), the same
//! metadata and layout ([`gguf`]). [`plan`] decides everything from the header; [`write`]
//! streams the file.
//!
//! What llama.cpp does and gen copies:
//! - tensors are written in llama.cpp's order (layer, then name), not the input's;
//! - the metadata is the input's, in its order, with `general.quantization_version` (2) and
//!   `general.file_type` moved to the end and any `split.*` keys dropped;
//! - a tensor whose chosen type is its stored type is copied as it is; others are widened to
//!   f32 with ggml's dequantizer of their type and quantized again;
//! - tensor data is aligned to 32 bytes and each tensor padded with zeros.
//!
//! One deliberate difference: llama.cpp always pads to 32 bytes, even when the input sets
//! another `general.alignment` (which it copies), so that its file then contradicts itself;
//! gen pads to the alignment the file states.

pub mod codec;
pub mod fp;
pub mod gguf;
pub mod hf;
pub mod kquants;
pub mod legacy;
pub mod rules;
pub mod types;

use crate::config::FileType;
use anyhow::{bail, Context, Result};
use gguf::{Gguf, Kv, OutTensor, Value};
use rules::{llama_order, ModelShape, TensorDesc, TypeChooser};
use std::io::Write;
use types::{file_type_info, GgmlType};

/// ggml's `GGML_QNT_VERSION`, written as `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// Keys llama.cpp drops from the copied metadata (a quantized file is never split).
const DROPPED_KEYS: &[&str] = &["split.no", "split.count", "split.tensors.count"];

/// What the output file will hold, decided from the input's header alone.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kvs: Vec<Kv>,
    /// Output tensors in the order they are written, each with its input tensor's index.
    pub tensors: Vec<(usize, OutTensor)>,
    pub alignment: u64,
    /// Tensors that fell back to another type because their rows do not fit its blocks.
    pub n_fallback: usize,
}

impl Plan {
    /// Bytes of the output file.
    pub fn file_size(&self) -> u64 {
        let header = gguf::header(&self.kvs, &self.out_tensors(), self.alignment).len() as u64;
        header
            + self
                .tensors
                .iter()
                .map(|(_, t)| t.bytes().next_multiple_of(self.alignment))
                .sum::<u64>()
    }

    fn out_tensors(&self) -> Vec<OutTensor> {
        self.tensors.iter().map(|(_, t)| t.clone()).collect()
    }
}

/// The model shape the per-tensor rules read, from a Llama GGUF's metadata.
fn model_shape(g: &Gguf) -> Result<ModelShape> {
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .context("the GGUF key `general.architecture` is missing or not a string")?;
    if arch != "llama" {
        bail!(
            "unsupported architecture `{arch}` (general.architecture); gen quantize follows llama.cpp's rules for Llama-architecture models only"
        );
    }
    let count = |key: &str| -> Result<Option<usize>> {
        match g.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_count()
                .map(|n| Some(n as usize))
                .with_context(|| format!("the GGUF key `{key}` is not an unsigned integer")),
        }
    };
    let n_layer =
        count("llama.block_count")?.context("the GGUF key `llama.block_count` is missing")?;
    let n_head = count("llama.attention.head_count")?
        .context("the GGUF key `llama.attention.head_count` is missing")?;
    Ok(ModelShape {
        n_layer,
        n_head,
        n_head_kv: count("llama.attention.head_count_kv")?.unwrap_or(n_head),
        n_expert: count("llama.expert_count")?.unwrap_or(0),
    })
}

/// An input model: its parsed header and the file's bytes.
pub struct Input<'a> {
    pub header: Gguf,
    pub file: &'a [u8],
}

impl<'a> Input<'a> {
    /// Parses the header of the GGUF file `file`.
    pub fn parse(file: &'a [u8]) -> Result<Self> {
        Ok(Self {
            header: Gguf::parse(file)?,
            file,
        })
    }
}

/// Decides the output's metadata and every tensor's type.
pub fn plan(input: &Input, file_type: FileType) -> Result<Plan> {
    let input = &input.header;
    let shape = model_shape(input)?;
    let mut order: Vec<usize> = (0..input.tensors.len()).collect();
    order.sort_by(|&a, &b| llama_order(&input.tensors[a].name, &input.tensors[b].name));
    let mut chooser = TypeChooser::new(
        file_type,
        shape,
        input.tensors.iter().map(|t| t.name.as_str()),
    );
    let mut tensors = Vec::with_capacity(order.len());
    for i in order {
        let t = &input.tensors[i];
        let desc = TensorDesc {
            name: &t.name,
            ne: t.ne,
            ty: t.ty,
        };
        let ty = chooser.choose(&desc)?;
        if ty != t.ty && !codec::can_quantize(ty) {
            bail!(
                "tensor `{}` would be written as {ty}, which gen cannot write",
                t.name
            );
        }
        tensors.push((
            i,
            OutTensor {
                name: t.name.clone(),
                ne: t.ne,
                ty,
            },
        ));
    }
    let mut kvs: Vec<Kv> = input
        .kvs
        .iter()
        .filter(|kv| {
            !DROPPED_KEYS.contains(&kv.key.as_str())
                && kv.key != "general.quantization_version"
                && kv.key != "general.file_type"
        })
        .cloned()
        .collect();
    kvs.push(Kv {
        key: "general.quantization_version".into(),
        value: Value::u32(QUANTIZATION_VERSION),
    });
    kvs.push(Kv {
        key: "general.file_type".into(),
        value: Value::u32(file_type_info(file_type).0),
    });
    Ok(Plan {
        kvs,
        tensors,
        alignment: input.alignment,
        n_fallback: chooser.n_fallback,
    })
}

/// One tensor written, for progress reports.
#[derive(Debug, Clone)]
pub struct TensorDone<'a> {
    /// 1-based position in the output, of `total`.
    pub index: usize,
    pub total: usize,
    pub name: &'a str,
    pub ne: [u64; 4],
    pub from: GgmlType,
    pub to: GgmlType,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Writes the planned file to `out`: the header, then each tensor copied or requantized from
/// the input, padded. `done` is told of each tensor; an error it returns
/// (an interruption) stops the writing.
pub fn write(
    input: &Input,
    plan: &Plan,
    out: &mut dyn Write,
    done: &mut dyn FnMut(&TensorDone) -> Result<()>,
) -> Result<()> {
    let (file, input) = (input.file, &input.header);
    out.write_all(&gguf::header(
        &plan.kvs,
        &plan.out_tensors(),
        plan.alignment,
    ))?;
    let padding = vec![0u8; plan.alignment as usize];
    let mut f32_buf: Vec<f32> = Vec::new();
    let mut quant_buf: Vec<u8> = Vec::new();
    for (n, (i, t)) in plan.tensors.iter().enumerate() {
        let src = &input.tensors[*i];
        let data = input.data(file, src);
        if let Some(block) = codec::first_invalid(src.ty, data) {
            bail!(
                "tensor `{}` has invalid data (a NaN or infinity at block {block})",
                src.name
            );
        }
        let bytes: &[u8] = if src.ty == t.ty {
            data
        } else {
            f32_buf.resize(src.elements() as usize, 0.0);
            codec::dequantize(src.ty, data, &mut f32_buf)
                .with_context(|| format!("tensor `{}`", src.name))?;
            quant_buf.resize(t.bytes() as usize, 0);
            codec::quantize(t.ty, &f32_buf, &mut quant_buf)?;
            if let Some(block) = codec::first_invalid(t.ty, &quant_buf) {
                bail!(
                    "tensor `{}` quantized to {} holds a NaN or infinity at block {block}",
                    src.name,
                    t.ty
                );
            }
            &quant_buf
        };
        out.write_all(bytes)?;
        let pad = bytes.len().next_multiple_of(plan.alignment as usize) - bytes.len();
        out.write_all(&padding[..pad])?;
        done(&TensorDone {
            index: n + 1,
            total: plan.tensors.len(),
            name: &t.name,
            ne: t.ne,
            from: src.ty,
            to: t.ty,
            bytes_in: src.bytes(),
            bytes_out: t.bytes(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny llama file: `keys` then one 64×2 f32 matrix and one norm, with `alignment`.
    fn file(keys: &[(&str, Value)], alignment: u64) -> Vec<u8> {
        let mut kvs = vec![Kv {
            key: "general.architecture".into(),
            value: Value::Str(b"llama".to_vec()),
        }];
        for (k, v) in keys {
            kvs.push(Kv {
                key: k.to_string(),
                value: v.clone(),
            });
        }
        let tensors = [
            OutTensor {
                name: "blk.0.attn_q.weight".into(),
                ne: [64, 2, 1, 1],
                ty: GgmlType::F32,
            },
            OutTensor {
                name: "blk.0.attn_norm.weight".into(),
                ne: [64, 1, 1, 1],
                ty: GgmlType::F32,
            },
        ];
        let mut f = gguf::header(&kvs, &tensors, alignment);
        for n in [128usize, 64] {
            f.extend((0..n).flat_map(|i| (i as f32 / 64.0).to_le_bytes()));
            f.resize(f.len().next_multiple_of(alignment as usize), 0);
        }
        f
    }

    /// As llama.cpp: the input's keys in order, the quantization version and file type moved
    /// to the end (as u32), split keys dropped; tensors in layer-then-name order.
    #[test]
    fn metadata_and_order_follow_llama_cpp() {
        let f = file(
            &[
                ("general.file_type", Value::u32(3)),
                ("llama.block_count", Value::u32(1)),
                ("split.count", Value::u32(1)),
                ("llama.attention.head_count", Value::u32(2)),
                ("general.quantization_version", Value::u32(2)),
                ("z.last", Value::Str(b"kept".to_vec())),
            ],
            32,
        );
        let input = Input::parse(&f).unwrap();
        let plan = plan(&input, FileType::Q8_0).unwrap();
        let keys: Vec<&str> = plan.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "general.architecture",
                "llama.block_count",
                "llama.attention.head_count",
                "z.last",
                "general.quantization_version",
                "general.file_type"
            ]
        );
        assert_eq!(plan.kvs[5].value, Value::u32(7));
        let names: Vec<(&str, GgmlType)> = plan
            .tensors
            .iter()
            .map(|(_, t)| (t.name.as_str(), t.ty))
            .collect();
        assert_eq!(
            names,
            [
                ("blk.0.attn_norm.weight", GgmlType::F32),
                ("blk.0.attn_q.weight", GgmlType::Q8_0)
            ]
        );
        let mut out = Vec::new();
        write(&input, &plan, &mut out, &mut |_| Ok(())).unwrap();
        assert_eq!(out.len() as u64, plan.file_size());
        let back = Gguf::parse(&out).unwrap();
        assert_eq!(back.kvs, plan.kvs);
    }

    /// An input aligned to 64 bytes is written aligned to 64 (llama.cpp would pad to 32 and
    /// keep `general.alignment = 64`, contradicting itself).
    #[test]
    fn a_stated_alignment_is_kept() {
        let keys = [
            ("general.alignment", Value::u32(64)),
            ("llama.block_count", Value::u32(1)),
            ("llama.attention.head_count", Value::u32(2)),
        ];
        let f = file(&keys, 64);
        let input = Input::parse(&f).unwrap();
        let plan = plan(&input, FileType::F16).unwrap();
        let mut out = Vec::new();
        write(&input, &plan, &mut out, &mut |_| Ok(())).unwrap();
        let back = Gguf::parse(&out).unwrap();
        assert_eq!(back.alignment, 64);
        assert_eq!(back.data_offset % 64, 0);
        assert!(back.tensors.iter().all(|t| t.offset % 64 == 0));
    }

    #[test]
    fn other_architectures_are_refused() {
        let mut f = file(&[("llama.block_count", Value::u32(1))], 32);
        let at = f.windows(5).position(|w| w == b"llama").unwrap();
        f[at..at + 5].copy_from_slice(b"qwen2");
        let e = plan(&Input::parse(&f).unwrap(), FileType::Q8_0).unwrap_err();
        assert!(e.to_string().contains("qwen2"), "{e}");
    }
}
