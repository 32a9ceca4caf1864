"""Hostile command lines (issue 21): bad and absurd flag values, missing and endless inputs,
non-UTF-8 prompts, full disks and closed pipes, each run on the real model under `timeout 60`
and an 8 GB address-space limit, with /usr/bin/time for peak memory. A row is BAD when gen
panics, is killed or times out, exits with a status other than the one expected, prints more
than one error line, or peaks over 1.5 GB of RSS.
Run from the repository root after `cargo build --release`: python3 tests/hostile/cli.py"""
import os, subprocess, sys, tempfile, atexit, shutil

GEN = os.path.abspath("target/release/gen")
MODEL = os.path.abspath("models/SmolLM2-135M-Instruct.Q4_1.gguf")
TMP = tempfile.mkdtemp(prefix="gen-hostile-")
atexit.register(shutil.rmtree, TMP, True)
os.mkdir(os.path.join(TMP, "empty_dir"))
fifo = os.path.join(TMP, "fifo")
os.mkfifo(fifo)
open(os.path.join(TMP, "bad.txt"), "wb").write(b"caf\xe9 au lait\n")
open(os.path.join(TMP, "big.txt"), "w").write("word " * 2_000_000)
open(os.path.join(TMP, "lines.txt"), "w").write('hi\n{"prompt": 3}\n{oops\nbye\n')

