//! GGUF sources: the header parsed once, tensors read on demand, and the file memory-mapped so
//! that the block types our kernels compute are used where they lie.

use super::{Matrix, TensorName, Weights};
use crate::kernels::ggml::{BlockBytes, GgmlMatrix};
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::Device;
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
        let content = gguf_file::Content::read(&mut reader)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "reading the GGUF header of {}: the file is truncated or not a GGUF file",
                    path.display()
                )
            })?;
        let file = reader.into_inner();
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // SAFETY: mapped read-only; like every mmap-based loader (llama.cpp's included) we rely
        // on the file not being truncated or rewritten while the model is loaded. Without a
        // mapping (some filesystems), tensors are read instead.
        let map = unsafe { Mmap::map(&file) }.ok().map(Arc::new);
        for (name, info) in &content.tensor_infos {
            let bytes = info.shape.elem_count() / info.ggml_dtype.block_size()
                * info.ggml_dtype.type_size();
            let end = content.tensor_data_offset + info.offset + bytes as u64;
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
        if let Some(g) = self.mapped_matrix(name, rows, cols, device)? {
            return Ok(Matrix::Ggml(g));
        }
        let q = self.gguf_tensor(name, &[rows, cols], device)?;
        Matrix::new(QMatMul::from_arc(Arc::new(q))?)
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
