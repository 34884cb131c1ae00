"""Fuzzed loaders: every mutated checkpoint, GGUF or config file either loads consistently or raises a
RefimplError naming the file; nothing else (IndexError, KeyError, struct.error, UnicodeDecodeError,
OverflowError, MemoryError, json or NumPy errors), no hang, no huge allocation, never unpickling.

A mutation is a small JSON-able dict ({"kind", "file", "op", ...}) so that a failing example found by
Hypothesis can be pasted into tests/regressions/fuzz_cases.json and is replayed on every run.

Valid files come from tests/helpers_tiny.py (safetensors layouts, hand-written names and shapes) and
gguf's own GGUFWriter (a tiny llama); the loaders are refimpl.checkpoints.layouts.load_weights,
refimpl.checkpoints.gguf_reader.read_gguf and refimpl.checkpoints.config_files.load_config.

Set REFIMPL_FUZZ_STATS=<file.json> to have the outcome counts (per file kind: loaded / rejected)
written at the end of the module; HYPOTHESIS_PROFILE=thorough runs 1000 examples per test.
"""

import collections
import json
import os
import shutil
import signal
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import helpers_tiny as tiny  # noqa: E402

from refimpl.checkpoints.layouts import canonical_shapes, load_weights  # noqa: E402
from refimpl.checkpoints.safetensors_io import DTYPES, open_safetensors  # noqa: E402
from refimpl.checkpoints.config_files import load_config  # noqa: E402
from refimpl.errors import CheckpointError, ConfigError, RefimplError  # noqa: E402

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed")
from refimpl.checkpoints.gguf_reader import read_gguf  # noqa: E402

HERE = os.path.dirname(__file__)
REGRESSIONS = os.path.join(HERE, "regressions", "fuzz_cases.json")
HANG_SECONDS = 10  # a tiny file that takes longer than this to load or refuse counts as a hang

STATS = collections.defaultdict(collections.Counter)  # kind -> {"loaded", "rejected"}

# checkpoint kinds fuzzed as whole folders: (helpers_tiny kind, shards)
CHECKPOINTS = {"st_llama": ("llama", 1), "st_qwen3_tied": ("qwen3", 1), "st_gpt2": ("gpt2", 1),
               "st_mixtral_sharded": ("mixtral", 2), "st_gpt_oss_mxfp4": ("gpt_oss_hf_mxfp4", 1),
               "st_gpt_oss_original": ("gpt_oss_original", 1)}
CONFIGS = {"cfg_" + k: k for k in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "mixtral", "gpt_oss_hf_mxfp4",
                                   "gpt_oss_original")}


# --------------------------------------------------------------------------------- valid files

def _write_gguf(path):
    """A tiny llama GGUF (2 layers, d=16, 4 heads / 2 kv heads, one F16 tensor) written by gguf's writer."""
    rng = np.random.default_rng(5)
    L, d, H, KV, D, I, V = 2, 16, 4, 2, 4, 24, 32
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(L)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(I)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    shapes = {"token_embd.weight": (V, d), "output_norm.weight": (d,)}
    for i in range(L):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (d,), b + "attn_q.weight": (H * D, d), b + "attn_k.weight": (KV * D, d),
                       b + "attn_v.weight": (KV * D, d), b + "attn_output.weight": (d, H * D),
                       b + "ffn_norm.weight": (d,), b + "ffn_gate.weight": (I, d), b + "ffn_up.weight": (I, d),
                       b + "ffn_down.weight": (d, I)})
    for name, shape in shapes.items():
        a = rng.standard_normal(shape).astype(np.float32)
        w.add_tensor(name, a.astype(np.float16) if name == "blk.1.ffn_up.weight" else a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


class Corpus:
    """Valid files of every kind, their bytes, and what loading them gives."""

    def __init__(self, base):
        self.base = base
        self.files = {}      # kind -> {relative file name: bytes}
        self.root = {}       # kind -> folder the loader is given (relative part inside a case dir)
        self.reference = {}  # kind -> loader result of the valid files
        for kind, (hk, shards) in CHECKPOINTS.items():
            d, _, _ = tiny.make_checkpoint(os.path.join(base, "valid"), hk, shards=shards)
            sub = "original" if hk == "gpt_oss_original" else ""
            folder = os.path.join(d, sub)
            self.files[kind] = {os.path.join(sub, f): open(os.path.join(folder, f), "rb").read()
                                for f in sorted(os.listdir(folder))}
            self.reference[kind] = load_weights(d)
        for kind, hk in CONFIGS.items():
            self.files[kind] = {"config.json": json.dumps(tiny.hf_config(hk)).encode()}
            self.reference[kind] = load_config(_bytes_dir(base, "valid-" + kind, self.files[kind]) + "/config.json")
        os.makedirs(os.path.join(base, "valid-gguf"))
        p = _write_gguf(os.path.join(base, "valid-gguf", "model.gguf"))  # same stem (the config's name) as cases
        self.files["gguf_llama"] = {"model.gguf": open(p, "rb").read()}
        self.reference["gguf_llama"] = read_gguf(p)[:2]
        r = gguf.GGUFReader(p)
        self.gguf_header_end = int(r.data_offset)
        self._n = 0

    def case_dir(self, kind, mutated_name, mutated_bytes):
        """A fresh folder holding the kind's files with one replaced (others hard-linked copies)."""
        self._n += 1
        d = os.path.join(self.base, f"case{self._n}")
        files = dict(self.files[kind])
        if mutated_bytes is None:
            files.pop(mutated_name)
        else:
            files[mutated_name] = mutated_bytes
        return _bytes_dir(self.base, f"case{self._n}", files) or d


def _bytes_dir(base, name, files):
    d = os.path.join(base, name)
    for rel, raw in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "wb") as f:
            f.write(raw)
    return d


