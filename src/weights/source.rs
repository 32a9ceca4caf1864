//! Turns what the user passed to `--model` into files: a local folder, a `.gguf` or
//! `.safetensors` file, or a Hub id `org/name[@revision]` (downloaded by [`super::hub`]). The
//! format is detected from the file's first bytes, never from its name.

use super::hub;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// The local file or folder: the path itself, or the Hub download (cached), shown by
    /// `reporter`.
    pub fn local_path(&self, reporter: Option<Arc<dyn hub::Reporter>>) -> Result<PathBuf> {
        match self {
            Self::Local(p) => Ok(p.clone()),
            Self::Hub { repo, revision } => hub::fetch_reporting(repo, revision, reporter),
        }
    }
}

/// The files of one model, by format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// One GGUF file: weights, settings and tokenizer.
    Gguf(PathBuf),
    /// A Hugging Face folder (`config.json`, `tokenizer.json`) and its safetensors files.
    HfDir { dir: PathBuf, weights: Vec<PathBuf> },
}

impl ModelFiles {
    /// What a local file or folder holds: a folder with `config.json` is a Hugging Face model,
    /// a folder with one `.gguf` file is that file; a file is told by its first bytes.
    pub fn find(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if path.join("config.json").exists() {
                return Ok(Self::HfDir {
                    dir: path.to_path_buf(),
                    weights: safetensors_files(path)?,
                });
            }
            let ggufs = files_with_extension(path, "gguf")?;
            return match ggufs.as_slice() {
                [one] => Ok(Self::Gguf(one.clone())),
                [] => bail!(
                    "folder {} has no config.json and no .gguf file: a safetensors model folder needs config.json, tokenizer.json and model.safetensors",
                    path.display()
                ),
                _ => bail!("folder {} holds several .gguf files; pass the one you want with --model FILE", path.display()),
            };
        }
        Ok(match detect_format(path)? {
            Format::Gguf => Self::Gguf(path.to_path_buf()),
            Format::Safetensors => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                Self::HfDir {
                    dir: dir.to_path_buf(),
                    weights: vec![path.to_path_buf()],
                }
            }
        })
    }
}

/// Fails unless `path` is a regular file (or a link to one): opening a FIFO would wait for a
/// writer forever, and a device never ends. A path that does not exist passes, so that opening
/// it gives the usual error.
pub fn check_regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => bail!(
            "{} is not a regular file (a FIFO, socket or device); gen reads models from files",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// Reads the first bytes of `path` and says which weight format it holds.
pub fn detect_format(path: &Path) -> Result<Format> {
    check_regular_file(path)?;
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
