"""gen chat's time to first token across a 10-turn conversation (issue 19). Each round runs a
scripted 10-turn greedy session (JSONL out) and, interleaved, a fresh process given turn 10's
whole conversation as one {"messages": [...]} line (nothing cached: the peer). The first token
comes from the prefill's logits, so a turn's `prefill_ms` is its time to first token. Prints
the medians over the rounds: turn 2 and turn 10 with the kept cache, turn 10 fresh.

  python3 benches/chat_turns.py [ROUNDS, default 5] [MODEL]    (after cargo build --release)
"""
import json, statistics, subprocess, sys

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
model = sys.argv[2] if len(sys.argv) > 2 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
gen = ["target/release/gen", "chat", "-m", model, "--format", "jsonl", "--temperature", "0", "-n", "48"]
users = [f"Tell me one fact about the number {i}." for i in range(1, 11)]


def run(stdin):
    p = subprocess.run(gen, input=stdin, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in p.stdout.splitlines()]


t2, t10, fresh10, computed10, prompt10 = [], [], [], [], []
for r in range(rounds):
    turns = run("\n".join(users) + "\n")
    t2.append(turns[1]["prefill_ms"])
    t10.append(turns[9]["prefill_ms"])
    computed10.append(turns[9]["computed_tokens"])
    prompt10.append(turns[9]["prompt_tokens"])
    messages = []
    for u, t in zip(users[:9], turns[:9]):
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": t["content"]}]
    messages.append({"role": "user", "content": users[9]})
    fresh10.append(run(json.dumps({"messages": messages}) + "\n")[0]["prefill_ms"])
    print(f"round {r + 1}: turn 2 {t2[-1]:.1f} ms, turn 10 {t10[-1]:.1f} ms "
          f"({computed10[-1]} of {prompt10[-1]} tokens computed), turn 10 fresh {fresh10[-1]:.1f} ms",
          flush=True)
m = statistics.median
print(f"medians of {rounds}: turn 2 {m(t2):.1f} ms, turn 10 {m(t10):.1f} ms "
      f"(ratio {m(t10) / m(t2):.2f}), turn 10 fresh {m(fresh10):.1f} ms "
      f"(kept cache {m(fresh10) / m(t10):.1f}x faster)")
