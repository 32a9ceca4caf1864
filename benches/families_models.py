"""Bench models for benches/families.sh: one random model per family (llama, qwen2, qwen3, gemma3)
at SmolLM2-135M's size (hidden 576, FFN 1536, 30 layers, 9 heads, 3 KV heads, vocabulary 49152;
Qwen3 and Gemma 3 with head size 64; Gemma 3 with a 512-token window on 5 layers of 6), written
by llama.cpp's own converter with SmolLM2's tokenizer metadata (so prompts tokenize as for the
real model), then quantized to Q8_0 by llama.cpp. Random weights: the speed is what is measured,
not the text. Output: models/bench/{family}.Q8_0.gguf (ignored by git).

Run (from the repo root):
    /tmp/hf/bin/python benches/families_models.py LLAMA_CPP_DIR PYTHON_WITH_LLAMA_CPP
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers

COMMON = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
              num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
              tie_word_embeddings=True)
FAMILIES = {
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", rope_theta=100000.0),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", rope_theta=1000000.0),
    "qwen3": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=64, rope_theta=1000000.0),
    "gemma3": dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", head_dim=64,
                   query_pre_attn_scalar=64, sliding_window=512, rope_theta=1000000.0,
                   rope_local_base_freq=10000.0, hidden_activation="gelu_pytorch_tanh",
                   layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 5),
}

CONVERT = r"""
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/gguf-py')
import gguf
import conversion.base as base
vocab = gguf.GGUFReader(sys.argv[2])
def copy_vocab(self):
    for f in vocab.fields.values():
        if not f.name.startswith('tokenizer.'):
            continue
        t = f.types[0]
        sub = f.types[-1] if t == gguf.GGUFValueType.ARRAY else None
        self.gguf_writer.add_key_value(f.name, f.contents(), t, sub_type=sub)
base.TextModel._set_vocab_gpt2 = copy_vocab
base.TextModel._set_vocab_sentencepiece = lambda self: (_ for _ in ()).throw(FileNotFoundError())
base.TextModel._set_vocab_llama_hf = lambda self: (_ for _ in ()).throw(FileNotFoundError())
sys.argv = ['convert_hf_to_gguf.py'] + sys.argv[3:]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""

QUANTIZE = r"""
import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = 7  # LLAMA_FTYPE_MOSTLY_Q8_0
p.allow_requantize = True
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p)
sys.exit(rc)
"""


def main():
    llama_cpp_dir, python = sys.argv[1], sys.argv[2]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    vocab = os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    out_dir = os.path.join(root, "models", "bench")
    os.makedirs(out_dir, exist_ok=True)
    for family, extra in FAMILIES.items():
        out = os.path.join(out_dir, f"{family}.Q8_0.gguf")
        if os.path.exists(out):
            continue
        cfg = dict(COMMON, **extra)
        with tempfile.TemporaryDirectory() as tmp:
            config = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
            config.architectures = cfg["architectures"]
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            model.save_pretrained(tmp)
            with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
                json.dump({"model": {"vocab": {f"<{i}>": i for i in range(cfg["vocab_size"])}}, "added_tokens": []}, f)
            f16 = os.path.join(tmp, "m.f16.gguf")
            subprocess.run([sys.executable, "-c", CONVERT, llama_cpp_dir, vocab, tmp, "--outfile", f16,
                            "--outtype", "f16"], check=True)
            subprocess.run([python, "-c", QUANTIZE, f16, out], check=True, capture_output=True)
        print("wrote", out)


if __name__ == "__main__":
    main()
