//! `gen --compare STRATEGY...`: several decoding strategies on one prompt, prefilled once; each
//! strategy continues from a fork of that KV cache with its own RNG from the same seed.

use super::session::Ctx;
use super::UsageError;
use crate::config::{
    BeamConfig, GenerateConfig, OutputFormat, SamplingConfig, SpecChoice, Strategy, StrategyKind,
};
use crate::engine::{self, Event, GenerateParams, OnEvent, Prefilled};
use crate::output::{self, CompareReport, CompareRow};
use crate::sampling::{self, SamplerChain};
use anyhow::{Context, Result};
use serde_json::Value;
use std::time::Instant;

/// Prefills once, then runs every strategy from a fork of that cache. The sampling strategies
/// (greedy included) run as one batch, a forward pass per step for all of them, unless
/// `--compare-sequential`; beam searches run one after another (each is a batch). Strategies
/// that Ctrl-C kept from running have no row.
pub(super) fn run(
    g: &GenerateConfig,
    ctx: &Ctx,
    ids: &[u32],
    strategies: &[Strategy],
) -> Result<Option<Value>> {
    let model = &ctx.loaded.model;
    if g.speculative.is_some() && strategies.iter().all(|s| s.speculative.is_none()) {
        return Err(UsageError(
            "--lookup / --model-draft with --compare: mark the strategies that should speculate with spec=lookup or spec=draft (`--compare greedy greedy,spec=lookup`)".into(),
        )
        .into());
    }
    let ctx_size = engine::context_size(model, g.ctx_size);
    // The sampling strategies run as one batch, each beam strategy on its own.
    let sampled = strategies
        .iter()
        .filter(|s| matches!(s.kind, StrategyKind::Sample(_)))
        .count();
    let beams = strategies
        .iter()
        .filter_map(|s| match &s.kind {
            StrategyKind::Beam(b) => Some(b.num_beams),
            StrategyKind::Sample(_) => None,
        })
        .max()
        .unwrap_or(0);
    let positions = ctx_size.min(ids.len().saturating_add(g.max_tokens));
    let rows = sampled.max(beams);
    ctx.loaded
        .check_memory("--compare", rows, positions, rows)?;
    let pre = Prefilled::run(model, ids, g.batch_size, ctx_size)?;
    let seed = g.sampling.seed.unwrap_or_else(crate::sampling::random_seed);
    let mut rows: Vec<Option<CompareRow>> = vec![None; strategies.len()];
    run_sampled(g, ctx, ids, &pre, strategies, seed, &mut rows)?;
    for (i, s) in strategies.iter().enumerate() {
        if let StrategyKind::Beam(b) = &s.kind {
            if ctx.is_interrupted() {
                break;
            }
            rows[i] = Some(run_beam(g, ctx, ids, &pre, s, b)?);
        }
    }
    let report = CompareReport {
        prompt_tokens: ids.len(),
        prefill: pre.time,
        seed,
        rows: rows.into_iter().flatten().collect(),
    };
    let text = |ids: &[u32]| ctx.text(ids);
    match g.format {
        OutputFormat::Text => {
            output::compare_view(&report, &text)?;
            Ok(None)
        }
        OutputFormat::Json => Ok(Some(output::compare_json(&report, &text)?)),
        OutputFormat::Jsonl => {
            for v in output::compare_records(&report, &text)? {
                output::json(&v)?;
            }
            Ok(None)
        }
    }
}

