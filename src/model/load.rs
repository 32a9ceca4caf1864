//! Turns what the user passed to `--model` into a loaded model and tokenizer: a local folder, a
//! `.gguf` or `.safetensors` file, or a Hub id `org/name[@revision]`. The format is detected from
//! the file's first bytes, never from its name.

use super::config::LlamaConfig;
use super::hub;
use super::llama::Llama;
use super::weights::Weights;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The weight format, as told by the file's magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gguf,
    Safetensors,
}

/// Where a model comes from, before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local file or folder.
    Local(PathBuf),
    /// A Hugging Face Hub repository, `org/name` at a revision (default `main`).
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// Interprets a `--model` value: an existing path is local; `org/name[@rev]` that is not an
    /// existing path is a Hub id.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (spec, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let looks_like_hub = parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
            && !revision.is_empty()
            && !spec.starts_with('.')
            && !spec.ends_with(".gguf")
            && !spec.ends_with(".safetensors");
        if looks_like_hub {
            return Ok(Self::Hub {
                repo: repo.to_string(),
                revision: revision.to_string(),
            });
        }
        bail!(
            "model `{spec}` not found: it is neither an existing file or folder nor a Hub id like `org/name[@revision]`; \
             run `models/fetch.sh` for the default model or pass --model PATH"
        )
    }
}

/// A model ready to run, with the tokenizer and metadata that came with it.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub format: Format,
    /// The file or folder the weights were read from.
    pub path: PathBuf,
}

/// Reads the first bytes of `path` and says which weight format it holds.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 9];
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    if n >= 4 && &head[..4] == b"GGUF" {
        return Ok(Format::Gguf);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    bail!(
        "{} is neither a GGUF file nor a safetensors file (unrecognised first bytes)",
        path.display()
    )
}

/// Loads a model from any source on the CPU or the given device.
pub fn load(source: &ModelSource, device: &Device) -> Result<LoadedModel> {
    let path = match source {
        ModelSource::Local(p) => p.clone(),
        ModelSource::Hub { repo, revision } => hub::fetch(repo, revision)?,
    };
    load_path(&path, device)
}

/// Loads from a local file or folder.
pub fn load_path(path: &Path, device: &Device) -> Result<LoadedModel> {
    if path.is_dir() {
        if path.join("config.json").exists() {
            return load_hf_dir(path, &safetensors_files(path)?, device);
        }
        let ggufs = files_with_extension(path, "gguf")?;
        return match ggufs.as_slice() {
            [one] => load_gguf(one, device),
            [] => bail!(
                "folder {} has no config.json and no .gguf file: a safetensors model folder needs config.json, tokenizer.json and model.safetensors",
                path.display()
            ),
            _ => bail!("folder {} holds several .gguf files; pass the one you want with --model FILE", path.display()),
        };
    }
    match detect_format(path)? {
        Format::Gguf => load_gguf(path, device),
        Format::Safetensors => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            load_hf_dir(dir, &[path.to_path_buf()], device)
        }
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

fn load_gguf(path: &Path, device: &Device) -> Result<LoadedModel> {
    let GgufParts {
        mut weights,
        cfg,
        tokenizer,
    } = open_gguf(path)?;
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
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.exists() {
        bail!(
            "{} is missing: a safetensors model folder needs its tokenizer.json",
            tok_path.display()
        );
    }
    let tokenizer = Tokenizer::from_json_file(&tok_path)?;
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

/// The safetensors files of a folder: the shards listed in `model.safetensors.index.json`, or
/// `model.safetensors`, or the only `*.safetensors` file.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let shards = hub::read_shard_list(&index)?;
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            bail!(
                "shard {} listed in {} is missing",
                missing.display(),
                index.display()
            );
        }
        return Ok(paths);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let all = files_with_extension(dir, "safetensors")?;
    match all.len() {
        0 => bail!("folder {} has no model.safetensors (nor an index of shards)", dir.display()),
        1 => Ok(all),
        _ => bail!(
            "folder {} has several .safetensors files but no model.safetensors.index.json to say which belong together",
            dir.display()
        ),
    }
}

fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if p.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_and_rejects_nonsense() {
        assert_eq!(
            ModelSource::parse("HuggingFaceTB/SmolLM2-135M@abc").unwrap(),
            ModelSource::Hub {
                repo: "HuggingFaceTB/SmolLM2-135M".into(),
                revision: "abc".into()
            }
        );
        assert_eq!(
            ModelSource::parse("org/name").unwrap(),
            ModelSource::Hub {
                repo: "org/name".into(),
                revision: "main".into()
            }
        );
        assert!(ModelSource::parse("no/such/file.gguf").is_err());
        assert!(ModelSource::parse("missing.gguf").is_err());
    }
}
