"""Oracle: Hugging Face transformers, GGUF dequantized to f32 -> hf_f32.json

Loads the same GGUF with transformers (AutoModelForCausalLM.from_pretrained(dir,
gguf_file=name, dtype=torch.float32, attn_implementation="eager"); the loader
dequantizes every tensor to f32 with the gguf package and un-permutes Q/K for llama),
CPU, torch.set_num_threads(2), and produces an f32 reference that is independent of
llama.cpp's compute (llama.cpp quantizes activations to Q8_1 for its Q4_1 matmuls;
this does not).

IMPORTANT: the tokenizer transformers rebuilds from this GGUF is wrong (it lacks
SmolLM's per-digit split), so it is never used. Token ids come from llama.cpp via
the committed JSON files:
  * prompt ids: llamacpp_tokenize.json "greedy_prompts" (from llamacpp_tokenize.py)
  * text ids:   llamacpp_logprobs.json "tokens" and llamacpp_perplexity.json "tokens"
Decoded text (greedy_text) is produced here from the GGUF vocabulary (byte-level BPE
pieces -> bytes), for reading only.

Outputs:
  cases[]: for each of the 8 prompts, 32 greedy steps with a manual loop (the whole
    sequence is re-run each step, no KV cache; argmax with ties -> lowest id; no
    sampling, no repetition penalty; EOS id 2 ignored, its steps listed in
    eos_positions). Schema as llamacpp_greedy.json: prompt, prompt_ids, greedy_ids,
    greedy_text, gaps, chosen_logp, eos_positions, first_step_logsumexp,
    first_step_top [[id, logp] x 50].
  teacher_forcing: the first 2048 tokens of text.txt in one forward pass: tokens are
    NOT repeated (same as llamacpp_logprobs.json "tokens"); argmax, logp_next (length n-1),
    top2_gap, mean_nll, mean_nll_prefix, argmax_accuracy.
  perplexity: llama-perplexity method (see llamacpp_perplexity.py) for N = 128, 256
    on the llama.cpp token ids: {context, n_windows, n_scored, ppl, mean_nll, window_mean_nll}.

Run:
    python3 -m venv /root/hf-venv
    /root/hf-venv/bin/pip install torch transformers gguf accelerate numpy
    /root/hf-venv/bin/python tests/oracle/hf_f32.py [path/to/model.gguf]
(needs llamacpp_tokenize.json, llamacpp_logprobs.json, llamacpp_perplexity.json next to it)

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root.
Output: tests/oracle/hf_f32.json
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

N_THREADS = 2
TOP_K = 50


def gguf_decoder(path):
    """Token id -> bytes, from the GGUF vocabulary (GPT-2 byte-level BPE)."""
    from gguf import GGUFReader

    r = GGUFReader(path)
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    dec = {chr(c): b for b, c in zip(bs, cs)}

    def piece(i):
        t = toks[i]
        if all(ch in dec for ch in t):
            return bytes(dec[ch] for ch in t)
        return t.encode("utf-8")  # special tokens such as <|im_end|>

    return lambda ids: b"".join(piece(i) for i in ids).decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(N_THREADS)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path),
        dtype=torch.float32, attn_implementation="eager",
    )
    model.eval()
    assert next(model.parameters()).dtype == torch.float32
    decode = gguf_decoder(path)
    eos = 2

    tok_json = oc.load_json("llamacpp_tokenize.json")
    assert tok_json["special"]["eos"] == eos
    prompts = tok_json["greedy_prompts"]
    assert [p["text"] for p in prompts] == oc.GREEDY_PROMPTS

    @torch.no_grad()
    def forward(ids):
        x = torch.tensor([ids], dtype=torch.long)
        return model(input_ids=x, use_cache=False).logits[0].double()  # (T, V)

    cases = []
    for p in prompts:
        ids = list(p["ids"])
        out_ids, gaps, logps = [], [], []
        first_top, first_lse = None, None
        for step in range(oc.GREEDY_NEW_TOKENS):
            logits = forward(ids + out_ids)[-1]
            lse = torch.logsumexp(logits, 0)
            nxt = int(torch.argmax(logits))  # first max -> lowest id on ties
            top2 = torch.topk(logits, 2).values
            gaps.append(float(top2[0] - top2[1]))
            logps.append(float(logits[nxt] - lse))
            if step == 0:
                first_lse = float(lse)
                lp = (logits - lse).numpy()
                top = np.argsort(-lp, kind="stable")[:TOP_K]
                first_top = [[int(t), oc.r6(lp[t])] for t in top]
            out_ids.append(nxt)
        cases.append({
            "prompt": p["text"],
            "prompt_ids": ids,
            "greedy_ids": out_ids,
            "greedy_text": decode(out_ids),
            "gaps": [oc.r6(g) for g in gaps],
            "chosen_logp": [oc.r6(x) for x in logps],
            "eos_positions": [s for s, t in enumerate(out_ids) if t == eos],
            "first_step_logsumexp": oc.r6(first_lse),
            "first_step_top": first_top,
        })
        print(repr(p["text"]), "->", repr(cases[-1]["greedy_text"]))
    t_greedy = time.time() - t0

    # Teacher forcing on the same tokens as llamacpp_logprobs.json.
    lp_json = oc.load_json("llamacpp_logprobs.json")
    tokens = lp_json["tokens"]
    n = len(tokens)
    logits = forward(tokens).numpy()
    m = logits.max(axis=-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
    tok = np.array(tokens)
    logp_next = logits[np.arange(n - 1), tok[1:]] - lse[:-1]
    argmax = logits.argmax(axis=-1)
    srt = np.sort(logits, axis=-1)
    top2_gap = srt[:, -1] - srt[:, -2]
    nll = -logp_next
    prefix = {str(k): oc.r6(nll[:k].mean()) for k in (128, 256, 512, 1024) if k <= n - 1}
    teacher = {
        "n_tokens": n,
        "tokens_from": "llamacpp_logprobs.json",
        "mean_nll": oc.r6(nll.mean()),
        "ppl": oc.r6(np.exp(nll.mean())),
        "mean_nll_prefix": prefix,
        "argmax_accuracy": oc.r6((argmax[:-1] == tok[1:]).mean()),
        "argmax": argmax.tolist(),
        "logp_next": [oc.r6(x) for x in logp_next],
        "top2_gap": [oc.r6(x) for x in top2_gap],
    }
    del logits
    print(f"teacher forcing: {n} tokens, mean NLL {nll.mean():.6f}, prefix {prefix}")

    # llama-perplexity method on the llama.cpp token ids.
    ppl_json = oc.load_json("llamacpp_perplexity.json")
    all_tokens = ppl_json["tokens"]
    perplexity = []
    for r in ppl_json["results"]:
        N = r["context"]
        first = N // 2
        nw = len(all_tokens) // N
        nll_sum, count, wmeans = 0.0, 0, []
        for k in range(nw):
            win = all_tokens[k * N:(k + 1) * N]
            lg = forward(win).numpy()[first:N - 1]
            mm = lg.max(axis=-1, keepdims=True)
            ls = mm[:, 0] + np.log(np.exp(lg - mm).sum(axis=-1))
            tgt = np.array(win[first + 1:N])
            wn = ls - lg[np.arange(len(tgt)), tgt]
            nll_sum += float(wn.sum())
            count += len(tgt)
            wmeans.append(oc.r6(wn.mean()))
        perplexity.append({
            "context": N, "first": first, "n_windows": nw, "n_scored": count,
            "ppl": oc.r6(np.exp(nll_sum / count)), "mean_nll": oc.r6(nll_sum / count),
            "window_mean_nll": wmeans,
        })
        print(f"perplexity N={N}: {nw} windows, {count} scored, ppl {np.exp(nll_sum / count):.4f}")

    out = {
        "generator": oc.generator(
            __file__, ["torch", "transformers", "gguf", "accelerate", "numpy"], path,
            load="AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=torch.float32, "
                 "attn_implementation='eager'); CPU; torch.set_num_threads(2)",
            token_ids="from llama.cpp (llamacpp_tokenize.json, llamacpp_logprobs.json, llamacpp_perplexity.json)",
            decode="manual greedy loop, full re-run each step (no KV cache), argmax, 32 new tokens, EOS ignored",
            seconds=round(time.time() - t0, 1),
            seconds_greedy=round(t_greedy, 1),
        ),
        "eos": eos,
        "n_new_tokens": oc.GREEDY_NEW_TOKENS,
        "cases": cases,
        "teacher_forcing": teacher,
        "perplexity": perplexity,
    }
    oc.write_json("hf_f32.json", out)
    print(f"{time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
