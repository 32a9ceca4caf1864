"""Oracle: llama.cpp's convert_hf_to_gguf.py (and llama_model_quantize after it) -> hf_to_gguf.json

Golden data for `gen convert FOLDER OUT.gguf` (must equal llama.cpp's convert_hf_to_gguf.py byte
for byte) and `gen quantize FOLDER OUT TYPE` (must equal convert_hf_to_gguf.py --outtype f32
followed by llama.cpp's `llama_model_quantize`, as tests/oracle/llamacpp_quantize.py runs it).

Every input is a GGUF made into a Hugging Face folder by the project's own `gen convert IN.gguf
FOLDER` (the folder's name matters: the converter derives general.name, general.basename,
general.size_label and general.finetune from it):

  * "real": models/SmolLM2-135M-Instruct.Q4_1.gguf -> folder `SmolLM2-135M-Instruct` (f32);
  * "real_bf16": the same GGUF with `--dtype bf16` -> folder `SmolLM2-135M-Instruct-bf16`;
  * "tiny": llamacpp_quantize.write_tiny's GGUF -> folder `tiny-llama-v0.1`. That GGUF carries
    no tokenizer, so `gen convert` refuses it (and convert_hf_to_gguf.py would need a tokenizer
    anyway); its record holds the error;
  * "tiny_vocab": the tiny model of llamacpp_quantize.TINY with vocab = 49152 (the real
    model's), written by llamacpp_quantize.write_tiny, then every `tokenizer.*` key/value of the
    real GGUF appended, byte for byte and in the real file's order, after write_tiny's metadata
    (tensor infos, alignment and data as write_tiny lays them out) -> folder `tiny-llama-v0.1`.
    Rows of 256 and 512, untied output: every K-quant is used as itself.

For every input: the sha256 and size of each file of the folder; for each outtype in OUTTYPES
the converter's output's sha256, size, metadata keys in file order (GGUFReader's, without the
GGUF.* pseudo-fields), the non-array metadata values, the tensor types (in file order) and the
converter's WARNING lines, or the error if it failed. For "real", "tiny" and "tiny_vocab" the
f32 conversion is then quantized to each of QUANTIZE (plus Q2_K for the tiny models): sha256,
size and tensor types of each output. Temporary paths are cut out of recorded errors.

Run (two virtualenvs: this script runs under the one with llama-cpp-python, the converter as a
subprocess under the one with torch/transformers):
    /root/oracle-venv/bin/python tests/oracle/hf_to_gguf.py [path/to/model.gguf] \\
        [--gen target/release/gen] [--hf-python /root/hf-venv/bin/python] \\
        [--converter .../vendor/llama.cpp/convert_hf_to_gguf.py] [--tmp-root /root/hfconv]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root; the
gen binary to target/release/gen relative to the repo root. The converter runs with
PYTHONPATH=<its folder>/gguf-py (llama.cpp's own gguf-py). Big files go to a temporary folder
under --tmp-root (about 2 GB at the peak, removed at the end).
Output: tests/oracle/hf_to_gguf.json
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_quantize as lq  # noqa: E402
import oracle_common as oc  # noqa: E402

OUTTYPES = ["f32", "f16", "bf16", "q8_0"]
QUANTIZE = ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "F16"]
TINY_QUANTIZE = QUANTIZE + ["Q2_K"]
DEFAULT_CONVERTER = "/root/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py"
DEFAULT_HF_PYTHON = "/root/hf-venv/bin/python"
DEFAULT_GEN = os.path.join("target", "release", "gen")
HF_PACKAGES = ["torch", "transformers", "safetensors", "tokenizers", "sentencepiece", "numpy",
               "gguf"]
VERSIONS_PY = """
import json, gguf
from importlib import metadata
out = {}
for n in %r:
    try:
        out[n] = metadata.version(n)
    except metadata.PackageNotFoundError:
        out[n] = None
