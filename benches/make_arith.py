#!/usr/bin/env python3
"""Writes benches/data/arith.jsonl: 150 arithmetic word problems with known answers.

Deterministic (a fixed seed and Python's own Mersenne Twister; stdlib only), so running it again
gives the same file byte for byte. The problems are meant for a very small instruct model
(SmolLM2-135M-Instruct): one- and two-step additions, subtractions, products of one-digit
numbers and a few exact divisions, with varied names, objects and phrasings, every answer a
non-negative integer. One JSON object per line:

    {"id": 1, "question": "...", "answer": 7, "steps": 1, "kind": "sub"}

`steps` (1 or 2) and `kind` (the template family) are there for breakdowns; `benches/vote.py`
needs only `id`, `question` and `answer`.

    python3 benches/make_arith.py [--count 150] [--seed 18] [--out benches/data/arith.jsonl]
"""

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, subject pronoun, object pronoun, possessive)
PEOPLE = [
    ("Sara", "she", "her", "her"), ("Tom", "he", "him", "his"), ("Maya", "she", "her", "her"),
    ("Leo", "he", "him", "his"), ("Emma", "she", "her", "her"), ("Ben", "he", "him", "his"),
    ("Lily", "she", "her", "her"), ("Omar", "he", "him", "his"), ("Nina", "she", "her", "her"),
    ("Sam", "he", "him", "his"), ("Zoe", "she", "her", "her"), ("Max", "he", "him", "his"),
    ("Anna", "she", "her", "her"), ("Jack", "he", "him", "his"), ("Mia", "she", "her", "her"),
    ("Ravi", "he", "him", "his"), ("Lucy", "she", "her", "her"), ("Noah", "he", "him", "his"),
    ("Ella", "she", "her", "her"), ("Kenji", "he", "him", "his"), ("Rosa", "she", "her", "her"),
    ("Eli", "he", "him", "his"), ("Ivy", "she", "her", "her"), ("Dan", "he", "him", "his"),
]

# Things a person can own, buy, give and lose (plural).
THINGS = [
    "pencils", "apples", "stickers", "marbles", "books", "cookies", "stamps", "shells",
    "cards", "balloons", "toy cars", "candies", "crayons", "eggs", "flowers", "oranges",
    "buttons", "coins", "beads", "cupcakes",
]

# Containers that hold a fixed number of things: (plural, singular).
BOXES = [("boxes", "box"), ("bags", "bag"), ("packs", "pack"), ("baskets", "basket"),
         ("jars", "jar"), ("trays", "tray")]

# Things sold at a price in dollars (singular, plural).
GOODS = [("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"),
         ("ticket", "tickets"), ("toy", "toys"), ("magazine", "magazines"), ("ball", "balls")]


def cap(s):
    return s[0].upper() + s[1:]


