//! Beam search with the semantics of Hugging Face `generate(num_beams=N)` (docs/SAMPLING.md): the
//! live beams run as one batch, each step takes log-softmax of every beam's logits, applies the
//! processors (penalties, logit bias, no-repeat n-grams), adds the beam's running sum, and keeps
//! the best candidates over N × vocab; the KV cache is reordered by parent beam.
//!
//! A candidate that ends (an EOS token) becomes a finished hypothesis only if it ranks within
//! the top N, scored `sum_logprobs / gen_len ^ length_penalty` with `gen_len` counting generated
//! tokens, the EOS included; running beams are ranked by raw sums. When `max_tokens` is reached
//! the top N candidates of the last step all finish, ended or not. Ctrl-C ends the search after
//! the current step as if it were the last, so the best hypothesis so far is returned.

use super::metrics::common_prefix;
use super::stop::{first_match, StopMatcher};
use super::{DecodeParams, Event, Prefilled, StopReason, Timings};
use crate::config::{EarlyStopping, Window};
use crate::model::{Llama, Logits};
use crate::sampling::{log_sum_exp, top_n, Penalties};
use crate::tokenizer::{TokenStream, Tokenizer};
use anyhow::{bail, ensure, Context, Result};
use candle_core::Tensor;
use std::cmp::Ordering;
use std::time::{Duration, Instant};

/// Everything beam search needs besides the model and prompt.
#[derive(Debug, Clone)]
pub struct BeamParams {
    /// Length, end-of-generation set (tokens that finish a hypothesis), context, stop strings
    /// (a hypothesis whose text contains one is finished, like one that emits EOS) and Ctrl-C.
    pub decode: DecodeParams,
    pub num_beams: usize,
    /// How many finished hypotheses to return (≤ `num_beams`).
    pub num_return: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
}

/// What is applied to each beam's log-probabilities before selection.
#[derive(Debug, Clone, Default)]
pub struct Processors {
    pub penalties: Option<Penalties>,
    pub logit_bias: Vec<(u32, f32)>,
    /// Ban any token that would repeat an n-gram of this size (transformers'
    /// `no_repeat_ngram_size`), prompt included.
    pub no_repeat_ngram: Option<usize>,
}

impl Processors {
    /// How many of the latest tokens the processors look at (`usize::MAX`: all of them).
    fn history_needed(&self) -> usize {
        let penalties = match self.penalties.as_ref().map(Penalties::window) {
            None => 0,
            Some(Window::Last(n)) => n,
            Some(Window::All) => usize::MAX,
        };
        let ngram = if self.no_repeat_ngram.is_some() {
            usize::MAX
        } else {
            0
        };
        penalties.max(ngram)
    }

