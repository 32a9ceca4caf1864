//! GGUF sources: the header parsed once, tensors read on demand, and the file memory-mapped so
//! that the block types our kernels compute are used where they lie.

use super::{Matrix, TensorName, Weights};
use crate::kernels::ggml::{Arithmetic, BlockBytes, GgmlMatrix};
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

impl Weights {
    /// Opens a GGUF file and parses its header.
    pub fn open_gguf(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // Buffered: the header is tens of thousands of small reads (the vocabulary's strings).
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let content = read_header(&mut reader).map_err(|e| {
            // A tensor type we cannot compute is a fact about a valid file, not a corrupt one.
            if e.is::<UnsupportedType>() {
                e.context(format!("{} cannot be run", path.display()))
            } else {
                e.context(format!(
                    "reading the GGUF header of {}: the file is truncated or not a GGUF file",
                    path.display()
                ))
            }
        })?;
        let file = reader.into_inner();
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // SAFETY: mapped read-only; like every mmap-based loader (llama.cpp's included) we rely
        // on the file not being truncated or rewritten while the model is loaded. Without a
        // mapping (some filesystems), tensors are read instead.
        let map = unsafe { Mmap::map(&file) }.ok().map(Arc::new);
        for (name, info) in &content.tensor_infos {
            // Checked: a hostile header's dimensions or offset must not wrap around.
            let bytes = info
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .map(|n| n / info.ggml_dtype.block_size() as u64)
                .and_then(|blocks| blocks.checked_mul(info.ggml_dtype.type_size() as u64));
            let end = bytes
                .and_then(|b| b.checked_add(info.offset))
                .and_then(|e| e.checked_add(content.tensor_data_offset));
            let Some(end) = end else {
                bail!(
                    "{}: tensor `{name}` has a size or offset ({}) that no file can hold; the header is corrupt",
                    path.display(),
                    info.offset
                );
            };
            if end > file_len {
                bail!(
                    "{} is truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes; download it again",
                    path.display()
                );
            }
        }
        Ok(Self::Gguf {
            path: path.to_path_buf(),
            content,
            file,
            map,
            arith: Arithmetic::default(),
        })
    }

