#!/usr/bin/env python3
"""What batching saves: `--compare` with 4 sampling strategies against 4 separate `gen` runs
(one load and one prefill instead of four), and `--each-line` over 50 prompts against 50
separate runs (one model load instead of fifty). Medians of wall time, ratios in the same run.

    cargo build --release && ./models/fetch.sh && python3 benches/batch.py
"""
import subprocess, time, statistics
import os
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
G="./target/release/gen"
P=["-p","The history of the printing press begins","--raw","-n","32","--ignore-eos","-t","2","-q","--seed","1"]
specs=["temperature=0.7,top_p=0.95","min_p=0.1","top_k=40","temperature=1"]
alone=[["--temperature","0.7","--top-p","0.95","--top-k","off","--min-p","0"],["--temperature","1","--min-p","0.1","--top-k","off","--top-p","1"],["--temperature","1","--top-k","40","--top-p","1","--min-p","0"],["--temperature","1","--top-k","off","--top-p","1","--min-p","0"]]
def t(cmds):
    s=time.perf_counter()
    for c in cmds: subprocess.run(c,check=True,capture_output=True)
    return time.perf_counter()-s
a=[];b=[];c=[];d=[]
lines="\n".join(f"Prompt number {i} is about" for i in range(50))+"\n"
for r in range(5):
    a.append(t([[G]+P+["--compare"]+specs]))
    b.append(t([[G]+P+x for x in alone]))
for r in range(3):
    s=time.perf_counter(); subprocess.run([G,"--each-line","--raw","-n","4","--ignore-eos","-t","2","-q","--greedy"],input=lines.encode(),check=True,capture_output=True); c.append(time.perf_counter()-s)
    s=time.perf_counter()
    for i in range(50): subprocess.run([G,"-p",f"Prompt number {i} is about","--raw","-n","4","--ignore-eos","-t","2","-q","--greedy"],check=True,capture_output=True)
    d.append(time.perf_counter()-s)
m=statistics.median
print(f"compare 4 strategies: {m(a):.2f} s; 4 separate runs: {m(b):.2f} s; ratio {m(a)/m(b):.2f}")
print(f"--each-line 50 prompts: {m(c):.2f} s; 50 separate runs: {m(d):.2f} s; ratio {m(c)/m(d):.2f}")
