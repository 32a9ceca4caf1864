"""Oracle: llama.cpp tokenization under other pre-tokenizers -> llamacpp_pretok_variants.json

SmolLM2's GGUF says `tokenizer.ggml.pre = smollm`. To check the other pre-tokenizer
families gen supports (gpt-2, llama-bpe, qwen2, default, ...) against llama.cpp, this
script writes vocabulary-only copies of the GGUF (all metadata, no tensors) with
`tokenizer.ggml.pre` replaced, loads each with llama.cpp (Llama(vocab_only=True)) and
records the ids of a list of strings chosen to hit the differences between the regexes
(digits, contractions, whitespace runs, punctuation before newlines, non-ASCII spaces,
combining marks, other scripts' digits), plus every string of llamacpp_tokenize.py.

Each variant is tokenized with add_bos=True (llama.cpp then adds BOS only when the
vocabulary asks for it, which is what gen's encode does) and special=True. The
"llama-bpe (default add_bos)" variant also drops `tokenizer.ggml.add_bos_token`, so that
llama.cpp's default for that family (add BOS) applies.

Run (from anywhere; needs the venv described in llamacpp_tokenize.py, with gguf):
    /root/oracle-venv/bin/python tests/oracle/llamacpp_pretok_variants.py [path/to/model.gguf]

JSON schema:
  generator: {...}  (see oracle_common.generator)
  variants: [{name, pre, drop_keys, add_bos, cases: [{text, ids}]}]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402
from llamacpp_tokenize import CASES as BASE_CASES  # noqa: E402

EXTRA = [
    "I'm here, I'M HERE, we'Re, they'LL, it'd, o'clock ''s",
    "abc 123 4567 89012 3.5e10 x2y3",
    "a\n\nb\n \nc \n d\r\n\r\ne",
    "hello!!\n\n  world??\r\n(ok)\n",
    "tabs\t\tand  spaces   then\tend\t",
    "trailing newline\n",
    "  \n\t ",
    "non\u00a0breaking\u00a0space and\u3000ideographic\u3000space",
    "em\u2003space thin\u2009space nel\u0085line ls\u2028ps\u2029end",
    "zero\u200bwidth\u200cjoiner\u200dtest\ufeffbom",
    "cafe\u0301 nai\u0308ve (decomposed) vs café naïve (composed)",
    "\u0915\u094d\u0937 \u0939\u093f\u0928\u094d\u0926\u0940 \u0967\u0968\u0969",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22 \u0e51\u0e52\u0e53",
    "\uff11\uff12\uff13 \u2166\u216b \u00bd \u00b2\u00b3 \u0663\u0664 \u2460\u2461",
    "\u4e00\u4e8c\u4e09 123 \u58f9\u8d30",
    "mixed\U0001F600emoji\U0001F600\U0001F600 and \U0001F1EB\U0001F1F7 flags",
    "symbols $100 +5 <tag> a=b ^x ~y |z `q` \u20ac5 \u00a9 \u2122",
    "x\u1c89y \u1c89 \U00010d50 \U00011f00",
    "control\x01char\x7f and \x1b[0m",
    "<|im_start|>user\n12 + 34 = ?<|im_end|>\n",
    "<|im_start|><|im_start|>text<|endoftext|><|im_end|>",
    "'s's's 's 'S",
    "... --- !!! ??? ;;; ::: \"\"\" '''",
    # Characters whose UTF-8 bytes are missing from SmolLM2's byte-level vocabulary (0x04, 0x06,
    # 0x13, 0x14, 0x16, 0x1D, 0xF1, 0xF2 ...): llama.cpp drops them but keeps them as a barrier
    # to merges; Hugging Face's BPE alone would merge across them.
    "x\U00042019\U00042019y \U00042026\U00042026 \U00080000z",
    "ctl\x04\x06\x13\x14\x16\x1dend \x04\x04 a\x1db",
]

VARIANTS = [
    # name, pre, metadata keys to drop
    ("smollm", "smollm", []),
    ("starcoder", "starcoder", []),
    ("gpt-2", "gpt-2", []),
    ("llama-bpe", "llama-bpe", []),
    ("llama-bpe (default add_bos)", "llama-bpe", ["tokenizer.ggml.add_bos_token"]),
    ("qwen2", "qwen2", []),
    ("default", "default", []),
    ("missing pre (llama.cpp uses default)", None, ["tokenizer.ggml.pre"]),
]


def write_variant(reader, path, pre, drop):
    from gguf import GGUFWriter, GGUFValueType

    arch = reader.fields["general.architecture"].contents()
    w = GGUFWriter(path, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        val = field.contents()
        if key == "tokenizer.ggml.pre" and pre is not None:
            val = pre
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, val, vtype, sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)

    import llama_cpp
    from gguf import GGUFReader
    from llama_cpp import Llama

    reader = GGUFReader(path)
    texts = [t for _, t in BASE_CASES] + EXTRA
    variants = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, pre, drop in VARIANTS:
            vpath = os.path.join(tmp, "variant.gguf")
            write_variant(reader, vpath, pre, drop)
            llm = Llama(model_path=vpath, vocab_only=True, verbose=False)
            add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))
            cases = [{"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=True, special=True)} for t in texts]
            variants.append({"name": name, "pre": pre, "drop_keys": drop, "add_bos": add_bos, "cases": cases})
            print(f"{name}: add_bos={add_bos}, {len(cases)} cases")
            del llm
            os.remove(vpath)

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "gguf"], path,
            call="Llama(vocab_only=True).tokenize(text.encode('utf-8'), add_bos=True, special=True) "
                 "on copies of the GGUF with tokenizer.ggml.pre replaced",
        ),
        "variants": variants,
    }
    oc.write_json("llamacpp_pretok_variants.json", out)


if __name__ == "__main__":
    main()
