//! `gen quantize IN OUT TYPE`: a GGUF model rewritten as another file type, byte for byte as
//! llama.cpp's llama-quantize writes it (see [`crate::quant`]). IN may be a Hugging Face
//! folder: it is first converted to an f32 GGUF beside OUT, as convert_hf_to_gguf.py
//! `--outtype f32` writes it (lossless), then quantized; the intermediate file is removed.
//! The output is written to a temporary file beside OUT and renamed over it only once
//! complete, so a failure (a full disk, Ctrl-C) never leaves a partial OUT behind.

use super::{interrupt_on_ctrl_c, Interrupted, UsageError};
use crate::config::QuantizeConfig;
use crate::output;
use crate::quant::hf::OutType;
use crate::quant::{self, Input, TensorDone};
use anyhow::{Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `gen quantize`: refuses an existing OUT unless `--force`, writes, says what it wrote.
pub fn run(c: &QuantizeConfig) -> Result<()> {
    if !c.force && c.output.exists() {
        return Err(UsageError(format!(
            "{} already exists; choose another file, or pass --force to replace it",
            c.output.display()
        ))
        .into());
    }
    let start = Instant::now();
    if c.input.is_dir() {
        let (temp, _) = Temp::create(&c.output, "f32")?;
        super::to_gguf::convert(&c.input, &temp.path, OutType::F32)?;
        return quantize_file(c, &temp.path, start);
    }
    quantize_file(c, &c.input, start)
}

/// Quantizes the GGUF file `input` as `c` says.
fn quantize_file(c: &QuantizeConfig, path: &Path, start: Instant) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: mapped read-only; as every mmap-based loader (llama.cpp's included) we rely on
    // the file not being truncated or rewritten while we read it.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("reading {}", path.display()))?;
    let input = Input::parse(&map).with_context(|| format!("reading {}", c.input.display()))?;
    let plan = quant::plan(&input, c.file_type)
        .with_context(|| format!("quantizing {}", c.input.display()))?;

    let interrupt = interrupt_on_ctrl_c();
    let bar = (!c.verbose).then(|| output::StepBar::new("quantize", plan.tensors.len()));
    let mut report = |t: &TensorDone| -> Result<()> {
        if let Some(bar) = &bar {
            bar.step(t.name.to_string());
        } else {
            output::note(&tensor_line(t))?;
        }
        if interrupt.as_ref().is_some_and(|i| i.is_set()) {
            return Err(Interrupted.into());
        }
        Ok(())
    };
    let written = write_atomically(&c.output, |out| {
        quant::write(&input, &plan, out, &mut report)
    });
    if let Some(bar) = &bar {
        bar.finish();
    }
    if let Err(e) = written {
        if e.is::<Interrupted>() {
            output::note(&format!(
                "gen: interrupted; {} was not written",
                c.output.display()
            ))?;
        }
        return Err(e);
    }
    let fallback = match plan.n_fallback {
        0 => String::new(),
        n => format!(", {n} with a fallback type for their row length"),
    };
    output::note(&format!(
        "gen: wrote {} ({}, {} tensors{fallback}; {:.2} MiB → {:.2} MiB) in {:.2} s",
        c.output.display(),
        c.file_type,
        plan.tensors.len(),
        map.len() as f64 / MIB,
        plan.file_size() as f64 / MIB,
        start.elapsed().as_secs_f64()
    ))
}

const MIB: f64 = 1024.0 * 1024.0;

/// One tensor as llama-quantize logs it:
/// `[  12/ 272] blk.0.attn_q.weight - [576, 576], q4_1 → q5_0, 0.20 → 0.21 MiB`.
fn tensor_line(t: &TensorDone) -> String {
    let dims = t.ne.iter().rev().skip_while(|&&d| d == 1).count().max(1);
    let shape: Vec<String> = t.ne[..dims].iter().map(u64::to_string).collect();
    let change = if t.from == t.to {
        format!("{} (copied)", t.from)
    } else {
        format!("{} → {}", t.from, t.to)
    };
    format!(
        "[{:4}/{:4}] {:<36} - [{}], {change}, {:.2} → {:.2} MiB",
        t.index,
        t.total,
        t.name,
        shape.join(", "),
        t.bytes_in as f64 / MIB,
        t.bytes_out as f64 / MIB
    )
}

/// A hidden temporary file beside `path`, removed unless [`Temp::keep_as`] renames it.
struct Temp {
    path: PathBuf,
}

impl Temp {
    fn create(target: &Path, what: &str) -> Result<(Self, File)> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file name", target.display()))?;
        let path = dir.join(format!(
            ".{}.gen-quantize-{what}-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((Self { path }, file))
    }

    fn keep_as(self, target: &Path) -> Result<()> {
        std::fs::rename(&self.path, target)
            .with_context(|| format!("renaming {} to {}", self.path.display(), target.display()))?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        // Best effort: the error being reported matters more than a leftover file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `write` into a temporary file beside `target`, flushed to disk, then renames it to
/// `target`; on any failure the temporary file is removed and `target` is untouched.
pub(super) fn write_atomically(
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let (temp, file) = Temp::create(target, "out")?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let context = || format!("writing {}", target.display());
    write(&mut out).with_context(context)?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(context)?;
    file.sync_all().with_context(context)?;
    drop(file);
    temp.keep_as(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails part way (here a full disk) leaves neither OUT nor the temporary
    /// file, and the error says what was being written.
    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.gguf");
        let e = write_atomically(&target, |out| {
            out.write_all(&[0u8; 4096])?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
        })
        .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("writing") && msg.contains("out.gguf"), "{msg}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        write_atomically(&target, |out| Ok(out.write_all(b"GGUF")?)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"GGUF");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
