//! `gen [PROMPT]`: reads the prompt (or, with `--each-line`, every prompt), loads the model
//! once, renders the chat template, and runs each prompt with its strategy: the sampled loop
//! here, beam search ([`super::beam`]) or `--compare` ([`super::compare`]). Every result goes
//! to [`crate::output`], the only printer.

use super::input;
use super::load::load_model;
use super::session::{chat_template, model_input, template_file, Ctx};
use super::{interrupt_on_ctrl_c, is_broken_pipe, Interrupted, UsageError};
use crate::config::{GenerateConfig, OutputFormat};
use crate::engine::{self, Event, GenerateParams};
use crate::{output, sampling};
use anyhow::{bail, Result};
use serde_json::Value;
use std::time::Instant;

/// `gen [PROMPT]`: one prompt, or one per line with `--each-line`.
pub fn run(g: GenerateConfig) -> Result<()> {
    let text = input::read_input(&g.prompt)?;
    let template_file = template_file(&g)?;
    // Before the model loads, so that an early Ctrl-C still ends the run cleanly.
    let interrupt = interrupt_on_ctrl_c();
    let start = Instant::now();
    let loaded = load_model(g.model.as_deref(), g.cache_type, g.arith)?;
    let chat = chat_template(&g, &loaded, template_file)?;
    let speculation = g
        .speculative
        .as_ref()
        .map(|s| super::draft::speculation(s, &loaded, g.cache_type, g.arith))
        .transpose()?;
    let ctx = Ctx::new(&loaded, start.elapsed(), interrupt, chat).with_speculation(speculation);
    if g.verbose {
        let c = loaded.model.config();
        output::note(&format!(
            "gen: model {} ({:?}), {}, {} layers, hidden {}, {} heads / {} KV heads, vocab {}, context {}{}",
            loaded.path.display(),
            loaded.format,
            c.family.gguf_name(),
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vocab_size,
            c.max_position_embeddings,
            match &c.sliding_window {
                Some(w) => format!(", sliding window {}", w.size),
                None => String::new(),
            }
        ))?;
        let kernels: Vec<String> = loaded
            .model
            .kernels()
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        output::note(&format!("gen: matrices: {}", kernels.join("; ")))?;
        let t = &loaded.tokenizer;
        let ends: Vec<String> = t
            .eog_ids()
            .iter()
            .map(|&id| t.id_to_token(id).unwrap_or_else(|| format!("#{id}")))
            .collect();
        output::note(&format!(
            "gen: tokenizer: {}; generation ends at {}",
            t.summary(),
            ends.join(", ")
        ))?;
    }
    if !g.each_line {
        if let Some(record) = run_one(&g, &ctx, &text)? {
            output::json(&record)?;
        }
        return interrupted(&ctx);
    }
    run_each_line(&g, &ctx, &text)
}

/// `--each-line`: every line of `text` is a prompt (a JSON object may override settings); a
/// failing line is reported and the others still run.
fn run_each_line(g: &GenerateConfig, ctx: &Ctx, text: &str) -> Result<()> {
    let jobs = input::parse_lines(text);
    if jobs.is_empty() {
        return Err(UsageError(
            "--each-line found no prompt: the input has no non-empty line".into(),
        )
        .into());
    }
    let (total, mut failed) = (jobs.len(), 0usize);
    let mut records = Vec::new();
    for (index, (line, job)) in jobs.into_iter().enumerate() {
        let last = index + 1 == total;
        let result = job.and_then(|job| {
            let cfg = job
                .overrides
                .apply(g)
                .map_err(|e| e.context(format!("line {}", job.line)))?;
            run_one(&cfg, ctx, &job.prompt)
                .map(|r| (job.line, r))
                .map_err(|e| e.context(format!("line {}", job.line)))
        });
        match result {
            Ok((line, Some(mut record))) => {
                record["line"] = line.into();
                match g.format {
                    OutputFormat::Jsonl => output::json(&record)?,
                    _ => records.push(record),
                }
            }
            Ok((_, None)) => output::answer_end(last || ctx.is_interrupted())?,
            Err(e) if is_broken_pipe(&e) => return Err(e),
            Err(e) => {
                failed += 1;
                output::error(&e);
                let record = serde_json::json!({"line": line, "error": format!("{e:#}")});
                match g.format {
                    OutputFormat::Jsonl => output::json(&record)?,
                    OutputFormat::Json => records.push(record),
                    // An empty answer, so that answers stay in step with the prompts.
                    OutputFormat::Text => output::answer_end(last)?,
                }
            }
        }
        if ctx.is_interrupted() {
            break;
        }
    }
    if g.format == OutputFormat::Json {
        output::json(&Value::Array(records))?;
    }
    interrupted(ctx)?;
    if failed > 0 {
        bail!("{failed} of {total} prompts failed (see the errors above)");
    }
    Ok(())
}