out["gguf_imported_from"] = gguf.__file__
print(json.dumps(out))
"""


def converter_env(converter):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(os.path.dirname(converter), "gguf-py")
    return env


def hf_versions(hf_python, converter):
    out = subprocess.run([hf_python, "-c", VERSIONS_PY % (HF_PACKAGES,)], capture_output=True,
                         text=True, check=True, env=converter_env(converter))
    return json.loads(out.stdout)


def tree_sha256(root):
    """sha256 over "relative/path sha256\\n" of every .py file under root, sorted by path."""
    lines = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".py"):
                full = os.path.join(d, n)
                lines.append(f"{os.path.relpath(full, root)} {oc.sha256_file(full)}\n")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def run_gen_convert(gen, gguf, folder, dtype):
    cmd = [gen, "convert", gguf, folder] + (["--dtype", dtype] if dtype != "f32" else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {p.returncode}: {p.stderr.strip()}")


def folder_files(folder):
    return {n: {"sha256": oc.sha256_file(os.path.join(folder, n)),
                "size": os.path.getsize(os.path.join(folder, n))}
            for n in sorted(os.listdir(folder))}


def metadata_of(path):
    """(keys in file order, {key: value} for the non-array ones), GGUF.* pseudo-fields left out."""
    import gguf

    reader = gguf.GGUFReader(path)
    keys, scalars = [], {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        keys.append(key)
        t = field.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            continue
        if t == gguf.GGUFValueType.STRING:
            scalars[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        else:
            v = field.parts[field.data[0]][0]
            scalars[key] = bool(v) if t == gguf.GGUFValueType.BOOL else v.item()
    return keys, scalars


def convert_hf(args, folder, outtype, out):
    cmd = [args.hf_python, args.converter, folder, "--outtype", outtype, "--outfile", out]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=converter_env(args.converter))
    secs = time.time() - t0
    lines = (p.stdout + p.stderr).splitlines()
    warnings = [ln for ln in lines if ln.startswith("WARNING")]
    if p.returncode != 0:
        tail = "\n".join(ln for ln in lines if not ln.startswith("INFO"))[-4000:]
        return {"error": f"exit {p.returncode}: {tail}", "warnings": warnings}
    keys, scalars = metadata_of(out)
    rec = {
        "sha256": oc.sha256_file(out),
        "size": os.path.getsize(out),
        "seconds": round(secs, 2),
        "keys": keys,
        "scalars": scalars,
        "tensors": lq.tensor_types(out),
        "warnings": warnings,
    }
    return rec


def kv_bytes(path, prefix):
    """The raw bytes of every key/value of `path` whose key starts with `prefix`, in file order."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = []
    for key, field in reader.fields.items():
        if key.startswith(prefix):
            out.append(b"".join(p.tobytes() for p in field.parts))
    return out


def write_tiny_vocab(path, real_gguf):
    """write_tiny with vocab = 49152, then the real GGUF's tokenizer.* key/values appended."""
    kvs = kv_bytes(real_gguf, "tokenizer.")
    saved = lq.TINY
    lq.TINY = dict(saved, vocab=49152)
    try:
        spec = lq.TINY
        base = path + ".base"
        lq.write_tiny(base)
        n_kv = len(lq.tiny_metadata())
    finally:
        lq.TINY = saved
    with open(base, "rb") as f:
        data = f.read()
    os.remove(base)
    magic, version, n_tensors, n_kv_file = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"GGUF" and n_kv_file == n_kv
    # End of write_tiny's metadata = start of its tensor infos: the first tensor name.
    first = b"token_embd.weight"
    infos_at = data.index(struct.pack("<Q", len(first)) + first, 24)
    # Tensor infos end where write_tiny's alignment padding begins: walk them.
    pos = infos_at
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        (nd,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * nd + 4 + 8
    data_at = (pos + 31) // 32 * 32
    head = struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + len(kvs))
    head += data[24:infos_at] + b"".join(kvs) + data[infos_at:pos]
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head)
        f.write(data[data_at:])
    return spec


