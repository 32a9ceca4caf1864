"""Oracle: Hugging Face transformers beam search, GGUF dequantized to f32 -> hf_beam.json

Model loading exactly as hf_f32.py (AutoModelForCausalLM.from_pretrained(dir,
gguf_file=name, dtype=torch.float32, attn_implementation="eager"), CPU,
torch.set_num_threads(2)). Prompt ids come from llama.cpp (llamacpp_tokenize.json
"greedy_prompts", all 8 prompts, plus its case "chatml_full"); the tokenizer
transformers rebuilds from the GGUF is never used. Texts are decoded from the GGUF vocabulary (hf_f32.gguf_decoder), for reading
only.

Every generation parameter is passed explicitly (nothing is taken from the generation
config the GGUF loader synthesises, which says eos 2 / pad 2):
    model.generate(input_ids, attention_mask=ones, num_beams=4, num_return_sequences=4,
                   length_penalty=1.0, early_stopping=True, max_new_tokens=32,
                   do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0,
                   eos_token_id=[0, 2], pad_token_id=0, use_cache=True,
                   output_scores=True, return_dict_in_generate=True)
No logits processor is active (the list passed to _beam_search is empty), so the step
scores are plain log_softmax(f32 logits). Stopping criteria: MaxLengthCriteria (prompt
+ 32) and EosTokenCriteria({0, 2}).

transformers 5.23.0 beam search (generation/utils.py, GenerationMixin._beam_search and
helpers; batch of one, B = num_beams, V = vocab, n = generated tokens incl. the new one):
  * Init (l. 3677-3691): B running beams = the prompt; running scores [0, -1e9, ...]
    so step 1 only expands beam 0. Finished pool: B slots with score -1e9, not finished.
  * Every step (l. 3746-3848): logp = log_softmax(logits) (f32) per running beam;
    cand = running_score[b] + logp[b, v] over all B*V pairs (f32 sums); take the top
    K = max(2, 1 + n_eos) * B candidates, sorted descending (l. 3644, 3479). With two EOS
    ids (0 and 2) K = 3 * B = 12, NOT 2 * B. Token = idx % V, parent = idx // V.
    A candidate "finishes" if its token is an EOS id or n == max_new_tokens (length
    criterion; at the last step every candidate finishes).
  * Next running beams (l. 3512-3514): the best B of the K candidates that did not
    finish (finished ones get -1e9 added). Running scores stay raw sums (no penalty).
  * Finished pool (l. 3545-3570): only finishing candidates among the first B of the K
    (rank < B) are eligible; an EOS candidate ranked B..K-1 is dropped. Eligible score
        score = sum_logprobs / n ** length_penalty        (l. 3549)
    where sum_logprobs = the candidate's accumulated sum over ALL its generated tokens
    INCLUDING the EOS token, and n = cur_len + 1 - prompt_len = the number of generated
    tokens INCLUDING the EOS (prompt length is not involved). Eligible candidates are
    merged with the pool, which keeps the best B by score (l. 3566). Candidates are
    masked out (-1e9) when the pool was already full and early_stopping is True, or the
    early-stop heuristic already said stop.
  * After each step (l. 3848-3866), with n = generated length of the running beams:
      heuristic (l. 3374-3419): L = max_new_tokens if early_stopping == "never" and
        length_penalty > 0, else n; improvement is possible iff fewer than B pool
        slots are finished, or best_running_raw_sum / L ** length_penalty > the worst
        (lowest) pool score (strict >). Once impossible it stays impossible.
      loop stops (l. 3421-3441) when: improvement impossible, OR (early_stopping is True
        and all B pool slots are finished), OR every one of the K candidates finished
        (only at max_new_tokens with 2 EOS ids).
    So early_stopping=True: stop as soon as B hypotheses are finished. False: stop when
    the best running beam's CURRENT normalised score (raw / n**lp) cannot beat the worst
    of B finished ones. "never": same with L = max_new_tokens when lp > 0.
  * At max_new_tokens every candidate "finishes", so the first B of the K candidates of
    the last step (by raw sum; EOS or not) enter the pool with n = max_new_tokens and
    compete with the earlier EOS hypotheses by normalised score; there is no separate
    fill-in or finalisation step.
  * Output (l. 3870-3880): the pool's first num_return_sequences entries, best first;
    sequences_scores = pool score; sequences padded with pad_token_id (0 here, same as
    EOS id 0!), so the generated length is taken from beam_indices (!= -1 entries).

Outputs (hf_beam.json):
  generator, eos_ids [0, 2], params (the generate() kwargs above),
  conventions: for three candidate length conventions (n_gen incl. EOS, n_gen excl.
    final EOS, prompt_len + n_gen), max |score * L**lp - rescored_sum| (and relative to
    |rescored_sum|) over all hypotheses of all runs; only the first fits (the others
    are off by nats).
  cases[8]: {prompt, prompt_ids, run}
  extra_cases[1]: {name, prompt, prompt_ids, run}: llamacpp_tokenize.json case
    "chatml_full" (system + user turn, then "<|im_start|>assistant\n").
  variants: {prompt, prompt_ids, runs: [run]} for one prompt (the ChatML greedy prompt)
    with early_stopping False / "never" (length_penalty 1.0), length_penalty 0.5 / 2.0
    / 0.0 (early_stopping True) and early_stopping False with length_penalty 0.0 (stops
    by the heuristic before max_new_tokens). Plus a model-independent replay trace:
    trace_from (the run it was recorded in: early_stopping "never", all 32 steps),
    trace_top (13), vocab (49152), trace[step] = [{prefix (generated ids of a live
    running beam), top: [[id, logp] x 13] (HF's f32 log_softmax, best first)}]. The
    running beams do not depend on length_penalty or early_stopping, so this one trace
    drives every run of this prompt: feed a beam search the listed logp for listed ids
    and rest = log((1 - sum(exp(listed))) / (vocab - 13)) for all other ids (rest is
    below the 13th value; the search only ever picks from a beam's top K = 12).
  run = {params_override, n_steps (loop iterations = model forward calls),
         hypotheses: [{ids, n_gen, finished_by ("eos" | "max_new_tokens"),
                       score, len_for_norm, rescored_sum_logp, rescored_logp[n_gen],
                       beam_indices[n_gen], text}] (HF order, best first),
         best_top2_gap[n_gen of best], step_margin[n_steps], min_step_margin,
         replay_ok, trace_replay_ok (ChatML-prompt runs only)}
  ids: ONLY the generated tokens, no prompt, no padding. A final EOS token (0 or 2) IS
    included when finished_by == "eos", and it IS counted in n_gen = len(ids) =
    len_for_norm (the length used by transformers: score == rescored_sum / n_gen**lp).
  score: HF sequences_scores (f32). rescored_sum_logp: sum of rescored_logp, from ONE
    teacher-forced forward pass (no cache) over prompt + ids, log_softmax in f64 of the
    f32 logits at positions prompt_len-1 .. prompt_len+n_gen-2.
  beam_indices: HF's beam_indices (the running-beam slot each token was appended to).
  best_top2_gap[s]: top1 - top2 logit at step s along the best hypothesis (teacher-forced).
  step_margin[s]: min over the two cuts at step s of the gap between the last kept and the
    first rejected candidate (from HF's own f32 step scores): the B-th vs (B+1)-th best
    non-finishing candidate (running-beam cut), and the B-th vs (B+1)-th candidate
    overall (who may enter the finished pool). Small values = near-ties.
  replay_ok: a pure re-implementation of the rules above (replay()), fed with HF's
    per-step log-probs (output_scores), reproduces HF's ids, scores (1e-6) and step count.
  trace_replay_ok: replay() fed from variants.trace instead reproduces the ids, scores
    (1e-5) and step count of this run.

Run:
    /root/hf-venv/bin/python tests/oracle/hf_beam.py [path/to/model.gguf]
(needs llamacpp_tokenize.json next to it; environment as for hf_f32.py)
Output: tests/oracle/hf_beam.json
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402
from hf_f32 import gguf_decoder  # noqa: E402

N_THREADS = 2
EOS_IDS = [0, 2]
PAD_ID = 0
BASE = dict(
    num_beams=4, num_return_sequences=4, length_penalty=1.0, early_stopping=True,
    max_new_tokens=32, do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0,
    eos_token_id=EOS_IDS, pad_token_id=PAD_ID, use_cache=True,
    output_scores=True, return_dict_in_generate=True,
)
VARIANT_PROMPT = 3  # the ChatML prompt: the one whose hypotheses end with <|im_end|>
VARIANTS = [
    dict(early_stopping=False),
    dict(early_stopping="never"),
    dict(length_penalty=0.5),
    dict(length_penalty=2.0),
    dict(length_penalty=0.0),
    dict(early_stopping=False, length_penalty=0.0),
]
# Extra prompt (ids also from llama.cpp): a ChatML prompt with a system turn, which
# ends in <|im_end|> too, for more EOS-finished hypotheses of different lengths.
EXTRA_CASES = ["chatml_full"]
TRACE_VARIANT = dict(early_stopping="never")  # runs all 32 steps
TRACE_TOP = 13  # > K = 12: every candidate the search can pick is in its beam's top 12


def trace_logp_fn(trace, vocab):
    """logp_fn for replay() from a recorded trace: listed ids get their logp, every other
    id gets rest = log((1 - sum(exp(listed))) / (vocab - TRACE_TOP))."""
    import math

    import torch

    def fn(t, prefixes):
        by_prefix = {tuple(e["prefix"]): e["top"] for e in trace[t]}
        rows = []
        for pre in prefixes:
            top = by_prefix.get(tuple(pre))
            row = torch.full((vocab,), float("-inf"), dtype=torch.float32)
            if top is not None:  # dead beams (score -1e9) are not traced
                rest = math.log((1.0 - sum(math.exp(v) for _, v in top)) / (vocab - len(top)))
                row[:] = rest
                for i, v in top:
                    row[i] = v
            rows.append(row)
        return torch.stack(rows)

    return fn


def replay(logp_fn, params, trace=None):
    """Re-implementation of transformers 5.23 _beam_search selection (batch of one).
    logp_fn(step, running_prefixes) -> (B, V) f32 log-probs of the running beams (in the
    order of running_prefixes). If trace is a list, the top TRACE_TOP log-probs of every
    live running beam are appended to it, one entry per step.
    Returns (hyps [(ids, score)], n_steps, margins)."""
    import torch

    B = params["num_beams"]
    lp = params["length_penalty"]
    es = params["early_stopping"]
    max_new = params["max_new_tokens"]
    eos = torch.tensor(EOS_IDS)
    K = max(2, 1 + len(EOS_IDS)) * B
    NEG = -1.0e9
    run_seqs = [[] for _ in range(B)]
    run_scores = torch.zeros(B, dtype=torch.float32)
    run_scores[1:] = NEG
    pool_scores = torch.full((B,), NEG, dtype=torch.float32)
    pool_seqs = [[] for _ in range(B)]
    pool_done = torch.zeros(B, dtype=torch.bool)
    improvable = True
    margins = []
    n_steps = 0
    for t in range(max_new):
        logp = logp_fn(t, run_seqs)
        if trace is not None:
            live, seen = [], set()
            for b in range(B):
                if float(run_scores[b]) > NEG / 2 and tuple(run_seqs[b]) not in seen:
                    seen.add(tuple(run_seqs[b]))
                    v, i = torch.topk(logp[b].double(), TRACE_TOP)
                    live.append({"prefix": list(run_seqs[b]),
                                 "top": [[int(a), oc.r6(c)] for a, c in zip(i, v)]})
            trace.append(live)
        n_steps += 1
        n = t + 1
        V = logp.shape[-1]
        acc = (logp.float() + run_scores[:, None]).reshape(-1)
        vals, idx = torch.topk(acc, K)
        parent, tok = idx // V, idx % V
        cand = [run_seqs[int(p)] + [int(x)] for p, x in zip(parent, tok)]
        hits = torch.isin(tok, eos) | (n >= max_new)
        # near-tie margins (f32 values as HF has them)
        a64 = acc.double().reshape(B, V).clone()
        a64[:, EOS_IDS] = float("-inf")
        ne = torch.topk(a64.reshape(-1), B + 1).values
        m_run = float(ne[B - 1] - ne[B]) if n < max_new else float("inf")
        m_all = float(vals[B - 1].double() - vals[B].double())
        margins.append(min(m_run, m_all))
        # running beams
        rv = vals + hits.to(torch.float32) * NEG
        sel = torch.topk(rv, B)[1]
        run_seqs = [cand[int(i)] for i in sel]
        run_scores = rv[sel]
        # finished pool
        fv = vals / (n ** lp)
        if bool(pool_done.all()) and es is True:
            fv = fv + NEG
        if not improvable:
            fv = fv + NEG
        just = hits & (torch.arange(K) < B)
        fv = fv + (~just) * NEG
        m_scores = torch.cat([pool_scores, fv])
        m_seqs = pool_seqs + cand
        m_done = torch.cat([pool_done, just])
        top = torch.topk(m_scores, B)[1]
        pool_scores = m_scores[top]
        pool_seqs = [m_seqs[int(i)] for i in top]
        pool_done = m_done[top]
        # stopping
        L = max_new if (es == "never" and lp > 0.0) else n
        best = run_scores[:1] / (L ** lp)
        worst = torch.where(pool_done, pool_scores.min(), torch.tensor(NEG))
        improvable = improvable and bool((best > worst).any())
        if not improvable or (bool(pool_done.all()) and es is True) or bool(hits.all()):
            break
    R = params["num_return_sequences"]
    return [(pool_seqs[i], float(pool_scores[i])) for i in range(R)], n_steps, margins


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(N_THREADS)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path),
        dtype=torch.float32, attn_implementation="eager",
    )
    model.eval()
    assert next(model.parameters()).dtype == torch.float32
    decode = gguf_decoder(path)

    tok_json = oc.load_json("llamacpp_tokenize.json")
    assert tok_json["special"]["eos"] == 2 and tok_json["special"]["endoftext"] == 0
    prompts = tok_json["greedy_prompts"]
    assert [p["text"] for p in prompts] == oc.GREEDY_PROMPTS

    @torch.no_grad()
    def forward(ids):
        x = torch.tensor([ids], dtype=torch.long)
        return model(input_ids=x, use_cache=False).logits[0].double()  # (T, V)

    all_checks = []  # (score, n_gen, prompt_len, ends_eos, rescored_sum, lp)

    @torch.no_grad()
    def run_beam(prompt_ids, override, trace=None):
        params = dict(BASE)
        params.update(override)
        x = torch.tensor([prompt_ids], dtype=torch.long)
        P = x.shape[1]
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), **params)
        R = params["num_return_sequences"]
        lp = params["length_penalty"]
        assert out.sequences.shape[0] == R
        hyps = []
        for i in range(R):
            bi = out.beam_indices[i].tolist()
            n_gen = sum(1 for b in bi if b != -1)
            assert all(b == -1 for b in bi[n_gen:])
            ids = out.sequences[i, P:P + n_gen].tolist()
            ends_eos = ids[-1] in EOS_IDS
            assert not any(t in EOS_IDS for t in ids[:-1])
            assert ends_eos or n_gen == params["max_new_tokens"]
            logits = forward(list(prompt_ids) + ids)[P - 1:P - 1 + n_gen]
            logp_all = torch.log_softmax(logits, -1)
            tl = logp_all[torch.arange(n_gen), torch.tensor(ids)]
            score = float(out.sequences_scores[i])
            rs = float(tl.sum())
            all_checks.append((score, n_gen, P, ends_eos, rs, lp))
            h = {
                "ids": ids,
                "n_gen": n_gen,
                "finished_by": "eos" if ends_eos else "max_new_tokens",
                "score": oc.r6(score),
                "len_for_norm": n_gen,
                "rescored_sum_logp": oc.r6(rs),
                "rescored_logp": [oc.r6(v) for v in tl.tolist()],
                "beam_indices": bi[:n_gen],
                "text": decode(ids),
            }
            if i == 0:
                top2 = torch.topk(logits, 2, dim=-1).values
                best_gap = (top2[:, 0] - top2[:, 1]).tolist()
            hyps.append(h)
        scores = list(out.scores)
        try:
            rh, rsteps, margins = replay(lambda t, _: scores[t], params, trace)
        except IndexError:  # the replay wanted more steps than HF ran
            rh, rsteps, margins = [], -1, [float("nan")]
        replay_ok = (rsteps == len(out.scores)
                     and [r[0] for r in rh] == [h["ids"] for h in hyps]
                     and all(abs(r[1] - float(out.sequences_scores[i])) <= 1e-6 for i, r in enumerate(rh)))
        if not replay_ok:
            print("REPLAY MISMATCH", rsteps, len(out.scores), rh, [h["ids"] for h in hyps],
                  out.sequences_scores.tolist(), file=sys.stderr)
        res = {
            "params_override": override,
            "n_steps": len(out.scores),
            "hypotheses": hyps,
            "best_top2_gap": [oc.r6(g) for g in best_gap],
            "step_margin": [oc.r6(m) for m in margins],
            "min_step_margin": oc.r6(min(margins)),
            "replay_ok": replay_ok,
        }
        for h in hyps:
            print(f"  {h['score']:+.6f} n={h['n_gen']:2d} {h['finished_by']:14s} "
                  f"sum={h['rescored_sum_logp']:+.5f} {h['text']!r}")
        print(f"  steps {res['n_steps']}, min step margin {res['min_step_margin']}, replay_ok {replay_ok}")
        return res

    cases = []
    for p in prompts:
        print(repr(p["text"]))
        cases.append({"prompt": p["text"], "prompt_ids": p["ids"], "run": run_beam(p["ids"], {})})
    extra_cases = []
    for name in EXTRA_CASES:
        c = next(c for c in tok_json["cases"] if c["name"] == name)
        print(name, repr(c["text"]))
        extra_cases.append({"name": name, "prompt": c["text"], "prompt_ids": c["ids"],
                            "run": run_beam(c["ids"], {})})
    vp = prompts[VARIANT_PROMPT]
    vruns = []
    trace = []
    for v in VARIANTS:
        print(repr(vp["text"]), v)
        vruns.append(run_beam(vp["ids"], v, trace if v == TRACE_VARIANT else None))
    assert len(trace) == BASE["max_new_tokens"]
    # The running beams do not depend on length_penalty / early_stopping, so this one
    # trace drives every run of this prompt: check that it reproduces all of them.
    vocab = model.config.vocab_size
    for r in [cases[VARIANT_PROMPT]["run"]] + vruns:
        params = dict(BASE)
        params.update(r["params_override"])
        rh, rsteps, _ = replay(trace_logp_fn(trace, vocab), params)
        r["trace_replay_ok"] = (rsteps == r["n_steps"]
                                and [x[0] for x in rh] == [h["ids"] for h in r["hypotheses"]]
                                and all(abs(x[1] - h["score"]) <= 1e-5 for x, h in zip(rh, r["hypotheses"])))
        print("trace replay", r["params_override"], r["trace_replay_ok"], rsteps, [round(x[1], 6) for x in rh])
    variants = {"prompt": vp["text"], "prompt_ids": vp["ids"], "runs": vruns,
                "trace_from": TRACE_VARIANT, "trace_top": TRACE_TOP, "vocab": vocab, "trace": trace}

    def conv(name, length_fn):
        errs = [abs(s * length_fn(n, P, e) ** lp - r) for s, n, P, e, r, lp in all_checks]
        rel = [abs(s * length_fn(n, P, e) ** lp - r) / abs(r) for s, n, P, e, r, lp in all_checks]
        return {"length": name, "max_abs_err": oc.r6(max(errs)), "max_rel_err": float(f"{max(rel):.3g}"),
                "n_hypotheses": len(errs), "n_finished_by_eos": sum(1 for c in all_checks if c[3])}

    conventions = [
        conv("n_gen (generated tokens incl. final EOS)", lambda n, P, e: n),
        conv("n_gen - 1 if finished by EOS (EOS not counted)", lambda n, P, e: n - 1 if e else n),
        conv("prompt_len + n_gen", lambda n, P, e: P + n),
    ]
    for c in conventions:
        print(f"convention {c['length']}: max |score*L^lp - rescored| = {c['max_abs_err']}")

    params = {k: v for k, v in BASE.items()}
    out = {
        "generator": oc.generator(
            __file__, ["torch", "transformers", "gguf", "accelerate", "numpy"], path,
            load="AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=torch.float32, "
                 "attn_implementation='eager'); CPU; torch.set_num_threads(2)",
            token_ids="prompt ids from llama.cpp (llamacpp_tokenize.json greedy_prompts)",
            decode="model.generate beam search with explicit params (KV cache); rescoring by one "
                   "teacher-forced forward pass without cache",
            seconds=round(time.time() - t0, 1),
        ),
        "eos_ids": EOS_IDS,
        "params": params,
        "conventions": conventions,
        "cases": cases,
        "extra_cases": extra_cases,
        "variants": variants,
    }
    oc.write_json("hf_beam.json", out)
    print(f"{time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
