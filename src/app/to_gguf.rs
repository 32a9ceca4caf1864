//! `gen convert FOLDER OUT.gguf`: a Hugging Face Llama folder written as one GGUF file, byte
//! for byte as llama.cpp's convert_hf_to_gguf.py writes it (see [`crate::quant::hf`]); also
//! the first step of `gen quantize FOLDER OUT TYPE`. Written through a temporary file beside
//! OUT, so that a failure never leaves a partial OUT.

use super::quantize::write_atomically;
use super::{interrupt_on_ctrl_c, Interrupted};
use crate::output;
use crate::quant::hf::{self, OutType};
use anyhow::{Context, Result};
use std::path::Path;

/// Converts `folder` to `output` as `out_type`; returns what was converted, for the summary
/// line: (tensors, bytes written, the out type `auto` resolved to).
pub fn convert(folder: &Path, output: &Path, out_type: OutType) -> Result<(usize, u64, OutType)> {
    let plan =
        hf::plan(folder, out_type).with_context(|| format!("converting {}", folder.display()))?;
    for n in &plan.notes {
        output::note(&format!("gen: {n}"))?;
    }
    let interrupt = interrupt_on_ctrl_c();
    let bar = output::StepBar::new("convert", plan.tensors.len());
    let written = write_atomically(output, |out| {
        hf::write(&plan, out, &mut |t| {
            bar.step(t.out.name.clone());
            if interrupt.as_ref().is_some_and(|i| i.is_set()) {
                return Err(Interrupted.into());
            }
            Ok(())
        })
    });
    bar.finish();
    if let Err(e) = written {
        if e.is::<Interrupted>() {
            output::note(&format!(
                "gen: interrupted; {} was not written",
                output.display()
            ))?;
        }
        return Err(e);
    }
    Ok((plan.tensors.len(), plan.file_size(), plan.out_type))
}