/// `--print-prompt`: the model input as it is (text mode, no newline added in a pipe), or
/// a record with its token ids (JSON modes); nothing is generated.
fn print_model_input(
    g: &GenerateConfig,
    ctx: &Ctx,
    text: &str,
    ids: &[u32],
) -> Result<Option<Value>> {
    if g.format == OutputFormat::Text {
        let mut out = output::TextOut::new();
        out.write(text)?;
        out.finish()?;
        return Ok(None);
    }
    let model = ctx.loaded.path.display().to_string();
    Ok(Some(output::model_input_json(&model, text, ids)))
}

fn interrupted(ctx: &Ctx) -> Result<()> {
    if ctx.is_interrupted() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Runs one prompt. In text mode it prints as it goes and returns `None`; in JSON modes it
/// returns the record to print.
fn run_one(g: &GenerateConfig, ctx: &Ctx, prompt: &str) -> Result<Option<Value>> {
    if prompt.is_empty() {
        return Err(UsageError(
            "the prompt is empty: give some text with --prompt, a file or stdin".into(),
        )
        .into());
    }
    let loaded = ctx.loaded;
    let text = model_input(g, ctx, prompt)?;
    if g.verbose {
        // JSON-quoted, so that scripts can read it back.
        output::note(&format!("gen: model input: {}", Value::from(text.as_str())))?;
    }
    // A text longer than the context can possibly hold is refused before tokenizing it (a
    // 10 MB prompt took seconds and a gigabyte to be refused after): no token stands for more
    // bytes than the longest one's text, with room for normalisers that shorten text.
    let ctx_tokens = engine::context_size(&loaded.model, g.ctx_size);
    let most = ctx_tokens
        .saturating_mul(loaded.tokenizer.longest_token_bytes())
        .saturating_mul(4);
    if text.len() > most {
        bail!(
            "the prompt has {} bytes, more than a context of {ctx_tokens} tokens can hold (at most {most} bytes with this vocabulary); shorten it",
            text.len()
        );
    }
    let ids = loaded.encode(&text)?;
    if g.print_prompt {
        return print_model_input(g, ctx, &text, &ids);
    }
    if let Some(strategies) = &g.compare {
        return super::compare::run(g, ctx, &ids, strategies);
    }
    if let Some(beam) = &g.beam {
        return super::beam::run(g, beam, ctx, &ids);
    }
    if let Some(n) = g.samples {
        return super::samples::run(g, ctx, &ids, n);
    }
    let positions = ctx_tokens.min(ids.len().saturating_add(g.max_tokens));
    loaded.check_memory("-c/--ctx-size", 1, positions, 1)?;
    let built = sampling::build_chain(&g.sampling, loaded.model.config().vocab_size)?;
    let mut chain = built.chain;
    if g.verbose {
        output::note(&format!(
            "gen: sampler chain: {} (seed {})",
            chain.stage_descriptions().join(" → "),
            chain.seed()
        ))?;
        for n in &built.noops {
            output::note(&format!("gen: no-op: {n}"))?;
        }
    }
    let params = GenerateParams {
        decode: ctx.decode_params(g),
        logprobs: g.logprobs,
        explain: g.explain,
        speculation: ctx.speculation(),
    };
    let mut text_out = (g.format == OutputFormat::Text).then(output::TextOut::new);
    let result = engine::generate(
        &loaded.model,
        &loaded.tokenizer,
        &ids,
        &mut chain,
        &params,
        &mut |event| match (event, text_out.as_mut()) {
            (Event::Text(t), Some(out)) => out.write(t),
            _ => Ok(()),
        },
    )?;
    if result.stop == engine::StopReason::OutputClosed {
        // Nobody reads the text any more: the stats still say how far it got.
        if !g.quiet {
            output::note(&output::stats_line(&result, ctx.load, ctx.is_chat()))?;
        }
        return Err(engine::OutputClosed.into());
    }
    if result.unfinished > 0 && !g.quiet {
        let n = result.unfinished;
        output::note(&format!(
            "gen: not printed: the last {n} token{} began a character that generation stopped before completing",
            if n == 1 { "" } else { "s" }
        ))?;
    }
    let piece = |id: u32| ctx.piece(id);
    let record = match text_out {
        Some(out) => {
            out.finish()?;
            if g.explain.is_some() {
                output::explain_tables(&result, &piece)?;
            }
            if g.logprobs.is_some() {
                output::logprobs_table(&result, &piece)?;
            }
            None
        }
        None => {
            let run = output::RunInfo {
                model: loaded.path.display().to_string(),
                load: ctx.load,
                seed: chain.seed(),
                sampler: chain.stage_descriptions(),
            };
            Some(output::generation_json(&result, &run, &piece)?)
        }
    };
    if !g.quiet {
        output::note(&output::stats_line(&result, ctx.load, ctx.is_chat()))?;
    }
    Ok(record)
}