M = ["-m", MODEL]
P = M + ["-p", "hi", "-n", "4"]
# (name, argv after gen, shell redirections/pipe, expected exit statuses)
cases = [
    ("temperature 1e-45", P + ["--temperature", "1e-45"], "", {2}),
    ("repeat-penalty 1e-45", P + ["--repeat-penalty", "1e-45"], "", {2}),
    ("presence-penalty -3.4e38", P + ["--presence-penalty", "-3.4e38", "--repeat-last-n", "64"], "", {1, 2}),
    ("frequency-penalty 3.4e38", P + ["--frequency-penalty", "3.4e38"], "", {0, 1, 2}),
    ("top-p 2", P + ["--top-p", "2"], "", {2}),
    ("top-p nan", P + ["--top-p", "nan"], "", {2}),
    ("top-k -1", P + ["--top-k", "-1"], "", {2}),
    ("min-p -0.5", P + ["--min-p", "-0.5"], "", {2}),
    ("typical 0", P + ["--typical-p", "0"], "", {2}),
    ("temperature inf", P + ["--temperature", "inf"], "", {2}),
    ("-n -2", M + ["-p", "hi", "-n", "-2"], "", {2}),
    ("-n 99999999999999999999", M + ["-p", "hi", "-n", "99999999999999999999"], "", {2}),
    ("-c 0", P + ["-c", "0"], "", {2}),
    ("-c 1", P + ["-c", "1"], "", {1, 2}),
    ("-c 2^40 (past u32)", P + ["-c", str(1 << 40)], "", {2}),
    ("-c 4e9 (clamped to the model)", P + ["-c", "4000000000"], "", {0}),
    ("--beams 0", P + ["--beams", "0"], "", {2}),
    ("--beams 100000", M + ["-p", "hi", "--beams", "100000", "-n", "256"], "", {1}),
    ("--compare ''", P + ["--compare", ""], "", {2}),
    ("--compare 2000 strategies", M + ["-p", "hi", "-n", "3000", "--compare"] + ["temperature=1"] * 2000, "", {1}),
    ("--compare bogus=1", P + ["--compare", "bogus=1"], "", {2}),
    ("--seed -1 (random, as llama.cpp)", P + ["--seed", "-1"], "", {0}),
    ("--seed -2", P + ["--seed", "-2"], "", {2}),
    ("--threads 0", P + ["--threads", "0"], "", {2}),
    ("--threads 100000", P + ["--threads", "100000"], "", {0, 2}),
    ("--logit-bias garbage", P + ["--logit-bias", "x:y"], "", {2}),
    ("--logit-bias id past vocab", P + ["--logit-bias", "999999:1"], "", {1, 2}),
    ("--stop ''", P + ["--stop", ""], "", {2}),
    ("--max-prompt-bytes 0", P + ["--max-prompt-bytes", "0"], "", {2}),
    ("--format nope", P + ["--format", "nope"], "", {2}),
    ("--system without prompt", M + ["--system", "x"], "< /dev/null", {2}),
    ("-m missing", ["-m", "/nope.gguf", "-p", "hi"], "", {1}),
    ("-m /dev/null", ["-m", "/dev/null", "-p", "hi"], "", {1}),
    ("-m empty dir", ["-m", os.path.join(TMP, "empty_dir"), "-p", "hi"], "", {1}),
    ("-m fifo", ["-m", fifo, "-p", "hi"], "", {1}),
    ("-f missing", M + ["-f", "/nope.txt"], "", {1}),
    ("-f a directory", M + ["-f", TMP], "", {1}),
    ("-f /dev/zero", M + ["-f", "/dev/zero"], "", {2}),
    ("-f /dev/urandom", M + ["-f", "/dev/urandom"], "", {1, 2}),
    ("-f non-UTF-8", M + ["-f", os.path.join(TMP, "bad.txt")], "", {1}),
    ("-f 10 MB prompt", M + ["-f", os.path.join(TMP, "big.txt"), "-n", "1"], "", {1}),
    ("yes | gen", M + ["-n", "1"], "yes |", {2}),
    ("empty -p", M + ["-p", ""], "", {2}),
    ("no prompt, terminal-less empty stdin", M, "< /dev/null", {2}),
    ("sleep | gen -p", P, "sleep 30 |", {0}),
    ("non-UTF-8 -p", M + ["-n", "2", "-p"], "ARG_BAD", {1, 2}),
    ("stderr full", ["-m", "/nope", "-p", "hi"], "2>/dev/full", {1}),
    ("stdout full", P, ">/dev/full", {0, 1}),
    ("| head -c 10", M + ["-p", "Tell a long story", "-n", "2000", "--ignore-eos"], "| head -c 10", {0}),
    ("json | head -c 10", M + ["-p", "hi", "-n", "300", "--format", "json"], "| head -c 10", {0}),
    ("tokenize json | head", ["tokenize", "-m", MODEL, "--json", "-f", os.path.join(TMP, "big.txt"), "--max-prompt-bytes", "20000000"], "| head -c 10", {0}),
    # One error line per failed input line, then the count: the one case with several.
    ("--each-line bad lines", M + ["--each-line", "-f", os.path.join(TMP, "lines.txt"), "-n", "2"], "", {1}),
    ("perplexity /dev/zero", ["perplexity", "-m", MODEL, "/dev/zero"], "", {2}),
    ("perplexity short text", ["perplexity", "-m", MODEL, os.path.join(TMP, "bad.txt")], "", {1}),
    ("perplexity -c 3", ["perplexity", "-m", MODEL, "-c", "3", "/etc/hostname"], "", {2}),
    ("convert onto a file", ["convert", MODEL, "/etc/hostname"], "", {2}),
    ("unknown flag", M + ["--frobnicate"], "", {2}),
]
bad = 0
for name, argv, shell, want in cases:
    q = lambda a: "'" + a.replace("'", "'\\''") + "'"
    args = " ".join(q(a) for a in argv)
    if shell == "ARG_BAD":
        args += " $'caf\\xe9'"
        shell = ""
    cmd = f"/usr/bin/time -f 'RSS %M' -o {TMP}/time timeout 60 prlimit --as=8000000000 {GEN} {args}"
    if shell.endswith("|") and not shell.startswith("|"):
        cmd = f"{shell} {cmd}"
    elif shell.startswith("|"):
        cmd = f"set -o pipefail; {cmd} 2>{TMP}/err {shell} > /dev/null; echo rc=${{PIPESTATUS[0]}} >&2; cat {TMP}/err >&2"
    elif shell:
        cmd = f"{cmd} {shell}"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, errors="replace",
                       stdin=subprocess.DEVNULL)
    err = p.stderr
    rc = p.returncode
    if "rc=" in err:
        rc = int(err.split("rc=")[1].split()[0])
        err = "\n".join(l for l in err.splitlines() if not l.startswith("rc="))
    try:
        rss = int(open(f"{TMP}/time").read().split("RSS")[-1]) // 1024
    except (OSError, ValueError):
        rss = 0
    errs = [l for l in err.strip().splitlines() if l.startswith("error") or "panicked" in l]
    # clap's usage errors add "Usage:" and "For more information" lines: count only error lines.
    lines_allowed = 3 if name.startswith("--each-line") else 1
    flag = (rc not in want or "panicked" in err or len(errs) > lines_allowed or rss > 1500)
    bad += flag
    first = errs[0] if errs else ""
    print(f"{'BAD ' if flag else 'ok  '}{name:38} rc={rc:<3} rss={rss:>5} MB {first[:150]}", flush=True)
print("bad", bad)
sys.exit(1 if bad else 0)
