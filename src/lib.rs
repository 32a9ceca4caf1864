//! `gen`: generate text from local Llama-style models on candle.
//!
//! The binary is a thin shell around [`run`]; everything else lives in small modules, each
//! owning one thing (see the README's layout section).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod config;
pub mod convert;
pub mod decode;
pub mod generate;
pub mod model;
pub mod output;
pub mod perplexity;
pub mod sampling;
pub mod stop;
pub mod tokenizer;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use config::{Command, Config, GenerateConfig, OutputFormat, PromptSource};
use std::io::{IsTerminal, Read};
use std::time::Instant;

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

/// A flag set by the first Ctrl-C (generation then stops after the current token and the output
/// is flushed); a second Ctrl-C exits at once.
fn interrupt_flag() -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .ok()?;
    Some(flag)
}

/// Runs one command of `gen`.
pub fn run(config: Config) -> Result<()> {
    if let Some(n) = config.threads {
        set_threads(n)?;
    }
    match config.command {
        Command::Generate(g) => run_generate(*g),
        Command::Convert(c) => convert::convert(&c.input, &c.output, c.dtype),
        Command::Tokenize(t) => {
            let loaded = load_model(t.model.as_deref())?;
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
            let loaded = load_model(p.model.as_deref())?;
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

/// Sets the number of CPU threads for candle's kernels and rayon.
pub fn set_threads(n: usize) -> Result<()> {
    // candle's gemm reads RAYON_NUM_THREADS; its quantized kernels use rayon's global pool.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("setting the number of threads (the thread pool was already started)")
}

/// Loads `--model` (or the default model) on the CPU.
pub fn load_model(model: Option<&str>) -> Result<model::LoadedModel> {
    let spec = config::resolve_model_spec(model);
    let source = model::ModelSource::parse(&spec)?;
    model::load(&source, &Device::Cpu)
}

fn read_prompt(source: &PromptSource) -> Result<String> {
    let bytes = match source {
        PromptSource::Text(t) => return Ok(t.clone()),
        PromptSource::File(p) => {
            std::fs::read(p).with_context(|| format!("reading the prompt file {}", p.display()))?
        }
        PromptSource::Stdin => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "no prompt: pass one as an argument, with --prompt, with --file, or on stdin"
                );
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut buf)
                .context("reading the prompt from stdin")?;
            buf
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the prompt is not valid UTF-8 (invalid byte at offset {}); convert it to UTF-8 first",
            e.utf8_error().valid_up_to()
        )
    })
}

fn run_generate(g: GenerateConfig) -> Result<()> {
    let prompt = read_prompt(&g.prompt)?;
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text with --prompt, a file or stdin");
    }
    let start = Instant::now();
    let loaded = load_model(g.model.as_deref())?;
    let load_time = start.elapsed();
    let ids = loaded.tokenizer.encode(&prompt)?;
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    if g.verbose {
        let c = loaded.model.config();
        output::note(&format!(
            "gen: model {} ({:?}), {} layers, hidden {}, {} heads / {} KV heads, vocab {}, context {}",
            loaded.path.display(),
            loaded.format,
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vocab_size,
            c.max_position_embeddings
        ));
    }
    if let Some(beam) = &g.beam {
        return run_beam(&g, beam, &loaded, &ids, load_time);
    }
    let built = sampling::build_chain(&g.sampling, loaded.model.config().vocab_size)?;
    let mut chain = built.chain;
    if g.verbose {
        output::note(&format!(
            "gen: sampler chain: {} (seed {})",
            chain.stage_descriptions().join(" → "),
            chain.seed()
        ));
        for n in &built.noops {
            output::note(&format!("gen: no-op: {n}"));
        }
    }
    let params = generate::GenerateParams {
        max_tokens: g.max_tokens,
        ignore_eos: g.ignore_eos,
        batch_size: g.batch_size,
        ctx_size: g.ctx_size.unwrap_or(usize::MAX),
        logprobs: g.logprobs,
        explain: g.explain,
        stop: g.stop.clone(),
        keep_stop: g.keep_stop,
        interrupt: interrupt_flag(),
    };
    let mut text_out = (g.format == OutputFormat::Text).then(output::TextOut::new);
    let result = generate::generate(
        &loaded.model,
        &loaded.tokenizer,
        &ids,
        &mut chain,
        &params,
        &mut |event| match (event, text_out.as_mut()) {
            (generate::Event::Text(t), Some(out)) => out.write(t),
            _ => Ok(()),
        },
    )?;
    let piece = |id: u32| loaded.tokenizer.decode(&[id]).unwrap_or_default();
    let run = output::RunInfo {
        model: loaded.path.display().to_string(),
        load: load_time,
        seed: chain.seed(),
        sampler: chain.stage_descriptions(),
    };
    match text_out {
        Some(out) => {
            out.finish()?;
            if g.explain.is_some() {
                output::explain_tables(&result, &piece);
            }
            if g.logprobs.is_some() {
                output::logprobs_table(&result, &piece);
            }
        }
        None => output::json(&output::generation_json(&result, &run, &piece))?,
    }
    if !g.quiet {
        output::note(&output::stats_line(&result, load_time));
    }
    if result.stop == generate::StopReason::Interrupted {
        return Err(Interrupted.into());
    }
    Ok(())
}

