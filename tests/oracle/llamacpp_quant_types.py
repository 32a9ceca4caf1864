"""Oracle: llama.cpp's logits for SmolLM2-135M in every common quantization type -> llamacpp_quant_types.json

For each TYPE below, the file models/quant/SmolLM2-135M-Instruct.TYPE.gguf is made from the Q4_1
file with llama.cpp's own quantizer (llama_model_quantize, allow_requantize, no importance
matrix; skipped when the file exists with the recorded checksum) and then evaluated twice on
the first N_PREFILL tokens of tests/oracle/text.txt (tokenized as llamacpp_logprobs.py does):

  prefill  the tokens as ONE sequence from an empty KV cache, fed in n_batch = 512 chunks with
           logits for every position (llama.cpp's batched matrix products: tinyBLAS for Q4_0,
           Q5_0, Q8_0, F16 and BF16, vec_dot for the rest);
  decode   the first N_DECODE tokens one llama_decode per token (the one-row products).

Both runs use an f32 KV cache, no flash attention, 2 threads, **weight repacking off** (model
param use_extra_bufts = False: llama.cpp's default on AVX2 repacks Q4_0 and Q4_K into
interleaved 8x8 layouts whose accumulation order differs from the plain kernels) and **the
tiled K-quant product off** (GGML_CPU_TILED_MM=0: ggml 0.3.36 computes Q2_K..Q6_K products of
8 or more rows with its own tiled kernel, whose sums differ from vec_dot's, which it still uses
for fewer rows). llama.cpp as a user runs it (both on) is also measured, for prefill only, in
a child process (the tiled switch is read once per process), and recorded as its distance from
the golden run (argmax agreement, mean |d log p|, mean NLL), not as golden data.

Per type: sha256 and size of the file, the tensor types it holds (counted), and for prefill and
decode: argmax[i] and logp_next[i] = log_softmax(logits at i)[token i+1] (6 decimals), and the
mean NLL. Log-softmax in float64 numpy from llama.cpp's float32 logits.

Run (the venv of llamacpp_logprobs.py):
    /root/oracle-venv/bin/python tests/oracle/llamacpp_quant_types.py [TYPE ...]
Output: tests/oracle/llamacpp_quant_types.json (types not named keep their old entries).

With --repack, the same runs with **weight repacking on** (llama.cpp's default; the tiled
K-quant product still off), for the files holding repacked types (Q4_0, Q4_K), into
llamacpp_quant_types_repack.json (no default_vs_golden: this is the default but for tiling):
    /root/oracle-venv/bin/python tests/oracle/llamacpp_quant_types.py --repack [TYPE ...]
"""

import argparse
import collections
import ctypes
import os
import sys
import time

import numpy as np

# Read by ggml once, at its first K-quant product: set before llama_cpp is imported.
if "--as-default" not in sys.argv:
    os.environ["GGML_CPU_TILED_MM"] = "0"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

