#!/usr/bin/env bash
# gen next to llama.cpp on one random model per family at SmolLM2-135M's size (Q8_0; made by
# benches/families_models.py with llama.cpp's converter and quantizer): benches/peer.py per
# file, decode after a short and a 2,048-token prompt, prefill of 512 tokens, peak RSS. The
# llama family is the baseline the others' extra ops (bias, q/k norms, post-norms, GeGLU) are
# measured against. Output: benches/results/families.md.
#   GEN_BENCH_VENV=/path/to/venv-with-llama-cpp-python HF_VENV=/path/to/venv-with-transformers \
#     LLAMA_CPP_DIR=.../vendor/llama.cpp benches/families.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${GEN_BENCH_VENV:-$HOME/.cache/gen-bench-venv}"
"${HF_VENV:?set HF_VENV to a venv with torch and transformers}/bin/python" benches/families_models.py \
  "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to the sdist\'s vendor/llama.cpp}" "$venv/bin/python"
cargo build --release --quiet
out=benches/results/families.md
{
  echo "# gen vs llama.cpp per model family ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores)"
  echo
} > "$out"
for f in llama qwen2 qwen3 gemma3; do
  echo "## $f" >> "$out"
  "$venv/bin/python" benches/peer.py --model "models/bench/$f.Q8_0.gguf" --growth '' --rounds "${ROUNDS:-2}" | tee -a "$out"
  echo >> "$out"
done
