//! `gen`: generate text from local Llama-style models on candle.
//!
//! The binary is a thin shell around [`run`]; everything else lives in small modules, each
//! owning one thing (see the README's layout section).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chat;
pub mod cli;
pub mod compare;
pub mod config;
pub mod convert;
pub mod decode;
pub mod driver;
pub mod generate;
pub mod input;
pub mod model;
pub mod output;
pub mod perplexity;
pub mod pool;
pub mod sampling;
pub mod simd;
pub mod stop;
pub mod tokenizer;
pub mod vexp;

use anyhow::{Context, Result};
use candle_core::Device;
use config::{Command, Config};

/// The error `run` returns after Ctrl-C stopped generation (exit status 130); the output so far
/// has been written.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Whether `e` comes from a reader that went away (`gen ... | head`): not an error, exit 0.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one command of `gen`.
pub fn run(config: Config) -> Result<()> {
    if let Some(n) = config.threads {
        set_threads(n)?;
    }
    match config.command {
        Command::Generate(g) => driver::run_generate(*g),
        Command::Convert(c) => convert::convert(&c.input, &c.output, c.dtype),
        Command::Tokenize(t) => {
            let loaded = load_model(t.model.as_deref(), None)?;
            let ids = loaded.tokenizer.encode(&t.text)?;
            // Each id decoded on its own, as llama.cpp's llama-tokenize shows pieces; a piece that is
            // part of a multi-byte character shows as U+FFFD.
            let pieces: Vec<String> = ids
                .iter()
                .map(|&id| loaded.tokenizer.decode(&[id]))
                .collect::<Result<_>>()?;
            if t.json {
                output::json(&serde_json::json!({"ids": ids, "pieces": pieces}))
            } else {
                output::lines(
                    &ids.iter()
                        .zip(&pieces)
                        .map(|(id, p)| format!("{id}\t{p}"))
                        .collect::<Vec<_>>(),
                )
            }
        }
        Command::Perplexity(p) => {
            let loaded = load_model(p.model.as_deref(), p.cache_type)?;
            let text = std::fs::read_to_string(&p.file)
                .with_context(|| format!("reading {} (it must be UTF-8 text)", p.file.display()))?;
            // As llama-perplexity's `-f`: one trailing newline is not part of the text.
            let ids = loaded
                .tokenizer
                .encode(text.strip_suffix('\n').unwrap_or(&text))?;
            let report = perplexity::perplexity(&loaded.model, &ids, p.context)?;
            if p.json {
                output::json(&report.to_json())
            } else {
                output::lines(&[report.summary()])
            }
        }
    }
}

/// Sets the number of CPU threads for our kernels ([`pool`]), candle's kernels and rayon.
pub fn set_threads(n: usize) -> Result<()> {
    if !pool::set_threads(n) {
        anyhow::bail!("setting the number of threads: the thread pool was already started");
    }
    // candle's gemm reads RAYON_NUM_THREADS; its quantized kernels use rayon's global pool.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("setting the number of threads (the thread pool was already started)")
}

/// Loads `--model` (or the default model) on the CPU.
pub fn load_model(
    model: Option<&str>,
    cache_type: Option<candle_core::DType>,
) -> Result<model::LoadedModel> {
    let spec = config::resolve_model_spec(model);
    let source = model::ModelSource::parse(&spec)?;
    let mut loaded = model::load(&source, &Device::Cpu)?;
    if let Some(dtype) = cache_type {
        loaded.model.set_cache_dtype(dtype)?;
    }
    Ok(loaded)
}
