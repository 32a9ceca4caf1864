"""Oracle: ggml's own K-quant kernels on fixed inputs -> kquant_dots.json

Calls llama.cpp's CPU backend directly through ctypes (no model): for each K-quant type
(Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and a few activation rows,
  - the activations quantized to Q8_K by the CPU type traits' `from_float`
    (ggml_get_type_traits_cpu(GGML_TYPE_Q8_K)->from_float, i.e. quantize_row_q8_K),
  - the product of a weight row with them by `vec_dot`
    (ggml_get_type_traits_cpu(type)->vec_dot, i.e. ggml_vec_dot_q*_K_q8_K, nrc = 1),
  - one dequantized row per type by the base traits' `to_float` (dequantize_row_q*_K).
Weights per (type, activation row): one row of values quantized by ggml itself
(ggml_quantize_chunk, no importance matrix), and RANDOM_ROWS rows of random block bytes with
sane f16 scales, which reach every scale, min and high-bit pattern the formats allow (Q6_K
scales of -128, Q3_K scales of -32, all 6-bit Q4_K/Q5_K scales), where quantized values
rarely go. Many rows, because one fused multiply-add more or less in a kernel changes the
last bit of only some products.

Inputs are generated here, deterministically: activations from the multiplicative hash that
src/kernels/mod.rs test_values uses, with outliers (every 61st value times 40, every 97th
times -90) and, in the 1024-wide row, one all-zero block; the random blocks from SplitMix64
(random_blocks, which the Rust test repeats, so only their seeds are stored). Everything else
is stored in the JSON with the results, so the Rust test (src/kernels/ggml/kquant/tests.rs,
oracle_ggml_results_bitwise) needs no Python.

Library: the llama.cpp that llama-cpp-python 0.3.36 ships, built natively:
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36
    /root/oracle-venv/bin/python tests/oracle/kquant_dots.py [--lib DIR]
DIR (the folder with libggml-base.so and libggml-cpu.so) defaults to the installed package's
llama_cpp/lib. With GGML_NATIVE on an x86-64 CPU with AVX2, ggml's K-quant products are its
`#if defined __AVX2__` kernels (also on AVX-512 CPUs: these kernels have no AVX-512 branch).

Output: tests/oracle/kquant_dots.json
  {generator, library, cpu_flags,
   activations: [{n, x (f32 LE hex), q8k (ggml block_q8_K bytes hex)}],
   dots: [{type, act (index), w (blocks hex), dot (f32 bits hex)}]      (ggml-quantized rows)
   random_dots: [{type, act, seed, dot}]                                (random_blocks rows)
   dequantized: [{type, w (one block hex) | seed (random_blocks, 1 block), y (256 f32 LE hex)}]}
"""

import argparse
import ctypes
import importlib.util
import json
import os
import struct

