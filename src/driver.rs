//! Runs the generate command: reads the prompt (or, with `--each-line`, every prompt), loads
//! the model once, runs each prompt with its strategy (sampler chain or beam search) and hands
//! every result to [`crate::output`], the only printer.

use crate::chat::{ChatTemplate, Message};
use crate::compare::{Strategy, StrategyKind};
use crate::config::{BeamConfig, GenerateConfig, OutputFormat};
use crate::model::LoadedModel;
use crate::{decode, generate, input, output, sampling, Interrupted};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A flag set by the first Ctrl-C (generation then stops after the current token and the output
/// is flushed); a second Ctrl-C exits at once.
fn interrupt_flag() -> Option<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .ok()?;
    Some(flag)
}

/// What one run needs besides its settings.
struct Ctx<'a> {
    loaded: &'a LoadedModel,
    load: Duration,
    interrupt: Option<Arc<AtomicBool>>,
    /// The model's chat template, unless `--raw` or the model has none.
    chat: Option<ChatTemplate>,
    /// The chat template's end-of-turn token, which also ends generation.
    end_of_turn: Option<u32>,
}

/// The model's chat template (`None` with `--raw` or when the model has none).
fn chat_template(g: &GenerateConfig, loaded: &LoadedModel) -> Result<Option<ChatTemplate>> {
    let tok = &loaded.tokenizer;
    let source = match (g.raw, tok.chat_template()) {
        (true, _) => return Ok(None),
        (false, Some(s)) => s,
        (false, None) if g.system.is_some() => bail!(
            "--system needs a chat template, and {} has none; put the instructions in the prompt instead",
            loaded.path.display()
        ),
        (false, None) => return Ok(None),
    };
    let piece = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let t = ChatTemplate::new(source, piece(tok.bos_id()), piece(tok.eos_id()))
        .context("the model's chat template (use --raw to send the prompt as plain text)")?;
    Ok(Some(t))
}

/// The text the model sees: the prompt wrapped as a user message (after `--system`) by the
/// chat template, or the prompt itself.
fn model_input(g: &GenerateConfig, ctx: &Ctx, prompt: &str) -> Result<String> {
    let Some(t) = &ctx.chat else {
        if g.system.is_some() {
            bail!("--system needs the chat template; drop --raw or put the instructions in the prompt");
        }
        return Ok(prompt.to_string());
    };
    let mut messages = Vec::new();
    if let Some(sys) = &g.system {
        messages.push(Message::new("system", sys.as_str()));
    }
    messages.push(Message::new("user", prompt));
    t.render(&messages, true)
        .context("rendering the chat template (use --raw to send the prompt as plain text)")
}

/// `gen [PROMPT]`: one prompt, or one per line with `--each-line`.
pub fn run_generate(g: GenerateConfig) -> Result<()> {
    let text = input::read_input(&g.prompt)?;
    // Before the model loads, so that an early Ctrl-C still ends the run cleanly.
    let interrupt = interrupt_flag();
    let start = Instant::now();
    let loaded = crate::load_model(g.model.as_deref(), g.cache_type)?;
    let chat = chat_template(&g, &loaded)?;
    let end_of_turn = chat
        .as_ref()
        .and_then(|t| t.end_of_turn_token())
        .and_then(|t| loaded.tokenizer.token_to_id(t));
    let ctx = Ctx {
        loaded: &loaded,
        load: start.elapsed(),
        interrupt,
        chat,
        end_of_turn,
    };
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
    if !g.each_line {
        if let Some(record) = run_one(&g, &ctx, &text)? {
            output::json(&record)?;
        }
        return interrupted(&ctx);
    }

    let jobs = input::parse_lines(&text);
    if jobs.is_empty() {
        bail!("--each-line found no prompt: the input has no non-empty line");
    }
    let (total, mut failed) = (jobs.len(), 0usize);
    let mut records = Vec::new();
    for (line, job) in jobs {
        let result = job.and_then(|job| {
            let cfg = job
                .overrides
                .apply(&g)
                .map_err(|e| e.context(format!("line {}", job.line)))?;
            run_one(&cfg, &ctx, &job.prompt)
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
            Ok((_, None)) => output::text_separator()?,
            Err(e) if crate::is_broken_pipe(&e) => return Err(e),
            Err(e) => {
                failed += 1;
                output::error(&e);
                let record = serde_json::json!({"line": line, "error": format!("{e:#}")});
                match g.format {
                    OutputFormat::Jsonl => output::json(&record)?,
                    OutputFormat::Json => records.push(record),
                    OutputFormat::Text => {}
                }
            }
        }
        if is_interrupted(&ctx) {
            break;
        }
    }
    if g.format == OutputFormat::Json {
        output::json(&Value::Array(records))?;
    }
    interrupted(&ctx)?;
    if failed > 0 {
        bail!("{failed} of {total} prompts failed (see the errors above)");
    }
    Ok(())
}

fn is_interrupted(ctx: &Ctx) -> bool {
    ctx.interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::Relaxed))
}

