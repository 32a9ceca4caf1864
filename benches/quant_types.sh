#!/usr/bin/env bash
# gen next to llama.cpp on every quantization type of SmolLM2-135M (benches/peer.py once per
# file: decode after a short and a 2,048-token prompt, prefill of 512 tokens, cold start, peak
# RSS). The files are the ones tests/oracle/llamacpp_quant_types.py makes in models/quant/ (or
# `gen quantize` makes: byte-identical). The peer is llama.cpp as a user runs it: built with
# GGML_NATIVE=ON, default settings (weight repacking on). Output: benches/results/quant_types.md.
#   GEN_BENCH_VENV=/path/to/venv benches/quant_types.sh [TYPE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${GEN_BENCH_VENV:-$HOME/.cache/gen-bench-venv}"
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q4_1 Q4_0 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K)
cargo build --release --quiet
mkdir -p models/quant
out=benches/results/quant_types.md
{
  echo "# gen vs llama.cpp per quantization type ($(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores)"
  echo
} > "$out"
for t in "${types[@]}"; do
  f="models/quant/SmolLM2-135M-Instruct.$t.gguf"
  [ "$t" = Q4_1 ] && f="models/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -f "$f" ] || target/release/gen quantize models/SmolLM2-135M-Instruct.Q4_1.gguf "$f" "$t"
  echo "## $t" >> "$out"
  "$venv/bin/python" benches/peer.py --model "$f" --growth '' --rounds "${ROUNDS:-2}" | tee -a "$out"
  echo >> "$out"
done
