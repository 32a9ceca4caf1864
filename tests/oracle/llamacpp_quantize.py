"""Oracle: llama.cpp's quantizer (llama_model_quantize) -> llamacpp_quantize.json

Runs llama.cpp's `llama_model_quantize` (what llama-quantize calls; no importance matrix,
allow_requantize = True, nthread = 2, everything else at llama_model_quantize_default_params)
and records, for every output: its sha256, its size in bytes, the type of every tensor (in the
order the file lists them) and how long llama.cpp took. Three sets of runs:

  * "real": the real model (SmolLM2-135M-Instruct Q4_1; rows of 576, so K-quant types fall back
    per llama.cpp's rules) to each of the 17 types in TYPES;
  * "requantize": some of those outputs quantized again to Q8_0, which widens every tensor
    with ggml's dequantizer of its type (Q4_0, Q5_0, Q5_1, Q8_0, F16, BF16, Q3_K, Q4_K, Q5_K,
    Q6_K) before quantizing; the input is llama.cpp's own output of the "real" run;
  * "tiny": a tiny random f32 Llama written by this script (rows of 256 and 512, so every
    K-quant is used as itself, Q2_K included; untied output), to each of the 17 types, and its
    Q2_K and Q3_K_S outputs back to F32 (the Q2_K/Q3_K dequantizers).

The tiny model is fully determined by TINY below (splitmix64 values times a power of two, so
exact in f32): tests/it/quantize.rs writes the same file, checks its sha256 against
"tiny.input_sha256", and compares `gen quantize` with every sha256 here.

Run:
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    /root/oracle-venv/bin/python tests/oracle/llamacpp_quantize.py [path/to/model.gguf]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root.
Outputs go to a temporary folder (about 2.5 GB at the peak, removed at the end).
Output: tests/oracle/llamacpp_quantize.json
"""

import argparse
import ctypes
import os
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

N_THREADS = 2

# llama-quantize's names and their llama_ftype ids (include/llama.h).
TYPES = [
    ("Q4_0", 2), ("Q4_1", 3), ("Q5_0", 8), ("Q5_1", 9), ("Q8_0", 7), ("Q2_K", 10),
    ("Q3_K_S", 11), ("Q3_K_M", 12), ("Q3_K_L", 13), ("Q4_K_S", 14), ("Q4_K_M", 15),
    ("Q5_K_S", 16), ("Q5_K_M", 17), ("Q6_K", 18), ("F16", 1), ("BF16", 32), ("F32", 0),
]
FTYPE = dict(TYPES)

# Outputs of the "real" run quantized again (to Q8_0), one per tensor type they hold.
REQUANTIZE = ["Q4_0", "Q5_0", "Q5_1", "F16", "BF16", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]
# Outputs of the "tiny" run widened back to F32.
TINY_REQUANTIZE = ["Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K"]

# The tiny model: hidden 256, ffn 512, 2 layers, 4 heads, 2 KV heads, vocab 320, untied.
TINY = dict(hidden=256, ffn=512, layers=2, heads=4, kv_heads=2, vocab=320, seed=7)

GGML_NAMES = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 10: "q2_K",
    11: "q3_K", 12: "q4_K", 13: "q5_K", 14: "q6_K", 30: "bf16",
}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B", 10: "Q", 11: "q", 12: "d"}


def tensor_types(path):
    """[[name, ggml type name], ...] in the order the GGUF header lists them."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def skip_value(t):
            if t in SCALAR:
                f.read(struct.calcsize(SCALAR[t]))
            elif t == 8:
                (n,) = rd("Q")
                f.read(n)
            elif t == 9:
                (it,) = rd("I")
                (n,) = rd("Q")
                for _ in range(n):
                    skip_value(it)
            else:
                raise ValueError(f"GGUF value type {t}")

        assert f.read(4) == b"GGUF"
        rd("I")
        n_tensors, n_kv = rd("QQ")
        for _ in range(n_kv):
            (n,) = rd("Q")
            f.read(n)
            (t,) = rd("I")
            skip_value(t)
        out = []
        for _ in range(n_tensors):
            (n,) = rd("Q")
            name = f.read(n).decode()
            (nd,) = rd("I")
            rd("Q" * nd)
            (ty,) = rd("I")
            rd("Q")
            out.append([name, GGML_NAMES.get(ty, str(ty))])
        return out


def quantize(llama_cpp, src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = N_THREADS
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    secs = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, ftype {ftype}) returned {rc}")
    return {
        "sha256": oc.sha256_file(dst),
        "size": os.path.getsize(dst),
        "seconds": round(secs, 2),
        "tensor_types": tensor_types(dst),
    }


# ---- the tiny model -------------------------------------------------------------------------

M64 = (1 << 64) - 1


class SplitMix:
    """splitmix64; each value maps to (k - 2^23) / 2^23 for its top 24 bits k: exact in f32."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        return ((z >> 40) - (1 << 23)) / float(1 << 23)