def do_input(args, work, llama_cpp, key, gguf, folder_name, dtype, quantize_names):
    rec = {"folder": folder_name, "gguf_sha256": oc.sha256_file(gguf), "dtype": dtype}
    folder = os.path.join(work, key, folder_name)
    os.makedirs(os.path.dirname(folder))
    try:
        run_gen_convert(args.gen, gguf, folder, dtype)
    except RuntimeError as e:
        print(f"{key}: {e}", file=sys.stderr)
        rec["error"] = str(e).replace(work + os.sep, "")  # no temporary paths in the JSON
        return rec
    rec["files"] = folder_files(folder)
    rec["convert"] = {}
    f32_out = None
    for outtype in OUTTYPES:
        out = os.path.join(work, key, f"{key}-{outtype}.gguf")
        r = convert_hf(args, folder, outtype, out)
        rec["convert"][outtype] = r
        print(f"{key} {outtype}: {r.get('size', r.get('error'))} "
              f"({r.get('seconds')} s, {len(r['warnings'])} warnings)", file=sys.stderr)
        if outtype == "f32" and "error" not in r:
            f32_out = out
        elif os.path.exists(out):
            os.remove(out)
    if quantize_names:
        rec["quantize"] = {}
        for name in quantize_names:
            if f32_out is None:
                rec["quantize"][name] = {"error": "the f32 conversion failed"}
                continue
            dst = os.path.join(work, key, f"{key}-q-{name}.gguf")
            q = lq.quantize(llama_cpp, f32_out, dst, lq.FTYPE[name])
            rec["quantize"][name] = {"sha256": q["sha256"], "size": q["size"],
                                     "seconds": q["seconds"], "tensors": q["tensor_types"]}
            print(f"{key} quantize {name}: {q['size']} bytes", file=sys.stderr)
            os.remove(dst)
    if f32_out is not None:
        os.remove(f32_out)
    shutil.rmtree(os.path.dirname(folder))
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    ap.add_argument("--gen", default=os.path.join(oc.REPO_ROOT, DEFAULT_GEN))
    ap.add_argument("--hf-python", default=DEFAULT_HF_PYTHON)
    ap.add_argument("--converter", default=DEFAULT_CONVERTER)
    ap.add_argument("--tmp-root", default="/root/hfconv")
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    args.gen = os.path.abspath(args.gen)
    t0 = time.time()

    import llama_cpp

    llama_cpp.llama_backend_init()
    versions = hf_versions(args.hf_python, args.converter)
    os.makedirs(args.tmp_root, exist_ok=True)
    work = tempfile.mkdtemp(prefix="hf_to_gguf_", dir=args.tmp_root)
    inputs = {}
    try:
        inputs["real"] = do_input(args, work, llama_cpp, "real", path, "SmolLM2-135M-Instruct",
                                  "f32", QUANTIZE)
        inputs["real_bf16"] = do_input(args, work, llama_cpp, "real_bf16", path,
                                       "SmolLM2-135M-Instruct-bf16", "bf16", None)
        tiny = os.path.join(work, "tiny-f32.gguf")
        lq.write_tiny(tiny)
        inputs["tiny"] = do_input(args, work, llama_cpp, "tiny", tiny, "tiny-llama-v0.1", "f32",
                                  TINY_QUANTIZE)
        inputs["tiny"]["spec"] = lq.TINY
        tiny_vocab = os.path.join(work, "tiny-vocab-f32.gguf")
        spec = write_tiny_vocab(tiny_vocab, path)
        inputs["tiny_vocab"] = do_input(args, work, llama_cpp, "tiny_vocab", tiny_vocab,
                                        "tiny-llama-v0.1", "f32", TINY_QUANTIZE)
        inputs["tiny_vocab"]["spec"] = spec
        inputs["tiny_vocab"]["gguf_size"] = os.path.getsize(tiny_vocab)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    oc.write_json("hf_to_gguf.json", {
        "generator": oc.generator(
            __file__, ["llama_cpp_python", "gguf", "numpy"], path,
            converter=args.converter,
            converter_sha256=oc.sha256_file(args.converter),
            # The converter's model classes live in conversion/ beside it, its writer in gguf-py/.
            conversion_tree_sha256=tree_sha256(os.path.join(os.path.dirname(args.converter),
                                                            "conversion")),
            gguf_py_tree_sha256=tree_sha256(os.path.join(os.path.dirname(args.converter),
                                                         "gguf-py", "gguf")),
            converter_packages=versions,
            outtypes=OUTTYPES,
            quantize_params={"nthread": lq.N_THREADS, "allow_requantize": True,
                             "imatrix": None},
            seconds=round(time.time() - t0, 1),
        ),
        "inputs": inputs,
    })


if __name__ == "__main__":
    main()