/// The sampling strategies, as one batch (or one at a time with `--compare-sequential`),
/// each with its own RNG seeded from `seed`; their rows go to `rows` at their index.
fn run_sampled(
    g: &GenerateConfig,
    ctx: &Ctx,
    ids: &[u32],
    pre: &Prefilled,
    strategies: &[Strategy],
    seed: u64,
    rows: &mut [Option<CompareRow>],
) -> Result<()> {
    let (model, tok) = (&ctx.loaded.model, &ctx.loaded.tokenizer);
    let plain = GenerateParams {
        decode: ctx.decode_params(g),
        logprobs: Some(0),
        explain: None,
        speculation: None,
    };
    let mut sampled: Vec<(usize, SamplerChain)> = Vec::new();
    let mut speculating: Vec<(usize, SamplerChain)> = Vec::new();
    for (i, s) in strategies.iter().enumerate() {
        if let StrategyKind::Sample(cfg) = &s.kind {
            let cfg = SamplingConfig {
                seed: Some(seed),
                ..cfg.clone()
            };
            let chain = sampling::build_chain(&cfg, model.config().vocab_size)?.chain;
            match s.speculative {
                None => sampled.push((i, chain)),
                Some(_) => speculating.push((i, chain)),
            }
        }
    }
    let mut groups: Vec<(&mut [(usize, SamplerChain)], GenerateParams)> = if g.compare_sequential {
        sampled.chunks_mut(1).map(|c| (c, plain.clone())).collect()
    } else {
        vec![(sampled.as_mut_slice(), plain.clone())]
    };
    // A speculating strategy runs alone (speculation is for one sequence).
    for one in speculating.chunks_mut(1) {
        let choice = strategies[one[0].0].speculative;
        let params = GenerateParams {
            speculation: Some(speculation_for(choice, ctx)?),
            ..plain.clone()
        };
        groups.push((one, params));
    }
    for (group, params) in groups.into_iter().filter(|g| !g.0.is_empty()) {
        if ctx.is_interrupted() {
            break;
        }
        let quiet = |_: Event| Ok(());
        let mut sinks: Vec<_> = group.iter().map(|_| quiet).collect();
        let t0 = Instant::now();
        let sequences = group
            .iter_mut()
            .zip(sinks.iter_mut())
            .map(|((_, chain), sink)| (chain, sink as &mut OnEvent))
            .collect();
        let outs = engine::generate_batch(model, tok, ids, pre.fork()?, sequences, &params)?;
        let alone = group.len() == 1;
        for ((i, chain), r) in group.iter().zip(outs) {
            let lps: Vec<f64> = r
                .records
                .iter()
                .filter_map(|x| x.logprobs.as_ref())
                .map(|l| l.logprob as f64)
                .collect();
            rows[*i] = Some(CompareRow {
                label: strategies[*i].label.clone(),
                sampler: chain.stage_descriptions(),
                mean_logprob: mean(&lps),
                tokens: r.tokens,
                text: r.text,
                stop: r.stop,
                decode_tok_s: r.timings.decode_tok_s(),
                elapsed: if alone {
                    t0.elapsed()
                } else {
                    r.timings.decode
                },
            });
        }
    }
    Ok(())
}

/// The speculation a `spec=` strategy asks for: prompt lookup (with the `--lookup` settings
/// when given), or the `--model-draft` model, which must then have been given.
fn speculation_for(choice: Option<SpecChoice>, ctx: &Ctx) -> Result<engine::Speculation> {
    let given = ctx.speculation();
    match (choice, given) {
        (Some(SpecChoice::Lookup), Some(s))
            if matches!(s.source, engine::DraftSource::Lookup { .. }) =>
        {
            Ok(s)
        }
        (Some(SpecChoice::Lookup), _) => Ok(engine::Speculation {
            source: engine::DraftSource::Lookup { ngram: 2 },
            max: crate::config::DEFAULT_DRAFT_MAX,
            min: 0,
            p_min: 0.0,
            verify: engine::Verify::Match,
        }),
        (Some(SpecChoice::Draft), Some(s))
            if matches!(s.source, engine::DraftSource::Model { .. }) =>
        {
            Ok(s)
        }
        (Some(SpecChoice::Draft), _) => Err(UsageError(
            "--compare: spec=draft needs a draft model: add --model-draft MODEL".into(),
        )
        .into()),
        (None, _) => Err(anyhow::anyhow!(
            "internal: a strategy without spec= asked for speculation"
        )),
    }
}

/// One beam-search strategy from a fork of the prefilled cache: its best hypothesis.
fn run_beam(
    g: &GenerateConfig,
    ctx: &Ctx,
    ids: &[u32],
    pre: &Prefilled,
    s: &Strategy,
    b: &BeamConfig,
) -> Result<CompareRow> {
    let t0 = Instant::now();
    let params = super::beam::params(g, b, ctx);
    let processors = super::beam::processors(g, b, ctx)?;
    let (model, tok) = (&ctx.loaded.model, &ctx.loaded.tokenizer);
    let r = engine::beam_search(
        model,
        tok,
        ids,
        pre.fork()?,
        &params,
        &processors,
        &mut |_| Ok(()),
    )?;
    let best = r
        .hypotheses
        .into_iter()
        .next()
        .context("beam search returned no hypothesis")?;
    Ok(CompareRow {
        label: s.label.clone(),
        sampler: vec![format!(
            "beams(n={}, length_penalty={})",
            b.num_beams, b.length_penalty
        )],
        mean_logprob: (!best.tokens.is_empty())
            .then(|| best.sum_logprobs / best.tokens.len() as f64),
        decode_tok_s: best.tokens.len() as f64 / r.timings.decode.as_secs_f64().max(1e-9),
        tokens: best.tokens,
        text: best.text,
        stop: best.stop,
        elapsed: t0.elapsed(),
    })
}

fn mean(xs: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}
