//! Bytes → tensors: where the model's tensors come from. A GGUF file (quantized matrices stay
//! quantized, and the block types our kernels compute are used in place from the memory map) or
//! safetensors files (dense, memory-mapped). The model asks for tensors by role
//! ([`TensorName`]); this module maps a role to each format's tensor name and checks its shape.
//! [`source`] turns a `--model` value into files, [`hub`] downloads from the Hugging Face Hub.

mod gguf;
pub mod hub;
mod safetensors;
pub mod source;

pub use gguf::read_header as read_gguf_header;
pub(crate) use gguf::scalar_size as gguf_scalar_size;
pub use source::{detect_format, Format, ModelFiles, ModelSource};

use crate::kernels::ggml::{Arithmetic, GgmlMatrix};
use anyhow::Result;
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// A weight matrix as a source holds it: blocks of a type our kernels compute ([`GgmlMatrix`]),
/// or a candle tensor (dense, or a quantized type we have no kernel for).
#[derive(Debug, Clone)]
pub enum Matrix {
    Ggml(GgmlMatrix),
    Candle(QMatMul),
    /// GGUF f32 and f16 weights on the CPU, kept as stored `(rows, cols)` and multiplied in
    /// llama.cpp's order ([`crate::kernels::dense::matmul_as_ggml`]).
    GgmlDense(Tensor),
}

impl Matrix {
    /// Wraps a loaded candle matrix, moving the quantized types our kernels compute to them.
    pub fn new(m: QMatMul) -> Result<Self> {
        if let QMatMul::QTensor(q) = &m {
            if let Some(g) = GgmlMatrix::from_qtensor(q)? {
                return Ok(Self::Ggml(g));
            }
        }
        Ok(Self::Candle(m))
    }
}

/// A tensor name in both layouts: Hugging Face (`model.layers.0.self_attn.q_proj.weight`) and
/// GGUF (`blk.0.attn_q.weight`).
#[derive(Debug, Clone)]
pub struct TensorName {
    pub hf: String,
    pub gguf: String,
}

impl TensorName {
    /// Both spellings of one tensor.
    pub fn new(hf: impl Into<String>, gguf: impl Into<String>) -> Self {
        Self {
            hf: hf.into(),
            gguf: gguf.into(),
        }
    }
}

/// An open weight source.
pub enum Weights {
    /// A GGUF file: metadata already parsed, tensors read on demand; the file is also
    /// memory-mapped (when the system allows) so that matrices our kernels compute are used
    /// where they lie, without a copy.
    Gguf {
        path: PathBuf,
        content: gguf_file::Content,
        file: File,
        map: Option<Arc<Mmap>>,
        /// Whose summation order the ggml matrices made from here follow.
        arith: Arithmetic,
    },
    /// One or more memory-mapped safetensors files.
    Safetensors {
        paths: Vec<PathBuf>,
        files: candle_core::safetensors::MmapedSafetensors,
    },
}

impl Weights {
    /// Makes the ggml matrices read from now on follow `arith` (a GGUF source; the others
    /// hold no ggml blocks).
    pub fn set_arithmetic(&mut self, to: Arithmetic) {
        if let Self::Gguf { arith, .. } = self {
            *arith = to;
        }
    }

    /// The GGUF metadata, when this is a GGUF source.
    pub fn gguf_content(&self) -> Option<&gguf_file::Content> {
        match self {
            Self::Gguf { content, .. } => Some(content),
            Self::Safetensors { .. } => None,
        }
    }

    /// Whether the source holds a tensor of that name.
    pub fn contains(&self, name: &TensorName) -> bool {
        match self {
            Self::Gguf { content, .. } => content.tensor_infos.contains_key(&name.gguf),
            Self::Safetensors { files, .. } => files.get(&name.hf).is_ok(),
        }
    }

    /// A weight matrix of shape `(rows, cols)`, kept quantized when it is stored quantized; the
    /// block types our kernels compute are used in place from the mapped file.
    pub fn matrix(
        &mut self,
        name: &TensorName,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Matrix> {
        match self {
            Self::Gguf { .. } => self.gguf_matrix(name, rows, cols, device),
            Self::Safetensors { .. } => {
                let stored = self.safetensor(name, &[rows, cols], device)?;
                // On the CPU, bf16 and f16 matrices stay as stored (half the memory, and half
                // the bytes a decode step reads) and widen to f32 as the products read them.
                let keep = device.is_cpu() && matches!(stored.dtype(), DType::BF16 | DType::F16);
                let w = if keep {
                    stored
                } else {
                    stored.to_dtype(DType::F32)?
                };
                Ok(Matrix::Candle(QMatMul::Tensor(w)))
            }
        }
    }

    /// A tensor as dense f32, of the given shape.
    pub fn dense(&mut self, name: &TensorName, shape: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Self::Gguf { .. } => Ok(self.gguf_tensor(name, shape, device)?.dequantize(device)?),
            Self::Safetensors { .. } => {
                Ok(self.safetensor(name, shape, device)?.to_dtype(DType::F32)?)
            }
        }
    }
}
