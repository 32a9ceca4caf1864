//! The JSON records: a sampled generation (with `--logprobs` and `--explain` entries) and a
//! beam search. Token texts come from a `piece` function that may fail (a token the tokenizer
//! cannot decode), and the failure is the caller's error.

use super::{ms, Piece};
use crate::engine::{BeamResult, Generation, StopReason};
use crate::sampling::{StepTrace, TokenLogprobs};
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// What the JSON record says about the run besides the generation itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub model: String,
    pub load: Duration,
    /// The seed the sampler's RNG started from.
    pub seed: u64,
    /// The effective sampler chain, stage by stage.
    pub sampler: Vec<String>,
}

/// `--print-prompt`'s record: the text the model is fed and its token ids (a BOS the
/// tokenizer adds is among the ids, not in the text).
pub fn model_input_json(model: &str, text: &str, ids: &[u32]) -> Value {
    json!({"model": model, "model_input": text, "tokens": ids})
}

/// The JSON object describing a generation (`--format json`).
pub fn generation_json(g: &Generation, run: &RunInfo, piece: Piece) -> Result<Value> {
    let t = &g.timings;
    let mut v = json!({
        "model": run.model,
        "text": g.text,
        "tokens": g.tokens,
        "stop": stop_json(&g.stop),
        "seed": run.seed,
        "sampler": run.sampler,
        "timings": {
            "load_ms": ms(run.load),
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": ms(t.prefill),
            "prefill_tok_s": t.prefill_tok_s(),
            "generated_tokens": g.tokens.len(),
            "decode_steps": t.decode_steps,
            "decode_ms": ms(t.decode),
            "decode_tok_s": t.decode_tok_s(),
        }
    });
    if t.target_passes > 0 {
        v["timings"]["drafted_tokens"] = json!(t.drafted);
        v["timings"]["accepted_tokens"] = json!(t.accepted);
        v["timings"]["acceptance_rate"] = json!(t.acceptance_rate());
        v["timings"]["target_passes"] = json!(t.target_passes);
        v["timings"]["tokens_per_pass"] = json!(t.tokens_per_pass());
    }
    add_logprobs(&mut v, g, piece)?;
    let ex = g
        .records
        .iter()
        .filter_map(|r| r.trace.as_ref())
        .enumerate()
        .map(|(i, tr)| trace_json(i, tr, piece))
        .collect::<Result<Vec<Value>>>()?;
    if !ex.is_empty() {
        v["explain"] = Value::Array(ex);
    }
    Ok(v)
}

/// One `gen chat` turn as a JSONL record: the answer and its token ids, why it stopped, and
/// where its prompt came from (`reused_tokens` from the kept cache, `computed_tokens` run this
/// turn); `logprobs` with `--logprobs`.
pub fn chat_turn_json(
    turn: usize,
    g: &Generation,
    reused: usize,
    computed: usize,
    piece: Piece,
) -> Result<Value> {
    let t = &g.timings;
    let mut v = json!({
        "turn": turn,
        "role": "assistant",
        "content": g.text,
        "tokens": g.tokens,
        "stop": stop_json(&g.stop),
        "prompt_tokens": reused + computed,
        "reused_tokens": reused,
        "computed_tokens": computed,
        "generated_tokens": g.tokens.len(),
        "prefill_ms": ms(t.prefill),
        "decode_tok_s": t.decode_tok_s(),
    });
    add_logprobs(&mut v, g, piece)?;
    Ok(v)
}

/// The record a scripted `gen chat` writes for an input line that failed (1-based `line`), in
/// place of that turn's: `{"line", "error"}`.
pub fn chat_error_json(line: usize, err: &anyhow::Error) -> Value {
    json!({"line": line, "error": super::error_text(err)})
}

/// Adds `"logprobs"` to `v` when the generation recorded them (`--logprobs`).
fn add_logprobs(v: &mut Value, g: &Generation, piece: Piece) -> Result<()> {
    let lp = g
        .records
        .iter()
        .filter_map(|r| r.logprobs.as_ref())
        .map(|l| logprobs_json(l, piece))
        .collect::<Result<Vec<Value>>>()?;
    if !lp.is_empty() {
        v["logprobs"] = Value::Array(lp);
    }
    Ok(())
}

fn logprobs_json(l: &TokenLogprobs, piece: Piece) -> Result<Value> {
    let top = l
        .top
        .iter()
        .map(|&(id, lp)| {
            Ok(json!({"token": id, "text": piece(id)?, "logprob": finite_or_null(lp)}))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(json!({
        "token": l.id,
        "text": piece(l.id)?,
        "logprob": finite_or_null(l.logprob),
        "top": top,
    }))
}

/// JSON has no −inf: a token with probability 0 gets `null`.
fn finite_or_null(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn trace_json(step: usize, tr: &StepTrace, piece: Piece) -> Result<Value> {
    let rows = tr
        .rows
        .iter()
        .map(|r| {
            Ok(json!({
                "token": r.id,
                "text": piece(r.id)?,
                "probs": r.probs,
                "removed_by": r.removed_at().map(|i| tr.stages[i].clone()),
            }))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(json!({
        "step": step,
        "coin": tr.coin,
        "chosen": tr.chosen,
        "chosen_text": piece(tr.chosen)?,
        "stages": tr.stages,
        "kept": tr.kept,
        "rows": rows,
    }))
}

/// Why generation ended, as JSON: `{"reason": ..., "token" | "string": ...}`.
pub fn stop_json(stop: &StopReason) -> Value {
    match stop {
        StopReason::Eos { id } => json!({"reason": "eos", "token": id}),
        StopReason::Stop { string } => json!({"reason": "stop", "string": string}),
        other => json!({"reason": other.name()}),
    }
}

/// The JSON object of a beam search: the best hypothesis at the top level (as a sampled
/// generation's), and every returned one under `beams`.
pub fn beam_json(r: &BeamResult, model: &str, load: Duration) -> Value {
    let t = &r.timings;
    let best = r.hypotheses.first();
    json!({
        "model": model,
        "text": best.map(|h| h.text.as_str()).unwrap_or_default(),
        "tokens": best.map(|h| h.tokens.clone()).unwrap_or_default(),
        "stop": best.map_or(Value::Null, |h| stop_json(&h.stop)),
        "beams": r.hypotheses.iter().map(|h| json!({
            "text": h.text,
            "tokens": h.tokens,
            "score": h.score,
            "sum_logprobs": h.sum_logprobs,
            "stop": stop_json(&h.stop),
        })).collect::<Vec<_>>(),
        "timings": {
            "load_ms": ms(load),
            "prompt_tokens": t.prompt_tokens,
            "prefill_ms": ms(t.prefill),
            "prefill_tok_s": t.prefill_tok_s(),
            "decode_steps": t.decode_steps,
            "decode_ms": ms(t.decode),
            "reorder_ms": ms(r.reorder),
            "decode_tok_s": t.decode_tok_s(),
        }
    })
}