    /// Applies every processor to one beam's row of log-probabilities; `history` holds at
    /// least the [`Self::history_needed`] latest tokens.
    pub fn apply(&self, row: &mut [f32], history: &[u32]) {
        if let Some(p) = &self.penalties {
            p.apply_to_logits(row, history);
        }
        for &(id, b) in &self.logit_bias {
            if let Some(x) = row.get_mut(id as usize) {
                *x += b;
            }
        }
        if let Some(n) = self.no_repeat_ngram {
            for id in banned_by_ngram(history, n) {
                if let Some(x) = row.get_mut(id as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Tokens that would complete an n-gram already present in `history`.
pub fn banned_by_ngram(history: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || history.len() + 1 < n {
        return Vec::new();
    }
    if n == 1 {
        return history.to_vec();
    }
    let tail = &history[history.len() + 1 - n..];
    history
        .windows(n)
        .filter(|w| &w[..n - 1] == tail)
        .map(|w| w[n - 1])
        .collect()
}

/// One returned hypothesis.
#[derive(Debug, Clone)]
pub struct Hypothesis {
    /// Generated tokens (an ending EOS included).
    pub tokens: Vec<u32>,
    /// Generated text (EOS excluded).
    pub text: String,
    /// Sum of the (processed) log-probabilities of `tokens`.
    pub sum_logprobs: f64,
    /// `sum_logprobs / len(tokens) ^ length_penalty`.
    pub score: f64,
    pub stop: StopReason,
}

/// The outcome of a beam search.
#[derive(Debug, Clone)]
pub struct BeamResult {
    /// Best first; `num_return` of them.
    pub hypotheses: Vec<Hypothesis>,
    pub timings: Timings,
    /// Time spent reordering the KV cache (part of `timings.decode`).
    pub reorder: Duration,
    /// Whether Ctrl-C ended the search early.
    pub interrupted: bool,
}

#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    sum: f64,
}

/// How a finished hypothesis ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Eos(u32),
    Stop(String),
    Length,
}

#[derive(Debug, Clone)]
struct Finished {
    tokens: Vec<u32>,
    sum: f64,
    score: f64,
    end: End,
}

/// The latest `n` tokens of `prompt` followed by `generated` (every token for `usize::MAX`):
/// what the processors look at, built only as far as they look.
fn history_tail(prompt: &[u32], generated: &[u32], n: usize) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    let from_prompt = n.saturating_sub(generated.len()).min(prompt.len());
    let from_generated = n.min(generated.len());
    let mut h = Vec::with_capacity(from_prompt + from_generated);
    h.extend_from_slice(&prompt[prompt.len() - from_prompt..]);
    h.extend_from_slice(&generated[generated.len() - from_generated..]);
    h
}

/// A scored continuation: parent beam, token, new running sum.
#[derive(Debug, Clone, Copy)]
struct Cand {
    parent: usize,
    token: u32,
    sum: f64,
}

/// Higher sum first; ties to the lower (parent, token), as a flat top-k over N × vocab would.
fn by_sum(a: &Cand, b: &Cand) -> Ordering {
    b.sum
        .total_cmp(&a.sum)
        .then(a.parent.cmp(&b.parent))
        .then(a.token.cmp(&b.token))
}

/// Log-softmax of one row in place.
fn log_softmax_in_place(row: &mut [f32]) {
    let log_z = log_sum_exp(row) as f32;
    row.iter_mut().for_each(|l| *l -= log_z);
}

/// The best `k` candidates of one beam's processed log-probabilities.
fn top_of_row(parent: usize, base: f64, row: &[f32], k: usize) -> Vec<Cand> {
    let cands = row
        .iter()
        .enumerate()
        .filter(|(_, &lp)| lp > f32::NEG_INFINITY)
        .map(|(t, &lp)| Cand {
            parent,
            token: t as u32,
            sum: base + lp as f64,
        });
    top_n(cands, k, by_sum)
}

/// The finished hypotheses, at most `capacity`, best score first.
struct FinishedSet {
    items: Vec<Finished>,
    capacity: usize,
}

impl FinishedSet {
    fn add(&mut self, f: Finished) {
        if self.items.len() == self.capacity {
            match self.items.last() {
                Some(worst) if f.score > worst.score => {
                    self.items.pop();
                }
                _ => return,
            }
        }
        let at = self.items.partition_point(|x| x.score >= f.score);
        self.items.insert(at, f);
    }

    fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    fn worst_score(&self) -> f64 {
        self.items.last().map_or(f64::NEG_INFINITY, |f| f.score)
    }
}

fn normalise(sum: f64, len: usize, length_penalty: f32) -> f64 {
    sum / (len.max(1) as f64).powf(length_penalty as f64)
}

/// Streams the text that can no longer change: the tokens every live beam and every kept
/// hypothesis share (only when one hypothesis is returned), held back while it could be the
/// start of a stop string.
struct Streamer<'a> {
    stream: TokenStream<'a>,
    guard: StopMatcher,
    /// Tokens of the shared prefix already fed to `stream`.
    streamed: usize,
    /// Text already sent.
    emitted: String,
}

impl Streamer<'_> {
    /// Feeds the shared prefix of `seqs` (the live beams, `seqs[0]` among them, and the kept
    /// hypotheses) that has not been streamed yet.
    fn advance(
        &mut self,
        seqs: &[&[u32]],
        on_event: &mut dyn FnMut(Event) -> Result<()>,
    ) -> Result<()> {
        let common = common_prefix(seqs);
        let Some(first) = seqs.first() else {
            return Ok(());
        };
        for &id in &first[self.streamed.min(common)..common] {
            if let Some(piece) = self.stream.next(id)? {
                let check = self.guard.push(&piece);
                on_event(Event::Text(&check.emit))?;
                self.emitted.push_str(&check.emit);
            }
        }
        self.streamed = self.streamed.max(common);
        Ok(())
    }