def tiny_tensors():
    """(name, ne, f32 values) in the order the tiny file stores them."""
    s = TINY
    h, f, hd = s["hidden"], s["ffn"], s["hidden"] // s["heads"]
    rng = SplitMix(s["seed"])

    def t(name, ne, scale):
        n = 1
        for d in ne:
            n *= d
        return (name, ne, [rng.next() * scale for _ in range(n)])

    out = [t("token_embd.weight", [h, s["vocab"]], 1.0)]
    for i in range(s["layers"]):
        p = f"blk.{i}."
        out += [
            t(p + "attn_norm.weight", [h], 1.0),
            t(p + "attn_q.weight", [h, h], 0.0625),
            t(p + "attn_k.weight", [h, s["kv_heads"] * hd], 0.0625),
            t(p + "attn_v.weight", [h, s["kv_heads"] * hd], 0.0625),
            t(p + "attn_output.weight", [h, h], 0.0625),
            t(p + "ffn_norm.weight", [h], 1.0),
            t(p + "ffn_gate.weight", [h, f], 0.0625),
            t(p + "ffn_up.weight", [h, f], 0.0625),
            t(p + "ffn_down.weight", [f, h], 0.03125),
        ]
    out += [t("output_norm.weight", [h], 1.0), t("output.weight", [h, s["vocab"]], 0.125)]
    # Edge cases for the scale searches: an all-zero super-block, and one with a lone outlier.
    v = out[2][2]
    v[0:256] = [0.0] * 256
    v[256:512] = [0.0] * 255 + [4.0]
    return out


def tiny_metadata():
    """(key, GGUF type, packed value) in file order."""
    s = TINY
    u32 = lambda k, v: (k, 4, struct.pack("<I", v))  # noqa: E731
    name = b"llama"
    return [
        ("general.architecture", 8, struct.pack("<Q", len(name)) + name),
        u32("llama.block_count", s["layers"]),
        u32("llama.context_length", 256),
        u32("llama.embedding_length", s["hidden"]),
        u32("llama.feed_forward_length", s["ffn"]),
        u32("llama.attention.head_count", s["heads"]),
        u32("llama.attention.head_count_kv", s["kv_heads"]),
        u32("llama.rope.dimension_count", s["hidden"] // s["heads"]),
        # 1e-5 as f32, by its bits, so that no decimal conversion is involved.
        ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<I", 0x3727C5AC)),
        u32("llama.vocab_size", s["vocab"]),
        u32("general.file_type", 0),
    ]


def write_tiny(path):
    """The tiny model as a GGUF v3 file laid out as ggml writes one (alignment 32)."""
    tensors = tiny_tensors()

    def gstr(b):
        return struct.pack("<Q", len(b)) + b

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(tiny_metadata()))
    for key, ty, val in tiny_metadata():
        head += gstr(key.encode()) + struct.pack("<I", ty) + val
    offset = 0
    for name, ne, values in tensors:
        head += gstr(name.encode()) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", 0, offset)
        offset += (len(values) * 4 + 31) // 32 * 32
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head)
        for _, _, values in tensors:
            data = struct.pack(f"<{len(values)}f", *values)
            f.write(data + b"\0" * (-len(data) % 32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import llama_cpp

    llama_cpp.llama_backend_init()
    work = tempfile.mkdtemp(prefix="llamacpp_quantize_")
    try:
        real = []
        for name, ftype in TYPES:
            out = quantize(llama_cpp, path, os.path.join(work, f"real-{name}.gguf"), ftype)
            print(f"real {name}: {out['size']} bytes, {out['seconds']} s", file=sys.stderr)
            real.append({"type": name, **out})
        requantize = []
        for name in REQUANTIZE:
            src = os.path.join(work, f"real-{name}.gguf")
            out = quantize(llama_cpp, src, os.path.join(work, f"re-{name}.gguf"), FTYPE["Q8_0"])
            print(f"requantize {name} -> Q8_0: {out['seconds']} s", file=sys.stderr)
            requantize.append({"from": name, "type": "Q8_0", **out})
            os.remove(os.path.join(work, f"re-{name}.gguf"))
        for name, _ in TYPES:
            os.remove(os.path.join(work, f"real-{name}.gguf"))

        tiny_path = os.path.join(work, "tiny-f32.gguf")
        write_tiny(tiny_path)
        tiny = []
        for name, ftype in TYPES:
            out = quantize(llama_cpp, tiny_path, os.path.join(work, f"tiny-{name}.gguf"), ftype)
            tiny.append({"type": name, **out})
        tiny_requantize = []
        for name in TINY_REQUANTIZE:
            src = os.path.join(work, f"tiny-{name}.gguf")
            out = quantize(llama_cpp, src, os.path.join(work, f"tiny-re-{name}.gguf"), FTYPE["F32"])
            tiny_requantize.append({"from": name, "type": "F32", **out})
        tiny_sha = oc.sha256_file(tiny_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    oc.write_json("llamacpp_quantize.json", {
        "generator": oc.generator(
            __file__, ["llama_cpp_python"], path,
            params={"nthread": N_THREADS, "allow_requantize": True, "imatrix": None},
            seconds=round(time.time() - t0, 1),
        ),
        "real": real,
        "requantize": requantize,
        "tiny": {"spec": TINY, "input_sha256": tiny_sha, "cases": tiny,
                 "requantize": tiny_requantize},
    })


if __name__ == "__main__":
    main()
