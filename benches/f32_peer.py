#!/usr/bin/env python3
"""Decode speed of gen on a safetensors folder next to Hugging Face transformers (torch, CPU) on
the same weights, same threads, same prompt, measured alternately in one run; medians and the
ratio.

gen runs on the folder `gen convert` writes from the default GGUF (f32 safetensors, or bf16 with
`--dtype bf16`); transformers loads that same folder in the folder's own type (for bf16 that is
transformers' default, `dtype="auto"`: it computes in bf16, while gen keeps the bf16 weights and
computes in f32). Both decode greedily N tokens after the same prompt, timing only the
decode steps: gen's JSON `decode_tok_s`; for transformers a loop of single-token forward passes
with its KV cache (`past_key_values`), argmax each step, under `torch.inference_mode()`.

    cargo build --release
    /path/to/venv-with-torch-and-transformers/bin/python benches/f32_peer.py [--rounds 3] [--threads 2]
"""
import argparse, json, os, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--gen", default="target/release/gen")
ap.add_argument("--gguf", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="the folder's weight type")
ap.add_argument("--dir", help="where `gen convert` writes the folder (default target/bench-smollm2-DTYPE)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("-n", type=int, default=64)
args = ap.parse_args()
args.dir = args.dir or f"target/bench-smollm2-{args.dtype}"

if not os.path.exists(os.path.join(args.dir, "model.safetensors")):
    subprocess.run([args.gen, "convert", args.gguf, args.dir, "--dtype", args.dtype], check=True)

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

torch.set_num_threads(args.threads)
PROMPT = "Once upon a time, in a small village by the sea,"
tok = AutoTokenizer.from_pretrained(args.dir)
DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=DTYPE).eval()


PROMPT_IDS = tok(PROMPT)["input_ids"]


def hf_decode(n):
    ids = torch.tensor([PROMPT_IDS])
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(n):
            out = model(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return n / (time.perf_counter() - t)


def gen_decode(n):
    # --raw: the prompt as plain text (no chat template), the same tokens transformers gets;
    # --greedy: argmax each step, as the transformers loop does.
    out = subprocess.run([args.gen, "-m", args.dir, "-t", str(args.threads), "-p", PROMPT, "-n", str(n),
                          "--raw", "--greedy", "--ignore-eos", "--format", "json", "-q"],
                         capture_output=True, text=True, check=True)
    timings = json.loads(out.stdout)["timings"]
    if timings["prompt_tokens"] != len(PROMPT_IDS):
        print(f"warning: gen read {timings['prompt_tokens']} prompt tokens, transformers "
              f"{len(PROMPT_IDS)}", file=sys.stderr)
    return timings["decode_tok_s"]


g, h = [], []
for _ in range(args.rounds):
    g.append(gen_decode(args.n))
    h.append(hf_decode(args.n))
mg, mh = statistics.median(g), statistics.median(h)
print(f"{args.dtype} folder decode, {args.n} tokens, {args.threads} threads, {args.rounds} rounds, medians "
      f"(torch {torch.__version__}, transformers {__import__('transformers').__version__})")
print("| figure | gen | transformers | gen / transformers |")
print("|---|---|---|---|")
print(f"| decode tok/s, {args.dtype} safetensors folder | {mg:.1f} | {mh:.1f} | {mg / mh:.2f}x |")