fn run_beam(
    g: &GenerateConfig,
    beam: &config::BeamConfig,
    loaded: &model::LoadedModel,
    ids: &[u32],
    load_time: std::time::Duration,
) -> Result<()> {
    let s = &g.sampling;
    let vocab = loaded.model.config().vocab_size;
    if let Some((id, _)) = s.logit_bias.iter().find(|(id, _)| *id as usize >= vocab) {
        bail!("--logit-bias names token {id}, but the vocabulary has {vocab} tokens");
    }
    let penalties = match s.repeat_window {
        Some(window) => Some(sampling::Penalties::new(
            s.repeat_penalty,
            s.frequency_penalty,
            s.presence_penalty,
            window,
        )?)
        .filter(|p| !p.is_noop()),
        None => None,
    };
    let processors = decode::Processors {
        penalties,
        logit_bias: s.logit_bias.clone(),
        no_repeat_ngram: beam.no_repeat_ngram,
    };
    let params = decode::BeamParams {
        num_beams: beam.num_beams,
        num_return: beam.num_return,
        length_penalty: beam.length_penalty,
        early_stopping: beam.early_stopping,
        max_tokens: g.max_tokens,
        eos: if g.ignore_eos {
            Vec::new()
        } else {
            generate::end_ids(&loaded.model, &loaded.tokenizer)
        },
        batch_size: g.batch_size,
        ctx_size: g.ctx_size.unwrap_or(usize::MAX),
        stop: g.stop.clone(),
        keep_stop: g.keep_stop,
    };
    if g.verbose {
        output::note(&format!(
            "gen: beam search: {} beams, length penalty {}, early stopping {:?}, processors {:?}",
            params.num_beams, params.length_penalty, params.early_stopping, processors
        ));
    }
    let stream = g.format == OutputFormat::Text && beam.num_return == 1;
    let mut text_out = stream.then(output::TextOut::new);
    let result = decode::beam_search(
        &loaded.model,
        &loaded.tokenizer,
        ids,
        &params,
        &processors,
        &mut |event| match (event, text_out.as_mut()) {
            (generate::Event::Text(t), Some(out)) => out.write(t),
            _ => Ok(()),
        },
    )?;
    match (g.format, text_out) {
        (OutputFormat::Text, Some(out)) => out.finish()?,
        (OutputFormat::Text, None) => output::beam_blocks(&result)?,
        (OutputFormat::Json, _) => output::json(&output::beam_json(
            &result,
            &loaded.path.display().to_string(),
            load_time,
        ))?,
    }
    if !g.quiet {
        output::note(&output::beam_stats_line(&result, load_time));
    }
    Ok(())
}
