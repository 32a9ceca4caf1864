#!/usr/bin/env python3
"""Test-time compute on arithmetic word problems: greedy, one sample, maj@8 and maj@16.

For every problem of benches/data/arith.jsonl (written by benches/make_arith.py) it runs gen once
per mode with a step-by-step prompt, `--format json` and `-n 128`:

    greedy   gen -p PROMPT -n 128 --format json -q --greedy
    sample   gen -p PROMPT -n 128 --format json -q --seed S
    maj@8    gen -p PROMPT -n 128 --format json -q --samples 8 --vote --seed S
    maj@16   gen -p PROMPT -n 128 --format json -q --samples 16 --vote --seed S

and compares the answer with the known one. maj@K takes gen's own vote (`vote.answer` of the
JSON record). Greedy and one sample are plain runs (the JSON's `text`), and their answer is
extracted here by a line-for-line port of gen's default rules (src/engine/vote.rs: the last
`\\boxed{...}`, else what follows the last "the answer is", else the last number; then gen's
normalisation). The port is checked on every maj@K sample of the run against the `answer` gen
reports for it, and any disagreement is printed and written into the table's notes.

Because sample i of `--samples K --seed S` uses seed S+i-1, "sample" is sample 1 of maj@8 and
maj@8's samples are the first 8 of maj@16's; the table's notes say in how many problems the
plain one-sample text indeed equals sample 1 of maj@8.

A problem is correct when the answer is exactly the known integer as gen normalises it ("42";
"$42." and "42.0" normalise to it, "42 apples" does not). The "number in answer" column is more
lenient: the first number in the answer (maj@K: in the winning answer) equals the known one.
Wall time is `time.perf_counter()` around each gen process (model load included; the model is
loaded once per run of gen). Modes are interleaved problem by problem, in a rotating order, so
that a slow patch of a noisy machine falls on all of them.

A gen run that exits non-zero, times out or prints no valid record is a failure: it is printed
on stderr at once, counted in the table's "failed" column (and not as correct), written to the
raw file with its exit status and stderr, and makes this script exit with status 1. After
`--max-failures` failures (default 10) the run stops early, writing what it has.

    ./models/fetch.sh && cargo build --release
    python3 benches/make_arith.py            # only if benches/data/arith.jsonl is missing
    python3 benches/vote.py -t 2 --out benches/results/vote.md --raw benches/results/vote.jsonl
    python3 benches/vote.py --limit 3        # a smoke test: the first 3 problems

Options: --gen (default target/release/gen), --model (default: none passed, so gen uses
$GEN_MODEL or models/fetch.sh's model), -t/--threads (default: none passed, gen's default: all
cores), -n/--max-tokens (128), --seed (1), --modes (greedy,sample,maj@8,maj@16; any maj@K),
--limit N, --data FILE, --prompt TEMPLATE (with {question}), --answer-regex RE (passed to gen
for maj@K and applied with Python's `re` for greedy and sample, so use a pattern both dialects
read alike), --gen-args "..." (extra gen flags for every mode, e.g. "--temp 0.7"), --timeout
(seconds per gen run, 900), --out FILE (the markdown table; it is printed in any case), --raw
FILE (JSONL, one record per problem and mode, every sample's text included), --self-test (checks
the port of the answer rules on gen's own unit-test cases, runs nothing).
"""

import argparse
import datetime
import decimal
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "{question} Let's think step by step, then end with \"The answer is\" and the number."

# ---- gen's answer rules (src/engine/vote.rs), ported exactly ----------------------------

# Rust's char::is_whitespace (Unicode White_Space), which `trim` and `split_whitespace` use;
# Python's str.isspace also counts U+001C..U+001F, so it is not used.
WS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
      "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
WS_RUN = re.compile(f"[{re.escape(WS)}]+")
# gen's number pattern; `\d` is Unicode in both Rust's regex and Python's re (str patterns).
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# What Rust's f64::from_str accepts as a finite number (ASCII digits only; inf/nan are not
# finite, and a non-finite parse leaves the text as it is, as no parse does).
RUST_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
ASCII_DIGITS = "0123456789"


