//! `--samples N` (and `--vote`): numbered text blocks and the vote line, or the JSON records.

use super::json::{generation_json, RunInfo};
use super::{ms, rate, stdout_bytes, Piece};
use crate::engine::vote::Tally;
use crate::engine::Generation;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// What the records say about the run besides the samples.
pub struct SamplesRun<'a> {
    pub model: String,
    pub load: Duration,
    /// Sample i's seed.
    pub seeds: &'a [u64],
    pub sampler: Vec<String>,
}

/// The tally and each sample's answer (`None`: none found).
pub type Votes = (Tally, Vec<Option<String>>);

/// Text mode: `--- sample i (seed S) ---` and the text, for every sample, then the vote.
pub fn samples_text(outs: &[Generation], seeds: &[u64], tally: Option<&Tally>) -> Result<()> {
    let mut text = String::new();
    for (i, (g, seed)) in outs.iter().zip(seeds).enumerate() {
        text.push_str(&format!("--- sample {} (seed {seed}) ---\n", i + 1));
        text.push_str(&g.text);
        if !g.text.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Some(t) = tally {
        text.push_str(&vote_line(t));
        text.push('\n');
    }
    stdout_bytes(text.as_bytes())
}

/// `vote: 42 (5 of 8 samples, 62%) | tally: 42 ×5, 41 ×2 | no answer ×1`.
fn vote_line(t: &Tally) -> String {
    let Some((answer, votes)) = t.winner() else {
        return format!("vote: no answer found in any of the {} samples", t.samples);
    };
    let tally: Vec<String> = t.counts.iter().map(|(a, n)| format!("{a} ×{n}")).collect();
    let mut line = format!(
        "vote: {answer} ({votes} of {} samples, {:.0}%) | tally: {}",
        t.samples,
        100.0 * t.share(),
        tally.join(", ")
    );
    if t.none > 0 {
        line.push_str(&format!(" | no answer ×{}", t.none));
    }
    line
}

fn vote_json(t: &Tally) -> Value {
    json!({
        "answer": t.winner().map(|(a, _)| a),
        "votes": t.winner().map_or(0, |(_, n)| n),
        "share": t.share(),
        "tally": t.counts.iter().map(|(a, n)| json!({"answer": a, "votes": n})).collect::<Vec<_>>(),
        "no_answer": t.none,
    })
}

/// One record per sample: as `--format json` of a single run, plus `index` and `answer`.
fn sample_records(
    outs: &[Generation],
    run: &SamplesRun,
    votes: Option<&Votes>,
    piece: Piece,
) -> Result<Vec<Value>> {
    outs.iter()
        .enumerate()
        .map(|(i, g)| {
            let info = RunInfo {
                model: run.model.clone(),
                load: run.load,
                seed: run.seeds[i],
                sampler: run.sampler.clone(),
            };
            let mut v = generation_json(g, &info, piece)?;
            v["index"] = json!(i + 1);
            if let Some((_, answers)) = votes {
                v["answer"] = json!(answers[i]);
            }
            Ok(v)
        })
        .collect()
}

/// `--format jsonl`: the sample records, then `{"vote": ...}` when voting.
pub fn samples_jsonl(
    outs: &[Generation],
    run: &SamplesRun,
    votes: Option<&Votes>,
    piece: Piece,
) -> Result<Vec<Value>> {
    let mut records = sample_records(outs, run, votes, piece)?;
    if let Some((t, _)) = votes {
        records.push(json!({ "vote": vote_json(t) }));
    }
    Ok(records)
}

/// `--format json`: `{"model", "seed", "prompt_tokens", "prefill_ms", "samples": [...],
/// "vote"?}`, the prefill given once since the samples share it.
pub fn samples_json(
    outs: &[Generation],
    run: &SamplesRun,
    votes: Option<&Votes>,
    piece: Piece,
) -> Result<Value> {
    let t = outs.first().map(|g| &g.timings);
    let mut v = json!({
        "model": run.model,
        "seed": run.seeds.first(),
        "prompt_tokens": t.map_or(0, |t| t.prompt_tokens),
        "prefill_ms": t.map_or(0.0, |t| ms(t.prefill)),
        "samples": sample_records(outs, run, votes, piece)?,
    });
    if let Some((tally, _)) = votes {
        v["vote"] = vote_json(tally);
    }
    Ok(v)
}

/// The stats line after `--samples`: one prefill, then the batch.
pub fn samples_stats_line(outs: &[Generation], load: Duration, chat: bool) -> String {
    let Some(first) = outs.first() else {
        return "gen: no samples".into();
    };
    let t = &first.timings;
    let generated: usize = outs.iter().map(|g| g.tokens.len()).sum();
    let steps: usize = outs.iter().map(|g| g.timings.decode_steps).sum();
    let decode = outs
        .iter()
        .map(|g| g.timings.decode)
        .max()
        .unwrap_or_default();
    let per_s = if decode.is_zero() {
        0.0
    } else {
        steps as f64 / decode.as_secs_f64()
    };
    let mut stops: Vec<(&str, usize)> = Vec::new();
    for g in outs {
        match stops.iter_mut().find(|(s, _)| *s == g.stop.name()) {
            Some((_, n)) => *n += 1,
            None => stops.push((g.stop.name(), 1)),
        }
    }
    let stops: Vec<String> = stops.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
    format!(
        "gen: load {:.2} s | prompt {} tok{}, {:.1} tok/s, one prefill | {} samples, generated {generated} tok{} | stop: {}",
        load.as_secs_f64(),
        t.prompt_tokens,
        super::prompt_kind(chat),
        t.prefill_tok_s(),
        outs.len(),
        rate(steps, per_s, "tok/s"),
        stops.join(", ")
    )
}
