"""The native backend: the public API over the compiled module ``ptth._native``.

Argument normalization lives here; decoding, encoding and the kernels run in
the C++ core (``csrc/``) with the GIL released.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _native
from ._source import READ_CHUNK, open_source, open_target, read_all
from .errors import PTTHError

name = "native"
DEFAULT_MAX_SIZE: int = _native.DEFAULT_MAX_SIZE

# dtype -> PTTH code; byte order is normalized before encoding
_CODES = {("f", 4): 0, ("f", 8): 1, ("i", 4): 2, ("f", 2): 3}
_CONVERT_NONE, _CONVERT_F32_F16, _CONVERT_F64_F16, _CONVERT_F64_F32 = 0, 1, 2, 3
_TARGETS = {None: None, "float16": 3, "float32": 0}


def available() -> bool:
    return True


def build_info() -> dict:
    return _native.build_info()


def _target_code(dtype):
    key = dtype if dtype is None or isinstance(dtype, str) else np.dtype(dtype).name
    if key not in _TARGETS:
        raise PTTHError("bad_argument", f"dtype must be None, 'float16' or 'float32', not {dtype!r}")
    return _TARGETS[key]


def _records(tensors, dtype):
    if not isinstance(tensors, Mapping):
        raise PTTHError("bad_argument", f"tensors must be a mapping of names to arrays, "
                                        f"not {type(tensors).__name__}")
    target = _target_code(dtype)
    records = []
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise PTTHError("bad_argument", f"parameter names must be str, not {type(key).__name__}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PTTHError("bad_name", f"parameter {key!r} cannot be encoded as UTF-8") from exc
        arr = np.asarray(value)
        code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
        if code is None:
            raise PTTHError("unsupported_dtype",
                            f"parameter {key!r} has dtype {arr.dtype}; PTTH stores "
                            "float32, float64, int32 and float16")
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")  # not ascontiguousarray: that makes 0-d arrays 1-d
        convert = _CONVERT_NONE
        if target == 3 and code == 0:
            code, convert = 3, _CONVERT_F32_F16
        elif target == 3 and code == 1:
            code, convert = 3, _CONVERT_F64_F16
        elif target == 0 and code == 1:
            code, convert = 0, _CONVERT_F64_F32
        records.append((key, arr.shape, code, arr, convert))
    return records


def loads(data, *, copy=False, byteorder="<", relabel_float32=False, max_size=None):
    return _native.loads(data, copy=bool(copy), byteorder=_byteorder(byteorder),
                         relabel_float32=bool(relabel_float32), max_size=max_size)


def _byteorder(byteorder):
    if not isinstance(byteorder, str):
        raise PTTHError("bad_argument", f"byteorder must be '<', '>' or 'auto', not {byteorder!r}")
    return byteorder


def dumps(tensors, *, dtype=None, compress=None, wrapper="zlib"):
    return _native.encode(_records(tensors, dtype), _level(compress), _wrapper(wrapper))


def _level(level):
    if level is None:
        return None
    if isinstance(level, bool) or not isinstance(level, int):
        raise PTTHError("bad_argument", f"compression level must be an int 0..9, not {level!r}")
    return level


def _wrapper(wrapper):
    if not isinstance(wrapper, str):
        raise PTTHError("bad_argument", f"wrapper must be a str, not {type(wrapper).__name__}")
    return wrapper


def compress(data, level=6, wrapper="zlib"):
    lvl = _level(level)
    if lvl is None:
        raise PTTHError("bad_argument", "compression level must be an int 0..9, not None")
    return _native.compress(data, lvl, _wrapper(wrapper))


def decompress(data, *, wrapper="auto", max_size=None):
    return _native.decompress(data, wrapper=_wrapper(wrapper), max_size=max_size)


def detect_wrapper(data) -> str:
    """The wrapper SPEC.md's table gives for these first bytes."""
    return _native.detect_wrapper(data)


class Decoder:
    """Streaming decoder: ``feed(chunk)`` returns the records that chunk completed."""

    def __init__(self, *, copy=True, byteorder="<", relabel_float32=False, max_size=None):
        # Streamed arrays are always owned; `copy` is accepted for loads_kw symmetry.
        self._dec = _native.Decoder(byteorder=_byteorder(byteorder),
                                    relabel_float32=bool(relabel_float32), max_size=max_size)

    def feed(self, chunk):
        return self._dec.feed(chunk)

    def close(self) -> None:
        self._dec.close()

    @property
    def byteorder(self):
        return self._dec.byteorder

    @property
    def wrapper(self):
        return self._dec.wrapper


def iter_load(source, **loads_kw):
    dec = Decoder(**loads_kw)
    with open_source(source) as f:
        buf = bytearray(READ_CHUNK)
        view = memoryview(buf)
        while True:
            n = _read_into(f, view)
            if not n:
                break
            yield from dec.feed(view[:n])
    dec.close()


def _read_into(f, view):
    if hasattr(f, "readinto"):
        return f.readinto(view) or 0
    chunk = f.read(len(view))
    view[:len(chunk)] = chunk
    return len(chunk)


def load(source, **loads_kw):
    return loads(read_all(source), **loads_kw)


def dump(tensors, target, **dumps_kw):
    blob = dumps(tensors, **dumps_kw)
    with open_target(target) as f:
        f.write(blob)
