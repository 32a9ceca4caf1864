//! The commands: each file wires a loaded model, the engine and [`crate::output`] for one
//! command. [`run`] dispatches a resolved [`Config`].

pub mod beam;
pub mod chat;
pub mod compare;
pub mod convert;
pub mod draft;
pub mod generate;
mod heap;
pub mod input;
pub mod load;
pub mod perplexity;
pub mod quantize;
pub mod samples;
pub mod session;
mod signals;
pub mod to_gguf;
pub mod tokenize;

use signals::interrupt_on_ctrl_c;
pub use signals::terminated;

use crate::config::{Command, Config};
use crate::engine::OutputClosed;
use crate::kernels::pool;
use anyhow::{Context, Result};

/// The error [`run`] returns after Ctrl-C stopped generation (exit status 130); the output so
/// far has been written.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// A mistake in how `gen` was called that the flag parser cannot see (no prompt, an empty
/// one): reported as an error, with exit status 2 as for a bad flag.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether `e` is (or is caused by) a [`UsageError`].
pub fn is_usage_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}

/// Whether `e` comes from a reader that went away (`gen ... | head`): not an error, exit 0.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<OutputClosed>()
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one command of `gen`.
pub fn run(config: Config) -> Result<()> {
    heap::keep_freed_memory();
    if let Some(n) = config.threads {
        set_threads(n)?;
    }
    match config.command {
        Command::Generate(g) => generate::run(*g),
        Command::Convert(c) => convert::run(&c),
        Command::Tokenize(t) => tokenize::run(&t),
        Command::Perplexity(p) => perplexity::run(&p),
        Command::Chat(c) => chat::run(*c),
        Command::Quantize(q) => quantize::run(&q),
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
