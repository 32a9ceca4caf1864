//! Where the model's tensors come from: a GGUF file (quantized matrices stay quantized) or
//! safetensors files (dense, memory-mapped). The model asks for tensors by role; this module
//! maps a role to each format's tensor name and checks its shape.

use super::dense_matmul;
use super::ggml_matmul::{BlockBytes, GgmlMatrix};
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Storage, Tensor};
use memmap2::Mmap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A weight matrix used as a linear layer: ggml-exact kernels for the block types we compute
/// ourselves ([`GgmlMatrix`]), candle's `QMatMul` for everything else (dense and other quants).
#[derive(Debug, Clone)]
pub enum Linear {
    Ggml(GgmlMatrix),
    Candle(QMatMul),
}

impl Linear {
    /// Wraps a loaded matrix, moving supported quantized types to our kernels.
    pub fn new(m: QMatMul) -> Result<Self> {
        if let QMatMul::QTensor(q) = &m {
            if let Some(g) = GgmlMatrix::from_qtensor(q)? {
                return Ok(Self::Ggml(g));
            }
        }
        Ok(Self::Candle(m))
    }

    /// `x @ Wᵀ` over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Ggml(g) => g.forward(x),
            Self::Candle(QMatMul::Tensor(w)) => {
                if let Some(y) = dense_few_rows(x, w)? {
                    return Ok(y);
                }
                // bf16/f16 weights (kept so on the CPU) widen for candle's product, whose
                // operands share one type; at prefill sizes that is a small part of the work.
                let w = QMatMul::Tensor(w.to_dtype(DType::F32)?);
                Ok(candle_core::Module::forward(&w, x)?)
            }
            Self::Candle(m) => Ok(candle_core::Module::forward(m, x)?),
        }
    }

    /// Whether a product over `rows` input rows runs on rayon's pool (candle's kernels: dense
    /// weights beyond [`dense_matmul::MAX_ROWS`] rows, quantized types we have no kernel for)
    /// rather than on ours ([`crate::pool`]).
    pub fn on_rayon(&self, rows: usize) -> bool {
        match self {
            Self::Ggml(_) => false,
            Self::Candle(QMatMul::Tensor(_)) => rows > dense_matmul::MAX_ROWS,
            Self::Candle(_) => true,
        }
    }

    /// The rows `ids` as f32 vectors (an embedding lookup), shaped `ids.dims() + [cols]`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Ggml(g) => g.embedding(ids),
            Self::Candle(m) => Ok(m.embedding(ids)?.to_dtype(DType::F32)?),
        }
    }

    /// One matrix with the rows of `parts` one after another, when they can run as a single
    /// product (our quantized kernels with one block type, or dense weights); `None` for other
    /// quantized types, which stay separate.
    fn stack(parts: &[Linear]) -> Result<Option<Linear>> {
        let ggml: Option<Vec<&GgmlMatrix>> = parts
            .iter()
            .map(|p| match p {
                Self::Ggml(g) => Some(g),
                Self::Candle(_) => None,
            })
            .collect();
        if let Some(g) = ggml {
            return Ok(GgmlMatrix::stack(&g).map(Self::Ggml));
        }
        let dense: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|p| match p {
                Self::Candle(QMatMul::Tensor(t)) => Some(t),
                _ => None,
            })
            .collect();
        // One stored type for all parts (a file may mix them).
        let dense = dense.filter(|d| d.iter().all(|t| t.dtype() == d[0].dtype()));
        Ok(match dense {
            Some(d) => Some(Self::Candle(QMatMul::Tensor(Tensor::cat(&d, 0)?))),
            None => None,
        })
    }
}

/// `x · wᵀ` through [`dense_matmul`] when `x` has at most [`dense_matmul::MAX_ROWS`] rows, `x`
/// is f32 and `w` f32, bf16 or f16, both on the CPU (a decode step, beams); `None` otherwise.
fn dense_few_rows(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        return Ok(None);
    };
    let m: usize = lead.iter().product();
    if m > dense_matmul::MAX_ROWS
        || !x.device().is_cpu()
        || x.dtype() != DType::F32
        || w.rank() != 2
        || w.dims()[1] != k
    {
        return Ok(None);
    }
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Ok(None);
    };
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let y = match w.dtype() {
        DType::F32 => dense_matmul::matmul(&xs, &cpu.as_slice::<f32>()?[start..end], k),
        DType::BF16 => dense_matmul::matmul(&xs, &cpu.as_slice::<half::bf16>()?[start..end], k),
        DType::F16 => dense_matmul::matmul(&xs, &cpu.as_slice::<half::f16>()?[start..end], k),
        _ => return Ok(None),
    };
    let mut shape = lead.to_vec();
    shape.push(w.dims()[0]);
    Ok(Some(Tensor::from_vec(y, shape, x.device())?))
}

