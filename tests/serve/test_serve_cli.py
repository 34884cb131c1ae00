"""`refimpl serve` as a command: a subprocess on 127.0.0.1 serving a tiny checkpoint folder
(config.json, model.safetensors, tokenizer.json), stopped with Ctrl-C (SIGINT) while it streams."""

import tiny_serving

tiny_serving.require()

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from helpers_tiny import hf_config, random_tensors, write_checkpoint

tk = pytest.importorskip("tokenizers", reason="the text extra is not installed (pip install 'refimpl[text]'): "
                                              "the checkpoint's tokenizer.json needs `tokenizers`")


def _checkpoint(tmp_path):
    """A tiny LLaMA with a byte-level tokenizer.json: 256 byte tokens, <|im_start|> 256, <|im_end|> 257 (eos)."""
    from refimpl.text.tokenizer import bytes_to_unicode

    d = tmp_path / "tiny-llama"
    cfg = {**hf_config("llama"), "vocab_size": 258, "max_position_embeddings": 4096, "eos_token_id": 257}
    tensors = random_tensors("llama", seed=3)
    rng = np.random.default_rng(4)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[name] = (rng.standard_normal((258, cfg["hidden_size"])) * 0.5).astype(np.float32)
    write_checkpoint(d, tensors, cfg)
    b2u = bytes_to_unicode()
    hf = tk.Tokenizer(tk.models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
    hf.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tk.decoders.ByteLevel()
    hf.add_special_tokens([tk.AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    hf.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    return d


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_answers_then_stops_cleanly_on_ctrl_c(tmp_path):
    ckpt = _checkpoint(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-c", "import sys; from refimpl.cli import main; sys.exit(main(sys.argv[1:]))",
           "serve", "--model", str(ckpt), "--port", str(port), "--served-model-name", "tiny"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    http = httpx.Client(trust_env=False, timeout=30)
    try:
        for _ in range(300):  # up to ~60 s for the interpreter, numpy and the model to load
            if proc.poll() is not None:
                pytest.fail(f"refimpl serve exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                if http.get(url + "/models").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("refimpl serve did not answer within 60 s")
        models = http.get(url + "/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
        r = http.post(url + "/chat/completions", json={"model": "tiny", "max_tokens": 4, "temperature": 0,
                                                       "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1

        lines, started = [], threading.Event()

        def read_stream():
            body = {"model": "tiny", "prompt": "go", "max_tokens": 4000, "temperature": 1.0, "seed": 0,
                    "stream": True}
            with http.stream("POST", url + "/completions", json=body) as s:
                for line in s.iter_lines():
                    if line:
                        lines.append(line)
                        started.set()

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        assert started.wait(30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "refimpl serve: stopped" in err
    assert lines[-1] == "data: [DONE]"  # the open stream was ended, not cut
    assert "shutting down" in lines[-2]
