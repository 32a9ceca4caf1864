"""Oracle: 70 real chat templates rendered by transformers -> chat_templates_corpus.json

The templates are llama.cpp's test corpus, `models/templates/*.jinja` (as shipped in the
llama-cpp-python 0.3.36 sdist under `vendor/llama.cpp/models/templates/`): chat templates of
Qwen2.5/Qwen3, Llama 3.x, Gemma, Phi-3.5, Mistral, DeepSeek, Granite, SmolLM3, Command-R, ...
copied from the models' tokenizer configs. They are part of llama.cpp's test data (MIT licence)
and the models' own permissively licensed configs; their sources are stored in the JSON so that
the Rust test (tests/it/chat_corpus.rs) needs neither Python nor the sdist.

Besides the corpus, a few hand-written templates (`gen-*`, HAND_WRITTEN) exercise what the
corpus reaches only with tools or not at all (tojson's options, strftime_now formats, Python
methods, namespace, loop.previtem).

Every template renders the same conversations (system+user, user only, user/assistant/user,
system+user/assistant/user), each without and with `add_generation_prompt`, through
transformers' own renderer `transformers.utils.chat_template_utils.render_jinja_template` (what
`apply_chat_template(tokenize=False)` calls; it passes `tools=None` and `documents=None`), with
the family's `bos_token` / `eos_token` (FAMILY_TOKENS below; a None token is not passed, so
the template sees it undefined, as for a tokenizer without it). Nothing else is passed.

`strftime_now` (transformers' global, `datetime.now().strftime(fmt)`) is pinned to FIXED_NOW
by replacing the module's `datetime` with a subclass whose `now()` returns that time; the
Rust test gives gen's renderer the same fixed time (`Clock::Fixed`), while gen itself uses
the local time as transformers does.

A case where transformers raises is recorded as an error: `raised` is true when the template
called `raise_exception(msg)` (gen must fail with the same message), false for any other
error (gen must fail too). A template jinja2 cannot compile would be recorded likewise.

Dedupe, to keep the file small: a template identical to an earlier one is stored as
`same_as`; a `+gen` case whose text is the case without the generation prompt plus a suffix
is stored as `suffix` (expected = that case's expected + suffix).

Run (from the repo root), in a venv with transformers 5.23.0 and jinja2 (no torch needed):
    python3 -m venv /tmp/hfchat && /tmp/hfchat/bin/pip install transformers==5.23.0 jinja2
    /tmp/hfchat/bin/python tests/oracle/chat_templates_corpus.py \
        /tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates

Output: tests/oracle/chat_templates_corpus.json
  {generator, fixed_now: {iso, seconds (as UTC: Clock::Fixed)}, conversations, templates}
  template = {name, template | same_as, bos_token|null, eos_token|null, compile_error?,
              cases: [case]}
  case     = {name, conversation, add_generation_prompt,
              expected | suffix | error + raised}
  conversations = {name: [{role, content}]}
"""

import argparse
import calendar
import datetime as dt
import glob
import json
import os
import platform
import sys
from importlib import metadata

import jinja2
import transformers.utils.chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))

# The time strftime_now sees (naive local time, as datetime.now() returns).
FIXED_NOW = dt.datetime(2025, 3, 14, 9, 26, 53)


class FixedDatetime(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = FixedDatetime


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "system_user": [msg("system", "You are a terse assistant."), msg("user", "Name a colour.")],
    "user": [msg("user", "What is 2+2?")],
    "multi_turn": [
        msg("user", "Hi!"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "Tell me a joke."),
    ],
    "system_multi_turn": [
        msg("system", "Answer in French."),
        msg("user", "Hello"),
        msg("assistant", "Bonjour !"),
        msg("user", "How are you?"),
    ],
}

