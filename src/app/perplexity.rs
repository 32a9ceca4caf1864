//! `gen perplexity FILE`: the perplexity of a text file, as llama.cpp's llama-perplexity
//! computes it.

use super::load::load_model;
use crate::config::PerplexityConfig;
use crate::{engine, output};
use anyhow::Result;

/// Scores `p.file` and prints the report.
pub fn run(p: &PerplexityConfig) -> Result<()> {
    let loaded = load_model(p.model.as_deref(), p.cache_type, p.arith)?;
    // As llama-perplexity's `-f`: one trailing newline is not part of the text.
    let text = super::input::read_text_file(&p.file, "the text file", p.max_bytes)?;
    let ids = loaded.encode(&text)?;
    // Every position of a window has its logits alive at once. (A text shorter than one
    // window gets the engine's error for that instead.)
    if ids.len() >= p.context {
        loaded.check_memory("-c/--ctx-size", 1, p.context, p.context)?;
    }
    let bar = output::StepBar::new("perplexity", ids.len() / p.context.max(1));
    let report =
        engine::perplexity::perplexity(&loaded.model, &ids, p.context, &mut |_, _, ppl| {
            bar.step(format!("windows, ppl {ppl:.4}"))
        });
    bar.finish();
    output::perplexity(&report?, p.json)
}
