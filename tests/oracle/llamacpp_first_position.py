"""llama.cpp golden data for the quantized matmul path, and llama.cpp's own noise floor.

1. `first_position`: for 48 single-token inputs, the log-softmax of llama.cpp's logits at
   position 0 (top 10 ids and log-probs). At position 0 attention is the identity on V, so the
   result depends only on the quantized matrix products, RMSNorm and SiLU: a faithful
   reimplementation of ggml's arithmetic matches it to float-summation noise.
2. `noise_floor`: teacher forcing over the first 1,024 tokens of llamacpp_logprobs.json with
   llama.cpp itself, changing only the micro-batch size (n_ubatch 512 -> 64) and, separately,
   turning flash attention and the f16 KV cache on. The argmax agreement and mean |d log p|
   against the reference run show how far pure arithmetic-order changes move this model.

Run (from the repo root, llama-cpp-python 0.3.36 built with CMAKE_ARGS=-DGGML_NATIVE=ON):
    python tests/oracle/llamacpp_first_position.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json, os, sys, hashlib
import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def llm(**kw):
    base = dict(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512, logits_all=True, n_threads=2,
                flash_attn=False, type_k=0, type_v=0, n_gpu_layers=0, verbose=False)
    base.update(kw)
    return llama_cpp.Llama(**base)


ref = llm()
first = []
for tok in list(range(0, 48 * 1000, 1000)):
    ref.reset()
    ref.eval([tok])
    lp = log_softmax(np.array(ref.scores[0]))
    top = np.argsort(-lp, kind="stable")[:10]
    first.append({"token": tok, "top": [[int(i), round(float(lp[i]), 6)] for i in top]})

tokens = json.load(open(os.path.join(HERE, "llamacpp_logprobs.json")))["tokens"][:1024]


def teacher(l):
    l.reset()
    l.eval(tokens)
    lp = log_softmax(np.array(l.scores[: len(tokens)]))
    return lp.argmax(axis=1), np.array([lp[i, tokens[i + 1]] for i in range(len(tokens) - 1)])


ref_arg, ref_lp = teacher(ref)
floor = {}
for name, kw in [("n_ubatch_64", dict(n_ubatch=64)), ("flash_attn_f16_kv", dict(flash_attn=True, type_k=1, type_v=1))]:
    arg, lp = teacher(llm(**kw))
    n = len(tokens) - 1
    floor[name] = {"argmax_agreement": round(float((arg[:n] == ref_arg[:n]).mean()), 4),
                   "mean_abs_dlogp": round(float(np.abs(lp - ref_lp).mean()), 4)}
    print(name, floor[name])

sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
out = {"generator": {"script": "tests/oracle/llamacpp_first_position.py", "llama-cpp-python": llama_cpp.__version__,
                     "model_sha256": sha, "settings": "n_threads 2, flash_attn off, f32 KV cache, n_ubatch 512"},
       "first_position": first, "noise_floor": floor}
json.dump(out, open(os.path.join(HERE, "llamacpp_first_position.json"), "w"))
