"""Hub ids resolved in a fake local Hugging Face cache (the layout huggingface_hub writes: blobs, refs, snapshots)."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import refimpl
from refimpl.errors import RefimplError
from refimpl.hub import HubModelNotFound, hub_cache_dir, is_hub_id, resolve_hub_id

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"


def _put(repo_dir, commit, files):
    """Write files as huggingface_hub does: content in blobs/<sha256>, snapshots/<commit>/<name> a relative link."""
    snap = repo_dir / "snapshots" / commit
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        blob = repo_dir / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


def _fake_cache(root, *, ref=COMMIT):
    repo = root / "models--tiny-org--tiny-llama"
    ckpt = GOLDEN / "tiny_llama" / "checkpoint"
    files = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    _put(repo, COMMIT, files)
    _put(repo, OLD, {"config.json": (ckpt / "config.json").read_bytes()})
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(ref)
    return repo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "hfhome" / "hub"
    _fake_cache(root)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.chdir(tmp_path)
    return root


def test_load_by_hub_id_equals_load_by_path(cache):
    """refimpl.load("org/name") reads refs/main -> snapshots/<hash> and gives the same model as the path."""
    by_id = refimpl.load("tiny-org/tiny-llama")
    by_path = refimpl.load(GOLDEN / "tiny_llama" / "checkpoint")
    ids = [1, 5, 9, 2]
    np.testing.assert_array_equal(by_id.logits(ids), by_path.logits(ids))
    assert by_id.source.endswith(COMMIT)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "direct"))
    assert hub_cache_dir() == tmp_path / "direct"


def test_revision_by_commit_and_ref(cache):
    assert resolve_hub_id("tiny-org/tiny-llama") == cache / "models--tiny-org--tiny-llama" / "snapshots" / COMMIT
    assert resolve_hub_id(f"tiny-org/tiny-llama@{OLD}").name == OLD
    with pytest.raises(HubModelNotFound, match="refs/v2"):
        resolve_hub_id("tiny-org/tiny-llama@v2")


def test_gguf_snapshot_and_tag(tmp_path):
    repo = tmp_path / "models--org--m-GGUF"
    _put(repo, COMMIT, {"m.Q4_K_M.gguf": b"x", "m.Q8_0.gguf": b"y", "README.md": b"z"})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT + "\n")
    assert resolve_hub_id("org/m-GGUF:q8_0", cache_dir=tmp_path).name == "m.Q8_0.gguf"
    with pytest.raises(HubModelNotFound, match="several .gguf files"):
        resolve_hub_id("org/m-GGUF", cache_dir=tmp_path)
    with pytest.raises(HubModelNotFound, match="Q5"):
        resolve_hub_id("org/m-GGUF:Q5", cache_dir=tmp_path)


def test_missing_model_is_a_clear_message(cache, capsys):
    with pytest.raises(RefimplError) as info:
        refimpl.load("nobody/nothing")
    msg = str(info.value)
    assert "nobody/nothing" in msg and "models--nobody--nothing" in msg and "huggingface-cli download" in msg
    from refimpl.cli import main

    assert main(["generate", "--model", "nobody/nothing", "hi"]) == 2
    err = capsys.readouterr().err
    assert "models--nobody--nothing" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_interrupted_download_is_named(cache):
    shutil.rmtree(cache / "models--tiny-org--tiny-llama" / "snapshots" / COMMIT)
    with pytest.raises(HubModelNotFound, match="interrupted download"):
        resolve_hub_id("tiny-org/tiny-llama")


def test_what_counts_as_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct") and is_hub_id("org/m@main:Q4_K_M")
    assert not is_hub_id("smollm2-135m") and not is_hub_id("./a/b") and not is_hub_id("a/b/c")
    assert not is_hub_id("../x") and not is_hub_id("~/x")
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").mkdir()
    assert not is_hub_id("org/name")  # an existing path is a path


def test_cli_runs_a_hub_id(cache, capsys):
    from refimpl.cli import main

    assert main(["generate", "--model", "tiny-org/tiny-llama", "--ids", "1,5,9", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 3 and all(t.isdigit() for t in out)
