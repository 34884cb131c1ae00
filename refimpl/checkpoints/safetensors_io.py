"""Reading and writing safetensors files, validated against the format.

Format (huggingface/safetensors, docs and `safetensors/src/tensor.rs`):
  bytes 0..8     N, the header length, unsigned 64-bit little-endian
  bytes 8..8+N   a UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]},
                 "__metadata__"?: {str: str}}, padded with spaces
  bytes 8+N..    the data buffer; a tensor's bytes are buffer[begin:end], row-major, little-endian

Every check runs before any array is returned; a bad file raises CheckpointError naming the
file and the tensor. Arrays are read-only views of one memory map of the file.
"""

import json
import math
import os
from collections.abc import Mapping

import ml_dtypes  # noqa: F401  (registers bfloat16 and the float8 dtypes with NumPy)
import numpy as np

from ..errors import CheckpointError
from .._files import open_regular

HEADER_LIMIT = 100_000_000  # the reference reader refuses larger headers

DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu),
}
_NAMES = {dt: name for name, dt in DTYPES.items()}


def _why(exc):
    """A parse error's description without the bytes it quotes (a JSON error's position is kept)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return type(exc).__name__


def _fail(path, what):
    raise CheckpointError(f"{path}: {what}")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def parse_header(path, head, file_size):
    """Validate a header (already decoded JSON object) against a data buffer.

    Returns (entries, metadata) with entries {name: (dtype, shape, begin, end)} in offset order.
    Rules: dtype in DTYPES; shape a list of integers >= 0; data_offsets [begin, end] integers with
    0 <= begin <= end <= buffer size; end - begin == prod(shape) * itemsize; sorted by begin the
    tensors tile the buffer exactly (each begins where the previous ended, the first at 0, the
    last ends at the buffer's end): an overlap, a gap or trailing bytes are errors, as in the
    reference reader (safetensors `Metadata::validate`).
    """
    if not isinstance(head, dict):
        _fail(path, f"header: expected a JSON object, found {type(head).__name__}")
    metadata = head.get("__metadata__")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            _fail(path, "__metadata__: expected an object of string to string")
    entries = {}
    for name, info in head.items():
        if name == "__metadata__":
            continue
        where = f"tensor {name!r}"
        if not isinstance(info, dict):
            _fail(path, f"{where}: expected an object with dtype, shape, data_offsets, found {info!r}")
        keys = set(info)
        if keys != {"dtype", "shape", "data_offsets"}:
            _fail(path, f"{where}: expected keys dtype, shape, data_offsets, found {sorted(keys)}")
        dt = info["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            _fail(path, f"{where}: dtype: expected one of {', '.join(DTYPES)}, found {dt!r}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
            _fail(path, f"{where}: shape: expected a list of integers >= 0, found {shape!r}")
        offs = info["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_count(o) for o in offs)):
            _fail(path, f"{where}: data_offsets: expected [begin, end] integers >= 0, found {offs!r}")
        begin, end = offs
        if begin > end:
            _fail(path, f"{where}: data_offsets: expected begin <= end, found [{begin}, {end}]")
        if end > file_size:
            _fail(path, f"{where}: data_offsets: expected end <= data size {file_size}, found [{begin}, {end}]"
                  " (offsets past the end of the file, or a truncated file)")
        dtype = DTYPES[dt]
        nbytes = math.prod(shape) * dtype.itemsize
        if end - begin != nbytes:
            _fail(path, f"{where}: byte count: expected {nbytes} (shape {shape} x {dtype.itemsize} bytes of {dt}),"
                  f" found {end - begin} (data_offsets [{begin}, {end}])")
        entries[name] = (dtype, tuple(shape), begin, end)
    ordered = sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3]))
    pos, prev = 0, None
    for name, (_, _, begin, end) in ordered:
        if begin < pos:
            _fail(path, f"tensor {name!r}: data_offsets [{begin}, {end}] overlap tensor {prev!r} (ends at {pos})")
        if begin > pos:
            _fail(path, f"tensor {name!r}: data_offsets: expected begin {pos} (contiguous after "
                  f"{prev!r}), found {begin} (a gap of {begin - pos} bytes)")
        pos, prev = end, name
    if pos != file_size:
        _fail(path, f"data buffer: expected {pos} bytes (the tensors' extent), found {file_size}"
              " (trailing bytes after the last tensor)")
    return dict(ordered), metadata or {}


class SafetensorsFile(Mapping):
    """One validated safetensors file: a lazy read-only mapping name -> np.ndarray (memory-mapped).

    `path`, `metadata` (the __metadata__ dict), `shape(name)`, `dtype(name)` need no data access.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with open_regular(self.path, CheckpointError, "a safetensors file") as f:
            try:
                size = os.fstat(f.fileno()).st_size
                prefix = f.read(8)
                if len(prefix) < 8:
                    _fail(self.path, f"file is {size} bytes: expected at least 8 (the header length)")
                n = int.from_bytes(prefix, "little")  # never quoted in a message: it is file content
                if n > HEADER_LIMIT:
                    _fail(self.path, f"header length: expected at most {HEADER_LIMIT} bytes, found a larger value"
                          " (not a safetensors file?)")
                if 8 + n > size:
                    _fail(self.path, f"header length: expected at most {size - 8} (file size {size} - 8), found a "
                          "larger value (truncated file or not a safetensors file)")
                raw = f.read(n)
            except OSError as exc:
                raise CheckpointError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            head = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            where = f" at byte {8 + exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
            raise CheckpointError(f"{self.path}: header: expected UTF-8 JSON, found unparsable bytes{where} "
                                  f"({_why(exc)})") from None
        self._start = 8 + n
        self._entries, self.metadata = parse_header(self.path, head, size - self._start)
        self._buf = None

    def _buffer(self):
        if self._buf is None:
            total = sum(e[3] - e[2] for e in self._entries.values())
            if total == 0:
                self._buf = np.zeros(0, np.uint8)
            else:
                # read-only map of the data section; views share it
                self._buf = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._start, shape=(total,))
            self._buf.flags.writeable = False
        return self._buf

    def __getitem__(self, name):
        try:
            dtype, shape, begin, end = self._entries[name]
        except KeyError:
            raise KeyError(name) from None
        a = self._buffer()[begin:end].view(dtype).reshape(shape)  # [*shape]
        return a

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def shape(self, name):
        return self._entries[name][1]

    def dtype(self, name):
        return self._entries[name][0]

    def source(self, name):
        return self.path

    def __repr__(self):
        return f"SafetensorsFile({self.path!r}, {len(self)} tensors)"


