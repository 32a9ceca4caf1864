"""Oracle: llama.cpp tokenizer / detokenizer on varied strings -> llamacpp_tokenize.json

Loads only the vocabulary of the GGUF (Llama(vocab_only=True)) and, for each test
string, records llama.cpp's token ids (tokenize(text.encode(), add_bos=False,
special=True): written special tokens such as <|im_start|> map to their single id),
the per-token pieces, and the detokenization of the ids. Also tokenizes the 8
greedy-decoding prompts (oracle_common.GREEDY_PROMPTS) so that hf_f32.py can take
its prompt ids from here (the tokenizer transformers rebuilds from the GGUF lacks
SmolLM's digit split and must not be used).

Run (from anywhere):
    python3 -m venv /root/oracle-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /root/oracle-venv/bin/pip install llama-cpp-python==0.3.36 numpy gguf
    /root/oracle-venv/bin/python tests/oracle/llamacpp_tokenize.py [path/to/model.gguf]

The GGUF path defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf relative to the
repo root. Output: tests/oracle/llamacpp_tokenize.json

JSON schema:
  generator: {script, packages, model_file, model_sha256, machine, llama_system_info, call}
  special: {bos, eos, im_start, im_end, endoftext, n_vocab, add_bos}
  cases: [{name, text, ids, pieces, pieces_hex, detok, detok_special}]
      pieces:        token_to_piece(id, special=True) decoded utf-8 with errors='replace' (lossy)
      pieces_hex:    the same piece bytes as hex (lossless; byte-level BPE pieces may be partial UTF-8)
      detok:         llm.detokenize(ids) (special=False: control tokens render as nothing), utf-8 'replace'
      detok_special: llm.detokenize(ids, special=True), utf-8 'replace'
  greedy_prompts: [{text, ids}]   (same tokenize call)
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

LONG_PARAGRAPH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
    "incredulity, it was the season of Light, it was the season of Darkness, it was "
    "the spring of hope, it was the winter of despair, we had everything before us, "
    "we had nothing before us, we were all going direct to Heaven, we were all going "
    "direct the other way -- in short, the period was so far like the present period, "
    "that some of its noisiest authorities insisted on its being received, for good "
    "or for evil, in the superlative degree of comparison only. There were a king "
    "with a large jaw and a queen with a plain face, on the throne of England; there "
    "were a king with a large jaw and a queen with a fair face, on the throne of "
    "France. In both countries it was clearer than crystal to the lords of the State "
    "preserves of loaves and fishes, that things in general were settled for ever. "
    "It was the year of Our Lord one thousand seven hundred and seventy-five (1775)."
)

CASES = [
    ("empty", ""),
    ("single_space", " "),
    ("single_char", "a"),
    ("hello_world", "Hello, world!"),
    ("digits_assign", "x =  12"),
    ("pi", "3.14159"),
    ("ten_digits", "1234567890"),
    ("year", "year 2024"),
    ("big_number", "The total was 1,234,567.89 dollars (about 10^6)."),
    ("negative_sci", "-0.5e-10 and +42 and 007"),
    ("tabs_digits", "\t\t42"),
    ("newlines_space_digit", "\n\n 7"),
    ("a_spaces_newline_b", "a  \n  b"),
    ("many_spaces", "a     b      c"),
    ("spaces_only", "     "),
    ("newlines_only", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n"),
    ("leading_ws", "   leading spaces"),
    ("trailing_ws", "trailing spaces   "),
    ("leading_trailing_newline", "\nHello\n"),
    ("tab_indent", "\tindented\n\t\tmore"),
    ("accents", "café naïve résumé"),
    ("german", "Straße, Grüße, Ärger über Öl"),
    ("cjk_zh", "你好，世界"),
    ("cjk_ja", "日本語のテキスト"),
    ("korean", "안녕하세요"),
    ("cyrillic", "Привет, мир!"),
    ("arabic", "مرحبا بالعالم"),
    ("emoji", "👋🏽 hi 🚀"),
    ("emoji_zwj", "👨‍👩‍👧‍👦 family"),
    ("rust_code", 'fn main() { println!("hi"); }'),
    ("python_code", "def f(x):\n    return x**2"),
    ("json", '{"key": [1, 2, 3], "nested": {"a": null}}'),
    ("html", '<div class="x">Hello &amp; bye</div>'),
    ("contractions", "I'm, you're, they'll, it's"),
    ("contractions_upper", "I'M YOU'RE THEY'LL IT'S don't WON'T"),
    ("url", "https://example.com/path?query=1&x=y#frag"),
    ("email", "someone@example.org"),
    ("mixed_case", "HeLLo WoRLD camelCase snake_case SCREAMING_CASE"),
    ("punct_run", "Wait... what?!?! (yes) [no] {maybe} -- ok; fine: done."),
    ("quotes", "\u201cSmart quotes\u201d and \u2018single\u2019 and \"straight\""),
    ("math", "E = mc^2, a² + b² = c², ∑ x_i ≤ 10"),
    ("chatml", "<|im_start|>user\nHello<|im_end|>\n"),
    ("endoftext", "<|endoftext|>"),
    ("chatml_full", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("special_inline", "text<|im_end|>more<|endoftext|>end"),
    ("special_like_broken", "<|im_start |> <im_start> <|unknown|>"),
    ("long_paragraph", LONG_PARAGRAPH),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=oc.DEFAULT_GGUF)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)

    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=path, vocab_only=True, verbose=False)

    def tok(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def piece_bytes(i):
        return llm.detokenize([i], special=True)

    def single(text):
        ids = tok(text)
        assert len(ids) == 1, (text, ids)
        return ids[0]

    special = {
        "bos": llm.token_bos(),
        "eos": llm.token_eos(),
        "im_start": single("<|im_start|>"),
        "im_end": single("<|im_end|>"),
        "endoftext": single("<|endoftext|>"),
        "n_vocab": llm.n_vocab(),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model))),
    }

    cases = []
    for name, text in CASES:
        ids = tok(text)
        pb = [piece_bytes(i) for i in ids]
        cases.append({
            "name": name,
            "text": text,
            "ids": ids,
            "pieces": [b.decode("utf-8", errors="replace") for b in pb],
            "pieces_hex": [b.hex() for b in pb],
            "detok": llm.detokenize(ids).decode("utf-8", errors="replace"),
            "detok_special": llm.detokenize(ids, special=True).decode("utf-8", errors="replace"),
        })
        # Sanity: concatenated special-aware pieces reproduce the input for valid UTF-8 text.
        if b"".join(pb) != text.encode("utf-8"):
            print(f"note: pieces of {name!r} do not concatenate back to the input", file=sys.stderr)

    greedy = [{"text": p, "ids": tok(p)} for p in oc.GREEDY_PROMPTS]

    out = {
        "generator": oc.generator(
            __file__, ["llama-cpp-python", "numpy"], path,
            llama_system_info=llama_cpp.llama_print_system_info().decode().strip(),
            call="Llama(vocab_only=True).tokenize(text.encode('utf-8'), add_bos=False, special=True)",
        ),
        "special": special,
        "cases": cases,
        "greedy_prompts": greedy,
    }
    oc.write_json("llamacpp_tokenize.json", out)
    print("special:", special)
    for c in cases[:12]:
        print(repr(c["text"])[:50], c["ids"][:16], c["pieces"][:16])


if __name__ == "__main__":
    main()
