#!/usr/bin/env bash
# Short fuzz runs of every target: libFuzzer with AddressSanitizer through cargo-fuzz, on the
# stable toolchain (RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags). Installs cargo-fuzz
# when missing. A crash is saved under fuzz/artifacts/TARGET/ and should become a test.
#
#   fuzz/run.sh [SECONDS per target, default 60] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf_header chat_template safetensors config_json tokenizer_json)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Limits: 2 GiB of RSS, no single allocation over 512 MiB, 10 s per input.
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10
done
