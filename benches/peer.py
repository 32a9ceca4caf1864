#!/usr/bin/env python3
"""Speed of `gen` next to llama.cpp (llama-cpp-python) on the same GGUF, same threads, same
prompts, measured alternately in one run. Prints medians and gen/llama.cpp ratios, and the peak
RSS of one run of each (GNU time).

Usage (from the repo root; benches/peer.sh sets up the peer in a throwaway venv):
    python benches/peer.py --gen target/release/gen --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --threads 2 --rounds 5
"""
import argparse, json, os, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--gen", default="target/release/gen")
ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--decode-tokens", type=int, default=128)
ap.add_argument("--prefill-tokens", type=int, default=512)
args = ap.parse_args()

import llama_cpp  # noqa: E402

SHORT = "Once upon a time, in a small village by the sea,"
here = os.path.dirname(os.path.abspath(__file__))
text = open(os.path.join(here, "..", "tests", "oracle", "text.txt"), encoding="utf-8").read()

llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=args.threads,
                      n_threads_batch=args.threads, verbose=False)
long_ids = llm.tokenize(text.encode(), add_bos=False, special=False)[: args.prefill_tokens]
LONG = llm.detokenize(long_ids).decode("utf-8", errors="ignore")


def peer_prefill(prompt_ids):
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt_ids)
    return len(prompt_ids) / (time.perf_counter() - t)


def peer_decode(prompt_ids, n):
    """Greedy decode of n tokens: llama_decode of one token, argmax over llama.cpp's logits."""
    import numpy as np
    llm.reset()
    llm.eval(prompt_ids)
    n_vocab = llm.n_vocab()
    t = time.perf_counter()
    for _ in range(n):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        llm.eval([int(logits.argmax())])
    return n / (time.perf_counter() - t)


def gen_run(prompt, n):
    out = subprocess.run([args.gen, "-m", args.model, "-t", str(args.threads), "-p", prompt, "-n", str(n),
                          "--ignore-eos", "--format", "json", "-q"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["timings"]


short_ids = llm.tokenize(SHORT.encode(), add_bos=False, special=False)
rows = {"decode tok/s (128 after a short prompt)": ([], []), f"prefill tok/s ({len(long_ids)}-token prompt)": ([], [])}
for r in range(args.rounds):
    g = gen_run(SHORT, args.decode_tokens)
    rows["decode tok/s (128 after a short prompt)"][0].append(g["decode_tok_s"])
    rows["decode tok/s (128 after a short prompt)"][1].append(peer_decode(short_ids, args.decode_tokens))
    g = gen_run(LONG, 1)
    key = f"prefill tok/s ({len(long_ids)}-token prompt)"
    rows[key][0].append(g["prefill_tok_s"])
    rows[key][1].append(peer_prefill(long_ids))


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    for line in out.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split()[-1])
    return None


gen_rss = peak_rss_kib([args.gen, "-m", args.model, "-t", str(args.threads), "-p", SHORT, "-n", str(args.decode_tokens),
                        "--ignore-eos", "-q"])
peer_code = ("import llama_cpp,sys; l=llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=%d, verbose=False); "
             "l.eval(l.tokenize(sys.argv[2].encode(), add_bos=False)); [l.eval([0]) for _ in range(%d)]"
             % (args.threads, args.decode_tokens))
peer_rss = peak_rss_kib([sys.executable, "-c", peer_code, args.model, SHORT])

print(f"gen vs llama.cpp (llama-cpp-python {llama_cpp.__version__}), {args.threads} threads, {args.rounds} rounds, medians")
print(f"| figure | gen | llama.cpp | gen / llama.cpp |")
print(f"|---|---|---|---|")
for k, (g, p) in rows.items():
    mg, mp = statistics.median(g), statistics.median(p)
    print(f"| {k} | {mg:.1f} | {mp:.1f} | {mg / mp:.2f}x |")
if gen_rss and peer_rss:
    print(f"| peak RSS, MiB (128-token decode run) | {gen_rss / 1024:.0f} | {peer_rss / 1024:.0f} (incl. Python) | {gen_rss / peer_rss:.2f}x |")
