//! `gen perplexity FILE`: the perplexity of a text file, as llama.cpp's llama-perplexity
//! computes it.

use super::load::load_model;
use crate::config::PerplexityConfig;
use crate::{engine, output};
use anyhow::{Context, Result};

/// Scores `p.file` and prints the report.
pub fn run(p: &PerplexityConfig) -> Result<()> {
    let loaded = load_model(p.model.as_deref(), p.cache_type)?;
    let text = std::fs::read_to_string(&p.file)
        .with_context(|| format!("reading {} (it must be UTF-8 text)", p.file.display()))?;
    // As llama-perplexity's `-f`: one trailing newline is not part of the text.
    let ids = loaded.encode(text.strip_suffix('\n').unwrap_or(&text))?;
    let bar = output::StepBar::new("perplexity", ids.len() / p.context.max(1));
    let report =
        engine::perplexity::perplexity(&loaded.model, &ids, p.context, &mut |_, _, ppl| {
            bar.step(format!("windows, ppl {ppl:.4}"))
        });
    bar.finish();
    output::perplexity(&report?, p.json)
}