TYPES = {"q2_K": 10, "q3_K": 11, "q4_K": 12, "q5_K": 13, "q6_K": 14}
Q8_K = 15
QK_K = 256
BLOCK_BYTES = {"q2_K": 84, "q3_K": 110, "q4_K": 144, "q5_K": 176, "q6_K": 210}
# Byte offsets of the f16 super-block scales (d, and dmin where the type has mins).
F16_AT = {"q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208]}
WIDTHS = [256, 512, 1024]
RANDOM_ROWS = 20
MASK64 = (1 << 64) - 1


def splitmix64(state):
    """One step of SplitMix64: (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def random_blocks(seed, nb, bb, f16_at):
    """nb blocks of bb random bytes (SplitMix64 from `seed`, 8 little-endian bytes per draw),
    then, block by block, each f16 scale at `f16_at` set to 0x1800 + draw % 0x1000: a positive
    normal f16 in [2^-9, 2^-5), as a quantizer would write. The Rust test repeats this."""
    state, out = seed, bytearray()
    while len(out) < nb * bb:
        state, z = splitmix64(state)
        out += z.to_bytes(8, "little")
    del out[nb * bb:]
    for b in range(nb):
        for off in f16_at:
            state, z = splitmix64(state)
            out[b * bb + off:b * bb + off + 2] = (0x1800 + z % 0x1000).to_bytes(2, "little")
    return bytes(out)


class TraitsCpu(ctypes.Structure):
    _fields_ = [
        ("from_float", ctypes.c_void_p),
        ("vec_dot", ctypes.c_void_p),
        ("vec_dot_type", ctypes.c_int),
        ("nrows", ctypes.c_int64),
    ]


class Traits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(
    None,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_float),
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
)


def default_lib_dir():
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llama_cpp is not importable: pass --lib DIR")
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def test_values(n, seed):
    """src/kernels/mod.rs test_values: exact in f32 (24-bit numerators over 2^23)."""
    out = []
    for i in range(n):
        h = (((i * 2654435761) & 0xFFFFFFFF) + seed) & 0xFFFFFFFF
        out.append(f32((h >> 8) / 8388608.0 - 1.0))
    return out


def values(n, seed):
    v = test_values(n, seed)
    for i in range(n):
        if i % 61 == 7:
            v[i] = f32(v[i] * 40.0)
        if i % 97 == 11:
            v[i] = f32(v[i] * -90.0)
    return v


def floats(v):
    return (ctypes.c_float * len(v))(*v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=None, help="folder with libggml-base.so, libggml-cpu.so")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "kquant_dots.json"))
    args = ap.parse_args()
    lib_dir = args.lib or default_lib_dir()
    base = ctypes.CDLL(os.path.join(lib_dir, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(os.path.join(lib_dir, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init.restype = None
    cpu.ggml_cpu_init()
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TraitsCpu)
    cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    base.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    base.ggml_get_type_traits.argtypes = [ctypes.c_int]
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ]

    q8k_from_float = FROM_FLOAT(cpu.ggml_get_type_traits_cpu(Q8_K).contents.from_float)
    activations = []
    random_dots = []
    for k, n in enumerate(WIDTHS):
        x = values(n, 100 + k)
        if n == 1024:
            x[512:768] = [0.0] * QK_K  # an all-zero block: d = 0
        buf = (ctypes.c_uint8 * (n // QK_K * 292))()
        q8k_from_float(floats(x), buf, n)
        activations.append({"n": n, "x": struct.pack(f"<{n}f", *x).hex(), "q8k": bytes(buf).hex()})

    dots = []
    dequantized = []
    for name, t in TYPES.items():
        traits = cpu.ggml_get_type_traits_cpu(t).contents
        assert traits.vec_dot_type == Q8_K, (name, traits.vec_dot_type)
        vec_dot = VEC_DOT(traits.vec_dot)
        to_float = TO_FLOAT(base.ggml_get_type_traits(t).contents.to_float)
        bb = BLOCK_BYTES[name]
        assert base.ggml_get_type_traits(t).contents.type_size == bb, name

        def product(wb, k):
            n = WIDTHS[k]
            y = bytes.fromhex(activations[k]["q8k"])
            s = ctypes.c_float()
            wbuf = (ctypes.c_uint8 * len(wb)).from_buffer_copy(wb)
            ybuf = (ctypes.c_uint8 * len(y)).from_buffer_copy(y)
            vec_dot(n, ctypes.byref(s), 0, wbuf, 0, ybuf, 0, 1)
            return f"{struct.unpack('<I', struct.pack('<f', s.value))[0]:08x}"

        def dequantize(wb):
            out = (ctypes.c_float * QK_K)()
            to_float((ctypes.c_uint8 * len(wb)).from_buffer_copy(wb), out, QK_K)
            return bytes(out).hex()

        for k, n in enumerate(WIDTHS):
            nb = n // QK_K
            w = (ctypes.c_uint8 * (nb * bb))()
            size = base.ggml_quantize_chunk(t, floats(values(n, 7 * t + k)), w, 0, 1, n, None)
            assert size == nb * bb, (name, size)
            dots.append({"type": name, "act": k, "w": bytes(w).hex(), "dot": product(bytes(w), k)})
            if k == 0:
                dequantized.append({"type": name, "w": bytes(w).hex(), "y": dequantize(bytes(w))})
            for r in range(RANDOM_ROWS):
                seed = 1000 * t + 100 * k + r
                wb = random_blocks(seed, nb, bb, F16_AT[name])
                random_dots.append({"type": name, "act": k, "seed": seed, "dot": product(wb, k)})
                if k == 0 and r == 0:
                    dequantized.append({"type": name, "seed": seed, "y": dequantize(wb)})

    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    doc = {
        "generator": "tests/oracle/kquant_dots.py",
        "library": "llama.cpp as vendored in llama-cpp-python 0.3.36, GGML_NATIVE=ON",
        "cpu_flags": sorted(f for f in flags if f in {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni"}),
        "activations": activations,
        "dots": dots,
        "random_dots": random_dots,
        "dequantized": dequantized,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(dots) + len(random_dots)} products, "
          f"{len(dequantized)} dequantized blocks")


if __name__ == "__main__":
    main()
