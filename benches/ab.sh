#!/usr/bin/env bash
# A/B of two gen builds on the default model, interleaved round by round: ms per decode step
# (128 greedy tokens after a short prompt), prefill time of a 480-token prompt, and ms per step
# of --beams 4 (64 tokens). Prints each round, then the medians and the ratio B/A.
#
#   benches/ab.sh path/to/gen-A path/to/gen-B [rounds]
#
# Build A from another commit with a worktree and the same target dir, e.g.
#   git worktree add /tmp/base <commit> && (cd /tmp/base && CARGO_TARGET_DIR=$PWD/target \
#     cargo build --release) && cp target/release/gen /tmp/gen-A
set -euo pipefail
a="$1"; b="$2"; rounds="${3:-7}"
model="$(cd "$(dirname "$0")/.." && pwd)/models/SmolLM2-135M-Instruct.Q4_1.gguf"
long="$(python3 -c 'print(" ".join(["The quick brown fox jumps over the lazy dog."] * 48))')"
field() { python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; print($1)"; }
log="$(mktemp)"
for r in $(seq "$rounds"); do
  for side in A B; do
    bin="$a"; [ "$side" = B ] && bin="$b"
    dec=$("$bin" -m "$model" --raw -p "Once upon a time" -n 128 --ignore-eos --greedy --format json -q \
      | field "t['decode_ms'] / t['decode_steps']")
    pre=$("$bin" -m "$model" --raw -p "$long" -n 1 --greedy --format json -q | field "t['prefill_ms']")
    beam=$("$bin" -m "$model" --raw -p "Once upon a time" -n 64 --beams 4 --format json -q \
      | field "t['decode_ms'] / max(1, t['decode_steps'])")
    echo "$r $side $dec $pre $beam" | tee -a "$log"
  done
done
python3 - "$log" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
for i, name in [(2, "decode ms/step"), (3, "prefill 480 tok ms"), (4, "beams=4 ms/step")]:
    a = st.median(float(r[i]) for r in rows if r[1] == "A")
    b = st.median(float(r[i]) for r in rows if r[1] == "B")
    print(f"{name:20} A {a:9.2f}  B {b:9.2f}  B/A {b / a:.3f}")
PY
rm -f "$log"