    /// Sends the rest of the best hypothesis' text.
    fn finish(&self, best: &str, on_event: &mut dyn FnMut(Event) -> Result<()>) -> Result<()> {
        let rest = best.strip_prefix(self.emitted.as_str()).with_context(|| {
            format!(
                "internal: streamed text {:?} is not a prefix of the best hypothesis",
                self.emitted
            )
        })?;
        if !rest.is_empty() {
            on_event(Event::Text(rest))?;
        }
        Ok(())
    }
}

/// Scores every continuation of every live beam: log-softmax of its row, the processors, its
/// running sum; the best `keep` of all, best first. The rows are scored side by side on the
/// pool's threads.
fn score_candidates(
    rows: &mut [Vec<f32>],
    beams: &[Beam],
    prompt: &[u32],
    processors: &Processors,
    keep: usize,
) -> Result<Vec<Cand>> {
    let needed = processors.history_needed();
    // The model's own numbers, before any processor: NaN there is a broken model (or
    // weights), not a ban, and must not be reported as one.
    if let Some(b) = rows.iter().position(|r| r.iter().any(|x| x.is_nan())) {
        bail!("the model's logits for beam {b} are NaN: the weights are corrupt or overflowed");
    }
    let mut per_row: Vec<(&mut Vec<f32>, Vec<Cand>)> =
        rows.iter_mut().map(|r| (r, Vec::new())).collect();
    crate::kernels::pool::for_each_chunk_mut(&mut per_row, 1, &|b, row| {
        let (logp, top) = &mut row[0];
        let beam = &beams[b];
        log_softmax_in_place(logp);
        processors.apply(logp, &history_tail(prompt, &beam.tokens, needed));
        *top = top_of_row(b, beam.sum, logp, keep);
    });
    let mut cands: Vec<Cand> = per_row.into_iter().flat_map(|(_, top)| top).collect();
    ensure!(
        !cands.is_empty(),
        "every token is banned for every beam (--logit-bias / --no-repeat-ngram)"
    );
    cands.sort_unstable_by(by_sum);
    cands.truncate(keep);
    Ok(cands)
}

/// How a candidate of rank `rank` ends its hypothesis, if it does: an EOS token, a stop string
/// in its text (checked for the top N only, as only they can finish), or the last step.
fn candidate_end(
    c: &Cand,
    rank: usize,
    beams: &[Beam],
    params: &BeamParams,
    tokenizer: &Tokenizer,
    last_step: bool,
) -> Result<Option<End>> {
    let stop = &params.decode.stop;
    let end = if params.decode.eos.contains(&c.token) {
        Some(End::Eos(c.token))
    } else if rank < params.num_beams && !stop.is_empty() {
        let mut t = beams[c.parent].tokens.clone();
        t.push(c.token);
        first_match(&tokenizer.decode_text(&t, params.decode.special)?, stop)
            .map(|(_, s)| End::Stop(s.into()))
    } else {
        None
    };
    Ok(end.or(last_step.then_some(End::Length)))
}