# (substring of the file name, bos_token, eos_token): the first match wins. The texts are
# those of each family's tokenizer (tokenizer_config.json), None where it has no such token.
LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
MISTRAL = ("<s>", "</s>")
FAMILY_TOKENS = [
    ("Qwen", None, "<|im_end|>"),
    ("QwQ", None, "<|im_end|>"),
    ("MiMo", None, "<|im_end|>"),
    ("Hermes", "<|begin_of_text|>", "<|im_end|>"),
    ("SmolLM3", None, "<|im_end|>"),
    ("deepseek", *DEEPSEEK),
    ("llama-3", *LLAMA3),
    ("Llama-3", *LLAMA3),
    ("functionary", *LLAMA3),
    ("gemma", "<bos>", "<eos>"),
    ("Phi-3", "<s>", "<|endoftext|>"),
    ("Cohere", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    ("granite", "<|end_of_text|>", "<|end_of_text|>"),
    ("GLM", None, "<|endoftext|>"),
    ("Kimi", "[BOS]", "[EOS]"),
    ("LFM", "<|startoftext|>", "<|im_end|>"),
    ("MiniMax", "]~!b[", "[e~["),
    ("gpt-oss", "<|startoftext|>", "<|return|>"),
    ("Nemotron", "<s>", "<|im_end|>"),
    ("GigaChat", "<s>", "</s>"),
    ("Apriel", "<s>", "</s>"),
    ("Seed-OSS", "<seed:bos>", "<seed:eos>"),
    ("rwkv", None, "\n\n"),
    ("", *MISTRAL),
]


# Hand-written templates (names starting with `gen-`) for what the corpus reaches only with
# tools or not at all: transformers' tojson options, strftime_now formats, loop.previtem,
# namespace, dict and string methods, Python's `in`, and raise_exception.
HAND_WRITTEN = {
    "gen-tojson": (
        "{{ messages | tojson }}\n{{ messages[0] | tojson(indent=2) }}\n"
        "{{ {'b': [1, 2.5, none, true], 'a': 'é\"<>'} | tojson(sort_keys=true) }}\n"
        "{{ messages | tojson(separators=(',', ':')) }}\n{{ 'é' | tojson(ensure_ascii=true) }}\n"
        "{{ {'x': 1e20, 'y': 0.1, 'z': -0.00001, 'w': {}} | tojson(indent='\t') }}"
    ),
    "gen-strftime": "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A, %B %-d, %Y %H:%M:%S %j %p') }}"
    "|{{ strftime_now('%Y-%m-%dT%H:%M:%S.%f%z%Z') }}",
    "gen-python-methods": (
        "{%- set ns = namespace(n=0, roles=[]) %}"
        "{%- for m in messages %}"
        "{%- set ns.n = ns.n + 1 %}"
        "{%- if loop.previtem is defined %}<after {{ loop.previtem.role }}>{% endif %}"
        "{{ m.role.title() }}: {{ m.content.split(' ') | join('_') }}|{{ m.content.rstrip('.!?') }}"
        "|{{ m.content.lstrip('HW') }}|{{ m.content.replace('o', '0') }}|{{ 'e' in m.content }}"
        "|{{ m.content.upper().startswith(('H', 'T')) }}|{% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}"
        "{{ m.get('missing', 'dflt') }}|{{ m.keys() | list | length }}\n"
        "{%- endfor %}"
        "{{ ns.n }} {{ 'role' in messages[0] }} {{ messages | map(attribute='role') | join(',') }}"
        "{%- if messages | length > 3 %}{{ raise_exception('at most 3 messages, got ' ~ messages | length) }}{% endif %}"
    ),
}


def family_tokens(name):
    for key, bos, eos in FAMILY_TOKENS:
        if key in name:
            return bos, eos
    raise AssertionError("unreachable: the last entry matches everything")


def render(template, messages, agp, bos, eos):
    kw = {}
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    out, _ = ctu.render_jinja_template(
        conversations=[messages], chat_template=template, add_generation_prompt=agp, **kw
    )
    return out[0]


def cases_for(template, bos, eos):
    cases = []
    plain = {}
    for conv, messages in CONVERSATIONS.items():
        for agp in (False, True):
            name = conv + ("+gen" if agp else "")
            case = {"name": name, "conversation": conv, "add_generation_prompt": agp}
            try:
                text = render(template, messages, agp, bos, eos)
            except Exception as e:  # noqa: BLE001 - every failure is a recorded outcome
                case["error"] = f"{type(e).__name__}: {e}"
                case["raised"] = type(e) is jinja2.exceptions.TemplateError
                cases.append(case)
                continue
            base = plain.get(conv)
            if agp and base is not None and text.startswith(base):
                case["suffix"] = text[len(base):]
            else:
                case["expected"] = text
            if not agp:
                plain[conv] = text
            cases.append(case)
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("templates", help="the folder of *.jinja files")
    args = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(args.templates, "*.jinja")))
    assert paths, f"no *.jinja in {args.templates}"
    seen = {}
    templates = []
    for path in paths:
        name = os.path.basename(path)[: -len(".jinja")]
        with open(path, encoding="utf-8") as f:
            source = f.read()
        bos, eos = family_tokens(name)
        entry = {"name": name, "bos_token": bos, "eos_token": eos}
        if source in seen:
            entry["same_as"] = seen[source]
        else:
            seen[source] = name
            entry["template"] = source
        try:
            ctu._compile_jinja_template(source)
        except Exception as e:  # noqa: BLE001
            entry["compile_error"] = f"{type(e).__name__}: {e}"
            entry["cases"] = []
        else:
            entry["cases"] = cases_for(source, bos, eos)
        templates.append(entry)
        ok = sum("error" not in c for c in entry["cases"])
        print(f"{name}: {ok}/{len(entry['cases'])} rendered", file=sys.stderr)

    for name, source in HAND_WRITTEN.items():
        templates.append(
            {"name": name, "bos_token": "<s>", "eos_token": "</s>", "template": source,
             "cases": cases_for(source, "<s>", "</s>")}
        )

    out = {
        "generator": {
            "script": "tests/oracle/" + os.path.basename(__file__),
            "packages": {
                "python": platform.python_version(),
                **{p: metadata.version(p) for p in ("transformers", "jinja2")},
            },
            "source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp/models/templates/*.jinja",
            "renderer": "transformers.utils.chat_template_utils.render_jinja_template",
        },
        "fixed_now": {
            "iso": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": calendar.timegm(FIXED_NOW.timetuple()),
        },
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    path = os.path.join(HERE, "chat_templates_corpus.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