class TensorMap(Mapping):
    """Tensors gathered from several safetensors files: name -> array, with source(name) -> file."""

    def __init__(self, files, owner, path):
        self.files = files          # {file path: SafetensorsFile}
        self._owner = owner         # {tensor name: file path}
        self.path = os.fspath(path)

    def __getitem__(self, name):
        return self.files[self._owner[name]][name]

    def __iter__(self):
        return iter(self._owner)

    def __len__(self):
        return len(self._owner)

    def shape(self, name):
        return self.files[self._owner[name]].shape(name)

    def dtype(self, name):
        return self.files[self._owner[name]].dtype(name)

    def source(self, name):
        return self._owner[name]

    def __repr__(self):
        return f"TensorMap({self.path!r}, {len(self)} tensors in {len(self.files)} files)"


def open_safetensors(path):
    """Validate one safetensors file and return its lazy mapping name -> read-only array."""
    return SafetensorsFile(path)


def _merge(files, path):
    owner = {}
    for fp, f in files.items():
        for name in f:
            if name in owner:
                raise CheckpointError(f"{path}: tensor {name!r} appears in both {owner[name]} and {fp}")
            owner[name] = fp
    return TensorMap(files, owner, path)


def open_checkpoint_dir(path):
    """Open the safetensors weights of a directory.

    Order: `model.safetensors.index.json` (HF sharded: every shard its weight_map names must exist,
    hold exactly the tensors mapped to it); else `model.safetensors`; else every `*.safetensors`
    in the directory (OpenAI's `original/` folders), no tensor name in two files.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: expected a checkpoint directory, found {'a file' if os.path.exists(path) else 'nothing'}")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        return _open_index(index)
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return _merge({single: SafetensorsFile(single)}, path)
    found = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not found:
        raise CheckpointError(f"{path}: expected model.safetensors, model.safetensors.index.json or *.safetensors, found none")
    return _merge({os.path.join(path, f): SafetensorsFile(os.path.join(path, f)) for f in found}, path)


def _open_index(index):
    base = os.path.dirname(index)
    try:
        with open_regular(index, CheckpointError, "a JSON shard index") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{index}: expected a JSON index, found unreadable content ({_why(exc)})") from None
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise CheckpointError(f"{index}: weight_map: expected an object of tensor name to shard file name")
    files = {}
    for shard in sorted(set(wm.values())):
        if os.path.basename(shard) != shard:
            raise CheckpointError(f"{index}: weight_map: expected shard file names inside {base}, found {shard!r}")
        fp = os.path.join(base, shard)
        if not os.path.exists(fp):
            raise CheckpointError(f"{index}: shard {shard!r} is missing (expected at {fp})")
        files[fp] = SafetensorsFile(fp)
    owner = {}
    for name, shard in wm.items():
        fp = os.path.join(base, shard)
        if name not in files[fp]:
            raise CheckpointError(f"{fp}: tensor {name!r}: listed in {index} but missing from the shard")
        owner[name] = fp
    for fp, f in files.items():
        for name in f:
            if owner.get(name) != fp:
                raise CheckpointError(f"{fp}: tensor {name!r}: present in the shard but the index {index} maps it to "
                                      f"{os.path.basename(owner[name]) if name in owner else 'nothing'}")
    return TensorMap(files, owner, base)


def save_safetensors(path, tensors, metadata=None):
    """Write `tensors` ({name: array}) to `path` in the safetensors format.

    Tensors are laid out in name order, contiguous from offset 0; the header is padded with
    spaces to a multiple of 8 bytes so every tensor starts 8-byte aligned. Arrays are written
    little-endian, row-major. Supported dtypes are those of DTYPES.
    """
    path = os.fspath(path)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise CheckpointError(f"{path}: metadata: expected a dict of str to str, found {metadata!r}")
    header, arrays, pos = {}, [], 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise CheckpointError(f"{path}: tensor name: expected a string other than __metadata__, found {name!r}")
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        key = _NAMES.get(np.dtype(dt))
        if key is None:
            raise CheckpointError(f"{path}: tensor {name!r}: dtype: expected one of {', '.join(DTYPES)}, found {a.dtype}")
        a = np.asarray(a, dtype=DTYPES[key])  # 0-d stays 0-d; tobytes() writes row-major
        header[name] = {"dtype": key, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
        arrays.append(a)
        pos += a.nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
    return path