/// Projections of one input (attention's q, k and v; the MLP's gate and up): one product over
/// their stacked rows when the weights allow, so the input is prepared once and the threads
/// meet once, else one product each.
pub enum Projections {
    Stacked { w: Linear, sizes: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    /// `parts` with their output sizes.
    pub fn new(parts: Vec<(Linear, usize)>) -> Result<Self> {
        let sizes: Vec<usize> = parts.iter().map(|(_, n)| *n).collect();
        let parts: Vec<Linear> = parts.into_iter().map(|(l, _)| l).collect();
        Ok(match Linear::stack(&parts)? {
            Some(w) => Self::Stacked { w, sizes },
            None => Self::Separate(parts),
        })
    }

    /// [`Linear::on_rayon`] for any of the projections.
    pub fn on_rayon(&self, rows: usize) -> bool {
        match self {
            Self::Stacked { w, .. } => w.on_rayon(rows),
            Self::Separate(parts) => parts.iter().any(|p| p.on_rayon(rows)),
        }
    }

    /// Each projection of `x`, in the order given to [`Projections::new`].
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Stacked { w, sizes } => {
                let all = w.forward(x)?;
                let last = all.rank() - 1;
                let mut at = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        let part = all.narrow(last, at, n)?;
                        at += n;
                        Ok(part)
                    })
                    .collect()
            }
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
        }
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
    },
    /// One or more memory-mapped safetensors files.
    Safetensors {
        paths: Vec<PathBuf>,
        files: candle_core::safetensors::MmapedSafetensors,
    },
}

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

    /// Memory-maps safetensors files (all shards of one model).
    pub fn open_safetensors(paths: &[PathBuf]) -> Result<Self> {
        for p in paths {
            check_safetensors_header(p)?;
        }
        // SAFETY: the files are mapped read-only; like every mmap-based loader we rely on them
        // not being modified while the model is loaded.
        let files = unsafe { candle_core::safetensors::MmapedSafetensors::multi(paths) }
            .with_context(|| format!("memory-mapping {}", display_paths(paths)))?;
        Ok(Self::Safetensors {
            paths: paths.to_vec(),
            files,
        })
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
    ) -> Result<Linear> {
        match self {
            Self::Gguf { .. } => {
                if let Some(g) = self.mapped_matrix(name, rows, cols, device)? {
                    return Ok(Linear::Ggml(g));
                }
                let q = self.gguf_tensor(name, &[rows, cols], device)?;
                Linear::new(QMatMul::from_arc(Arc::new(q))?)
            }
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
                Linear::new(QMatMul::Tensor(w))
            }
        }
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

    /// A tensor as dense f32, of the given shape.
    pub fn dense(&mut self, name: &TensorName, shape: &[usize], device: &Device) -> Result<Tensor> {
        match self {
            Self::Gguf { .. } => Ok(self.gguf_tensor(name, shape, device)?.dequantize(device)?),
            Self::Safetensors { .. } => {
                Ok(self.safetensor(name, shape, device)?.to_dtype(DType::F32)?)
            }
        }
    }

    /// A safetensors tensor as stored (its own dtype), of the given shape.
    fn safetensor(&self, name: &TensorName, shape: &[usize], device: &Device) -> Result<Tensor> {
        let Self::Safetensors { files, paths } = self else {
            bail!(
                "`{}` asked of a GGUF source as a safetensors tensor",
                name.hf
            );
        };
        let t = files.load(&name.hf, device).with_context(|| {
            format!(
                "tensor `{}` is missing from {}",
                name.hf,
                display_paths(paths)
            )
        })?;
        if t.dims() != shape {
            bail!(
                "tensor `{}` has shape {:?} but the config implies {:?}; config.json does not match the weights",
                name.hf,
                t.dims(),
                shape
            );
        }
        Ok(t)
    }

    fn gguf_tensor(
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
/// of the bytes instead of candle's two (a byte buffer, then the typed blocks), which is a
/// tenth of the load time for a small model. Types without a case here go through candle.
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

/// Checks that a safetensors file's header parses and its data is all there, so a truncated
/// download gets a clear message rather than a failure deep inside a load.
fn check_safetensors_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut len_bytes = [0u8; 8];
    f.read_exact(&mut len_bytes)
        .with_context(|| format!("{} is too short to be a safetensors file", path.display()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len.saturating_add(8) > file_len || header_len > 100_000_000 {
        bail!("{} is not a valid safetensors file (header length {header_len} past the end of the file)", path.display());
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("reading the header of {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{} has a corrupt safetensors header", path.display()))?;
    let data_len = file_len - 8 - header_len;
    let end = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, t)| t.get("data_offsets")?.as_array()?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if end > data_len {
        bail!(
            "{} is truncated: its header describes {end} bytes of tensor data but only {data_len} are present; download it again",
            path.display()
        );
    }
    Ok(())
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
