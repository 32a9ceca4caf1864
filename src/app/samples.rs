//! `--samples N`: N samples of one prompt from one prefill, decoded as one batch, sample i
//! seeded with seed + i (so `--seed` + i alone reproduces it); with `--vote`, the majority of
//! their final answers (self-consistency).

use super::session::Ctx;
use crate::config::{GenerateConfig, OutputFormat, SamplingConfig};
use crate::engine::vote::{tally, Extractor, Tally};
use crate::engine::{self, Event, GenerateParams, OnEvent, Prefilled};
use crate::{output, sampling};
use anyhow::{Context, Result};
use serde_json::Value;

/// Runs the samples and prints them (text, or a JSONL record each); returns the JSON record
/// for `--format json`.
pub(super) fn run(g: &GenerateConfig, ctx: &Ctx, ids: &[u32], n: usize) -> Result<Option<Value>> {
    let loaded = ctx.loaded;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let ctx_size = engine::context_size(model, g.ctx_size);
    let positions = ctx_size.min(ids.len().saturating_add(g.max_tokens));
    loaded.check_memory(&format!("--samples {n}"), n, positions, n)?;
    let base = g.sampling.seed.unwrap_or_else(sampling::random_seed);
    let seeds: Vec<u64> = (0..n as u64).map(|i| base.wrapping_add(i)).collect();
    let mut chains = seeds
        .iter()
        .map(|&seed| {
            let cfg = SamplingConfig {
                seed: Some(seed),
                ..g.sampling.clone()
            };
            Ok(sampling::build_chain(&cfg, model.config().vocab_size)?.chain)
        })
        .collect::<Result<Vec<_>>>()?;
    let sampler = chains
        .first()
        .map(|c| c.stage_descriptions())
        .unwrap_or_default();
    let extractor = match &g.vote {
        None => None,
        Some(v) => Some(match &v.answer_regex {
            None => Extractor::Default,
            Some(re) => Extractor::Regex(
                regex::Regex::new(re).with_context(|| format!("--answer-regex {re}"))?,
            ),
        }),
    };
    let params = GenerateParams {
        decode: ctx.decode_params(g),
        logprobs: g.logprobs,
        explain: None,
        speculation: None,
    };
    let pre = Prefilled::run(model, ids, g.batch_size, ctx_size)?;
    let quiet = |_: Event| Ok(());
    let mut sinks: Vec<_> = chains.iter().map(|_| quiet).collect();
    let sequences = chains
        .iter_mut()
        .zip(sinks.iter_mut())
        .map(|(chain, sink)| (chain, sink as &mut OnEvent))
        .collect();
    let outs = engine::generate_batch(model, tok, ids, pre, sequences, &params)?;
    let texts: Vec<&str> = outs.iter().map(|o| o.text.as_str()).collect();
    let votes: Option<(Tally, Vec<Option<String>>)> = extractor.as_ref().map(|e| {
        let answers = texts.iter().map(|t| e.answer(t)).collect();
        (tally(e, &texts), answers)
    });
    let piece = |id: u32| ctx.piece(id);
    let run = output::SamplesRun {
        model: loaded.path.display().to_string(),
        load: ctx.load,
        seeds: &seeds,
        sampler,
    };
    let record = match g.format {
        OutputFormat::Text => {
            output::samples_text(&outs, &seeds, votes.as_ref().map(|(t, _)| t))?;
            None
        }
        OutputFormat::Jsonl => {
            for v in output::samples_jsonl(&outs, &run, votes.as_ref(), &piece)? {
                output::json(&v)?;
            }
            None
        }
        OutputFormat::Json => Some(output::samples_json(&outs, &run, votes.as_ref(), &piece)?),
    };
    if !g.quiet {
        output::note(&output::samples_stats_line(&outs, ctx.load, ctx.is_chat()))?;
    }
    Ok(record)
}
