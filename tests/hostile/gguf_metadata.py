"""Hostile GGUF metadata matrix (issue 21): rewrites one metadata key of the real model at a time
(absurd sizes, wrong types, missing keys, broken tokenizer arrays, runaway chat templates) and
runs `gen -p hi -n 2` on each under `timeout 60` and an 8 GB address-space limit. A row is BAD
when gen panics, exits with a status other than 0/1/2, or prints more than one error line.
Run from the repository root after `cargo build --release`: python3 tests/hostile/gguf_metadata.py
Needs only the Python standard library (the GGUF writer below is minimal)."""
import os, sys, tempfile
GEN = os.path.abspath("target/release/gen")
MODEL = os.path.abspath("models/SmolLM2-135M-Instruct.Q4_1.gguf")
TMP = tempfile.mkdtemp(prefix="gen-hostile-")
import atexit, shutil
atexit.register(shutil.rmtree, TMP, True)
import struct, subprocess, sys, math
SRC=MODEL
data=open(SRC,'rb').read()
pos=0
def rd(fmt):
    global pos
    v=struct.unpack_from('<'+fmt,data,pos); pos+=struct.calcsize('<'+fmt); return v[0]
def rstr():
    global pos
    n=rd('Q'); s=data[pos:pos+n]; pos+=n; return s
SZ={0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}
def rval(t):
    if t in SZ: return rd(SZ[t])
    if t==8: return rstr()
    if t==9:
        et=rd('I'); n=rd('Q'); return (et,[rval(et) for _ in range(n)])
magic=data[:4]; pos=4
ver=rd('I'); nt=rd('Q'); nkv=rd('Q')
kvs=[]
for _ in range(nkv):
    k=rstr(); t=rd('I'); v=rval(t); kvs.append([k,t,v])
tinfo_start=pos
for _ in range(nt):
    rstr(); nd=rd('I'); pos+=8*nd+4+8
tinfo=data[tinfo_start:pos]
align=32
for k,t,v in kvs:
    if k==b'general.alignment': align=v
datastart=(pos+align-1)//align*align
body=data[datastart:]
def wval(t,v):
    if t in SZ: return struct.pack('<'+SZ[t],v)
    if t==8: return struct.pack('<Q',len(v))+v
    if t==9:
        et,items=v; return struct.pack('<IQ',et,len(items))+b''.join(wval(et,x) for x in items)
def build(kvs):
    out=bytearray(magic+struct.pack('<IQQ',ver,nt,len(kvs)))
    for k,t,v in kvs:
        out+=struct.pack('<Q',len(k))+k+struct.pack('<I',t)+wval(t,v)
    out+=tinfo
    while len(out)%align: out+=b'\0'
    return bytes(out)+body
def case(key,t,v):
    new=[list(x) for x in kvs]
    found=False
    for x in new:
        if x[0]==key:
            found=True
            if t is None: new.remove(x)
            else: x[1]=t; x[2]=v
            break
    if not found and t is not None: new.append([key,t,v])
    return new
cases=[]
for key in [b'llama.embedding_length',b'llama.feed_forward_length',b'llama.attention.head_count',b'llama.attention.head_count_kv',b'llama.block_count',b'llama.context_length',b'llama.vocab_size',b'llama.rope.dimension_count',b'llama.attention.key_length',b'llama.attention.value_length']:
    for t,v in [(4,0),(10,2**32),(10,2**62),(5,-1),(6,float('nan')),(8,b'x'),(None,None)]:
        cases.append((key,t,v))
for key in [b'llama.rope.freq_base',b'llama.attention.layer_norm_rms_epsilon']:
    for t,v in [(6,float('nan')),(6,float('inf')),(6,0.0),(6,-1.0),(12,1e300),(None,None)]:
        cases.append((key,t,v))
for key in [b'tokenizer.ggml.bos_token_id',b'tokenizer.ggml.eos_token_id',b'tokenizer.ggml.padding_token_id',b'tokenizer.ggml.unknown_token_id']:
    for t,v in [(4,2**32-1),(4,49152),(5,-1),(8,b'x')]:
        cases.append((key,t,v))
tk=[x for x in kvs if x[0]==b'tokenizer.ggml.tokens'][0][2]
cases += [(b'tokenizer.ggml.tokens',9,(8,[])),(b'tokenizer.ggml.tokens',9,(8,tk[1][:100])),(b'tokenizer.ggml.tokens',9,(8,tk[1]+[b'extra']*10)),(b'tokenizer.ggml.tokens',9,(4,[1,2,3])),
  (b'tokenizer.ggml.merges',9,(8,[b'nospace',b'a b c',b'',b' '])),(b'tokenizer.ggml.merges',None,None),(b'tokenizer.ggml.token_type',9,(5,[1,2])),(b'tokenizer.ggml.token_type',9,(5,[99]*len(tk[1]))),
  (b'tokenizer.ggml.model',8,b'bert'),(b'tokenizer.ggml.model',8,b'llama'),(b'tokenizer.ggml.pre',8,b'nonsense'),(b'tokenizer.ggml.pre',None,None),(b'tokenizer.chat_template',8,b'{% for x in range(10**9) %}{{x}}{% endfor %}'),(b'tokenizer.chat_template',8,b'{{ raise_exception("bad") }}'),(b'tokenizer.chat_template',8,b'{% if %}'),(b'tokenizer.chat_template',8,b'\xff\xfe'),
  (b'general.architecture',8,b'qwen2'),(b'general.architecture',None,None),(b'general.alignment',4,3),(b'general.alignment',4,2**31),(b'tokenizer.ggml.add_bos_token',7,True),(b'tokenizer.ggml.scores',9,(6,[float('nan')]*len(tk[1])))]
bad=0
import os
for key,t,v in cases:
    open(os.path.join(TMP, 'hostile.gguf'),'wb').write(build(case(key,t,v)))
    for args in (['-p','hi','-n','2'],):
        p=subprocess.run(['timeout','60','prlimit','--as=8000000000',GEN,'-m',os.path.join(TMP, 'hostile.gguf')]+args,capture_output=True,text=True,errors='replace')
        err=[l for l in p.stderr.strip().splitlines() if not l.startswith('gen: load')]
        flag = p.returncode not in (0,1,2) or 'panicked' in p.stderr or len(err)>1
        bad+=flag
        print(('BAD ' if flag else 'ok  ')+f"{key.decode()}={str(v)[:30]} t={t} rc={p.returncode} {err[:2]!r:.260}",flush=True)
print('bad',bad)
sys.exit(1 if bad else 0)
