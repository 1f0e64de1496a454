#!/usr/bin/env python3
"""Reference tokenizer / chat-template fixture for verinfer's `vir::tokenizer` tests.

Independently of the Rust code, this reads SmolLM2-135M-Instruct's GGUF with the PyPI `gguf` reader, builds a Hugging Face
`tokenizers` tokenizer from the GGUF metadata (byte-level BPE from vocab + merges, pre-tokenizer
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)], ByteLevel decoder, CONTROL tokens
as special added tokens), renders the GGUF's chat template with Python Jinja2 the way `transformers.apply_chat_template`
does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks), and writes the expected ids / texts as JSON.

Usage (from the repository root):
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install gguf tokenizers jinja2
    /tmp/refvenv/bin/python scripts/reference/tokenizer_reference.py \
        [--gguf ~/.cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--out vir/tests/fixtures/smollm2_tokenizer_reference.json]

Versions used for the committed fixture: gguf 0.19.0, tokenizers 0.23.3, Jinja2 3.1.6.
"""

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import tokenizers
from gguf import GGUFReader
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

DEFAULT_GGUF = os.path.expanduser("~/.cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "vir", "tests", "fixtures", "smollm2_tokenizer_reference.json"
)
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

# Strings whose ids are pinned. Names are stable identifiers used by the Rust test for messages.
CASES = [
    ("ascii", "Hello, world!"),
    ("japanese", "日本語のテキストです。"),
    ("chinese", "中文分词测试：你好，世界！"),
    ("accents", "Café naïve résumé façade — Ångström, São Paulo, Zürich"),
    ("combining", "e\u0301 vs \u00e9, zero\u200bwidth, nbsp\u00a0here"),
    ("scripts", "Ελληνικά, русский, العربية, हिन्दी, 한국어"),
    ("emoji", "👋 Hello 🌍! 🎉🎉"),
    ("emoji_zwj", "Family: 👨\u200d👩\u200d👧\u200d👦, flags: 🇫🇷🇯🇵, skin: 👍🏽, 🏳️\u200d🌈"),
    ("tabs", "tab\there\t\tdouble\t"),
    ("spaces", "multiple    spaces   here  and trailing spaces   "),
    ("leading_spaces", "   leading spaces"),
    ("crlf", "line one\r\nline two\r\n\r\nline four\n\n\n"),
    ("digits", "12345 and 3.14159 and 1,000,000 and 0x1F"),
    ("unicode_numbers", "１２３ Ⅻ ½ x² ∑ ≤ ∞"),
    ("contractions", "I'm sure they'll say it's fine, don't you think? We've DONE IT'S"),
    ("rust_code", "fn main() {\n    let x: u32 = 42;\n    println!(\"{}\", x + 1);\n}\n"),
    ("python_code", "def f(a, b=2):\n\tif a:\n\t\treturn [i**2 for i in range(b)]  # comment\n"),
    ("special_inline", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"),
    ("special_lookalike", "<|im_start <|im_end|x <im_start|> <|IM_END|>"),
    ("empty", ""),
]

CHATS = [
    (
        "capital_of_france",
        [{"role": "user", "content": "What is the capital of France?"}],
        True,
    ),
    (
        "system_multi_turn",
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hi in 日本語 👋"},
            {"role": "assistant", "content": "こんにちは"},
            {"role": "user", "content": "Thanks!\n  And 2+2?"},
        ],
        False,
    ),
]