def last_boxed(text):
    """The contents of the last `\\boxed{...}`, braces balanced; None if unclosed or absent."""
    at = text.rfind("\\boxed{")
    if at < 0:
        return None
    start = at + len("\\boxed{")
    depth = 1
    for i, c in enumerate(text[start:]):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:start + i]
    return None


def is_decimal_point(s, i):
    before = i > 0 and s[i - 1] in ASCII_DIGITS
    after = i + 1 < len(s) and s[i + 1] in ASCII_DIGITS
    return before and after


def answer_is(text):
    """As vote.rs: what follows the last "answer is" (lowered), to the end of its sentence or
    line; after its last '='; the leading number alone when it starts with one."""
    lower = text.lower()
    at = lower.rfind("answer is")
    if at < 0:
        return None
    rest = lower[at + len("answer is"):].lstrip(": ")
    end = len(rest)
    for i, c in enumerate(rest):
        if c == "\n" or (c in ".!?" and not is_decimal_point(rest, i)):
            end = i
            break
    phrase = rest[:end]
    if "=" in phrase:
        phrase = phrase[phrase.rfind("=") + 1:]
    bare = phrase.lstrip(" $*\"'`")
    words = WS_RUN.split(bare.strip(WS))
    word = words[0].rstrip(",;:") if words else ""
    if RUST_FLOAT.fullmatch(word.replace(",", "")):
        return word
    m = NUMBER.match(bare)
    return m.group(0) if m else phrase


def last_number(text):
    m = None
    for m in NUMBER.finditer(text):
        pass
    return m.group(0) if m else None


def rust_f64_display(x):
    """Rust's `{}` of a finite f64: the shortest round-trip digits, never an exponent."""
    r = repr(x)
    if "e" not in r and "E" not in r:
        return r
    return format(decimal.Decimal(r), "f")


def normalise(raw):
    s = raw.strip(WS).strip("$\"'*`").rstrip(".,;:!?").strip(WS).lower()
    s = " ".join(w for w in WS_RUN.split(s) if w)
    plain = s.replace(",", "")
    if RUST_FLOAT.fullmatch(plain):
        x = float(plain)
        if x not in (float("inf"), float("-inf")) and x == x:
            if x == int(x) and abs(x) < 1e15:
                return str(int(x))
            return rust_f64_display(x)
    return s


def extract(text, answer_regex=None):
    """gen's answer for one text (Extractor::answer), or None."""
    if answer_regex is not None:
        m = None
        for m in answer_regex.finditer(text):
            pass
        if m is None:
            return None
        raw = m.group(1) if answer_regex.groups >= 1 and m.group(1) is not None else m.group(0)
    else:
        # Rust's Option::or_else: an empty \boxed{} or "the answer is." stops the chain.
        raw = last_boxed(text)
        if raw is None:
            raw = answer_is(text)
        if raw is None:
            raw = last_number(text)
        if raw is None:
            return None
    n = normalise(raw)
    return n or None


def tally_winner(answers):
    """gen's tally winner: most votes, ties to the answer first seen."""
    counts = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in counts if counts[a] == best)  # dicts keep first-seen order


def self_test():
    """The cases of vote.rs's unit tests, plus a few edges of the port."""
    cases = [
        ("so 3+4 = 7, and \\boxed{\\frac{1}{2}} is it. The answer is 9.", "\\frac{1}{2}"),
        ("Thus, the answer is: 1,024.0!", "1024"),
        ("The Answer Is Paris.", "paris"),
        ("We get 12 apples, then 3.5 more", "3.5"),
        ("the answer is 3.14. Done", "3.14"),
        ("no digits here", None),
        ("\\boxed{unclosed", None),
        ("5 + 2 = 7. The answer is 7 pencils.", "7"),
        ("So, the answer is 38 - 22 = 16 oranges left", "16"),
        ("The final answer is 12", "12"),
        ("It is 5. The answer is.", None),
        ("The answer is $42.", "42"),
        ("The answer is **42**.", "42"),
        ("The answer is: 7 apples; 2 left", "7"),
        ("the answer is 1e20", "100000000000000000000"),
        ("We have -3 left", "-3"),
        ("the answer is 0.10000", "0.1"),
    ]
    bad = 0
    for text, want in cases:
        got = extract(text)
        if got != want:
            bad += 1
            print(f"FAIL extract({text!r}) = {got!r}, want {want!r}")
    rx = re.compile(r"ANSWER: (\w+)")
    for text, want in [("ANSWER: a ... ANSWER: B", "b"), ("nothing", None)]:
        if extract(text, rx) != want:
            bad += 1
            print(f"FAIL regex extract({text!r}) = {extract(text, rx)!r}, want {want!r}")
    texts = ["it is 5", "maybe 7", "surely 7", "5.0", "no idea"]
    if tally_winner([extract(t) for t in texts]) != "5":
        bad += 1
        print("FAIL tie to the earliest sample")
    if tally_winner([extract(t) for t in ["7", "5", "5"]]) != "5":
        bad += 1
        print("FAIL majority")
    print("self-test:", "ok" if bad == 0 else f"{bad} failures")
    return bad == 0