/// Runs beam search continuing `prompt`, already prefilled into `prefilled`. Streams (as
/// [`Event::Text`]) only the prefix that every live beam and every kept hypothesis already
/// share, since it can no longer change, and the rest of the best hypothesis at the end.
pub fn beam_search(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    prefilled: Prefilled,
    params: &BeamParams,
    processors: &Processors,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<BeamResult> {
    let n = params.num_beams;
    ensure!(n >= 1, "beam search needs at least one beam");
    ensure!(
        (1..=n).contains(&params.num_return),
        "--num-return must be between 1 and --beams ({n})"
    );
    let Prefilled {
        mut cache,
        logits: first,
        time,
    } = prefilled;
    let ctx = cache.max_len();
    let max_tokens = params
        .decode
        .max_tokens
        .min(ctx.saturating_sub(prompt.len()));
    // Candidates kept per step: enough that N survive even when every EOS id ranks on top.
    let keep = 2.max(1 + params.decode.eos.len()) * n;
    let lp = params.length_penalty;

    let mut timings = Timings {
        prompt_tokens: prompt.len(),
        prefill: time,
        ..Default::default()
    };
    let decode_start = Instant::now();
    let mut reorder = Duration::ZERO;
    let mut beams = vec![Beam {
        tokens: Vec::new(),
        sum: 0.0,
    }];
    let mut rows = vec![first];
    let mut finished = FinishedSet {
        items: Vec::new(),
        capacity: n,
    };
    let mut streamer = Streamer {
        stream: TokenStream::new(tokenizer).show_control(params.decode.special),
        guard: StopMatcher::new(&params.decode.stop, false),
        streamed: 0,
        emitted: String::new(),
    };
    let mut interrupted = false;

    for step in 0..max_tokens {
        let cands = score_candidates(&mut rows, &beams, prompt, processors, keep)?;
        // Ctrl-C: this step is the last, so the best beams so far finish.
        interrupted = params.decode.interrupted();
        let last_step = step + 1 == max_tokens || interrupted;
        let mut next: Vec<Cand> = Vec::with_capacity(n);
        for (rank, c) in cands.iter().enumerate() {
            match candidate_end(c, rank, &beams, params, tokenizer, last_step)? {
                Some(end) if rank < n => {
                    let mut tokens = beams[c.parent].tokens.clone();
                    tokens.push(c.token);
                    let len = tokens.len();
                    finished.add(Finished {
                        tokens,
                        sum: c.sum,
                        score: normalise(c.sum, len, lp),
                        end,
                    });
                }
                Some(_) => {}
                None if next.len() < n => next.push(*c),
                None => {}
            }
        }
        if last_step || next.is_empty() {
            break;
        }
        let next = rows_in_place(next, beams.len());
        let new_beams: Vec<Beam> = next
            .iter()
            .map(|c| {
                let mut tokens = beams[c.parent].tokens.clone();
                tokens.push(c.token);
                Beam { tokens, sum: c.sum }
            })
            .collect();
        if done(&finished, &new_beams, step + 1, max_tokens, params) {
            break;
        }
        if params.num_return == 1 {
            let seqs: Vec<&[u32]> = new_beams
                .iter()
                .map(|b| b.tokens.as_slice())
                .chain(finished.items.iter().map(|f| f.tokens.as_slice()))
                .collect();
            streamer.advance(&seqs, on_event)?;
        }

        // Reorder the cache by parent and run the survivors as one batch.
        let parents: Vec<usize> = next.iter().map(|c| c.parent).collect();
        let t = Instant::now();
        cache.reorder(&parents)?;
        reorder += t.elapsed();
        let tokens: Vec<u32> = next.iter().map(|c| c.token).collect();
        let input = Tensor::new(tokens.as_slice(), model.device())?.unsqueeze(1)?; // (beams, 1)
        let logits = model.forward(&input, &mut cache, Logits::Last)?; // (beams, vocab)
        rows = logits.to_vec2::<f32>()?;
        timings.decode_steps += 1;
        beams = new_beams;
    }
    timings.decode = decode_start.elapsed();

    // Fewer finished than asked (every step's top N kept running): nothing more to add, since
    // the last step finishes its top N. An empty set can only mean max_tokens = 0.
    let hypotheses = finished
        .items
        .iter()
        .take(params.num_return)
        .map(|f| hypothesis(f, params, tokenizer, interrupted))
        .collect::<Result<Vec<_>>>()?;
    if params.num_return == 1 {
        if let Some(best) = hypotheses.first() {
            streamer.finish(&best.text, on_event)?;
        }
    }
    if hypotheses.is_empty() && max_tokens > 0 {
        bail!("internal: beam search finished no hypothesis");
    }
    Ok(BeamResult {
        hypotheses,
        timings,
        reorder,
        interrupted,
    })
}

/// A finished hypothesis as returned: its text (cut at a stop string) and why it ended.
fn hypothesis(
    f: &Finished,
    params: &BeamParams,
    tokenizer: &Tokenizer,
    interrupted: bool,
) -> Result<Hypothesis> {
    let text_of = |ids: &[u32]| tokenizer.decode_text(ids, params.decode.special);
    let (text, stop) = match &f.end {
        End::Eos(id) => (
            text_of(&f.tokens[..f.tokens.len() - 1])?,
            StopReason::Eos { id: *id },
        ),
        End::Stop(string) => {
            let full = text_of(&f.tokens)?;
            let cut = full.find(string.as_str()).map_or(full.len(), |at| {
                if params.decode.keep_stop {
                    at + string.len()
                } else {
                    at
                }
            });
            (
                full[..cut].to_string(),
                StopReason::Stop {
                    string: string.clone(),
                },
            )
        }
        End::Length if interrupted => (text_of(&f.tokens)?, StopReason::Interrupted),
        End::Length if f.tokens.len() >= params.decode.max_tokens => {
            (text_of(&f.tokens)?, StopReason::MaxTokens)
        }
        End::Length => (text_of(&f.tokens)?, StopReason::ContextFull),
    };
    Ok(Hypothesis {
        text,
        tokens: f.tokens.clone(),
        sum_logprobs: f.sum,
        score: f.score,
        stop,
    })
}

/// Orders the surviving candidates so that as many as possible stay in their parent's row of
/// the KV cache: the first child of each parent takes the parent's row, and only the other
/// children are copied, into the rows of parents that left none. The order of beams does not
/// matter to the search; the copies do (each moves a row's whole cached history).
fn rows_in_place(next: Vec<Cand>, rows: usize) -> Vec<Cand> {
    if next.len() != rows {
        return next;
    }
    let mut slot: Vec<Option<Cand>> = vec![None; rows];
    let mut rest = Vec::new();
    for c in next {
        match slot.get_mut(c.parent) {
            Some(s @ None) => *s = Some(c),
            _ => rest.push(c),
        }
    }
    let mut rest = rest.into_iter();
    slot.into_iter()
        .filter_map(|s| s.or_else(|| rest.next()))
        .collect()
}

/// transformers' stopping rule, checked after each step with `gen_len` generated tokens.
fn done(
    finished: &FinishedSet,
    running: &[Beam],
    gen_len: usize,
    max_tokens: usize,
    params: &BeamParams,
) -> bool {
    if !finished.is_full() {
        return false;
    }
    let best_running = running
        .iter()
        .map(|b| b.sum)
        .fold(f64::NEG_INFINITY, f64::max);
    let len = match params.early_stopping {
        EarlyStopping::Eager => return true,
        EarlyStopping::Never if params.length_penalty > 0.0 => max_tokens,
        _ => gen_len,
    };
    normalise(best_running, len, params.length_penalty) <= finished.worst_score()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survivors_keep_their_parents_rows() {
        let c = |parent, token| Cand {
            parent,
            token,
            sum: -1.0,
        };
        // Parents 0, 0, 2, 0: rows 0 and 2 stay, the second and third children of 0 fill
        // rows 1 and 3.
        let got = rows_in_place(vec![c(0, 10), c(0, 11), c(2, 12), c(0, 13)], 4);
        let parents: Vec<usize> = got.iter().map(|c| c.parent).collect();
        let tokens: Vec<u32> = got.iter().map(|c| c.token).collect();
        assert_eq!(parents, [0, 0, 2, 0]);
        assert_eq!(tokens, [10, 11, 12, 13]);
        let got = rows_in_place(vec![c(3, 1), c(1, 2), c(1, 3), c(3, 4)], 4);
        let parents: Vec<usize> = got.iter().map(|c| c.parent).collect();
        assert_eq!(parents, [1, 1, 3, 3]);
        // A batch that changes size keeps the ranked order.
        let got = rows_in_place(vec![c(0, 1), c(0, 2)], 1);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn ngram_bans() {
        // history 1 2 3 1 2: the 3-gram "1 2 3" exists, so after "1 2" token 3 is banned.
        assert_eq!(banned_by_ngram(&[1, 2, 3, 1, 2], 3), [3]);
        assert_eq!(banned_by_ngram(&[1, 2, 3, 1, 2], 2), [3]);
        assert!(banned_by_ngram(&[1, 2], 3).is_empty());
        assert_eq!(banned_by_ngram(&[4, 5], 1), [4, 5]);
    }

    #[test]
    fn finished_set_keeps_the_best() {
        let mut s = FinishedSet {
            items: Vec::new(),
            capacity: 2,
        };
        for score in [-3.0, -1.0, -2.0, -5.0] {
            s.add(Finished {
                tokens: vec![],
                sum: score,
                score,
                end: End::Length,
            });
        }
        let scores: Vec<f64> = s.items.iter().map(|f| f.score).collect();
        assert_eq!(scores, [-1.0, -2.0]);
    }
}
