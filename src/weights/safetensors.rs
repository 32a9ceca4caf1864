//! Safetensors sources: one or more memory-mapped files (the shards of one model), each header
//! checked up front so that a truncated download gets a clear message.

use super::{TensorName, Weights};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::path::{Path, PathBuf};

impl Weights {
    /// Memory-maps safetensors files (all shards of one model).
    pub fn open_safetensors(paths: &[PathBuf]) -> Result<Self> {
        for p in paths {
            super::source::check_regular_file(p)?;
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

    /// A safetensors tensor as stored (its own dtype), of the given shape.
    pub(super) fn safetensor(
        &self,
        name: &TensorName,
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor> {
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
        // Weights are numbers with a fraction: an integer tensor would be read as integers.
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            bail!(
                "tensor `{}` in {} is stored as {:?}; model weights must be f32, f16 or bf16",
                name.hf,
                display_paths(paths),
                t.dtype()
            );
        }
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