def first_number(answer):
    if answer is None:
        return None
    m = NUMBER.search(answer)
    return normalise(m.group(0)) if m else None


# ---- running gen --------------------------------------------------------------------------


def parse_modes(spec):
    modes = []
    for m in spec.split(","):
        m = m.strip()
        if m in ("greedy", "sample"):
            modes.append((m, None))
        elif re.fullmatch(r"maj@[1-9][0-9]*", m):
            modes.append((m, int(m[4:])))
        else:
            sys.exit(f"error: --modes: unknown mode {m!r} (greedy, sample, maj@K)")
    return modes


def mode_args(mode, k, seed):
    if mode == "greedy":
        return ["--greedy"]
    if mode == "sample":
        return ["--seed", str(seed)]
    return ["--samples", str(k), "--vote", "--seed", str(seed)]


def base_cmd(a, prompt):
    cmd = [str(a.gen), "-p", prompt, "-n", str(a.max_tokens), "--format", "json", "-q"]
    if a.model:
        cmd += ["-m", a.model]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    return cmd + shlex.split(a.gen_args)


def run_gen(cmd, timeout):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes)
               else (e.stderr or "")) + f"\n(killed after {timeout} s)"
    return rc, out, err, time.perf_counter() - t0


def one(a, problem, mode, k, answer_rx):
    """Runs one mode on one problem; returns the raw record."""
    prompt = a.prompt.format(question=problem["question"])
    cmd = base_cmd(a, prompt) + mode_args(mode, k, a.seed)
    if k is not None and a.answer_regex:
        cmd += ["--answer-regex", a.answer_regex]
    rc, out, err, wall = run_gen(cmd, a.timeout)
    expected = str(problem["answer"])
    rec = {"id": problem["id"], "mode": mode, "expected": problem["answer"], "wall_s": wall,
           "rc": rc}
    try:
        if rc != 0:
            raise ValueError(f"gen exited with status {rc}")
        try:
            obj = json.loads(out)
        except ValueError as e:
            raise ValueError(f"no valid JSON record on stdout ({e})") from None
        rec["model"] = obj["model"]
        if k is None:
            text, t = obj["text"], obj["timings"]
            rec["answer"] = extract(text, answer_rx)
            rec["texts"] = [text]
            rec["stops"] = [obj["stop"]["reason"]]
            rec["generated_tokens"] = t["generated_tokens"]
            rec["gen_s"] = (t["load_ms"] + t["prefill_ms"] + t["decode_ms"]) / 1000
            rec["seeds"] = [obj["seed"]]
        else:
            samples, vote = obj["samples"], obj["vote"]
            if len(samples) != k:
                raise ValueError(f"{len(samples)} samples in the record, expected {k}")
            rec["answer"] = vote["answer"]
            rec["vote"] = {key: vote[key] for key in ("votes", "share", "tally", "no_answer")}
            rec["texts"] = [s["text"] for s in samples]
            rec["sample_answers"] = [s["answer"] for s in samples]
            rec["stops"] = [s["stop"]["reason"] for s in samples]
            rec["seeds"] = [s["seed"] for s in samples]
            rec["generated_tokens"] = sum(s["timings"]["generated_tokens"] for s in samples)
            rec["gen_s"] = (samples[0]["timings"]["load_ms"] + obj["prefill_ms"]
                            + max(s["timings"]["decode_ms"] for s in samples)) / 1000
            # The port of the rules, checked against gen's own answers.
            port = [extract(t, answer_rx) for t in rec["texts"]]
            rec["port_mismatches"] = sum(p != g for p, g in zip(port, rec["sample_answers"]))
            if tally_winner(rec["sample_answers"]) != vote["answer"]:
                rec["port_mismatches"] += 1
    except (ValueError, KeyError, TypeError, IndexError) as e:
        rec["error"] = f"{e}" + (f"; stderr: {err.strip()[-2000:]}" if err.strip() else "")
        if out.strip() and rc == 0:
            rec["stdout"] = out[-2000:]
        rec["answer"] = None
    rec["correct"] = rec["answer"] == expected
    rec["lenient"] = first_number(rec["answer"]) == expected
    return rec