fn interrupted(ctx: &Ctx) -> Result<()> {
    if is_interrupted(ctx) {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Runs one prompt. In text mode it prints as it goes and returns `None`; in JSON modes it
/// returns the record to print.
fn run_one(g: &GenerateConfig, ctx: &Ctx, prompt: &str) -> Result<Option<Value>> {
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text with --prompt, a file or stdin");
    }
    let loaded = ctx.loaded;
    let text = model_input(g, ctx, prompt)?;
    if g.verbose {
        // JSON-quoted, so that scripts can read it back.
        output::note(&format!("gen: model input: {}", Value::from(text.as_str())));
    }
    let ids = loaded.tokenizer.encode(&text)?;
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    if let Some(strategies) = &g.compare {
        return run_compare(g, ctx, &ids, strategies);
    }
    if let Some(beam) = &g.beam {
        return run_beam(g, beam, ctx, &ids);
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
        interrupt: ctx.interrupt.clone(),
        extra_eos: ctx.end_of_turn.into_iter().collect(),
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
    let record = match text_out {
        Some(out) => {
            out.finish()?;
            if g.explain.is_some() {
                output::explain_tables(&result, &piece);
            }
            if g.logprobs.is_some() {
                output::logprobs_table(&result, &piece);
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
            Some(output::generation_json(&result, &run, &piece))
        }
    };
    if !g.quiet {
        output::note(&output::stats_line(&result, ctx.load));
    }
    Ok(record)
}

fn beam_processors(
    g: &GenerateConfig,
    beam: &BeamConfig,
    loaded: &LoadedModel,
) -> Result<decode::Processors> {
    let s = &g.sampling;
    sampling::LogitBias::check_ids(&s.logit_bias, loaded.model.config().vocab_size)?;
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
    Ok(decode::Processors {
        penalties,
        logit_bias: s.logit_bias.clone(),
        no_repeat_ngram: beam.no_repeat_ngram,
    })
}

fn beam_params(g: &GenerateConfig, beam: &BeamConfig, ctx: &Ctx) -> decode::BeamParams {
    let loaded = ctx.loaded;
    decode::BeamParams {
        num_beams: beam.num_beams,
        num_return: beam.num_return,
        length_penalty: beam.length_penalty,
        early_stopping: beam.early_stopping,
        max_tokens: g.max_tokens,
        eos: if g.ignore_eos {
            Vec::new()
        } else {
            let mut eos = generate::end_ids(&loaded.model, &loaded.tokenizer);
            if let Some(id) = ctx.end_of_turn.filter(|id| !eos.contains(id)) {
                eos.push(id);
            }
            eos
        },
        batch_size: g.batch_size,
        ctx_size: g.ctx_size.unwrap_or(usize::MAX),
        stop: g.stop.clone(),
        keep_stop: g.keep_stop,
    }
}

fn run_beam(
    g: &GenerateConfig,
    beam: &BeamConfig,
    ctx: &Ctx,
    ids: &[u32],
) -> Result<Option<Value>> {
    let loaded = ctx.loaded;
    let processors = beam_processors(g, beam, loaded)?;
    let params = beam_params(g, beam, ctx);
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
        output::note(&output::beam_stats_line(&result, ctx.load));
    }
    Ok(record)
}

/// `--compare`: prefill once, then every strategy from a fork of that cache. The sampling
/// strategies (greedy included) run as one batch, a forward pass per step for all of them,
/// unless `--compare-sequential`; beam searches run one after another (each is a batch).
fn run_compare(
    g: &GenerateConfig,
    ctx: &Ctx,
    ids: &[u32],
    strategies: &[Strategy],
) -> Result<Option<Value>> {
    let loaded = ctx.loaded;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let ctx_size = g.ctx_size.unwrap_or(usize::MAX);
    let pre = generate::Prefilled::run(model, ids, g.batch_size, ctx_size)?;
    let seed = g.sampling.seed.unwrap_or_else(rand::random::<u64>);
    let params = generate::GenerateParams {
        max_tokens: g.max_tokens,
        ignore_eos: g.ignore_eos,
        batch_size: g.batch_size,
        ctx_size,
        logprobs: Some(0),
        explain: None,
        stop: g.stop.clone(),
        keep_stop: g.keep_stop,
        interrupt: ctx.interrupt.clone(),
        extra_eos: ctx.end_of_turn.into_iter().collect(),
    };
    let mut rows: Vec<Option<output::CompareRow>> = vec![None; strategies.len()];
    // Sampling strategies: (index, chain), each with its own RNG from the same seed.
    let mut sampled = Vec::new();
    for (i, s) in strategies.iter().enumerate() {
        if let StrategyKind::Sample(cfg) = &s.kind {
            let cfg = sampling::SamplingConfig {
                seed: Some(seed),
                ..cfg.clone()
            };
            sampled.push((
                i,
                sampling::build_chain(&cfg, model.config().vocab_size)?.chain,
            ));
        }
    }
    let groups: Vec<&mut [(usize, sampling::SamplerChain)]> = if g.compare_sequential {
        sampled.chunks_mut(1).collect()
    } else {
        vec![sampled.as_mut_slice()]
    };
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        if is_interrupted(ctx) {
            break;
        }
        let quiet = |_: generate::Event| Ok(());
        let mut sinks: Vec<_> = group.iter().map(|_| quiet).collect();
        let t0 = Instant::now();
        let outs = generate::generate_batch(
            model,
            tok,
            ids,
            pre.fork()?,
            group
                .iter_mut()
                .zip(sinks.iter_mut())
                .map(|((_, chain), sink)| {
                    (chain, sink as &mut dyn FnMut(generate::Event) -> Result<()>)
                })
                .collect(),
            &params,
        )?;
        for ((i, chain), r) in group.iter().zip(outs) {
            let lps: Vec<f64> = r
                .records
                .iter()
                .filter_map(|x| x.logprobs.as_ref())
                .map(|l| l.logprob as f64)
                .collect();
            rows[*i] = Some(output::CompareRow {
                label: strategies[*i].label.clone(),
                sampler: chain.stage_descriptions(),
                mean_logprob: mean(&lps),
                tokens: r.tokens,
                text: r.text,
                stop: r.stop,
                decode_tok_s: r.timings.decode_tok_s(),
                elapsed: if group.len() == 1 {
                    t0.elapsed()
                } else {
                    r.timings.decode
                },
            });
        }
    }
    for (i, s) in strategies.iter().enumerate() {
        let StrategyKind::Beam(b) = &s.kind else {
            continue;
        };
        if is_interrupted(ctx) {
            break;
        }
        let t0 = Instant::now();
        let params = beam_params(g, b, ctx);
        let processors = beam_processors(g, b, loaded)?;
        let r = decode::beam_search_from(
            model,
            tok,
            ids,
            Some(pre.fork()?),
            &params,
            &processors,
            &mut |_| Ok(()),
        )?;
        let best = r
            .hypotheses
            .into_iter()
            .next()
            .context("beam search returned no hypothesis")?;
        rows[i] = Some(output::CompareRow {
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
        });
    }
    // Strategies skipped by Ctrl-C have no row.
    let rows: Vec<output::CompareRow> = rows.into_iter().flatten().collect();
    let report = output::CompareReport {
        prompt_tokens: ids.len(),
        prefill: pre.time,
        seed,
        rows,
    };
    let piece = |ids: &[u32]| tok.decode(ids).unwrap_or_default();
    match g.format {
        OutputFormat::Text => {
            output::compare_view(&report, &piece)?;
            Ok(None)
        }
        OutputFormat::Json => Ok(Some(output::compare_json(&report, &piece))),
        OutputFormat::Jsonl => {
            for v in output::compare_records(&report, &piece) {
                output::json(&v)?;
            }
            Ok(None)
        }
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}
