"""Oracle: llama.cpp greedy decoding of 8 prompts -> llamacpp_greedy.json

For each prompt in oracle_common.GREEDY_PROMPTS: tokenize with llama.cpp
(tokenize(text.encode(), add_bos=False, special=True), i.e. the ChatML markers map to
their single ids; no BOS is added, the vocab's add_bos is false), evaluate the prompt
from a cleared KV cache, then run 32 steps of a manual greedy loop: take the argmax of
the last logits (ties -> lowest id), feed it back, repeat. No sampling, no repetition
penalty, EOS (id 2, <|im_end|>) is ignored: decoding continues for all 32 steps and
the steps at which EOS was chosen are recorded in eos_positions.
Same schema as hf_f32.json so the two can be compared directly.

llama.cpp settings: n_ctx = 512, f32 KV cache (type_k = type_v = 0), flash attention
off, CPU, n_threads = 2. Log-softmax in float64 numpy from llama.cpp's float32 logits.

Run:
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    /root/oracle-venv/bin/python tests/oracle/llamacpp_greedy.py [path/to/model.gguf]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the repo root.
Output: tests/oracle/llamacpp_greedy.json

JSON schema (cases[], one per prompt):
  prompt, prompt_ids, greedy_ids (32), greedy_text (llama.cpp detokenize, special=True),
  gaps[s] (top1 - top2 logit at step s), chosen_logp[s] (log-softmax of the chosen id),
  eos_positions (steps s where greedy_ids[s] == eos), first_step_logsumexp,
  first_step_top: [[id, logp], ...] the 50 most likely first tokens.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

N_CTX = 512
N_THREADS = 2
TOP_K = 50


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    t0 = time.time()

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(
        model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
        n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
        flash_attn=False, type_k=0, type_v=0, n_gpu_layers=0,
        vocab_only=False, verbose=False,
    )
    eos = llm.token_eos()
    cases = []
    for prompt in oc.GREEDY_PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(ids)
        out_ids, gaps, logps = [], [], []
        first_top, first_lse = None, None
        for step in range(oc.GREEDY_NEW_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            m = logits.max()
            lse = m + np.log(np.exp(logits - m).sum())
            nxt = int(np.argmax(logits))
            srt = np.sort(logits)
            gaps.append(srt[-1] - srt[-2])
            logps.append(logits[nxt] - lse)
            if step == 0:
                first_lse = lse
                top = np.argsort(-logits, kind="stable")[:TOP_K]
                first_top = [[int(t), oc.r6(logits[t] - lse)] for t in top]
            out_ids.append(nxt)
            llm.eval([nxt])
        cases.append({
            "prompt": prompt,
            "prompt_ids": ids,
            "greedy_ids": out_ids,
            "greedy_text": llm.detokenize(out_ids, special=True).decode("utf-8", errors="replace"),
            "gaps": [oc.r6(g) for g in gaps],
            "chosen_logp": [oc.r6(x) for x in logps],
            "eos_positions": [s for s, t in enumerate(out_ids) if t == eos],
            "first_step_logsumexp": oc.r6(first_lse),
            "first_step_top": first_top,
        })
        print(repr(prompt), "->", repr(cases[-1]["greedy_text"]))

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], path,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            llama_params={"n_ctx": N_CTX, "n_batch": N_CTX, "n_ubatch": N_CTX, "n_threads": N_THREADS,
                          "logits_all": True, "flash_attn": False, "type_k": "f32",
                          "type_v": "f32", "n_gpu_layers": 0},
            decode="manual greedy loop, argmax (lowest id on ties), 32 new tokens, EOS ignored",
            seconds=round(time.time() - t0, 1),
        ),
        "eos": eos,
        "n_new_tokens": oc.GREEDY_NEW_TOKENS,
        "cases": cases,
    }
    oc.write_json("llamacpp_greedy.json", out)
    print(f"{time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
