"""Oracle: llama-perplexity's method, re-done from llama.cpp logits -> llamacpp_perplexity.json

Reproduces `llama-perplexity -f tests/oracle/text.txt -c N` (tools/perplexity/perplexity.cpp,
function perplexity()) for N = 128 and N = 256 with llama.cpp (llama-cpp-python):
  * text = text.txt with one trailing newline removed (as `-f` does);
    tokens = tokenize(text, add_special=True) -- this vocab has add_bos = false and
    add_eos = false, so nothing is added (llama-perplexity would only *overwrite* the
    first token of each window with BOS if add_bos were true);
  * n_windows = floor(n_tokens / N); window k = tokens[k*N : (k+1)*N], evaluated at
    positions 0..N-1 from a cleared KV cache (one window per context, n_ctx = N);
  * first = N/2; the logits at window positions j = first .. N-2 are scored against
    token j+1 (N - 1 - first predictions per window): nll += -log_softmax(logits_j)[tok_{j+1}];
  * ppl = exp(sum nll / count). The "+/-" uncertainty is computed as perplexity.cpp does.
Differences from the real tool, none of which change the math: one window per decode
instead of n_batch/N windows packed as parallel sequences; log-softmax in float64.

llama.cpp settings: f32 KV cache (type_k = type_v = 0), flash attention off, CPU,
n_threads = 2, n_batch = n_ubatch = N.

Run:
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    /root/oracle-venv/bin/python tests/oracle/llamacpp_perplexity.py [path/to/model.gguf]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root.
Output: tests/oracle/llamacpp_perplexity.json
"""

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

CONTEXTS = (128, 256)
N_THREADS = 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import llama_cpp
    from llama_cpp import Llama

    text = oc.read_text()
    results = []
    tokens = None
    for n_ctx in CONTEXTS:
        llm = Llama(
            model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
            n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
            flash_attn=False, type_k=0, type_v=0, n_gpu_layers=0,
            vocab_only=False, verbose=False,
        )
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        assert not llama_cpp.llama_vocab_get_add_bos(vocab)
        toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if tokens is None:
            tokens = toks
        assert toks == tokens
        n_windows = len(tokens) // n_ctx
        assert len(tokens) >= 2 * n_ctx
        first = n_ctx // 2
        nll_sum = 0.0
        nll2_sum = 0.0
        count = 0
        running = []
        window_nll = []
        for k in range(n_windows):
            win = tokens[k * n_ctx:(k + 1) * n_ctx]
            llm.reset()
            llm._ctx.kv_cache_clear()
            llm.eval(win)
            logits = np.array(llm.scores[first:n_ctx - 1], dtype=np.float64)
            m = logits.max(axis=-1, keepdims=True)
            lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[:, 0]
            tgt = np.array(win[first + 1:n_ctx])
            nll = lse - logits[np.arange(len(tgt)), tgt]
            nll_sum += float(nll.sum())
            nll2_sum += float((nll * nll).sum())
            count += len(tgt)
            window_nll.append(float(nll.mean()))
            running.append(math.exp(nll_sum / count))
        mean_nll = nll_sum / count
        ppl = math.exp(mean_nll)
        var = nll2_sum / count - mean_nll * mean_nll
        unc = math.sqrt(var / (count - 1)) * ppl if var > 0 else None
        results.append({
            "context": n_ctx,
            "first": first,
            "n_windows": n_windows,
            "n_scored": count,
            "ppl": oc.r6(ppl),
            "ppl_uncertainty": oc.r6(unc) if unc is not None else None,
            "mean_nll": oc.r6(mean_nll),
            "running_ppl": [oc.r6(x) for x in running],
            "window_mean_nll": [oc.r6(x) for x in window_nll],
        })
        print(f"N={n_ctx}: {n_windows} windows, {count} scored, PPL = {ppl:.4f} +/- {unc:.5f}, "
              f"mean NLL {mean_nll:.6f}")
        del llm

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], path,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            llama_params={"n_ctx": "N", "n_batch": "N", "n_ubatch": "N", "n_threads": N_THREADS,
                          "logits_all": True, "flash_attn": False, "type_k": "f32",
                          "type_v": "f32", "n_gpu_layers": 0},
            method="llama-perplexity (tools/perplexity/perplexity.cpp perplexity()): windows of N, "
                   "fresh KV cache each, score logits at positions N/2..N-2 against the next token",
            tokenize="tokenize(text.encode('utf-8'), add_bos=True, special=False) on text.txt minus one "
                     "trailing newline (add_bos is a no-op: vocab add_bos=false)",
            seconds=round(time.time() - t0, 1),
        ),
        "n_tokens": len(tokens),
        "results": results,
        "tokens": tokens,
    }
    oc.write_json("llamacpp_perplexity.json", out)
    print(f"{time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