    /// A GGUF matrix of shape `(rows, cols)`, kept quantized; in place from the mapped file when
    /// our kernels compute its block type.
    pub(super) fn gguf_matrix(
        &mut self,
        name: &TensorName,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Matrix> {
        let arith = match self {
            Self::Gguf { arith, .. } => *arith,
            Self::Safetensors { .. } => Arithmetic::default(),
        };
        if let Some(g) = self.mapped_matrix(name, rows, cols, device)? {
            return Ok(Matrix::Ggml(g.with_arithmetic(arith)));
        }
        let q = self.gguf_tensor(name, &[rows, cols], device)?;
        if device.is_cpu() {
            match q.dtype() {
                GgmlDType::F16 => return Ok(Matrix::GgmlDense(q.dequantize_f16(device)?)),
                // Kept as stored (candle would widen it to f32): llama.cpp multiplies bf16.
                GgmlDType::BF16 => {
                    let w =
                        Tensor::from_raw_buffer(&q.data()?, DType::BF16, &[rows, cols], device)?;
                    return Ok(Matrix::GgmlDense(w));
                }
                GgmlDType::F32 => return Ok(Matrix::GgmlDense(q.dequantize(device)?)),
                _ => {}
            }
        }
        Ok(match Matrix::new(QMatMul::from_arc(Arc::new(q))?)? {
            Matrix::Ggml(g) => Matrix::Ggml(g.with_arithmetic(arith)),
            other => other,
        })
    }

    /// A GGUF matrix our kernels compute, over the mapped file's bytes (no copy); `None` when
    /// there is no mapping, the device is not the CPU, or the tensor is missing, has another
    /// shape or another block type (those go through [`Weights::gguf_tensor`], which reports
    /// the errors).
    fn mapped_matrix(
        &self,
        name: &TensorName,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Option<GgmlMatrix>> {
        let Self::Gguf {
            path,
            content,
            map: Some(map),
            ..
        } = self
        else {
            return Ok(None);
        };
        let Some(info) = content.tensor_infos.get(&name.gguf) else {
            return Ok(None);
        };
        if !matches!(device, Device::Cpu) || info.shape.dims() != [rows, cols] {
            return Ok(None);
        }
        let bytes = BlockBytes::Mapped {
            map: map.clone(),
            start: (content.tensor_data_offset + info.offset) as usize,
            len: rows * cols / info.ggml_dtype.block_size() * info.ggml_dtype.type_size(),
        };
        GgmlMatrix::new(info.ggml_dtype, rows, cols, bytes)
            .with_context(|| format!("tensor `{}` in {}", name.gguf, path.display()))
    }

    pub(super) fn gguf_tensor(
        &mut self,
        name: &TensorName,
        shape: &[usize],
        device: &Device,
    ) -> Result<QTensor> {
        let Self::Gguf {
            path,
            content,
            file,
            ..
        } = self
        else {
            bail!("internal: GGUF tensor requested from a safetensors source");
        };
        let q = match (device, content.tensor_infos.get(&name.gguf)) {
            (Device::Cpu, Some(info)) => {
                read_cpu_tensor(file, content.tensor_data_offset + info.offset, info)
            }
            _ => content
                .tensor(file, &name.gguf, device)
                .map_err(anyhow::Error::from),
        }
        .with_context(|| format!("reading tensor `{}` from {}", name.gguf, path.display()))?;
        if q.shape().dims() != shape {
            bail!(
                "tensor `{}` in {} has shape {:?} but the metadata implies {:?}",
                name.gguf,
                path.display(),
                q.shape().dims(),
                shape
            );
        }
        Ok(q)
    }
}

/// A GGUF tensor for the CPU, read from `file` at `start` straight into its blocks: one copy
/// of the bytes instead of candle's two (a byte buffer, then the typed blocks), which matters
/// to the load time of a small model. Types without a case here go through candle.
fn read_cpu_tensor(file: &mut File, start: u64, info: &gguf_file::TensorInfo) -> Result<QTensor> {
    use candle_core::quantized::{k_quants as k, GgmlDType as G};
    let dims = info.shape.dims().to_vec();
    let elems = info.shape.elem_count();
    let storage: Box<dyn candle_core::quantized::QuantizedType> = match info.ggml_dtype {
        G::F32 => Box::new(read_blocks::<f32>(file, start, elems)?),
        G::F16 => Box::new(read_blocks::<half::f16>(file, start, elems)?),
        G::Q4_0 => Box::new(read_blocks::<k::BlockQ4_0>(file, start, elems / 32)?),
        G::Q4_1 => Box::new(read_blocks::<k::BlockQ4_1>(file, start, elems / 32)?),
        G::Q5_0 => Box::new(read_blocks::<k::BlockQ5_0>(file, start, elems / 32)?),
        G::Q5_1 => Box::new(read_blocks::<k::BlockQ5_1>(file, start, elems / 32)?),
        G::Q8_0 => Box::new(read_blocks::<k::BlockQ8_0>(file, start, elems / 32)?),
        // `read` adds the tensor's own offset to the data section's.
        _ => return Ok(info.read(file, start - info.offset, &Device::Cpu)?),
    };
    if !elems.is_multiple_of(info.ggml_dtype.block_size()) {
        bail!(
            "{elems} elements do not fill whole blocks of {}",
            info.ggml_dtype.block_size()
        );
    }
    Ok(QTensor::new(
        candle_core::quantized::QStorage::Cpu(storage),
        dims,
    )?)
}

/// `n` values of a plain block type read from `file` at `start`.
fn read_blocks<T: candle_core::quantized::GgmlType>(
    file: &mut File,
    start: u64,
    n: usize,
) -> Result<Vec<T>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n)?;
    // SAFETY: the block types are plain data (integers, f16/f32 and arrays of them, no
    // padding), so all-zero bytes (and any bytes read later) are valid values; the memory is
    // allocated with `T`'s layout for exactly `n` values, as `Vec` frees it. Zeroed allocation
    // of large sizes maps fresh zero pages instead of writing them, and the read fills them.
    let mut blocks = unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Vec::from_raw_parts(ptr, n, n)
    };
    // SAFETY: as above, the vector's memory may be written as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(
            blocks.as_mut_ptr().cast::<u8>(),
            n * std::mem::size_of::<T>(),
        )
    };
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(bytes)?;
    Ok(blocks)
}

/// Parses a GGUF header with candle, after the checks candle's parser needs made (see
/// [`check_alignment`]). Every GGUF header gen reads goes through here.
pub fn read_header<R: Read + Seek>(reader: &mut R) -> Result<gguf_file::Content> {
    prescan(reader)?;
    reader.seek(SeekFrom::Start(0))?;
    Ok(gguf_file::Content::read(reader)?)
}

/// A tensor stored in a ggml type gen has no kernel for (candle's parser would only say
/// "unknown dtype" and not name the tensor).
#[derive(Debug)]
struct UnsupportedType {
    tensor: String,
    ty: u32,
}

impl std::fmt::Display for UnsupportedType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = crate::quant::types::GgmlType::from_id(self.ty)
            .map_or_else(|| format!("type {}", self.ty), |t| t.name().to_uppercase());
        write!(
            f,
            "tensor `{}` is stored as {name} (ggml type {}), which gen does not compute; gen runs \
             F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q6_K: use one of those \
             quantizations of the model (a Q4_K_M or Q8_0 file of it, or requantize it with \
             llama-quantize)",
            self.tensor, self.ty
        )
    }
}

impl std::error::Error for UnsupportedType {}

/// The tensor types candle reads (and gen computes): F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q8_1, Q2_K..Q8_K and BF16.
fn readable_type(ty: u32) -> bool {
    matches!(ty, 0..=3 | 6..=15 | 30)
}

