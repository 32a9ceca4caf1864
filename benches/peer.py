#!/usr/bin/env python3
"""Speed of `gen` next to llama.cpp (llama-cpp-python) on the same GGUF, same threads, same
prompts, measured alternately in one run. Prints medians and gen/llama.cpp ratios, and the peak
RSS of one run of each (GNU time).

Rows: decode after a short prompt and after a long one (--long-tokens), prefill, time to first
token from a cold start (a whole `gen` process against llama-cpp-python timed from its import),
peak RSS, and a cost-growth table (decode at --growth contexts).

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
ap.add_argument("--long-tokens", type=int, default=2048, help="prompt length for the long-context decode row")
ap.add_argument("--growth", default="128,1024,4096,8192",
                help="contexts for the cost-growth table ('' to skip): decode 32 tokens after context-32 prompt tokens")
ap.add_argument("--growth-rounds", type=int, default=2)
args = ap.parse_args()

import llama_cpp  # noqa: E402

SHORT = "Once upon a time, in a small village by the sea,"
here = os.path.dirname(os.path.abspath(__file__))
text = open(os.path.join(here, "..", "tests", "oracle", "text.txt"), encoding="utf-8").read()

growth = [int(c) for c in args.growth.split(",") if c]
N_CTX = max([2048, args.long_tokens + args.decode_tokens] + growth)
llm = llama_cpp.Llama(model_path=args.model, n_ctx=N_CTX, n_batch=512, n_ubatch=512, n_threads=args.threads,
                      n_threads_batch=args.threads, verbose=False)
text_ids = llm.tokenize(text.encode(), add_bos=False, special=False)
# Long prompts repeat the text as often as needed; both tools get the same token ids.
many_ids = (text_ids * (1 + N_CTX // len(text_ids)))


def prompt_of(n):
    """A prompt of exactly n tokens for both tools (the ids, and text that re-tokenizes to them)."""
    ids = many_ids[:n]
    s = llm.detokenize(ids).decode("utf-8", errors="ignore")
    ids = llm.tokenize(s.encode(), add_bos=False, special=False)
    return ids, s


long_ids, LONG = prompt_of(args.prefill_tokens)


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
    # The prompt goes through stdin: long ones do not fit in one command-line argument.
    # --raw: the prompt as plain text, as llama.cpp gets it (no chat template around it).
    out = subprocess.run([args.gen, "-m", args.model, "-t", str(args.threads), "-n", str(n), "-c", str(N_CTX),
                          "--raw", "--ignore-eos", "--format", "json", "-q"], input=prompt, capture_output=True,
                         text=True, check=True)
    t = json.loads(out.stdout)["timings"]
    peer_count = len(llm.tokenize(prompt.encode(), add_bos=False, special=False))
    if t["prompt_tokens"] != peer_count:
        print(f"warning: gen read {t['prompt_tokens']} prompt tokens, llama.cpp {peer_count}", file=sys.stderr)
    return t


short_ids = llm.tokenize(SHORT.encode(), add_bos=False, special=False)
ctx_ids, CTX = prompt_of(args.long_tokens)
DEC = f"decode tok/s ({args.decode_tokens} after a short prompt)"
DEC_LONG = f"decode tok/s ({args.decode_tokens} after a {len(ctx_ids)}-token prompt)"
PRE = f"prefill tok/s ({len(long_ids)}-token prompt)"
TTFT = "time to first token, cold start, ms (16-token prompt)"
rows = {DEC: ([], []), DEC_LONG: ([], []), PRE: ([], []), TTFT: ([], [])}

ttft_ids, TTFT_PROMPT = prompt_of(16)
peer_ttft_code = (
    "import time,sys; t=time.perf_counter(); import llama_cpp; "
    "l=llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_threads=%d, verbose=False); "
    "l.eval(l.tokenize(sys.argv[2].encode(), add_bos=False)); print((time.perf_counter()-t)*1000)" % args.threads)


def gen_ttft():
    """Wall time of a whole `gen` process that loads the model, prefills and emits one token."""
    t = time.perf_counter()
    subprocess.run([args.gen, "-m", args.model, "-t", str(args.threads), "-p", TTFT_PROMPT, "-n", "1", "--raw", "-q"],
                   capture_output=True, check=True)
    return (time.perf_counter() - t) * 1000


def peer_ttft():
    """llama-cpp-python in a fresh process, timed from before `import llama_cpp` to the end of the
    prefill (interpreter start-up is not counted, which favours the peer)."""
    out = subprocess.run([sys.executable, "-c", peer_ttft_code, args.model, TTFT_PROMPT],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


for r in range(args.rounds):
    g = gen_run(SHORT, args.decode_tokens)
    rows[DEC][0].append(g["decode_tok_s"])
    rows[DEC][1].append(peer_decode(short_ids, args.decode_tokens))
    g = gen_run(CTX, args.decode_tokens)
    rows[DEC_LONG][0].append(g["decode_tok_s"])
    rows[DEC_LONG][1].append(peer_decode(ctx_ids, args.decode_tokens))
    g = gen_run(LONG, 1)
    rows[PRE][0].append(g["prefill_tok_s"])
    rows[PRE][1].append(peer_prefill(long_ids))
    rows[TTFT][0].append(gen_ttft())
    rows[TTFT][1].append(peer_ttft())

growth_rows = {}
for c in growth:
    ids, s = prompt_of(c - 32)
    g_runs, p_runs = [], []
    for r in range(args.growth_rounds):
        g_runs.append(gen_run(s, 32)["decode_tok_s"])
        p_runs.append(peer_decode(ids, 32))
    growth_rows[c] = (g_runs, p_runs)


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    for line in out.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split()[-1])
    return None


gen_rss = peak_rss_kib([args.gen, "-m", args.model, "-t", str(args.threads), "-p", SHORT, "-n", str(args.decode_tokens),
                        "--raw", "--ignore-eos", "-q"])
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
if growth_rows:
    print()
    print(f"cost growth: decode tok/s for 32 tokens after (context - 32) prompt tokens, {args.growth_rounds} rounds, medians")
    print("| context | gen | llama.cpp | gen / llama.cpp |")
    print("|---|---|---|---|")
    for c, (g, p) in growth_rows.items():
        mg, mp = statistics.median(g), statistics.median(p)
        print(f"| {c} | {mg:.1f} | {mp:.1f} | {mg / mp:.2f}x |")