# Extra templates (not the model's) that exercise what real chat templates use: tojson (Python separators, indent,
# ensure_ascii, sort_keys, key order), Python string/dict methods, namespace, loop controls, whitespace control with
# trim_blocks/lstrip_blocks. Rendered with the same environment; booleans/None are never printed directly (Python
# prints True/None, minijinja true/none).
TEMPLATES = [
    (
        "tojson",
        "{{ bos_token }}{{ messages | tojson }}\n"
        "{{ messages | tojson(indent=2) }}\n"
        "{{ messages[0] | tojson(sort_keys=true) }}\n"
        "{{ {'a': [1, 2.5, 0.1, 1e20, none, true, false, 'q\"b\\\\s\\tt'], 'b': {'c': 'ü', 'd': []}, 'e': {}} | tojson }}\n"
        "{{ {'a': [1, {'b': 2}], 'c': []} | tojson(indent=1) }}\n"
        "{{ 'héllo 👋' | tojson(ensure_ascii=true) }}{{ eos_token }}",
    ),
    (
        "pycompat_loops",
        """{%- set ns = namespace(count=0, last='') -%}
{%- for m in messages -%}
    {%- if m.role == 'system' %}{% continue %}{% endif -%}
    {%- set ns.count = ns.count + 1 -%}
    [{{ loop.index }}:{{ m.role | upper }}] {{ m.content.strip() }}
    {% if m.content.startswith('Say') %}starts-with-say {% endif %}words={{ m['content'].split() | length }}
    {% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}

    {%- set ns.last = m.content.replace('\\n', ' / ').title() %}
    {%- if ns.count >= 3 %}{% break %}{% endif %}
{% endfor %}
count={{ ns.count }} last={{ ns.last }}{% if add_generation_prompt %} GEN{% endif %}
""",
    ),
]


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def build_tokenizer(reader):
    model = field(reader, "tokenizer.ggml.model")
    pre = field(reader, "tokenizer.ggml.pre")
    if model != "gpt2" or pre != "smollm":
        sys.exit(f"unexpected tokenizer model/pre: {model!r}/{pre!r}")
    tokens = field(reader, "tokenizer.ggml.tokens")
    token_types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    if len(tokens) != len(token_types):
        sys.exit("token / token_type length mismatch")
    vocab = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            sys.exit(f"duplicate token {t!r}")
        vocab[t] = i
    merge_pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep or not a or not b or " " in b:
            sys.exit(f"malformed merge {m!r}")
        merge_pairs.append((a, b))
    tok = Tokenizer(models.BPE(vocab, merge_pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [
        AddedToken(t, special=True, normalized=False)
        for t, ty in zip(tokens, token_types)
        if ty == TOKEN_TYPE_CONTROL
    ]
    user_defined = [
        AddedToken(t, special=False, normalized=False)
        for t, ty in zip(tokens, token_types)
        if ty == TOKEN_TYPE_USER_DEFINED
    ]
    tok.add_special_tokens(specials)
    if user_defined:
        tok.add_tokens(user_defined)
    for t in specials:
        assert tok.token_to_id(t.content) == vocab[t.content]
    return tok, tokens, token_types


def render_chat(template, messages, add_generation_prompt, bos_token, eos_token):
    # Mirrors transformers.utils.chat_template_utils._compile_jinja_template.
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=os.environ.get("VERINFER_SMOLLM2_GGUF", DEFAULT_GGUF))
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    with open(args.gguf, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"{args.gguf}: sha256 {sha} != expected {EXPECTED_SHA256}")

    reader = GGUFReader(args.gguf)
    tok, tokens, token_types = build_tokenizer(reader)
    bos_id = int(field(reader, "tokenizer.ggml.bos_token_id"))
    eos_id = int(field(reader, "tokenizer.ggml.eos_token_id"))
    template = field(reader, "tokenizer.chat_template")
    bos_token, eos_token = tokens[bos_id], tokens[eos_id]

    cases = []
    for name, text in CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=True),
                "decoded_with_specials": tok.decode(ids, skip_special_tokens=False),
            }
        )

    chats = []
    for name, messages, add_generation_prompt in CHATS:
        rendered = render_chat(template, messages, add_generation_prompt, bos_token, eos_token)
        ids = tok.encode(rendered, add_special_tokens=False).ids
        chats.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "rendered": rendered,
                "ids": ids,
            }
        )
    templates = []
    multi_turn = CHATS[1][1]
    for name, template_src in TEMPLATES:
        templates.append(
            {
                "name": name,
                "template": template_src,
                "messages": multi_turn,
                "add_generation_prompt": True,
                "rendered": render_chat(template_src, multi_turn, True, bos_token, eos_token),
            }
        )

    capital = chats[0]
    if len(capital["ids"]) != 37:
        sys.exit(f"capital_of_france prompt has {len(capital['ids'])} ids, expected 37")

    out = {
        "generator": "scripts/reference/tokenizer_reference.py",
        "versions": {"tokenizers": tokenizers.__version__, "jinja2": jinja2.__version__},
        "gguf_sha256": sha,
        "vocab_size": len(tokens),
        "bos_id": bos_id,
        "eos_id": eos_id,
        "control_tokens": [t for t, ty in zip(tokens, token_types) if ty == TOKEN_TYPE_CONTROL],
        "cases": cases,
        "chats": chats,
        "templates": templates,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"wrote {args.out}: {len(cases)} cases, {len(chats)} chats; capital_of_france ids = {capital['ids']}")


if __name__ == "__main__":
    main()
