#!/usr/bin/env python3
"""Speculative decoding and n samples (issue 18): speed against plain runs measured in the same
run, interleaved prompt by prompt, and the check that speculation changes no token.

- (a) the f32 folder made by `gen convert` as the target, the Q4_1 GGUF as its draft
  (`--model-draft`), on 8 open-ended prompts; and the same with `--draft-verify rejection`
  (seeded runs only: its tokens are not the plain run's, so only the speed is compared);
- (b) the Q4_1 GGUF with prompt-lookup drafts (`--lookup`) on 8 input-grounded prompts (repeat,
  quote, edit a given text or code), and on the 8 open-ended ones;
- (c) the Q4_1 GGUF drafting for itself (a draft as slow as the target: must switch off);
- (d) `--samples 8` against one sample, 128 tokens each, wall time of the whole command.

Every prompt runs greedy and with seeds 1 and 2 (the default chain), 128 tokens, plain and
speculative one after the other; the speculative run's tokens must equal the plain run's
(any difference is printed and makes the exit status 1). Speed is decode tok/s from the JSON
record (prefill and load excluded); each row gives the median over its runs of the
speculative/plain ratio, and the acceptance rate.

    cargo build --release && ./models/fetch.sh && python3 benches/speculative.py [-n 128]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GEN = os.path.join(ROOT, "target", "release", "gen")
Q4_1 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

OPEN = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue.",
    "What are the benefits of regular exercise?",
    "Describe a day at the beach.",
    "Give me three ideas for a birthday party.",
    "How does a bicycle work?",
    "Write a poem about autumn leaves.",
    "What should I pack for a weekend camping trip?",
]
GROUNDED = [
    "Repeat this list exactly: apple, banana, cherry, date, elderberry, fig, grape, honeydew.",
    "Copy this sentence twice: the quick brown fox jumps over the lazy dog.",
    "Rewrite this code with the variable x renamed to count:\n\ndef f(x):\n    x = x + 1\n    return x * 2\n",
    "Quote the first sentence of this text, then the whole text: The river was wide and slow. Boats drifted by. Children waved from the bank.",
    "Fix the spelling in this sentence and write it out again: The wether was beutiful and the birds were singging in the trees.",
    "Write this JSON again with the key 'name' changed to 'title': {\"name\": \"Moby Dick\", \"author\": \"Herman Melville\", \"year\": 1851}",
    "Repeat after me: one two three four five six seven eight nine ten.",
    "Here is a function:\n\nfunction add(a, b) {\n  return a + b;\n}\n\nWrite it again with a comment above it.",
]
SAMPLINGS = [["--greedy"], ["--seed", "1"], ["--seed", "2"]]


def run_json(args):
    out = subprocess.run([GEN, *args, "--format", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"gen {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def compare(name, target, prompts, spec, n, failures):
    ratios = {"greedy": [], "seeded": []}
    acc, drafted = 0, 0
    for p in prompts:
        for s in SAMPLINGS:
            args = ["-m", target, "-p", p, "-n", str(n), *s]
            plain = run_json(args)
            fast = run_json(args + spec)
            if plain["tokens"] != fast["tokens"]:
                failures.append(f"{name}: {p[:40]!r} {s}: tokens differ")
            kind = "greedy" if s == ["--greedy"] else "seeded"
            ratios[kind].append(fast["timings"]["decode_tok_s"] / plain["timings"]["decode_tok_s"])
            acc += fast["timings"].get("accepted_tokens", 0)
            drafted += fast["timings"].get("drafted_tokens", 0)
    rate = acc / drafted if drafted else 0.0
    cells = " | ".join(
        f"{statistics.median(r):.2f}× ({min(r):.2f}–{max(r):.2f})" for r in ratios.values()
    )
    print(f"| {name} | {cells} | {acc}/{drafted} ({100 * rate:.0f}%) |", flush=True)


def rejection(name, target, prompts, spec, n):
    """Rejection sampling changes the tokens (not their distribution): speed only, seeded runs."""
    ratios, acc, drafted = [], 0, 0
    for p in prompts:
        for s in SAMPLINGS[1:]:
            args = ["-m", target, "-p", p, "-n", str(n), *s]
            plain = run_json(args)
            fast = run_json(args + spec)
            ratios.append(fast["timings"]["decode_tok_s"] / plain["timings"]["decode_tok_s"])
            acc += fast["timings"].get("accepted_tokens", 0)
            drafted += fast["timings"].get("drafted_tokens", 0)
    rate = acc / drafted if drafted else 0.0
    print(f"| {name} | (tokens differ by design) | {statistics.median(ratios):.2f}× "
          f"({min(ratios):.2f}–{max(ratios):.2f}) | {acc}/{drafted} ({100 * rate:.0f}%) |", flush=True)


def samples(n, rounds):
    args = ["-m", Q4_1, "-p", OPEN[0], "-n", str(n), "--ignore-eos", "--seed", "1", "-q"]
    one, eight = [], []
    for _ in range(rounds):
        for cmd, into in ((args, one), (args + ["--samples", "8"], eight)):
            t = time.perf_counter()
            subprocess.run([GEN, *cmd], capture_output=True, check=True)
            into.append(time.perf_counter() - t)
    a, b = statistics.median(one), statistics.median(eight)
    print(f"\n--samples 8 against one sample, {n} tokens each, wall time, medians of {rounds} "
          f"interleaved rounds: {b:.2f} s vs {a:.2f} s = {b / a:.2f}×")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--f32", default=os.path.join(ROOT, "target", "bench-smollm2-f32"))
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the --samples timing")
    a = ap.parse_args()
    if not os.path.isdir(a.f32):
        subprocess.run([GEN, "convert", Q4_1, a.f32], check=True)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
    print(f"{model}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, -n {a.n}\n")
    print("| what | greedy: decode tok/s speculative / plain, median (range) of 8 | seeds 1 and 2, default chain: the same, of 16 | accepted / drafted |")
    print("|---|---|---|---|")
    failures = []
    compare("(a) f32 target + Q4_1 draft, open-ended", a.f32, OPEN, ["--model-draft", Q4_1], a.n, failures)
    rejection("(a) the same, --draft-verify rejection", a.f32, OPEN,
              ["--model-draft", Q4_1, "--draft-verify", "rejection"], a.n)
    compare("(b) Q4_1 --lookup, input-grounded", Q4_1, GROUNDED, ["--lookup"], a.n, failures)
    compare("(b) Q4_1 --lookup, open-ended", Q4_1, OPEN, ["--lookup"], a.n, failures)
    compare("(c) Q4_1 drafting for itself, open-ended", Q4_1, OPEN, ["--model-draft", Q4_1], a.n, failures)
    samples(a.n, a.rounds)
    print()
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("every speculative run gave the plain run's tokens")


if __name__ == "__main__":
    main()