TYPES = ["Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "F16", "BF16"]
# The files of TYPES holding Q4_0 or Q4_K matrices, the types llama.cpp repacks on AVX2.
REPACK_TYPES = ["Q4_0", "Q2_K", "Q4_K_M", "Q3_K_M"]
OUT_REPACK = "llamacpp_quant_types_repack.json"
N_PREFILL = 1024
N_DECODE = 128
N_BATCH = 512
N_THREADS = 2
OUT = "llamacpp_quant_types.json"


def log_softmax(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def quantized_path(t):
    return os.path.join(oc.REPO_ROOT, "models", "quant", f"SmolLM2-135M-Instruct.{t}.gguf")


def make_file(llama_cpp, src, t, want_sha):
    dst = quantized_path(t)
    if os.path.exists(dst) and want_sha and oc.sha256_file(dst) == want_sha:
        return dst, 0.0
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + t)
    params.allow_requantize = True
    params.nthread = N_THREADS
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize {t} failed: {rc}"
    return dst, time.time() - t0


def tensor_types(path):
    """Counts of tensor types in a GGUF file (header parse, stdlib only)."""
    import struct
    names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
             10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL", 30: "BF16"}
    with open(path, "rb") as f:
        data = f.read(8 << 20)
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(vt):
        nonlocal pos
        if vt == 8:
            string()
        elif vt == 9:
            (et, n) = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                value(et)
        else:
            pos += sizes[vt]

    for _ in range(n_kv):
        string()
        (vt,) = struct.unpack_from("<I", data, pos)
        pos += 4
        value(vt)
    counts = collections.Counter()
    for _ in range(n_tensors):
        string()
        (nd,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * nd
        (tt,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8
        counts[names.get(tt, str(tt))] += 1
    return dict(sorted(counts.items()))


def load(llama_cpp, Llama, path, repack):
    # The high-level Llama class has no flag for weight repacking: patch the defaults it reads.
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = repack
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        return Llama(model_path=path, n_ctx=N_PREFILL, n_batch=N_BATCH, n_ubatch=N_BATCH,
                     n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
                     flash_attn=False, type_k=0, type_v=0, n_gpu_layers=0, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = default


def prefill(llm, tokens):
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def decode(llm, tokens):
    llm.reset()
    llm._ctx.kv_cache_clear()
    rows = []
    for t in tokens:
        llm.eval([t])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return np.stack(rows)


def summary(logits, tokens):
    assert np.all(np.isfinite(logits))
    lsm = log_softmax(logits)
    tok = np.array(tokens)
    logp = lsm[np.arange(len(tokens) - 1), tok[1:]]
    return {"argmax": logits.argmax(axis=-1).tolist(), "logp_next": [oc.r6(x) for x in logp],
            "mean_nll": oc.r6(-logp.mean())}, lsm


def as_default(path):
    """The child process: llama.cpp's defaults (repacking and the tiled product on), prefill."""
    import json
    import llama_cpp
    from llama_cpp import Llama
    llm = load(llama_cpp, Llama, path, repack=True)
    tokens = llm.tokenize(oc.read_text().encode("utf-8"), add_bos=False, special=False)[:N_PREFILL]
    s, _ = summary(prefill(llm, tokens), tokens)
    print(json.dumps(s))


def main():
    if sys.argv[1:2] == ["--as-default"]:
        return as_default(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repack", action="store_true",
                    help="weight repacking on (tiling still off), into " + OUT_REPACK)
    ap.add_argument("types", nargs="*")
    args = ap.parse_args()
    repack = args.repack
    if not args.types:
        args.types = REPACK_TYPES if repack else TYPES
    out_name = OUT_REPACK if repack else OUT
    import llama_cpp
    from llama_cpp import Llama

    src = oc.resolve_gguf(None)
    out_path = os.path.join(oc.HERE, out_name)
    old = {}
    if os.path.exists(out_path):
        import json
        with open(out_path) as f:
            old = json.load(f).get("types", {})

    text = oc.read_text()
    tokens = None
    results = dict(old)
    for t in args.types:
        t0 = time.time()
        path, q_secs = make_file(llama_cpp, src, t, old.get(t, {}).get("sha256"))
        llm = load(llama_cpp, Llama, path, repack=repack)
        if tokens is None:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:N_PREFILL]
            assert len(tokens) == N_PREFILL
        pre, pre_lsm = summary(prefill(llm, tokens), tokens)
        dec, _ = summary(decode(llm, tokens[:N_DECODE]), tokens[:N_DECODE])
        del llm
        import json
        import subprocess
        entry = {
            "file": os.path.relpath(path, oc.REPO_ROOT),
            "sha256": oc.sha256_file(path),
            "size": os.path.getsize(path),
            "quantize_seconds": round(q_secs, 1),
            "tensor_types": tensor_types(path),
            "prefill": pre,
            "decode": dec,
        }
        if repack:
            results[t] = entry
            print(f"{t} repacked: {entry['tensor_types']} nll prefill {pre['mean_nll']} "
                  f"decode {dec['mean_nll']}; {time.time() - t0:.1f}s", flush=True)
            continue
        env = {k: v for k, v in os.environ.items() if k != "GGML_CPU_TILED_MM"}
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--as-default", path],
                               capture_output=True, text=True, check=True, env=env)
        rep_sum = json.loads(child.stdout.strip().splitlines()[-1])
        d = np.abs(np.array(rep_sum["logp_next"]) - np.array(pre["logp_next"]))
        results[t] = {
            **entry,
            "default_vs_golden": {
                "argmax_agreement": oc.r6(np.mean(np.array(rep_sum["argmax"]) == np.array(pre["argmax"]))),
                "mean_abs_dlogp": oc.r6(d.mean()),
                "mean_nll": rep_sum["mean_nll"],
            },
        }
        r = results[t]
        print(f"{t}: {r['tensor_types']} nll prefill {pre['mean_nll']} decode {dec['mean_nll']}; "
              f"llama.cpp's defaults: {r['default_vs_golden']}; {time.time() - t0:.1f}s", flush=True)

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], src,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            llama_params={"n_ctx": N_PREFILL, "n_batch": N_BATCH, "n_ubatch": N_BATCH,
                          "n_threads": N_THREADS, "logits_all": True, "flash_attn": False,
                          "type_k": "f32", "type_v": "f32", "use_extra_bufts": repack,
                          "GGML_CPU_TILED_MM": "0"},
            tokenize="tokenize(text.encode('utf-8'), add_bos=False, special=False) on text.txt minus one trailing newline",
        ),
        "n_prefill": N_PREFILL,
        "n_decode": N_DECODE,
        "tokens": tokens if tokens is not None else [],
        "types": results,
    }
    oc.write_json(out_name, out)


if __name__ == "__main__":
    main()
