#!/usr/bin/env bash
# Builds gen, installs the peer (llama-cpp-python 0.3.36, compiled with native CPU flags, ~10 min
# the first time) in a throwaway venv outside the repo, and runs benches/peer.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${GEN_BENCH_VENV:-$HOME/.cache/gen-bench-venv}"
# On CPUs with AMX (Xeon 4th gen and later), llama.cpp 0.3.36's AMX matrix kernels crash on
# any batch of two or more tokens (seen here: SIGSEGV in ggml_backend_amx_mul_mat, in a VM), so
# the peer is built with every native feature except AMX; it then uses AVX-512 and VNNI.
noamx=""
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
usable() {
  "$venv/bin/python" -c "import llama_cpp, sys
info = llama_cpp.llama_print_system_info().decode()
sys.exit(1 if '$noamx' and 'AMX_INT8 = 1' in info else 0)" 2>/dev/null
}
if [ ! -x "$venv/bin/python" ] || ! usable; then
  python3 -m venv "$venv"
  CFLAGS="$noamx" CXXFLAGS="$noamx" CMAKE_ARGS="-DGGML_NATIVE=ON" \
    "$venv/bin/pip" install --quiet --force-reinstall --no-cache-dir llama-cpp-python==0.3.36
fi
./models/fetch.sh
cargo build --release --quiet
"$venv/bin/python" benches/peer.py "$@"
