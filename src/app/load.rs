//! Loading: a `--model` value → its files ([`crate::weights`]) → the model and its tokenizer,
//! on the CPU.

use crate::config::DEFAULT_MODEL_FILE;
use crate::kernels::ggml::Arithmetic;
use crate::model::{Llama, LlamaConfig};
use crate::output::HubReporter;
use crate::tokenizer::Tokenizer;
use crate::weights::{Format, ModelFiles, ModelSource, Weights};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A model ready to run, with the tokenizer and metadata that came with it.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub format: Format,
    /// The file or folder the weights were read from.
    pub path: PathBuf,
}

impl LoadedModel {
    /// The token ids of `text`, checked against the model: a tokenizer whose ids go past the
    /// embedding rows (a tokenizer.json from another model) is an error naming both sizes,
    /// not a failed index deep in the forward pass.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(text)?;
        let rows = self.model.config().vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= rows) {
            bail!(
                "the tokenizer of {} gave token id {id}, but the model's embedding has {rows} rows; the tokenizer does not belong to these weights",
                self.path.display()
            );
        }
        Ok(ids)
    }
    /// Refuses, before anything is allocated, a run of `rows` sequences of up to `positions`
    /// positions each, with `logit_rows` rows of logits alive at once, whose KV cache and
    /// logits would need more memory than the machine has available (`MemAvailable`; no check
    /// where it cannot be read). The cache grows as it fills, so without this a model claiming
    /// a huge context (or `--beams 100000`) would abort on a failed allocation mid-run. `what`
    /// names the flag to change.
    pub fn check_memory(
        &self,
        what: &str,
        rows: usize,
        positions: usize,
        logit_rows: usize,
    ) -> Result<()> {
        let c = self.model.config();
        let per_position = (c.num_hidden_layers as u128)
            * 2
            * (c.num_key_value_heads as u128)
            * (c.head_dim as u128)
            * (self.model.cache_dtype().size_in_bytes() as u128);
        // Logits, and the copy a softmax or sort makes of them.
        let need = (rows as u128) * (positions as u128) * per_position
            + (logit_rows as u128) * (c.vocab_size as u128) * 4 * 2;
        let Some(available) = available_memory() else {
            return Ok(());
        };
        if need > u128::from(available) {
            let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
            bail!(
                "{what}: {rows} sequence(s) of up to {positions} positions need about {:.1} GiB for their KV cache and logits, more than the {:.1} GiB of memory available; use fewer, or a smaller -n / -c",
                gib(need),
                gib(u128::from(available))
            );
        }
        Ok(())
    }
}

/// Resolves `--model`: the given value, else `models/<default>` under the working directory,
/// else under the source tree `gen` was built from.
pub fn resolve_model_spec(model: Option<&str>) -> String {
    if let Some(m) = model {
        return m.to_string();
    }
    let local = PathBuf::from("models").join(DEFAULT_MODEL_FILE);
    if local.exists() {
        return local.display().to_string();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(DEFAULT_MODEL_FILE)
        .display()
        .to_string()
}

/// Loads `--model` (or the default model) on the CPU, with the KV cache type `--cache-type`
/// asked for (`None`: the format's default) and a GGUF file's products following `arith`.
pub fn load_model(
    model: Option<&str>,
    cache_type: Option<DType>,
    arith: Arithmetic,
) -> Result<LoadedModel> {
    let source = ModelSource::parse(&resolve_model_spec(model))?;
    let mut loaded = load_as(&source, &Device::Cpu, arith)?;
    if let Some(dtype) = cache_type {
        loaded.model.set_cache_dtype(dtype)?;
    }
    Ok(loaded)
}

/// Loads only the tokenizer of `--model` (or the default model): from a GGUF file's
/// metadata, or a folder's tokenizer.json; no weights are read.
pub fn load_tokenizer(model: Option<&str>) -> Result<Tokenizer> {
    let source = ModelSource::parse(&resolve_model_spec(model))?;
    let path = source.local_path(Some(Arc::new(HubReporter)))?;
    match ModelFiles::find(&path)? {
        ModelFiles::Gguf(file) => Tokenizer::from_gguf_file(&file),
        ModelFiles::HfDir { dir, .. } => hf_tokenizer(&dir),
    }
}

/// A folder's tokenizer.json, which must be there.
fn hf_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let tok_path = dir.join("tokenizer.json");
    crate::weights::source::check_regular_file(&tok_path)?;
    if !tok_path.exists() {
        bail!(
            "{} is missing: a safetensors model folder needs its tokenizer.json",
            tok_path.display()
        );
    }
    Tokenizer::from_json_file(&tok_path)
}

/// Loads a model from any source on the given device (a Hub download shown on stderr).
pub fn load(source: &ModelSource, device: &Device) -> Result<LoadedModel> {
    load_as(source, device, Arithmetic::default())
}

/// [`load`] with a GGUF file's products following `arith`.
pub fn load_as(source: &ModelSource, device: &Device, arith: Arithmetic) -> Result<LoadedModel> {
    load_path_as(
        &source.local_path(Some(Arc::new(HubReporter)))?,
        device,
        arith,
    )
}

/// Loads from a local file or folder.
pub fn load_path(path: &Path, device: &Device) -> Result<LoadedModel> {
    load_path_as(path, device, Arithmetic::default())
}

/// Loads from a local file or folder, a GGUF file's ggml matrices following `arith`.
pub fn load_path_as(path: &Path, device: &Device, arith: Arithmetic) -> Result<LoadedModel> {
    match ModelFiles::find(path)? {
        ModelFiles::Gguf(file) => load_gguf(&file, device, arith),
        ModelFiles::HfDir { dir, weights } => load_hf_dir(&dir, &weights, device),
    }
}

/// A GGUF file opened for reading: its weights (not yet loaded), settings and tokenizer.
pub struct GgufParts {
    pub weights: Weights,
    pub cfg: LlamaConfig,
    pub tokenizer: Tokenizer,
}

/// Opens a GGUF file and reads its model settings and tokenizer (for loading or converting).
pub fn open_gguf(path: &Path) -> Result<GgufParts> {
    let weights = Weights::open_gguf(path)?;
    let content = weights
        .gguf_content()
        .context("internal: GGUF source without metadata")?;
    let cfg = LlamaConfig::from_gguf(content)
        .with_context(|| format!("reading model settings from {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(content)
        .with_context(|| format!("building the tokenizer from {}", path.display()))?;
    Ok(GgufParts {
        weights,
        cfg,
        tokenizer,
    })
}

fn load_gguf(path: &Path, device: &Device, arith: Arithmetic) -> Result<LoadedModel> {
    let GgufParts {
        mut weights,
        cfg,
        tokenizer,
    } = open_gguf(path)?;
    weights.set_arithmetic(arith);
    let model = Llama::load(&mut weights, cfg, device)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(LoadedModel {
        model,
        tokenizer,
        format: Format::Gguf,
        path: path.to_path_buf(),
    })
}

fn load_hf_dir(dir: &Path, files: &[PathBuf], device: &Device) -> Result<LoadedModel> {
    let cfg = LlamaConfig::from_hf_dir(dir)?;
    let tokenizer = hf_tokenizer(dir)?;
    let mut weights = Weights::open_safetensors(files)?;
    let model = Llama::load(&mut weights, cfg, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok(LoadedModel {
        model,
        tokenizer,
        format: Format::Safetensors,
        path: dir.to_path_buf(),
    })
}

/// The memory the kernel says is available for a new allocation (Linux `MemAvailable`).
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}
