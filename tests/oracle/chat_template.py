"""Oracle: chat templates rendered as transformers' apply_chat_template does -> chat_template.json

The model's template is read from the GGUF metadata key `tokenizer.chat_template` with the
`gguf` package (GGUFReader); `bos_token` / `eos_token` are the vocabulary pieces at
`tokenizer.ggml.bos_token_id` / `eos_token_id` (SmolLM2: `<|im_start|>` / `<|im_end|>`).
No tokenizer and no model weights are loaded.

Every case is rendered twice and the two must agree byte for byte (the script stops if not):
  1. transformers' own helper `transformers.utils.chat_template_utils.render_jinja_template`
     (what `PreTrainedTokenizerBase.apply_chat_template(tokenize=False)` calls), with
     `chat_template=..., add_generation_prompt=..., bos_token=..., eos_token=...`;
  2. a plain jinja2 environment built as that helper builds it (transformers 5.23,
     `_compile_jinja_template`): `ImmutableSandboxedEnvironment(trim_blocks=True,
     lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])` (autoescape off,
     keep_trailing_newline off) with the global `raise_exception(msg)` raising
     `jinja2.exceptions.TemplateError(msg)`.
A token that is None is not passed at all (as apply_chat_template, which passes only the
special tokens the tokenizer has), so the template sees it undefined.

Besides the GGUF template, a few hand-written templates in the style of well-known model
families exercise what the SmolLM2 template does not: Llama 3 (`| trim`, `bos_token`,
`loop.index0`), Zephyr (multi-line source with indented block tags, where trim_blocks and
lstrip_blocks matter), Mistral (`raise_exception` on roles that do not alternate or are
unknown), a Phi-3-like one using Python string methods (`.strip()`, `.startswith()`, as
minijinja-contrib's pycompat provides), and one whose source ends in a newline with
`bos_token` unset (keep_trailing_newline off, undefined renders empty). `end_of_turn` is what
each template writes right after an assistant message (written by hand here, checked by the
script against a rendering).

Run (from the repo root):
    /root/hf-venv/bin/python tests/oracle/chat_template.py [path/to/model.gguf]
(jinja2 and gguf suffice for rendering 2; transformers is used when importable.)

Output: tests/oracle/chat_template.json
  {generator,
   gguf: {template, bos_token, eos_token, end_of_turn, cases: [case]},
   templates: [{name, template, bos_token|null, eos_token|null, end_of_turn|null,
                cases: [case], errors: [error_case]}]}
  case       = {name, messages: [{role, content}], add_generation_prompt, expected}
  error_case = {name, messages, add_generation_prompt, error}  (error = raise_exception's message)
"""

import argparse
import os
import sys

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

try:
    from transformers.utils.chat_template_utils import render_jinja_template
except ImportError:  # the llama.cpp venv has no transformers
    render_jinja_template = None


def raise_exception(message):
    raise TemplateError(message)


def jinja_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    return env


def token_kwargs(bos, eos):
    kw = {}
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    return kw


def render(template, messages, add_generation_prompt, bos, eos):
    """Renders with both renderers; returns the string, or raises TemplateError."""
    kw = token_kwargs(bos, eos)
    ours = jinja_env().from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, **kw
    )
    if render_jinja_template is not None:
        theirs, _ = render_jinja_template(
            conversations=[messages],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            **kw,
        )
        if theirs[0] != ours:
            sys.exit(f"jinja2 and transformers disagree:\n{ours!r}\n{theirs[0]!r}")
    return ours


def msg(role, content):
    return {"role": role, "content": content}


# Conversations rendered with every template (each with and without the generation prompt).
CONVERSATIONS = [
    ("user", [msg("user", "What is 2+2?")]),
    ("system_user", [msg("system", "You are a terse assistant."), msg("user", "Name a colour.")]),
    (
        "multi_turn",
        [
            msg("user", "Hi!"),
            msg("assistant", "Hello! How can I help?"),
            msg("user", "Tell me a joke."),
        ],
    ),
    (
        "non_ascii",
        [msg("user", "Café, naïve, 東京, Привет, مرحبا, 👩‍💻 — “quotes” & <b>tags</b>")],
    ),
    ("whitespace", [msg("user", "  \n leading and trailing\twhitespace \n\n")]),
    ("inner_newlines", [msg("user", "line one\nline two\n\n  indented line\r\nCRLF line")]),
    ("empty_content", [msg("user", "")]),
    ("unicode_space", [msg("user", "\u3000full-width space and nbsp\u00a0")]),
]

