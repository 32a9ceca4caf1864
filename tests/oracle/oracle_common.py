"""Shared helpers for the oracle scripts in tests/oracle/ (not an oracle itself).

Nothing here imports llama_cpp or torch, so every oracle script can use it from
either virtualenv.
"""

import hashlib
import json
import math
import os
import platform
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_GGUF = os.path.join("models", "SmolLM2-135M-Instruct.Q4_1.gguf")
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The 8 prompts used for greedy decoding (llamacpp_greedy.py, hf_f32.py).
# Their llama.cpp token ids are recorded by llamacpp_tokenize.py.
GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox",
    "In 1969, the first",
    "Water boils at",
    "List three colors:",
]
GREEDY_NEW_TOKENS = 32


def resolve_gguf(path):
    """Resolve a GGUF path: absolute, relative to cwd, or relative to the repo root."""
    if path is None:
        path = DEFAULT_GGUF
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    return os.path.join(REPO_ROOT, path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pkg_versions(names):
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def generator(script, packages, gguf_path, **extra):
    sha = sha256_file(gguf_path)
    if sha != EXPECTED_SHA256:
        print(f"WARNING: model sha256 {sha} != expected {EXPECTED_SHA256}", file=sys.stderr)
    g = {
        "script": "tests/oracle/" + os.path.basename(script),
        "packages": pkg_versions(packages),
        "model_file": os.path.basename(gguf_path),
        "model_sha256": sha,
        "machine": platform.machine(),
    }
    g.update(extra)
    return g


def r6(x):
    """Round a float to 6 decimals (json-safe; inf/nan become strings)."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return round(x, 6)


def read_text():
    """tests/oracle/text.txt with one trailing newline removed (as llama-perplexity -f does)."""
    with open(os.path.join(HERE, "text.txt"), "r", encoding="utf-8") as f:
        text = f.read()
    if text.endswith("\n"):
        text = text[:-1]
    return text


def write_json(name, obj):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return path


def load_json(name):
    with open(os.path.join(HERE, name), "r", encoding="utf-8") as f:
        return json.load(f)
