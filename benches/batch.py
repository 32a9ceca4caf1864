#!/usr/bin/env python3
"""What batching saves, as medians of wall time with ratios taken in the same run:

- `--compare` with 4 sampling strategies as one batch (the default) against the same with
  `--compare-sequential` (one strategy after another from the shared prefill) and against 4
  separate `gen` runs (4 loads, 4 prefills);
- `--each-line` over 50 prompts against 50 separate runs (one model load instead of fifty).

    cargo build --release && ./models/fetch.sh && python3 benches/batch.py [--rounds 5] [-n 64]
"""
import argparse
import os
import statistics
import subprocess
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GEN = os.path.join(ROOT, "target", "release", "gen")
PROMPT = "The history of the printing press begins"
SPECS = ["temperature=0.7,top_p=0.95", "min_p=0.1", "top_k=40", "temperature=1"]
# The same four strategies as plain flags, for separate runs.
ALONE = [
    ["--temperature", "0.7", "--top-p", "0.95", "--top-k", "off", "--min-p", "0"],
    ["--temperature", "1", "--min-p", "0.1", "--top-k", "off", "--top-p", "1"],
    ["--temperature", "1", "--top-k", "40", "--top-p", "1", "--min-p", "0"],
    ["--temperature", "1", "--top-k", "off", "--top-p", "1", "--min-p", "0"],
]


def wall(cmds, stdin=None):
    start = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=True, capture_output=True, input=stdin)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    base = [GEN, "-p", PROMPT, "--raw", "-n", str(a.n), "--ignore-eos", "-t", str(a.threads),
            "-q", "--seed", "1"]
    runs = {
        "--compare (one batch)": lambda: wall([base + ["--compare"] + SPECS]),
        "--compare-sequential": lambda: wall([base + ["--compare"] + SPECS + ["--compare-sequential"]]),
        "4 separate runs": lambda: wall([base + x for x in ALONE]),
    }
    times = {k: [] for k in runs}
    for _ in range(a.rounds):
        for name, run in runs.items():
            times[name].append(run())
    lines = "".join(f"Prompt number {i} is about\n" for i in range(50)).encode()
    each = [GEN, "--each-line", "--raw", "-n", "4", "--ignore-eos", "-t", str(a.threads), "-q",
            "--greedy"]
    single = [[GEN, "-p", f"Prompt number {i} is about", "--raw", "-n", "4", "--ignore-eos",
               "-t", str(a.threads), "-q", "--greedy"] for i in range(50)]
    each_t, single_t = [], []
    for _ in range(max(1, a.rounds // 2)):
        each_t.append(wall([each], stdin=lines))
        single_t.append(wall(single))
    med = statistics.median
    ref = med(times["--compare (one batch)"])
    print(f"| 4 sampling strategies, {a.n} tokens each ({a.threads} threads, {a.rounds} rounds) "
          "| wall s (median) | vs one batch |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {med(ts):.2f} | {med(ts) / ref:.2f}x |")
    print(f"\n--each-line 50 prompts: {med(each_t):.2f} s; 50 separate runs: {med(single_t):.2f} s; "
          f"ratio {med(each_t) / med(single_t):.2f}")


if __name__ == "__main__":
    main()