def shell_shape(a):
    shape = f'gen -p "<question> {a.prompt.split("{question}", 1)[-1].strip()}" ' \
            f"-n {a.max_tokens} --format json -q"
    if a.model:
        shape += f" -m {a.model}"
    if a.threads:
        shape += f" -t {a.threads}"
    if a.gen_args:
        shape += f" {a.gen_args}"
    return shape


def machine():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((l.split(":", 1)[1].strip() for l in out.splitlines()
                     if l.startswith("Model name")), None)
        cpus = next((l.split(":", 1)[1].strip() for l in out.splitlines()
                     if l.startswith("CPU(s)")), "?")
    except OSError:
        name, cpus = None, "?"
    return f"{name or 'unknown CPU'}, {cpus} CPUs"


def gen_version(gen):
    try:
        return subprocess.run([str(gen), "--version"], capture_output=True, text=True,
                              timeout=60).stdout.strip() or "gen (version unknown)"
    except (OSError, subprocess.TimeoutExpired):
        return "gen (version unknown)"


def table(a, modes, recs, problems_done, model, started, stopped_early):
    n = problems_done
    lines = [
        f"Test-time compute, {n} problems of {a.data.relative_to(ROOT) if a.data.is_relative_to(ROOT) else a.data}; "
        f"model {model or '(gen default)'}; {gen_version(a.gen)}; machine: {machine()}; "
        f"threads {a.threads or 'gen default (all cores)'}; seed {a.seed}; {started}",
        "",
        f"Command: `{shell_shape(a)}` plus "
        + ", ".join(f"`{' '.join(mode_args(m, k, a.seed))}` ({m})" for m, k in modes)
        + (f"; maj@K also `--answer-regex {a.answer_regex}`" if a.answer_regex else "")
        + ".",
        "",
        "| mode | accuracy (k/N, %) | number in answer (k/N, %) | failed | total wall s "
        "| s per problem | × greedy wall | generated tok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    walls = {m: sum(r["wall_s"] for r in recs if r["mode"] == m) for m, _ in modes}
    for m, _ in modes:
        rs = [r for r in recs if r["mode"] == m]
        if not rs:
            continue
        c = sum(r["correct"] for r in rs)
        l = sum(r["lenient"] for r in rs)
        f = sum("error" in r for r in rs)
        toks = sum(r.get("generated_tokens", 0) for r in rs)
        ratio = f"{walls[m] / walls['greedy']:.2f}×" if walls.get("greedy") else "–"
        lines.append(
            f"| {m} | {c}/{len(rs)} ({100 * c / len(rs):.1f}%) | {l}/{len(rs)} "
            f"({100 * l / len(rs):.1f}%) | {f} | {walls[m]:.1f} | {walls[m] / len(rs):.2f} "
            f"| {ratio} | {toks} |")
    notes = []
    failed = sum("error" in r for r in recs)
    if failed:
        notes.append(f"**{failed} gen runs failed** (counted as wrong; their errors went to stderr and the "
                     f"raw file, if any)")
    if stopped_early:
        notes.append(f"stopped early: {stopped_early}")
    mism = sum(r.get("port_mismatches", 0) for r in recs)
    checked = sum(len(r.get("sample_answers", [])) for r in recs)
    notes.append(f"answer rules: the Python port (greedy, sample) agreed with gen's own answers "
                 f"on {checked} maj@K samples" + (f" except {mism} (see the raw file)"
                                                  if mism else ""))
    by_id = {}
    for r in recs:
        by_id.setdefault(r["id"], {})[r["mode"]] = r
    first_maj = next((m for m, k in modes if k is not None), None)
    if first_maj and any(m == "sample" for m, _ in modes):
        pairs = [(d["sample"], d[first_maj]) for d in by_id.values()
                 if "sample" in d and first_maj in d and "error" not in d["sample"]
                 and "error" not in d[first_maj]]
        same = sum(s["texts"][0] == mj["texts"][0] for s, mj in pairs)
        notes.append(f"the one-sample text equals sample 1 of {first_maj} (same seed) in "
                     f"{same} of {len(pairs)} problems")
    maxed = {m: sum(s == "max_tokens" for r in recs if r["mode"] == m for s in r.get("stops", []))
             for m, _ in modes}
    total = {m: sum(len(r.get("stops", [])) for r in recs if r["mode"] == m) for m, _ in modes}
    notes.append("generations cut at -n " + str(a.max_tokens) + ": "
                 + ", ".join(f"{m} {maxed[m]}/{total[m]}" for m, _ in modes))
    lines += [""] + [f"- {x}" for x in notes]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gen", type=Path, default=ROOT / "target" / "release" / "gen")
    ap.add_argument("--model", "-m", default=None)
    ap.add_argument("--threads", "-t", type=int, default=None)
    ap.add_argument("--max-tokens", "-n", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modes", default="greedy,sample,maj@8,maj@16")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--data", type=Path, default=ROOT / "benches" / "data" / "arith.jsonl")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--answer-regex", default=None)
    ap.add_argument("--gen-args", default="")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--max-failures", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--raw", type=Path, default=None)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        sys.exit(0 if self_test() else 1)
    if "{question}" not in a.prompt:
        sys.exit("error: --prompt must contain {question}")
    a.gen = a.gen.resolve()
    if not a.gen.is_file():
        sys.exit(f"error: no gen binary at {a.gen} (cargo build --release, or --gen PATH)")
    modes = parse_modes(a.modes)
    answer_rx = re.compile(a.answer_regex) if a.answer_regex else None
    problems = [json.loads(l) for l in a.data.read_text(encoding="utf-8").splitlines() if l.strip()]
    if a.limit is not None:
        problems = problems[:a.limit]
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    raw = open(a.raw, "w", encoding="utf-8") if a.raw else None
    recs, failures, model, stopped, done = [], 0, None, None, 0
    try:
        for i, p in enumerate(problems):
            order = modes[i % len(modes):] + modes[:i % len(modes)]
            for m, k in order:
                r = one(a, p, m, k, answer_rx)
                recs.append(r)
                model = model or r.get("model")
                if raw:
                    raw.write(json.dumps(r, ensure_ascii=False) + "\n")
                    raw.flush()
                if "error" in r:
                    failures += 1
                    msg = " | ".join(x for x in r["error"].splitlines() if x.strip())
                    print(f"FAILED: problem {p['id']} {m}: {msg}", file=sys.stderr)
                if r.get("port_mismatches"):
                    print(f"WARNING: problem {p['id']} {m}: the Python answer rules disagree with "
                          f"gen's on {r['port_mismatches']} sample(s)", file=sys.stderr)
            done += 1
            line = " ".join(
                f"{r['mode']}={'ok' if r['correct'] else ('FAIL' if 'error' in r else r['answer'])}"
                f"({r['wall_s']:.1f}s)" for r in recs[-len(modes):])
            print(f"[{done}/{len(problems)}] #{p['id']} expected {p['answer']}: {line}",
                  file=sys.stderr, flush=True)
            if failures >= a.max_failures:
                stopped = f"{failures} failed gen runs (--max-failures {a.max_failures})"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if raw:
            raw.close()
    # Only whole problems count (an interruption can leave one half done).
    ids = {p["id"] for p in problems[:done]}
    recs = [r for r in recs if r["id"] in ids]
    md = table(a, modes, recs, done, model, started, stopped)
    print(md)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(md, encoding="utf-8")
    if failures:
        print(f"error: {failures} gen run(s) failed (see FAILED above"
              + (f" and {a.raw}" if a.raw else "") + ")", file=sys.stderr)
        sys.exit(1)
    if stopped == "interrupted":
        sys.exit(130)


if __name__ == "__main__":
    main()