/// Reads the header once before candle's parser does, for what that parser gets wrong: a
/// `general.alignment` of 0 or not a power of two (llama.cpp's rule; candle divides by it),
/// and a tensor type it cannot read, which is named here with its tensor.
fn prescan(r: &mut impl Read) -> Result<()> {
    if read_le(r, 4)?.to_le_bytes()[..4] != *b"GGUF" {
        bail!("not a GGUF file (unrecognised first bytes)");
    }
    // Version 1 wrote lengths and counts as u32, later ones as u64.
    let len_bytes = if read_le(r, 4)? >= 2 { 8 } else { 4 };
    let tensors = read_le(r, len_bytes)?;
    let kvs = read_le(r, len_bytes)?;
    for _ in 0..kvs {
        let key_len = read_le(r, len_bytes)?;
        let key = read_bytes(r, key_len)?;
        let ty = read_le(r, 4)? as u32;
        if key == b"general.alignment" {
            // Unsigned or signed 8/16/32-bit integers; candle ignores other types (and uses
            // its default alignment).
            if let (0..=5, Some(n)) = (ty, scalar_size(ty)) {
                let value = read_le(r, n)?;
                if value == 0 || !value.is_power_of_two() {
                    bail!("`general.alignment` is {value}; it must be a power of two");
                }
                continue;
            }
        }
        skip_value(r, ty, len_bytes, 0)?;
    }
    for _ in 0..tensors {
        let name_len = read_le(r, len_bytes)?;
        let name = read_bytes(r, name_len)?;
        let dims = read_le(r, 4)?;
        skip(
            r,
            dims.checked_mul(len_bytes as u64)
                .context("the header is corrupt")?,
        )?;
        let ty = read_le(r, 4)? as u32;
        if !readable_type(ty) {
            return Err(UnsupportedType {
                tensor: String::from_utf8_lossy(&name).into_owned(),
                ty,
            }
            .into());
        }
        skip(r, 8)?;
    }
    Ok(())
}

/// The size in bytes of a GGUF scalar type; `None` for strings, arrays and unknown types.
pub(crate) fn scalar_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// A little-endian unsigned integer of `n` ≤ 8 bytes.
fn read_le(r: &mut dyn Read, n: usize) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b[..n])
        .context("the header is truncated")?;
    Ok(u64::from_le_bytes(b))
}

/// Reads `n` bytes (failing at the end of the file, never allocating more than it read).
fn read_bytes(r: &mut dyn Read, n: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(n).read_to_end(&mut out)?;
    if (out.len() as u64) < n {
        bail!("the header is truncated");
    }
    Ok(out)
}

/// Skips `n` bytes.
fn skip(r: &mut dyn Read, n: u64) -> Result<()> {
    if std::io::copy(&mut r.take(n), &mut std::io::sink())? < n {
        bail!("the header is truncated");
    }
    Ok(())
}

/// Skips one metadata value of GGUF type `ty` (`len_bytes`: the width of lengths).
fn skip_value(r: &mut dyn Read, ty: u32, len_bytes: usize, depth: usize) -> Result<()> {
    if let Some(n) = scalar_size(ty) {
        return skip(r, n as u64);
    }
    match ty {
        8 => {
            let n = read_le(r, len_bytes)?;
            skip(r, n)
        }
        9 if depth < 2 => {
            let inner = read_le(r, 4)? as u32;
            let n = read_le(r, len_bytes)?;
            match scalar_size(inner) {
                Some(size) => skip(
                    r,
                    n.checked_mul(size as u64)
                        .context("the header is corrupt")?,
                ),
                None => (0..n).try_for_each(|_| skip_value(r, inner, len_bytes, depth + 1)),
            }
        }
        other => bail!("metadata value type {other} is not a GGUF type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header with no metadata and one 32×1 tensor of ggml type `ty`.
    fn one_tensor_header(ty: u32) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes()); // tensors
        b.extend(0u64.to_le_bytes()); // metadata pairs
        let name = b"blk.0.attn_q.weight";
        b.extend((name.len() as u64).to_le_bytes());
        b.extend(name);
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b
    }

    /// A tensor type candle cannot read is named with its tensor, and is not called a corrupt
    /// file; the types we compute pass the scan.
    #[test]
    fn an_unsupported_tensor_type_names_the_tensor() {
        let err = prescan(&mut one_tensor_header(20).as_slice()).unwrap_err();
        assert!(err.is::<UnsupportedType>());
        let msg = err.to_string();
        assert!(
            msg.contains("`blk.0.attn_q.weight` is stored as IQ4_NL (ggml type 20)"),
            "{msg}"
        );
        let err = prescan(&mut one_tensor_header(77).as_slice()).unwrap_err();
        assert!(err.to_string().contains("stored as type 77"), "{err}");
        for ty in [0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 30] {
            prescan(&mut one_tensor_header(ty).as_slice()).unwrap();
        }
    }
}
