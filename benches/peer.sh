#!/usr/bin/env bash
# Builds gen, installs the peer (llama-cpp-python 0.3.36, compiled with native CPU flags, ~10 min
# the first time) in a throwaway venv outside the repo, and runs benches/peer.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${GEN_BENCH_VENV:-$HOME/.cache/gen-bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet llama-cpp-python==0.3.36
fi
./models/fetch.sh
cargo build --release --quiet
"$venv/bin/python" benches/peer.py "$@"