@pytest.fixture(scope="module")
def corpus():
    base = tempfile.mkdtemp(prefix="refimpl-fuzz-")
    c = Corpus(base)
    yield c
    shutil.rmtree(base, ignore_errors=True)
    out = os.environ.get("REFIMPL_FUZZ_STATS")
    if out:
        with open(out, "w") as f:
            json.dump({k: dict(v) for k, v in sorted(STATS.items())}, f, indent=1)


# ------------------------------------------------------------------------------------ mutations

def _header(raw):
    """(header length N, decoded JSON header) of safetensors bytes."""
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8:8 + n])


def _walk(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


def apply(raw, m):
    """The bytes of `raw` after mutation `m` (None: the file is deleted)."""
    op = m["op"]
    if op == "delete":
        return None
    raw = bytearray(raw)
    if op == "flip":
        for at, bit in zip(m["at"], m["bits"]):
            raw[at % len(raw)] ^= 1 << bit
    elif op == "truncate":
        raw = raw[:m["at"] % len(raw)]
    elif op == "set_int":
        at, w = m["at"] % max(1, len(raw) - m["width"]), m["width"]
        raw[at:at + w] = (m["value"] % (1 << (8 * w))).to_bytes(w, "little")
    elif op == "json":
        st_file = m["file"].endswith(".safetensors")
        n, doc = _header(raw) if st_file else (None, json.loads(raw))
        path = m["path"]
        parent = _walk(doc, path) if path else None
        if not path:
            doc = m["value"]
        elif m["action"] == "delete":
            del parent[path[-1]]
        elif m["action"] == "rename":
            parent[m["value"]] = parent.pop(path[-1])
        else:
            parent[path[-1]] = m["value"]
        body = json.dumps(doc).encode()
        if st_file:
            body += b" " * (-(8 + len(body)) % 8)
            raw = bytearray(len(body).to_bytes(8, "little") + body + raw[8 + n:])
        else:
            raw = bytearray(body)
    else:  # pragma: no cover
        raise AssertionError(op)
    return bytes(raw)


def _value_for(orig):
    """A replacement for a JSON value: type changes, edge integers, near misses of the original."""
    common = [st.none(), st.booleans(), st.sampled_from([-1, 0, 1, 2, 3, 2 ** 31, 2 ** 63, 2 ** 64, 2 ** 70]),
              st.sampled_from([0.5, 1e308, -0.0, float("nan"), float("inf")]),
              st.sampled_from(["", "x", "F16", "BF16", "F32", "U8", "I64", "F8_E8M0", "Q4_K", "yarn", "llama3",
                               "gpt2", "llama", "gpt_oss", "mixtral", "sliding_attention"]),
              st.sampled_from([[], [1], [0, 2 ** 62], {}])]
    if isinstance(orig, int) and not isinstance(orig, bool):
        common.append(st.integers(-3, 3).map(lambda k: orig + k))
        common.append(st.sampled_from([2, 3, 1000]).map(lambda k: orig * k))
    if isinstance(orig, float):
        common.append(st.sampled_from([orig * 2, orig / 2, -orig, float(int(orig))]))
    if isinstance(orig, list) and orig and all(isinstance(x, int) for x in orig):
        common.append(st.just(list(reversed(orig))))
        common.append(st.just(orig[:-1]))
        common.append(st.just(orig + [1]))
    return st.one_of(*common)


@st.composite
def mutations(draw, corpus, kinds):
    kind = draw(st.sampled_from(sorted(kinds)))
    files = corpus.files[kind]
    name = draw(st.sampled_from(sorted(files)))
    raw = files[name]
    ops = ["flip", "truncate", "set_int"]
    if name.endswith((".json", ".safetensors")):
        ops += ["json", "json"]
    if len(files) > 1:
        ops.append("delete")
    op = draw(st.sampled_from(ops))
    m = {"kind": kind, "file": name, "op": op}
    if name.endswith(".safetensors"):
        header_end = 8 + int.from_bytes(raw[:8], "little")
    elif name.endswith(".gguf"):
        header_end = corpus.gguf_header_end
    else:
        header_end = len(raw)
    if op == "flip":
        k = draw(st.integers(1, 4))
        # half the flips land in the header, where they are most likely to confuse a parser
        region = draw(st.sampled_from(["header", "anywhere"]))
        hi = header_end if region == "header" else len(raw)
        m["at"] = draw(st.lists(st.integers(0, hi - 1), min_size=k, max_size=k))
        m["bits"] = draw(st.lists(st.integers(0, 7), min_size=k, max_size=k))
    elif op == "truncate":
        m["at"] = draw(st.one_of(st.integers(0, len(raw) - 1), st.integers(0, min(64, len(raw) - 1)),
                                 st.integers(max(0, header_end - 8), min(header_end + 8, len(raw) - 1))))
    elif op == "set_int":
        m["width"] = draw(st.sampled_from([4, 8]))
        at0 = [0] if name.endswith(".safetensors") else []  # the header length field
        m["at"] = draw(st.one_of(st.sampled_from(at0 or [0]), st.integers(0, max(0, header_end - 1))))
        m["value"] = draw(st.one_of(st.sampled_from([0, 1, 7, 8, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 60, 2 ** 64 - 1]),
                                    st.integers(0, 2 ** 64 - 1), st.integers(0, 2 * len(raw))))
    elif op == "json":
        doc = _header(raw)[1] if name.endswith(".safetensors") else json.loads(raw)
        path, node = [], doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys or draw(st.integers(0, 3)) == 0 and path:
                break
            k = draw(st.sampled_from(keys))
            path.append(k)
            if not isinstance(node[k], (dict, list)) or not node[k]:
                break
            node = node[k]
        if not path:
            m.update(path=[], action="set", value=draw(st.sampled_from([[], 1, "x", None])))
        else:
            orig = _walk(doc, path)[path[-1]]
            actions = ["set", "set", "delete"] + (["rename"] if isinstance(path[-1], str) else [])
            action = draw(st.sampled_from(actions))
            if isinstance(path[-1], int) and action == "delete":
                action = "set"
            m.update(path=path, action=action)
            if action == "set":
                m["value"] = draw(_value_for(orig))
            elif action == "rename":
                m["value"] = draw(st.sampled_from(["__metadata__", "zzz", "model.layers.9.x", "lm_head.weight"]))
    return m


# ------------------------------------------------------------------------------------- outcomes

class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang()


def _call_bounded(fn):
    """fn() under a wall-clock alarm (a hang fails the test instead of stalling CI)."""
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover
        return fn()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _differs(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes()


def _check_loaded_checkpoint(corpus, m, cfg, weights):
    """A mutated folder that loads: shapes match its config; untouched files give identical tensors."""
    expert = "dense" if any(n.endswith("moe.mlp1.weight") for n in weights) else "mxfp4"
    want = canonical_shapes(cfg, expert_format=expert)
    assert {n: tuple(np.shape(a)) for n, a in weights.items()} == {n: tuple(s) for n, s in want.items()}, m
    ref_cfg, ref_w = corpus.reference[m["kind"]]
    if m["file"].endswith("config.json"):
        return  # another (valid) config: shapes checked above
    assert cfg == ref_cfg, m
    if m["op"] == "flip":
        # one file tensor's bytes changed at most per flip; a fused tensor feeds up to 3 canonical ones
        changed = [n for n in weights if n != "lm_head" and _differs(weights[n], ref_w[n])]
        assert len(changed) <= 3 * len(m["at"]), (m, changed)
    elif m["op"] == "json" and m.get("action") == "set" and m["path"][:1] == ["__metadata__"]:
        assert all(not _differs(weights[n], ref_w[n]) for n in weights), m


def _outcome(kind, where, fn):
    """'loaded' with fn's result, or 'rejected' after checking the RefimplError names `where`."""
    try:
        result = _call_bounded(fn)
    except RefimplError as exc:
        assert where in str(exc), f"error does not name {where!r}: {exc}"
        STATS[kind]["rejected"] += 1
        return "rejected", exc
    STATS[kind]["loaded"] += 1
    return "loaded", result


def run_case(corpus, m):
    kind = m["kind"]
    raw = apply(corpus.files[kind][m["file"]], m)
    d = corpus.case_dir(kind, m["file"], raw)
    if kind in CHECKPOINTS:
        status, res = _outcome(kind, d, lambda: load_weights(d))
        if status == "loaded":
            _check_loaded_checkpoint(corpus, m, *res)
    elif kind in CONFIGS:
        p = os.path.join(d, "config.json")
        status, res = _outcome(kind, p, lambda: load_config(p))
        if status == "loaded" and m["op"] == "json" and m["path"] and m["path"][0] in ("__metadata__",):
            assert res == corpus.reference[kind]
    else:
        p = os.path.join(d, "model.gguf")
        status, res = _outcome(kind, p, lambda: read_gguf(p))
        if status == "loaded":
            cfg, weights, _ = res
            q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
            assert weights["tok_embed"].shape == (cfg.vocab_size, cfg.hidden_size)
            for L in range(cfg.num_layers):
                assert weights[f"layers.{L}.attn.q.weight"].shape == (q, cfg.hidden_size)
                assert weights[f"layers.{L}.attn.k.weight"].shape == (kv, cfg.hidden_size)
            if m["op"] == "flip" and min(a % len(corpus.files[kind][m["file"]]) for a in m["at"]) >= \
                    corpus.gguf_header_end:
                ref_cfg, ref_w = corpus.reference[kind]
                assert cfg == ref_cfg
                changed = [n for n in weights if n != "lm_head" and _differs(weights[n], ref_w[n])]
                assert len(changed) <= len(m["at"]), (m, changed)
    return status


# 200 examples per fuzz test in CI (about 3 s each on 2 cores); the thorough profile's 1000 if larger;
# REFIMPL_FUZZ_EXAMPLES=N overrides both (the long run documented in spec/reliability.md).
FUZZ_EXAMPLES = int(os.environ.get("REFIMPL_FUZZ_EXAMPLES", max(200, settings().max_examples)))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_checkpoints(corpus, data):
    """Byte flips, truncations, header-length rewrites, JSON edits (offsets, dtypes, shapes, keys) and
    deleted files of safetensors folders (single, sharded + index, tied, gpt-oss MXFP4 and original)."""
    run_case(corpus, data.draw(mutations(corpus, CHECKPOINTS)))


@FUZZ
@given(data=st.data())
def test_fuzz_gguf(corpus, data):
    """Byte flips (header and data), truncations and 4/8-byte integer rewrites of a tiny llama GGUF."""
    run_case(corpus, data.draw(mutations(corpus, ["gguf_llama"])))


@FUZZ
@given(data=st.data())
def test_fuzz_configs(corpus, data):
    """JSON field deletions, renames, type and value changes of config.json of every model_type and of
    OpenAI's original gpt-oss config."""
    run_case(corpus, data.draw(mutations(corpus, CONFIGS)))


def _regressions():
    with open(REGRESSIONS) as f:
        return json.load(f)["cases"]


@pytest.mark.parametrize("case", _regressions(), ids=lambda c: c["id"])
def test_regression_cases(corpus, case):
    """Failing examples found by the fuzzer (and hand-picked mutations), replayed every run."""
    status = run_case(corpus, case["mutation"])
    assert status == case["expect"], case


# --------------------------------------------------------------------------- hand-written cases

def _st_file(path, header, data=b"", n=None):
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write((len(body) if n is None else n).to_bytes(8, "little") + body + data)
    return str(path)


@pytest.mark.parametrize("shape, offsets", [
    ([2 ** 40, 2 ** 40], [0, 2 ** 62]),            # claims 2^62 bytes: refused before any allocation
    ([2 ** 62], [0, 2 ** 64]),
    ([1], [0, 2 ** 70]),
    ([2 ** 31, 2 ** 31, 2 ** 31], [0, 4]),         # shape product overflows int64, bytes disagree
])
def test_huge_claims_refused_before_allocating(tmp_path, shape, offsets):
    p = _st_file(tmp_path / "huge.safetensors", {"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}},
                 b"\0" * 4)
    with pytest.raises(CheckpointError, match="'w'") as ei:
        _call_bounded(lambda: open_safetensors(p))
    assert p in str(ei.value)


def test_header_not_utf8_and_nested_json_depth(tmp_path):
    p = _st_file(tmp_path / "latin.safetensors", b'{"\xe9": 1}')
    with pytest.raises(CheckpointError, match="UTF-8") as ei:
        open_safetensors(p)
    assert p in str(ei.value)
    deep = b"[" * 100_000 + b"]" * 100_000  # json's recursion limit must not escape as RecursionError
    p2 = _st_file(tmp_path / "deep.safetensors", deep)
    with pytest.raises(CheckpointError) as ei:
        open_safetensors(p2)
    assert p2 in str(ei.value)


def test_every_dtype_string_swap_is_named(tmp_path):
    """Swapping a tensor's dtype for every other safetensors dtype: refused (byte count) or read as that dtype."""
    a = np.arange(8, dtype=np.float32)
    for name, dt in DTYPES.items():
        header = {"w": {"dtype": name, "shape": [8], "data_offsets": [0, 32]}}
        p = _st_file(tmp_path / f"{name}.safetensors", header, a.tobytes())
        if dt.itemsize == 4:
            np.testing.assert_array_equal(open_safetensors(p)["w"].view(np.uint8), a.view(np.uint8))
        else:
            with pytest.raises(CheckpointError, match=f"'w'.*byte count.*{name}") as ei:
                open_safetensors(p)
            assert p in str(ei.value)


def test_mxfp4_scales_that_do_not_match_blocks(tmp_path):
    """Scales with a different row count or block count than the blocks: the file and tensor are named."""
    d, _, tensors = tiny.make_checkpoint(tmp_path, "gpt_oss_hf_mxfp4")
    name = "model.layers.0.mlp.experts.gate_up_proj_scales"
    for bad in (tensors[name][:, :-1], tensors[name][..., :1], tensors[name].astype(np.float32)):
        t = dict(tensors, **{name: np.ascontiguousarray(bad)})
        e = tiny.write_checkpoint(os.path.join(tmp_path, f"bad{bad.shape}{bad.dtype}"), t, tiny.hf_config("gpt_oss_hf_mxfp4"))
        with pytest.raises(CheckpointError, match=name) as ei:
            load_weights(e)
        assert e in str(ei.value)


@pytest.mark.parametrize("kind, field, value, needle", [
    ("gpt_oss_hf_mxfp4", "num_hidden_layers", 10 ** 9, "num_hidden_layers"),  # refused at once, no 10^9 list
    ("llama", "num_attention_heads", 3, "num_attention_heads"),              # 16 not divisible by 3
    ("gpt_oss_hf_mxfp4", "num_key_value_heads", 3, "num_key_value_heads: expected a divisor of num_attention_heads"),
    ("gpt_oss_hf_mxfp4", "num_experts_per_tok", 5, "num_experts_per_tok: expected 1..num_local_experts"),
    ("gpt_oss_hf_mxfp4", "sliding_window", 0, "sliding_window"),
    ("mistral", "sliding_window", -4, "sliding_window"),
    ("llama", "rms_norm_eps", float("nan"), "rms_norm_eps"),
    ("gpt_oss_hf_mxfp4", "rope_theta", -1.0, "rope_theta"),
    ("llama", "model_type", "bert", "model_type"),
])
def test_contradicting_config_fields_named(tmp_path, kind, field, value, needle):
    doc = tiny.hf_config(kind)
    doc[field] = value
    p = tmp_path / "config.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=needle) as ei:
        _call_bounded(lambda: load_config(p))
    assert str(p) in str(ei.value)


def test_odd_head_dim_with_rope_and_openai_layer_bomb(tmp_path):
    doc = dict(tiny.hf_config("qwen3"), head_dim=7)
    p = tmp_path / "config.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="head_dim.*even") as ei:
        load_config(p)
    assert str(p) in str(ei.value)
    doc = dict(tiny.hf_config("gpt_oss_original"), num_hidden_layers=10 ** 9)
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="num_hidden_layers") as ei:
        _call_bounded(lambda: load_config(p))
    assert str(p) in str(ei.value)


def test_config_layer_count_the_tensors_do_not_back(tmp_path):
    """A config claiming far more layers (or Mixtral experts) than the file holds fails at once, naming both."""
    for kind, field in (("llama", "num_hidden_layers"), ("mixtral", "num_local_experts")):
        d, cfg, _ = tiny.make_checkpoint(tmp_path, kind)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(dict(cfg, **{field: 60000}), f)
        what = "layer 2" if field == "num_hidden_layers" else "expert 4"
        with pytest.raises(CheckpointError, match=f"{what}.*60000") as ei:
            _call_bounded(lambda: load_weights(d))
        assert d in str(ei.value)


def test_gguf_block_count_the_tensors_do_not_back(tmp_path, corpus):
    """block_count rewritten to 60000 (2^28 is refused by the layer cap): refused naming the file and the first
    missing layer, without looping over 60000 layers."""
    raw = corpus.files["gguf_llama"]["model.gguf"]
    key = b"llama.block_count"
    at = raw.index(key) + len(key) + 4  # after the key comes the uint32 value type, then the value
    bad = raw[:at] + (60000).to_bytes(4, "little") + raw[at + 4:]
    p = tmp_path / "blocks.gguf"
    p.write_bytes(bad)
    with pytest.raises(CheckpointError, match="blk.2.*block_count=60000") as ei:
        _call_bounded(lambda: read_gguf(p))
    assert str(p) in str(ei.value)


def test_gguf_field_contradictions_name_the_file(tmp_path, corpus):
    """ModelConfig's own checks (kv heads not dividing heads) carry the GGUF path and name the GGUF keys."""
    raw = corpus.files["gguf_llama"]["model.gguf"]
    key = b"llama.attention.head_count_kv"
    at = raw.index(key) + len(key) + 4
    p = tmp_path / "kv.gguf"
    p.write_bytes(raw[:at] + (3).to_bytes(4, "little") + raw[at + 4:])
    with pytest.raises(ConfigError, match="llama.attention.head_count_kv: expected a divisor of llama.attention.head_count=4, found 3") as ei:
        read_gguf(p)
    assert str(p) in str(ei.value)


def test_gguf_rewritten_in_place_is_not_served_from_a_stale_cache(tmp_path, corpus):
    """Same path, same size, same mtime, different header: the second read sees the new header."""
    raw = corpus.files["gguf_llama"]["model.gguf"]
    p = tmp_path / "same.gguf"
    p.write_bytes(raw)
    st0 = os.stat(p)
    cfg1, _, _ = read_gguf(p)
    key = b"llama.context_length"
    at = raw.index(key) + len(key) + 4
    p.write_bytes(raw[:at] + (128).to_bytes(4, "little") + raw[at + 4:])
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    cfg2, _, _ = read_gguf(p)
    assert (cfg1.max_position_embeddings, cfg2.max_position_embeddings) == (64, 128)


def test_unknown_layout_names_the_file(tmp_path):
    p = str(tmp_path / "odd.safetensors")
    from refimpl.checkpoints.safetensors_io import save_safetensors
    save_safetensors(p, {"encoder.weight": np.zeros(2, np.float32)})
    with open(tmp_path / "config.json", "w") as f:
        json.dump(tiny.hf_config("llama"), f)
    with pytest.raises(CheckpointError, match="known layout") as ei:
        load_weights(p)
    assert p in str(ei.value)


def test_paths_that_do_not_exist(tmp_path):
    import refimpl
    missing = str(tmp_path / "nope")
    for call, err in ((lambda: load_weights(missing), CheckpointError), (lambda: load_config(missing), ConfigError),
                      (lambda: read_gguf(missing + ".gguf"), CheckpointError),
                      (lambda: refimpl.load(missing), RefimplError)):
        with pytest.raises(err) as ei:
            call()
        assert missing in str(ei.value)


def test_never_unpickles(tmp_path):
    """A pickle (what torch .bin/.pt files are) is refused as a non-safetensors file; nothing runs."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    p = tmp_path / "model.safetensors"
    p.write_bytes(pickle.dumps(Boom()))
    with open(tmp_path / "config.json", "w") as f:
        json.dump(tiny.hf_config("llama"), f)
    for target in (tmp_path, p):
        with pytest.raises(CheckpointError):
            load_weights(target)
    q = tmp_path / "model.gguf"
    q.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError):
        read_gguf(q)
    assert not (tmp_path / "pwned").exists()
