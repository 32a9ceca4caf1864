"""Oracle: llama.cpp teacher-forced log-probs on tests/oracle/text.txt -> llamacpp_logprobs.json

Tokenizes text.txt (one trailing newline stripped, as llama-perplexity -f does) with
llama.cpp (tokenize(bytes, add_bos=False, special=False)), keeps the first N_TOKENS
(2048) tokens, evaluates them as ONE sequence from an empty KV cache (positions
0..N_TOKENS-1; n_ctx = 2048; fed to llama_decode in n_batch = 512 chunks, n_ubatch = 512)
with logits for every position, and records per position i:
  tokens[i]     token id at i
  argmax[i]     argmax of the logits at i (the prediction for position i+1)
  top2_gap[i]   logit[top1] - logit[top2] at i
  logp_next[i]  log_softmax(logits at i)[tokens[i+1]]          (length N_TOKENS-1)
  top5_ids[i], top5_logp[i]  the 5 most likely next tokens and their log-probs
and the mean NLL over all N_TOKENS-1 predictions (plus prefix means for the first
128/256/512/1024 predictions, handy for shorter tests: logits at i depend only on
tokens 0..i, so any prefix of this run is a valid shorter run).

llama.cpp settings: f32 KV cache (type_k = type_v = 0 = GGML_TYPE_F32), flash
attention disabled, CPU only, n_threads = 2. Log-softmax is done in float64 numpy
from llama.cpp's float32 logits. With --cache f16: llama.cpp's default f16 KV cache
(type_k = type_v = 1) instead, written to llamacpp_logprobs_f16cache.json.

Run:
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    /root/oracle-venv/bin/python tests/oracle/llamacpp_logprobs.py [path/to/model.gguf]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root.
Output: tests/oracle/llamacpp_logprobs.json
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

N_CTX = 2048
N_TOKENS = 2048
N_BATCH = 512
N_UBATCH = 512
N_THREADS = 2


def log_softmax(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return x - lse


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    ap.add_argument("--cache", choices=["f32", "f16"], default="f32",
                    help="KV cache type; f16 (llama.cpp's default) writes %s_f16cache.json" % 'llamacpp_logprobs')
    args = ap.parse_args()
    cache_type = {"f32": 0, "f16": 1}[args.cache]  # GGML_TYPE_F32 / GGML_TYPE_F16
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(
        model_path=path, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_UBATCH,
        n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
        flash_attn=False, type_k=cache_type, type_v=cache_type, n_gpu_layers=0,
        vocab_only=False, verbose=False,
    )
    text = oc.read_text()
    all_tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    tokens = all_tokens[:N_TOKENS]
    n = len(tokens)
    assert n == N_TOKENS, f"text.txt has only {len(all_tokens)} tokens"

    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(tokens)
    logits = np.array(llm.scores[:n], dtype=np.float32)  # (n, n_vocab)
    assert np.all(np.isfinite(logits))

    lsm = log_softmax(logits)
    tok = np.array(tokens)
    argmax = logits.argmax(axis=-1)
    srt = np.sort(logits, axis=-1)
    top2_gap = srt[:, -1].astype(np.float64) - srt[:, -2].astype(np.float64)
    logp_next = lsm[np.arange(n - 1), tok[1:]]
    top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
    top5_logp = np.take_along_axis(lsm, top5, axis=-1)
    nll = -logp_next
    mean_nll = float(nll.mean())
    prefix = {str(k): oc.r6(nll[:k].mean()) for k in (128, 256, 512, 1024) if k <= n - 1}
    acc = float((argmax[:-1] == tok[1:]).mean())

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], path,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            llama_params={"n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_UBATCH,
                          "n_threads": N_THREADS, "logits_all": True, "flash_attn": False,
                          "type_k": args.cache, "type_v": args.cache, "n_gpu_layers": 0},
            tokenize="tokenize(text.encode('utf-8'), add_bos=False, special=False) on text.txt minus one trailing newline",
            seconds=round(time.time() - t0, 1),
        ),
        "n_ctx": N_CTX,
        "n_text_tokens": len(all_tokens),
        "n_tokens": n,
        "mean_nll": oc.r6(mean_nll),
        "ppl": oc.r6(np.exp(mean_nll)),
        "mean_nll_prefix": prefix,
        "argmax_accuracy": oc.r6(acc),
        "tokens": tokens,
        "argmax": argmax.tolist(),
        "logp_next": [oc.r6(x) for x in logp_next],
        "top2_gap": [oc.r6(x) for x in top2_gap],
        "top5_ids": top5.tolist(),
        "top5_logp": [[oc.r6(x) for x in row] for row in top5_logp],
    }
    oc.write_json("llamacpp_logprobs.json" if args.cache == "f32" else "llamacpp_logprobs_f16cache.json", out)
    print(f"text tokens {len(all_tokens)}, evaluated {n}; mean NLL {mean_nll:.6f} "
          f"(ppl {np.exp(mean_nll):.4f}); prefix means {prefix}; argmax acc {acc:.4f}; "
          f"min gap {top2_gap.min():.6f}; {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
