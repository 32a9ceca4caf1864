"""Oracle: llama.cpp log-probs with the text fed ONE TOKEN PER llama_decode -> llamacpp_decode_logprobs.json

The decode-step counterpart of llamacpp_logprobs.py: llama.cpp rounds attention differently
when a batch holds one token (ggml's vec_dot_f32 for both attention products) than when it
holds several (tinyBLAS for the weighted sum of values), so `gen`'s decode path is checked
against this file and its prefill path against llamacpp_logprobs.json.

Takes the first N_TOKENS (256) tokens of text.txt (tokenized as llamacpp_logprobs.py does),
evaluates them one llama_decode call per token from an empty KV cache (n_ctx 512), and records
per position i: argmax[i] and logp_next[i] = log_softmax(logits at i)[tokens[i+1]] (float64
numpy from llama.cpp's float32 logits), plus top5_ids / top5_logp.

llama.cpp settings: f32 KV cache, flash attention disabled, CPU only, n_threads = 2.
With --cache f16: llama.cpp's default f16 KV cache instead, written to
llamacpp_decode_logprobs_f16cache.json.

Run (from the repo root, oracle venv as in docs/TESTING.md):
    /root/oracle-venv/bin/python tests/oracle/llamacpp_decode_logprobs.py [path/to/model.gguf]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

N_CTX = 512
N_TOKENS = 256
N_THREADS = 2


def log_softmax(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    ap.add_argument("--cache", choices=["f32", "f16"], default="f32",
                    help="KV cache type; f16 (llama.cpp's default) writes %s_f16cache.json" % 'llamacpp_decode_logprobs')
    args = ap.parse_args()
    cache_type = {"f32": 0, "f16": 1}[args.cache]  # GGML_TYPE_F32 / GGML_TYPE_F16
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(
        model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
        n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
        flash_attn=False, type_k=cache_type, type_v=cache_type, n_gpu_layers=0, verbose=False,
    )
    text = oc.read_text()
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:N_TOKENS]
    n = len(tokens)
    assert n == N_TOKENS

    llm.reset()
    llm._ctx.kv_cache_clear()
    rows = []
    for t in tokens:
        llm.eval([t])  # one llama_decode per token
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    logits = np.stack(rows)
    assert np.all(np.isfinite(logits))
    lsm = log_softmax(logits)
    tok = np.array(tokens)
    argmax = logits.argmax(axis=-1)
    logp_next = lsm[np.arange(n - 1), tok[1:]]
    top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
    top5_logp = np.take_along_axis(lsm, top5, axis=-1)

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], path,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            llama_params={"n_ctx": N_CTX, "tokens_per_decode": 1, "n_threads": N_THREADS,
                          "flash_attn": False, "type_k": args.cache, "type_v": args.cache, "n_gpu_layers": 0},
            tokenize="tokenize(text.encode('utf-8'), add_bos=False, special=False) on text.txt minus one trailing newline",
            seconds=round(time.time() - t0, 1),
        ),
        "n_tokens": n,
        "tokens": tokens,
        "argmax": argmax.tolist(),
        "logp_next": [oc.r6(x) for x in logp_next],
        "top5_ids": top5.tolist(),
        "top5_logp": [[oc.r6(x) for x in row] for row in top5_logp],
    }
    oc.write_json("llamacpp_decode_logprobs.json" if args.cache == "f32" else "llamacpp_decode_logprobs_f16cache.json", out)
    print(f"evaluated {n} tokens one at a time; {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