# Extra conversations for the templates that reject some role orders.
SYSTEM_FIRST_ASSISTANT = [msg("system", "You are kind."), msg("user", "Hi"), msg("assistant", "Hey")]

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Zephyr's template, with its block tags indented so that lstrip_blocks matters too.
ZEPHYR = """{% for message in messages %}
    {% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
    {% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
    {% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
    {% endif %}
    {% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
    {% endif %}
{% endfor %}"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)

PYCOMPAT = """{%- for message in messages %}
    {%- if message.role == 'system' and not message.content.startswith('You') %}
        {{- raise_exception('The system prompt must start with "You"') }}
    {%- endif %}
    {{- '<|' + message.role + '|>\n' + message.content.strip() + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|assistant|>\n' }}
{%- endif %}"""

TRAILING_NEWLINE = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}--\n"

# name, source, bos, eos, end_of_turn, conversations that raise
TEMPLATES = [
    ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", []),
    ("zephyr", ZEPHYR, "<s>", "</s>", "</s>", []),
    (
        "mistral",
        MISTRAL,
        "<s>",
        "</s>",
        "</s>",
        [
            ("system_first", [msg("system", "Be brief."), msg("user", "Hi")]),
            ("two_users", [msg("user", "Hi"), msg("user", "Hello?")]),
            ("tool_role", [msg("user", "What is 6*7?"), msg("tool", "42")]),
        ],
    ),
    (
        "pycompat",
        PYCOMPAT,
        None,
        None,
        "<|end|>",
        [("system_not_you", [msg("system", "Be brief."), msg("user", "Hi")])],
    ),
    ("trailing_newline", TRAILING_NEWLINE, None, "</s>", None, []),
]


def cases_for(template, bos, eos, conversations):
    cases, errors = [], []
    for name, messages in conversations:
        for agp in (False, True):
            case = {
                "name": f"{name}{'+gen' if agp else ''}",
                "messages": messages,
                "add_generation_prompt": agp,
            }
            try:
                case["expected"] = render(template, messages, agp, bos, eos)
                cases.append(case)
            except TemplateError as e:
                case["error"] = str(e)
                errors.append(case)
    return cases, errors


def check_end_of_turn(name, template, bos, eos, end_of_turn):
    """The marker written right after an assistant message (None: nothing recognisable)."""
    probe = "PROBE-assistant-text"
    out = render(template, [msg("user", "PROBE-user"), msg("assistant", probe)], False, bos, eos)
    after = out[out.index(probe) + len(probe):].lstrip()
    if end_of_turn is None:
        assert not after.startswith("<"), (name, after)
    else:
        assert after.startswith(end_of_turn), (name, after, end_of_turn)


def gguf_strings(path):
    from gguf import GGUFReader

    r = GGUFReader(path)

    def field_str(key):
        f = r.fields[key]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    def token(key):
        if key not in r.fields:
            return None
        tid = int(r.fields[key].parts[-1][0])
        toks = r.fields["tokenizer.ggml.tokens"]
        return bytes(toks.parts[toks.data[tid]]).decode("utf-8")

    return (
        field_str("tokenizer.chat_template"),
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?", default=None)
    args = ap.parse_args()
    path = oc.resolve_gguf(args.gguf)
    template, bos, eos = gguf_strings(path)

    gguf_cases, gguf_errors = cases_for(template, bos, eos, CONVERSATIONS)
    assert not gguf_errors, gguf_errors
    check_end_of_turn("gguf", template, bos, eos, "<|im_end|>")

    templates = []
    for name, source, t_bos, t_eos, eot, bad in TEMPLATES:
        ok = [c for c in CONVERSATIONS if name != "mistral" or c[0] != "system_user"]
        if name != "mistral":
            ok.append(("system_first_assistant", SYSTEM_FIRST_ASSISTANT))
        cases, errors = cases_for(source, t_bos, t_eos, ok + bad)
        assert len(errors) == 2 * len(bad), (name, errors)
        check_end_of_turn(name, source, t_bos, t_eos, eot)
        templates.append(
            {
                "name": name,
                "template": source,
                "bos_token": t_bos,
                "eos_token": t_eos,
                "end_of_turn": eot,
                "cases": cases,
                "errors": errors,
            }
        )

    renderers = ["jinja2 ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols)"]
    if render_jinja_template is not None:
        renderers.append("transformers.utils.chat_template_utils.render_jinja_template")
    oc.write_json(
        "chat_template.json",
        {
            "generator": oc.generator(
                __file__, ["jinja2", "gguf", "transformers"], path, renderers=renderers
            ),
            "gguf": {
                "template": template,
                "bos_token": bos,
                "eos_token": eos,
                "end_of_turn": "<|im_end|>",
                "cases": gguf_cases,
            },
            "templates": templates,
        },
    )


if __name__ == "__main__":
    main()
