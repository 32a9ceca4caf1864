//! `gen --beams N`: beam search on one prompt, streamed while the beams agree, and the best
//! hypotheses printed (or as JSON).

use super::session::Ctx;
use crate::config::{BeamConfig, GenerateConfig, OutputFormat};
use crate::engine::{self, BeamParams, Event, Prefilled, Processors};
use crate::{output, sampling};
use anyhow::Result;
use serde_json::Value;

/// What beam search applies to each beam's log-probabilities: the penalties and logit bias of
/// the sampling flags, and `--no-repeat-ngram`.
pub(super) fn processors(g: &GenerateConfig, beam: &BeamConfig, ctx: &Ctx) -> Result<Processors> {
    let s = &g.sampling;
    sampling::LogitBias::check_ids(&s.logit_bias, ctx.loaded.model.config().vocab_size)?;
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
    Ok(Processors {
        penalties,
        logit_bias: s.logit_bias.clone(),
        no_repeat_ngram: beam.no_repeat_ngram,
    })
}

/// The engine's beam settings for `beam`.
pub(super) fn params(g: &GenerateConfig, beam: &BeamConfig, ctx: &Ctx) -> BeamParams {
    BeamParams {
        decode: ctx.decode_params(g),
        num_beams: beam.num_beams,
        num_return: beam.num_return,
        length_penalty: beam.length_penalty,
        early_stopping: beam.early_stopping,
    }
}

/// Runs beam search on `ids`. In text mode it prints and returns `None`; in JSON modes it
/// returns the record to print.
pub(super) fn run(
    g: &GenerateConfig,
    beam: &BeamConfig,
    ctx: &Ctx,
    ids: &[u32],
) -> Result<Option<Value>> {
    let loaded = ctx.loaded;
    let processors = processors(g, beam, ctx)?;
    let params = params(g, beam, ctx);
    if g.verbose {
        output::note(&format!(
            "gen: beam search: {} beams, length penalty {}, early stopping {:?}, processors {:?}",
            params.num_beams, params.length_penalty, params.early_stopping, processors
        ))?;
    }
    let ctx_size = engine::context_size(&loaded.model, g.ctx_size);
    let positions = ctx_size.min(ids.len().saturating_add(g.max_tokens));
    loaded.check_memory(
        &format!("--beams {}", beam.num_beams),
        beam.num_beams,
        positions,
        beam.num_beams,
    )?;
    let prefilled = Prefilled::run(&loaded.model, ids, g.batch_size, ctx_size)?;
    let stream = g.format == OutputFormat::Text && beam.num_return == 1;
    let mut text_out = stream.then(output::TextOut::new);
    let result = engine::beam_search(
        &loaded.model,
        &loaded.tokenizer,
        ids,
        prefilled,
        &params,
        &processors,
        &mut |event| match (event, text_out.as_mut()) {
            (Event::Text(t), Some(out)) => out.write(t),
            _ => Ok(()),
        },
    )?;
    let record = match (g.format, text_out) {
        (OutputFormat::Text, Some(out)) => {
            out.finish()?;
            None
        }
        (OutputFormat::Text, None) => {
            output::beam_blocks(&result)?;
            None
        }
        _ => Some(output::beam_json(
            &result,
            &loaded.path.display().to_string(),
            ctx.load,
        )),
    };
    if !g.quiet {
        output::note(&output::beam_stats_line(&result, ctx.load, ctx.is_chat()))?;
    }
    Ok(record)
}
