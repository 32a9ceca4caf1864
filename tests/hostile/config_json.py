"""Hostile config.json matrix (issue 21): sets one config.json key of a safetensors copy of the
real model at a time (sizes that wrap, negatives, wrong types, missing keys, broken rope_scaling)
and runs `gen -p hi -n 2 --raw` on each, as tests/hostile/gguf_metadata.py does.
Run from the repository root after `cargo build --release`: python3 tests/hostile/config_json.py
(it writes a bf16 copy of the model with `gen convert` under a temporary folder)."""
import os, sys, tempfile
GEN = os.path.abspath("target/release/gen")
MODEL = os.path.abspath("models/SmolLM2-135M-Instruct.Q4_1.gguf")
TMP = tempfile.mkdtemp(prefix="gen-hostile-")
import atexit, shutil
atexit.register(shutil.rmtree, TMP, True)
import json, subprocess, shutil, os, sys
subprocess.run([GEN, 'convert', '--dtype', 'bf16', MODEL, os.path.join(TMP, 'st')], check=True)
base=json.load(open(os.path.join(TMP, 'st', 'config.json')))
cases=[]
for key in ["hidden_size","intermediate_size","num_attention_heads","num_key_value_heads","head_dim","vocab_size","max_position_embeddings","num_hidden_layers"]:
    for v in [2**62, 2**32, 10**12, -1, 1.5, "x", None]:
        cases.append((key,v))
cases += [("rope_theta",1e308),("rope_theta",0),("rms_norm_eps",1e308),("rms_norm_eps",-1),("eos_token_id",2**40),("bos_token_id",2**40),("eos_token_id",[1,2,-5]),("rope_scaling",{"rope_type":"llama3","factor":0}),("rope_scaling",{"rope_type":"llama3","factor":1e308,"low_freq_factor":0,"high_freq_factor":0,"original_max_position_embeddings":0}),("rope_scaling",{"rope_type":"yarn","factor":4}),("tie_word_embeddings","yes")]
STM=os.path.join(TMP, 'stm'); ST=os.path.join(TMP, 'st')
os.makedirs(STM,exist_ok=True)
for f in os.listdir(ST):
    if f != 'config.json': os.symlink(os.path.join(ST, f), os.path.join(STM, f))
bad=0
for key,v in cases:
    c=dict(base)
    if v is None: c.pop(key,None)
    else: c[key]=v
    json.dump(c,open(os.path.join(STM, 'config.json'),'w'))
    p=subprocess.run(['timeout','30','prlimit','--as=8000000000',GEN,'-m',STM,'-p','hi','-n','2','--raw'],capture_output=True,text=True)
    err=p.stderr.strip().splitlines()
    errl=[l for l in err if not l.startswith('gen: load')]
    flag = p.returncode not in (0,1,2) or 'panicked' in p.stderr or len(errl)>1
    if flag: bad+=1
    print(('BAD ' if flag else 'ok  ')+f"{key}={v!r:.40} rc={p.returncode} {errl[:2]!r:.300}")
print("bad",bad)
sys.exit(1 if bad else 0)