class Gen:
    def __init__(self, rng):
        self.r = rng

    def people(self, k):
        return self.r.sample(PEOPLE, k)

    def thing(self):
        return self.r.choice(THINGS)

    def n(self, lo, hi):
        return self.r.randint(lo, hi)

    # ---- one step ---------------------------------------------------------------------

    def add(self):
        (p, s, o, ps), = self.people(1)
        t, a, b = self.thing(), self.n(3, 40), self.n(2, 30)
        q = self.r.choice([
            f"{p} has {a} {t}. {cap(s)} buys {b} more {t}. How many {t} does {p} have now?",
            f"{p} had {a} {t}. A friend gave {o} {b} more. How many {t} does {p} have now?",
            f"There are {a} {t} in a basket. {p} puts {b} more {t} in the basket. "
            f"How many {t} are in the basket now?",
            f"{p} found {a} {t} on Monday and {b} {t} on Tuesday. "
            f"How many {t} did {p} find in all?",
        ])
        return q, a + b

    def sub(self):
        (p, s, o, ps), = self.people(1)
        t, b = self.thing(), self.n(2, 25)
        a = b + self.n(1, 30)
        q = self.r.choice([
            f"{p} has {a} {t}. {cap(s)} gives {b} to {ps} friend. How many {t} does {p} have now?",
            f"There were {a} {t} on the table. {p} took {b} of them. "
            f"How many {t} are left on the table?",
            f"{p} had {a} {t}. {cap(s)} lost {b} of them. How many {t} does {p} have left?",
            f"{p} bought {a} {t} and used {b} of them. How many {t} are left?",
        ])
        return q, a - b

    def compare(self):
        (p, _, _, _), (p2, _, _, _) = self.people(2)
        t, b = self.thing(), self.n(2, 30)
        a = b + self.n(1, 25)
        q = self.r.choice([
            f"{p} has {a} {t} and {p2} has {b} {t}. How many more {t} does {p} have than {p2}?",
            f"{p} collected {a} {t}. {p2} collected {b} {t}. "
            f"How many fewer {t} did {p2} collect than {p}?",
        ])
        return q, a - b

    def mul(self):
        (p, s, o, ps), = self.people(1)
        t, (bx, b1) = self.thing(), self.r.choice(BOXES)
        a, b = self.n(2, 9), self.n(2, 9)
        q = self.r.choice([
            f"{p} has {a} {bx}. Each {b1} has {b} {t}. How many {t} does {p} have in total?",
            f"{p} buys {a} {bx} of {t}. There are {b} {t} in each {b1}. "
            f"How many {t} did {p} buy?",
            f"A garden has {a} rows of flowers with {b} flowers in each row. "
            f"How many flowers are in the garden?",
            f"{p} reads {b} pages every day. How many pages does {p} read in {a} days?",
            f"{p} has {a} {t}. {ps.capitalize()} friend has {b} times as many. "
            f"How many {t} does the friend have?",
        ])
        return q, a * b

    def div(self):
        (p, s, o, ps), = self.people(1)
        t, (bx, b1) = self.thing(), self.r.choice(BOXES)
        k, each = self.n(2, 6), self.n(2, 9)
        total = k * each
        return self.r.choice([
            (f"{p} has {total} {t}. {cap(s)} shares them equally among {k} friends. "
             f"How many {t} does each friend get?", each),
            (f"{total} {t} are packed into {bx} of {each}. How many {bx} are there?", k),
        ])

    # ---- two steps --------------------------------------------------------------------

    def add_sub(self):
        (p, s, o, ps), (p2, _, _, _) = self.people(2)
        t, a, b = self.thing(), self.n(5, 30), self.n(2, 20)
        c = self.n(1, a + b - 1)
        q = self.r.choice([
            f"{p} has {a} {t}. {cap(s)} buys {b} more and then gives {c} to {p2}. "
            f"How many {t} does {p} have now?",
            f"There are {a} {t} in a box. {p} adds {b} {t} and then takes out {c}. "
            f"How many {t} are in the box now?",
        ])
        return q, a + b - c

    def sub_add(self):
        (p, s, o, ps), = self.people(1)
        t, b = self.thing(), self.n(2, 15)
        a, c = b + self.n(1, 25), self.n(2, 20)
        q = self.r.choice([
            f"{p} had {a} {t}. {cap(s)} lost {b} of them, and then {ps} mother gave {o} {c} more. "
            f"How many {t} does {p} have now?",
            f"A shop had {a} {t}. It sold {b} of them in the morning and got {c} new ones in the "
            f"afternoon. How many {t} does the shop have now?",
        ])
        return q, a - b + c

    def sub_sub(self):
        (p, s, o, ps), (p2, _, _, _), (p3, _, _, _) = self.people(3)
        t, b, c = self.thing(), self.n(2, 15), self.n(2, 15)
        a = b + c + self.n(0, 20)
        q = self.r.choice([
            f"{p} had {a} {t}. {cap(s)} gave {b} to {p2} and {c} to {p3}. "
            f"How many {t} does {p} have left?",
            f"There were {a} {t} in a box. {p} took {b} and {p2} took {c}. "
            f"How many {t} are left in the box?",
        ])
        return q, a - b - c

    def add3(self):
        (p, _, _, _), (p2, _, _, _), (p3, _, _, _) = self.people(3)
        t, a, b, c = self.thing(), self.n(2, 25), self.n(2, 25), self.n(2, 25)
        q = self.r.choice([
            f"{p} has {a} {t}, {p2} has {b} {t}, and {p3} has {c} {t}. "
            f"How many {t} do they have altogether?",
            f"{p} collected {a} {t} on Monday, {b} on Tuesday and {c} on Wednesday. "
            f"How many {t} did {p} collect in the three days?",
        ])
        return q, a + b + c

    def more_than(self):
        (p, _, _, _), (p2, _, _, _) = self.people(2)
        t, a, b = self.thing(), self.n(3, 25), self.n(2, 15)
        return self.r.choice([
            (f"{p} has {a} {t}. {p2} has {b} more {t} than {p}. "
             f"How many {t} do they have together?", a + (a + b)),
            (f"{p} has {a + b} {t}. {p2} has {b} fewer {t} than {p}. "
             f"How many {t} do they have together?", (a + b) + a),
        ])

    def mul_add(self):
        (p, s, o, ps), = self.people(1)
        t, (bx, b1) = self.thing(), self.r.choice(BOXES)
        a, b, c = self.n(2, 9), self.n(2, 9), self.n(1, 15)
        q = self.r.choice([
            f"{p} has {a} {bx} of {t} with {b} {t} in each {b1}, and {c} more {t} on the "
            f"table. How many {t} does {p} have in total?",
            f"{p} buys {a} {bx} of {t}. Each {b1} has {b} {t}. {ps.capitalize()} friend gives "
            f"{o} {c} more {t}. How many {t} does {p} have now?",
        ])
        return q, a * b + c

    def mul_sub(self):
        (p, s, o, ps), = self.people(1)
        t, (bx, b1) = self.thing(), self.r.choice(BOXES)
        a, b = self.n(2, 9), self.n(2, 9)
        c = self.n(1, a * b - 1)
        q = self.r.choice([
            f"{p} buys {a} {bx} of {t} with {b} {t} in each {b1}. {cap(s)} gives away {c} {t}. "
            f"How many {t} does {p} have left?",
            f"There are {a} {bx} with {b} {t} in each {b1}. {p} eats {c} of the {t}. "
            f"How many {t} are left?" if t in ("cookies", "candies", "cupcakes", "apples",
                                                "oranges", "eggs") else
            f"There are {a} {bx} with {b} {t} in each {b1}. {p} takes {c} of the {t}. "
            f"How many {t} are left?",
        ])
        return q, a * b - c

    def change(self):
        (p, s, o, ps), = self.people(1)
        g1, gs = self.r.choice(GOODS)
        bill = self.r.choice([10, 20, 50])
        while True:
            a, b = self.n(2, 6), self.n(1, 9)
            if a * b < bill:
                break
        q = self.r.choice([
            f"{p} buys {a} {gs} that cost {b} dollars each. {cap(s)} pays with a {bill}-dollar "
            f"bill. How many dollars of change does {p} get?",
            f"One {g1} costs {b} dollars. {p} buys {a} {gs} and pays with {bill} dollars. "
            f"How many dollars does {p} get back?",
        ])
        return q, bill - a * b


ONE_STEP = ["add", "sub", "compare", "mul", "add", "sub", "mul", "div"]
TWO_STEP = ["add_sub", "sub_add", "sub_sub", "add3", "more_than", "mul_add", "mul_sub", "change"]


def make(count, seed):
    rng = random.Random(seed)
    g = Gen(rng)
    kinds = [(k, 1) for k in ONE_STEP] + [(k, 2) for k in TWO_STEP]
    seen, out = set(), []
    i = 0
    while len(out) < count:
        kind, steps = kinds[i % len(kinds)]
        i += 1
        q, ans = getattr(g, kind)()
        assert isinstance(ans, int) and ans >= 0, (q, ans)
        if q in seen:
            continue
        seen.add(q)
        out.append({"id": len(out) + 1, "question": q, "answer": ans, "steps": steps,
                    "kind": kind})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=ROOT / "benches" / "data" / "arith.jsonl")
    a = ap.parse_args()
    problems = make(a.count, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", encoding="utf-8", newline="\n") as f:
        for p in problems:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    one = sum(p["steps"] == 1 for p in problems)
    print(f"wrote {len(problems)} problems ({one} one-step, {len(problems) - one} two-step) "
          f"to {a.out}")


if __name__ == "__main__":
    main()
