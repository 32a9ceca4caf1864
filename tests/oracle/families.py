"""Oracle: tiny random Qwen2, Qwen3, Gemma 3 and Phi-3 models, teacher-forced through transformers (f32)
and through llama.cpp on the GGUF that llama.cpp's own converter makes of them -> families.json

Each model is made here from its config: every tensor of the Hugging Face state dict is filled
from splitmix64 seeded with the FNV-1a hash of the tensor's name (values k / 2^23 - 1 for the top
24 bits k, exact in f32), so the Rust test (tests/it/families.rs) rebuilds the same weights
without any file being committed. Norm weights are centred on 1 (Gemma 3 on 0: transformers
stores w - 1 and computes x * (1 + w)), biases and the rest on 0.

1. transformers 5.23 (eager attention, f32): log-softmax at every position of a fixed token
   sequence. Gemma 3 has a sliding window of 8 over 48 tokens and 6 layers (5 local, 1 global)
   so the window and the two RoPE bases matter.
2. `vendor/llama.cpp/convert_hf_to_gguf.py` of the llama-cpp-python 0.3.36 sdist writes the
   GGUF (f32 and f16). The tiny models have no real tokenizer, so the converter's vocabulary
   step is replaced by a 256-entry byte-level one (255 GPT-2 byte characters and `Ġt`, one
   merge; the Rust test writes the same); tensors and
   hyper-parameters are the converter's own. The script records the GGUF's metadata
   (tokenizer keys aside), which the Rust test writes back with the same weights, and the
   sha256 of every tensor, which it checks, so both sides run the very file llama.cpp ran.
3. llama.cpp (AVX2 build as docs/TESTING.md says; `use_extra_bufts=False`, flash attention
   off, f32 KV cache as the other golden runs; one batch, logits_all) on each GGUF:
   log-softmax at every position.

Recorded per family and per source: argmax at each position and the log-probability of the
next token of the sequence (teacher forcing), plus the full log-softmax rows of llama.cpp's f32
run at the first, a middle and the last position.

Run (from the repo root; paths as in docs/TESTING.md):
    /tmp/hf/bin/python tests/oracle/families.py /tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp /tmp/lcpenv2/bin/python
(the first venv has torch, transformers, gguf, numpy, safetensors; the second llama-cpp-python.)
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

MASK64 = (1 << 64) - 1

FAMILIES = {
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": False, "hidden_act": "silu",
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 256,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False,
    },
    "gemma3": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 6,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 256,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "sliding_window": 8, "query_pre_attn_scalar": 16,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
        "tie_word_embeddings": True, "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": None, "attn_logit_softcapping": None,
    },
    "phi3": {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 128, "original_max_position_embeddings": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "hidden_act": "silu", "sliding_window": None, "pad_token_id": 0,
        "bos_token_id": 1, "eos_token_id": 2,
    },
}
N_TOKENS = 48


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def splitmix(seed, n):
    """n values k / 2^23 - 1 from splitmix64 (the same as tests/it/tiny.rs's Rng)."""
    out = np.empty(n, dtype=np.float32)
    s = seed
    for i in range(n):
        s = (s + 0x9E3779B97F4A7C15) & MASK64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        out[i] = np.float32((z >> 40) / float(1 << 24) * 2.0 - 1.0)
    return out


def fill(name, shape, cfg):
    """The value rule the Rust test repeats: centre + scale * splitmix(fnv1a(name))."""
    n = int(np.prod(shape))
    base = name.rsplit(".", 1)[0]
    if name.endswith("norm.weight"):
        centre, scale = (0.0 if cfg["model_type"] == "gemma3_text" else 1.0), 0.2
    elif name.endswith(".bias"):
        centre, scale = 0.0, 0.5
    elif "embed_tokens" in base:
        centre, scale = 0.0, 1.0
    else:
        centre, scale = 0.0, 2.0 * math.sqrt(3.0 / shape[-1])
    v = splitmix(fnv1a(name), n) * np.float32(scale) + np.float32(centre)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def tokens_for(cfg):
    raw = splitmix(fnv1a("tokens"), N_TOKENS)
    return [int((x + 1.0) / 2.0 * cfg["vocab_size"]) % cfg["vocab_size"] for x in raw]


def log_softmax(rows):
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.max(axis=-1, keepdims=True)
    return rows - m - np.log(np.exp(rows - m).sum(axis=-1, keepdims=True))


def summary(lp, tokens):
    return {
        "argmax": [int(r.argmax()) for r in lp],
        "next_logprob": [round(float(lp[i][tokens[i + 1]]), 6) for i in range(len(tokens) - 1)],
    }


def make_hf(family, cfg, folder):
    import transformers
    from safetensors.torch import save_file

    config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    config.architectures = cfg["architectures"]
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    state = {}
    for name, p in model.state_dict().items():
        if cfg["tie_word_embeddings"] and name == "lm_head.weight":
            continue
        state[name] = fill(name, tuple(p.shape), cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(m == "lm_head.weight" for m in missing), (missing, unexpected)
    if cfg["tie_word_embeddings"]:
        model.tie_weights()
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    # What the converter reads for the vocabulary size of Gemma's embedding (its own
    # vocabulary step is replaced, see convert()).
    # Phi-3's vocabulary step reads tokenizer_config.json and takes the byte-level path.
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer"}, f)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump({"model": {"vocab": {f"<{i}>": i for i in range(cfg["vocab_size"])}}, "added_tokens": []}, f)
    tokens = tokens_for(cfg)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double().numpy()
    return tokens, log_softmax(logits), state


CONVERT = r"""
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/gguf-py')
import conversion.base as base
def byte_chars():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]
def byte_vocab(self):
    # 255 GPT-2 byte characters and one merge, as tests/it/families.rs writes too.
    w = self.gguf_writer
    tokens = byte_chars()[:255] + ['\u0120t']
    assert len(tokens) == self.hparams['vocab_size']
    w.add_tokenizer_model('gpt2'); w.add_tokenizer_pre('default')
    w.add_token_list(tokens); w.add_token_types([1] * len(tokens)); w.add_token_merges(['\u0120 t'])
base.TextModel._set_vocab_gpt2 = byte_vocab
base.TextModel._set_vocab_sentencepiece = lambda self: (_ for _ in ()).throw(FileNotFoundError())
sys.argv = ['convert_hf_to_gguf.py'] + sys.argv[2:]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def convert(llama_cpp, folder, out, outtype):
    subprocess.run([sys.executable, "-c", CONVERT, llama_cpp, folder, "--outfile", out, "--outtype", outtype],
                   check=True, capture_output=True)


def source_of(data, state):
    """Which Hugging Face tensor a GGUF tensor holds, and the shift the converter added."""
    flat = np.asarray(data).ravel()
    for name, t in state.items():
        v = t.numpy().ravel()
        if v.size != flat.size:
            continue
        for shift in (0.0, 1.0):
            if np.array_equal((v + np.float32(shift)).astype(flat.dtype), flat):
                return name, shift
    raise SystemExit(f"no Hugging Face tensor matches a GGUF tensor of {flat.size} values")


def describe_gguf(path, llama_cpp, state):
    sys.path.insert(0, os.path.join(llama_cpp, "gguf-py"))
    import gguf

    r = gguf.GGUFReader(path)
    meta = []
    for f in r.fields.values():
        if f.name.startswith("tokenizer.") or f.name.startswith("GGUF.") or f.name.startswith("general."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            val = [f.parts[i].tolist()[0] for i in f.data]
            meta.append({"key": f.name, "type": "array", "item": sub.name.lower(), "value": val})
        elif t == gguf.GGUFValueType.STRING:
            meta.append({"key": f.name, "type": "string", "value": bytes(f.parts[-1]).decode()})
        else:
            meta.append({"key": f.name, "type": t.name.lower(), "value": f.parts[-1].tolist()[0]})
    tensors = []
    for t in r.tensors:
        src, shift = source_of(t.data, state)
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "from": src,
            "add": shift,
            "sha256": hashlib.sha256(t.data.tobytes()).hexdigest(),
        })
    return meta, tensors


LLAMA = r"""
import json, sys
import numpy as np
import llama_cpp
path, tokens = sys.argv[1], json.loads(sys.argv[2])
m = llama_cpp.Llama(model_path=path, n_ctx=128, n_batch=128, n_ubatch=128, logits_all=True,
                    n_threads=1, verbose=False, use_extra_bufts=False, flash_attn=False,
                    type_k=0, type_v=0, n_gpu_layers=0)
m.eval(tokens)
print(json.dumps(np.asarray(m.scores[:len(tokens)], dtype=np.float64).tolist()))
"""


def llama_cpp_logits(python, path, tokens):
    env = dict(os.environ, GGML_CPU_TILED_MM="0")
    out = subprocess.run([python, "-c", LLAMA, path, json.dumps(tokens)], check=True,
                         capture_output=True, text=True, env=env).stdout
    return log_softmax(json.loads(out))


def main():
    llama_cpp, python = sys.argv[1], sys.argv[2]
    import transformers
    out = {"generator": f"tests/oracle/families.py, transformers {transformers.__version__}, "
                        f"llama.cpp of llama-cpp-python 0.3.36 (AVX2 build)", "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for family, cfg in FAMILIES.items():
            # A neutral folder name: the converter writes it as general.name, and llama.cpp
            # looks up tokens that the byte vocabulary lacks when that name says "phi3".
            folder = os.path.join(tmp, family, "model")
            tokens, hf_lp, state = make_hf(family, cfg, folder)
            names = [{"name": n, "shape": list(state[n].shape)} for n in sorted(state)]
            rec = {"config": cfg, "tensors_hf": names, "tokens": tokens,
                   "transformers": summary(hf_lp, tokens), "gguf": {}}
            for outtype in ["f32", "f16"]:
                path = os.path.join(tmp, f"{family}-{outtype}.gguf")
                convert(llama_cpp, folder, path, outtype)
                meta, tensors = describe_gguf(path, llama_cpp, state)
                lp = llama_cpp_logits(python, path, tokens)
                g = {"metadata": meta, "tensors": tensors, "llama_cpp": summary(lp, tokens)}
                if outtype == "f32":
                    g["rows"] = {str(i): [round(float(x), 6) for x in lp[i]] for i in (0, N_TOKENS // 2, N_TOKENS - 1)}
                    d = np.abs(np.asarray(g["llama_cpp"]["next_logprob"]) - np.asarray(rec["transformers"]["next_logprob"]))
                    print(f"{family}: llama.cpp f32 vs transformers: mean |dlogp| {d.mean():.2e}, max {d.max():.2e}, "
                          f"argmax {sum(a == b for a, b in zip(g['llama_cpp']['argmax'], rec['transformers']['argmax']))}/{N_TOKENS}")
                rec["gguf"][outtype] = g
            out["families"][family] = rec
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "families.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
