#!/usr/bin/env python3
"""Wall time per generated token of gen's decoding strategies against greedy, in one run.

Runs `gen --format json` alternately for greedy, the default sampling chain and `--beams N`
(same prompt, same thread count, --ignore-eos so every run makes the same number of tokens),
several rounds, and prints the median decode time per token of each and its ratio to greedy.
Per token = the decode phase (after prefill) divided by its steps; a beam step makes one token
for each of the N beams but advances the output by one token, which is what a user waits for.

    cargo build --release && python3 benches/strategies.py [--rounds 5] [--threads 2] [--beams 4]
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "The history of the printing press begins"


def run(gen, args, threads, n):
    cmd = [str(gen), "-p", PROMPT, "-n", str(n), "-t", str(threads), "--ignore-eos",
           "--format", "json", "-q"] + args
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    t = json.loads(out)["timings"]
    return t["decode_ms"] / max(t["decode_steps"], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("-n", type=int, default=64)
    a = ap.parse_args()
    gen = ROOT / "target" / "release" / "gen"
    if not gen.exists():
        sys.exit("build first: cargo build --release")
    strategies = {
        "greedy": ["--greedy"],
        "sampling (default chain)": ["--seed", "1"],
        f"beams={a.beams}": ["--beams", str(a.beams)],
    }
    times = {k: [] for k in strategies}
    for _ in range(a.rounds):
        for name, args in strategies.items():
            times[name].append(run(gen, args, a.threads, a.n))
    base = statistics.median(times["greedy"])
    print(f"| strategy ({a.threads} threads, {a.n} tokens, {a.rounds} rounds) | ms per token (median) | vs greedy |")
    print("|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
