"""The native backend: the public API over the compiled module ``ptth._native``.

Argument normalization lives here; decoding, encoding and the kernels run in
the C++ core (``csrc/``) with the GIL released.
"""

from __future__ import annotations

import numbers
import operator
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
        arr = _asarray(value, key)
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


def _asarray(value, key):
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise PTTHError("bad_argument", f"parameter {key!r} is not an array: {exc}") from None


def loads(data, *, copy=False, byteorder="<", relabel_float32=False, max_size=None):
    return _native.loads(data, copy=bool(copy), byteorder=_byteorder(byteorder),
                         relabel_float32=bool(relabel_float32), max_size=_max_size(max_size))


def _byteorder(byteorder):
    if not isinstance(byteorder, str):
        raise PTTHError("bad_argument", f"byteorder must be '<', '>' or 'auto', not {byteorder!r}")
    return byteorder


def dumps(tensors, *, dtype=None, compress=None, wrapper="zlib", threads=1):
    """Encode a mapping of names to arrays as a PTTH blob.

    dtype: None, "float16" or "float32" (quantize floating tensors on the way out).
    compress: None or a level 0..9, which wraps the blob in `wrapper` exactly as
    compress(blob, level, wrapper) does; threads as for compress().
    Raises PTTHError (bad_argument, bad_name, unsupported_dtype).

    >>> ptth.dumps({"w": np.ones(2, np.float32)}, dtype="float16", compress=6, threads=0)[:2]
    b'x\\x9c'
    """
    level, wrapper, threads = _level(compress), _wrapper(wrapper), _threads(threads)
    return _native.encode(_records(tensors, dtype), level, wrapper, threads)


def _threads(threads):
    """Threads for deflate: 0 (every core) or more; the bytes do not depend on it."""
    threads = _integer(threads, "threads")
    if not 0 <= threads <= 1 << 16:
        raise PTTHError("bad_argument", f"threads must be 0 (every core) .. 65536, not {threads}")
    return threads


def _integer(value, what):
    """An integer argument (any integer type but bool); the core checks its range."""
    if isinstance(value, (bool, np.bool_)):
        raise PTTHError("bad_argument", f"{what} must be an integer, not a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise PTTHError("bad_argument", f"{what} must be an integer, not {value!r}") from None


def _level(level):
    return None if level is None else _integer(level, "compression level")


def _max_size(max_size):
    return None if max_size is None else _integer(max_size, "max_size")


_WRITE_WRAPPERS = ("zlib", "gzip", "deflate")


def _wrapper(wrapper, choices=_WRITE_WRAPPERS):
    if not isinstance(wrapper, str) or wrapper not in choices:
        raise PTTHError("bad_argument", f"wrapper must be one of {', '.join(choices)}, "
                                        f"not {wrapper!r}")
    return wrapper


def compress(data, level=6, wrapper="zlib", threads=1):
    """Compress a bytes-like object into one standard zlib, gzip or raw DEFLATE stream.

    level: 0 (stored) .. 9, default 6; levels 1..9 keep zlib-ng level 6's ratio on
    float payloads (docs/compression.md). wrapper: "zlib", "gzip" or "deflate".
    threads: threads to use, 0 = every core; the bytes do not depend on it.
    Raises PTTHError("bad_argument") for a bad level, wrapper or threads.

    >>> ptth.decompress(ptth.compress(b"abc", 6, "gzip", threads=0))
    b'abc'
    """
    return _native.compress(data, _integer(level, "compression level"), _wrapper(wrapper),
                            _threads(threads))


def decompress(data, *, wrapper="auto", max_size=None):
    """Decompress a whole zlib, gzip or raw DEFLATE stream ("auto": SPEC.md's detection).

    max_size: the most bytes it may decode to (default DEFAULT_MAX_SIZE). Raises
    PTTHError: bad_checksum, stream_corrupt, stream_truncated, stream_trailing or
    too_large, with the offset of the streaming decoder (docs/compression.md).

    >>> ptth.decompress(ptth.compress(b"abc"), max_size=3)
    b'abc'
    """
    wrapper = _wrapper(wrapper, ("auto", "none") + _WRITE_WRAPPERS)
    return _native.decompress(data, wrapper=wrapper, max_size=_max_size(max_size))


def detect_wrapper(data) -> str:
    """The wrapper SPEC.md's table gives for these first bytes."""
    return _native.detect_wrapper(data)


class Decoder:
    """Streaming decoder: ``feed(chunk)`` returns the records that chunk completed."""

    def __init__(self, *, copy=True, byteorder="<", relabel_float32=False, max_size=None):
        # Streamed arrays are always owned; `copy` is accepted for loads_kw symmetry.
        self._dec = _native.Decoder(byteorder=_byteorder(byteorder),
                                    relabel_float32=bool(relabel_float32),
                                    max_size=_max_size(max_size))

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


# ---- element kernels ---------------------------------------------------------

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
_CAST_F32_F16, _CAST_F64_F16, _CAST_F16_F32 = 0, 1, 2
_SUB_F32, _SUB_F64, _SUB_F32_F16, _SUB_F64_F16 = 0, 1, 2, 3
_AXPY_F32, _AXPY_F32_F16, _AXPY_F64 = 0, 1, 2


def _native_contiguous(x, dtype=None):
    """x as a C-contiguous native-order array (of `dtype`'s kind if given)."""
    arr = np.asarray(x)
    if dtype is not None and arr.dtype.kind == "f" and arr.dtype.itemsize == dtype.itemsize:
        arr = arr.astype(dtype, copy=False)  # only the byte order changes
    elif not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    return arr


def _float_input(x, what):
    arr = _native_contiguous(x)
    if arr.dtype not in (_F16, _F32, _F64):
        raise PTTHError("unsupported_dtype", f"{what} must be float16, float32 or float64, "
                                             f"not {arr.dtype}")
    return arr


def _output(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise PTTHError("bad_argument", f"out must be a NumPy array, not {type(out).__name__}")
    if out.dtype != dtype:
        raise PTTHError("bad_argument", f"out must have dtype {dtype}, not {out.dtype}")
    if out.shape != shape:
        raise PTTHError("shape_mismatch", f"out has shape {out.shape}, the result {shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise PTTHError("bad_argument", "out must be C-contiguous and writable")
    return out


def to_float16(x, out=None):
    arr = _float_input(x, "x")
    result = _output(out, arr.shape, _F16)
    if arr.dtype == _F16:
        np.copyto(result, arr)
    else:
        op = _CAST_F32_F16 if arr.dtype == _F32 else _CAST_F64_F16
        _native.cast(arr, result.view(np.uint16), op)
    return result


def to_float32(h, out=None):
    arr = _native_contiguous(h, _F16)
    if arr.dtype != _F16:
        raise PTTHError("unsupported_dtype", f"h must be float16, not {arr.dtype}")
    result = _output(out, arr.shape, _F32)
    _native.cast(arr.view(np.uint16), result, _CAST_F16_F32)
    return result


_RESULT_DTYPES = {"float16": _F16, "float32": _F32, "float64": _F64}


def _result_dtype(dtype, default):
    if dtype is None:
        return default
    key = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if key not in _RESULT_DTYPES:
        raise PTTHError("bad_argument",
                        f"dtype must be None, 'float16', 'float32' or 'float64', not {dtype!r}")
    return _RESULT_DTYPES[key]


def subtract(updated, base, *, dtype=None, out=None):
    u = _native_contiguous(updated)
    b = _native_contiguous(base)
    if u.shape != b.shape:
        raise PTTHError("shape_mismatch", f"shapes {u.shape} and {b.shape} differ")
    if u.dtype != b.dtype or u.dtype not in (_F32, _F64):
        raise PTTHError("unsupported_dtype", "subtract takes two float32 or two float64 arrays, "
                                             f"not {u.dtype} and {b.dtype}")
    target = _result_dtype(dtype, u.dtype)
    result = _output(out, u.shape, target)
    if target == u.dtype:
        _native.subtract(u, b, result, _SUB_F32 if u.dtype == _F32 else _SUB_F64)
    elif target == _F16:
        op = _SUB_F32_F16 if u.dtype == _F32 else _SUB_F64_F16
        _native.subtract(u, b, result.view(np.uint16), op)
    else:  # float32 <-> float64: one rounding of the difference, as NumPy does it
        diff = np.empty(u.shape, u.dtype)
        _native.subtract(u, b, diff, _SUB_F32 if u.dtype == _F32 else _SUB_F64)
        np.copyto(result, diff, casting="unsafe")
    return result


def compute_delta(updated, base, *, dtype=None):
    _result_dtype(dtype, None)
    _check_mapping(updated, "updated")
    _check_mapping(base, "base")
    delta = {}
    for key, u in updated.items():
        if key not in base:
            raise PTTHError("unknown_name", f"{key!r} is not in base")
        u_arr, b_arr = _asarray(u, key), _asarray(base[key], key)
        if _is_int32(u_arr) and _is_int32(b_arr):
            if u_arr.shape != b_arr.shape:
                raise PTTHError("shape_mismatch", f"{key!r}: shapes {u_arr.shape} and {b_arr.shape}")
            with np.errstate(all="ignore"):
                delta[key] = np.subtract(u_arr, b_arr, dtype=np.int32)
        else:
            delta[key] = subtract(u_arr, b_arr, dtype=dtype)
    return delta


def _is_int32(arr):
    return arr.dtype.kind == "i" and arr.dtype.itemsize == 4


def apply_delta(base, delta, *, scale=1.0):
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise PTTHError("bad_argument", f"scale must be a real number, not {scale!r}")
    try:
        scale = float(scale)
    except OverflowError:
        raise PTTHError("bad_argument", "scale does not fit in a float64") from None
    _check_mapping(base, "base")
    _check_mapping(delta, "delta")
    for key in delta:
        if key not in base:
            raise PTTHError("unknown_name", f"{key!r} is in delta but not in base")
    out = {}
    for key, b in base.items():
        if key not in delta:
            out[key] = b
            continue
        b_arr = _native_contiguous(b)
        d_arr = _native_contiguous(delta[key])
        if b_arr.shape != d_arr.shape:
            raise PTTHError("shape_mismatch", f"{key!r}: shapes {b_arr.shape} and {d_arr.shape}")
        if _is_int32(b_arr) and _is_int32(d_arr):
            with np.errstate(all="ignore"):
                out[key] = np.add(b_arr, d_arr, dtype=np.int32)
            continue
        if b_arr.dtype not in (_F16, _F32, _F64) or d_arr.dtype not in (_F16, _F32, _F64):
            raise PTTHError("unsupported_dtype",
                            f"{key!r}: cannot apply a {d_arr.dtype} delta to {b_arr.dtype}")
        if b_arr.dtype == _F16:  # no kernel for float16 arithmetic: NumPy's, in float16
            with np.errstate(all="ignore"):
                step = d_arr.astype(_F16)
                np.multiply(_F16.type(scale), step, out=step)
                out[key] = np.add(b_arr, step, out=step)
            continue
        result = np.empty(b_arr.shape, b_arr.dtype)
        if b_arr.dtype == _F32 and d_arr.dtype == _F16:
            _native.axpy(b_arr, float(scale), d_arr.view(np.uint16), result, _AXPY_F32_F16)
        elif b_arr.dtype == _F32:
            _native.axpy(b_arr, float(scale), d_arr.astype(_F32, copy=False), result, _AXPY_F32)
        else:
            _native.axpy(b_arr, float(scale), d_arr.astype(_F64, copy=False), result, _AXPY_F64)
        out[key] = result
    return out


def _check_mapping(m, what):
    if not isinstance(m, Mapping):
        raise PTTHError("bad_argument", f"{what} must be a mapping of names to arrays, "
                                        f"not {type(m).__name__}")


# ---- aggregator --------------------------------------------------------------

_ACCUMULATE = {"float64": _F64, "float32": _F32}
_UPDATE_CODES = {("f", 4): 0, ("f", 8): 1, ("i", 4): 2, ("f", 2): 3}


class Aggregator:
    """Weighted FedAvg over PTTH updates; see DEVELOPERS.md, "The aggregator"."""

    def __init__(self, template, *, accumulate="float64"):
        _check_mapping(template, "template")
        if accumulate not in _ACCUMULATE:
            raise PTTHError("bad_argument",
                            f"accumulate must be 'float64' or 'float32', not {accumulate!r}")
        self._accumulate = accumulate
        self._template = {}
        for key, value in template.items():
            if not isinstance(key, str):
                raise PTTHError("bad_argument", f"parameter names must be str, not {type(key).__name__}")
            arr = _native_contiguous(value)
            if (arr.dtype.kind, arr.dtype.itemsize) not in _UPDATE_CODES:
                raise PTTHError("unsupported_dtype", f"template {key!r} has dtype {arr.dtype}")
            self._template[key] = arr
        self._index = {k: i for i, k in enumerate(self._template)}
        self._start(None)

    def _start(self, accs):
        dtype = _ACCUMULATE[self._accumulate]
        if accs is None:
            accs = [np.zeros(t.shape, dtype) for t in self._template.values()]
        self._accs = accs
        self._core = _native.AggregatorCore(list(self._template), list(self._template.values()),
                                            accs, self._accumulate)

    @staticmethod
    def _weight(weight):
        ok = not isinstance(weight, bool) and isinstance(weight, (int, float, np.integer, np.floating))
        if ok:
            try:
                weight = float(weight)
            except OverflowError:
                ok = False
        if not ok or not (np.isfinite(weight) and weight > 0):
            raise PTTHError("bad_argument", f"weight must be a positive finite number, not {weight!r}")
        return weight

    def add(self, update, weight=1.0, *, kind="delta", allow_nonfinite=False,
            byteorder="<", relabel_float32=False, max_size=None):
        w = self._weight(weight)
        if kind not in ("delta", "full"):
            raise PTTHError("bad_argument", f"kind must be 'delta' or 'full', not {kind!r}")
        full = kind == "full"
        if isinstance(update, Mapping):
            self._core.add_parts(self._parts(update, w), w, full, bool(allow_nonfinite))
        else:
            self._core.add_blob(update, w, full, bool(allow_nonfinite), _byteorder(byteorder),
                                bool(relabel_float32), _max_size(max_size))

    def _parts(self, update, weight):
        parts = []
        for key, value in update.items():
            arr = _native_contiguous(value)
            code = _UPDATE_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
            if code is None:
                raise PTTHError("unsupported_dtype", f"update {key!r} has dtype {arr.dtype}")
            idx = self._index.get(key)
            if idx is None:
                raise PTTHError("unknown_name", f"the update names {key!r}, which the template lacks")
            if arr.shape != self._template[key].shape:
                raise PTTHError("shape_mismatch", f"{key!r} has shape {arr.shape}, the template "
                                                  f"{self._template[key].shape}")
            parts.append((idx, code, arr))
        return parts

    def merge(self, other):
        if not isinstance(other, Aggregator):
            raise PTTHError("bad_argument", f"can only merge an Aggregator, not {type(other).__name__}")
        self._core.merge(other._core)

    @property
    def count(self) -> int:
        return self._core.totals()[0]

    @property
    def total_weight(self) -> float:
        return self._core.totals()[1]

    def mean(self) -> dict:
        _, _, sums, accs = self._core.snapshot()
        out = {}
        with np.errstate(all="ignore"):
            for (key, _), acc, s in zip(self._template.items(), accs, sums):
                # the snapshot's copies are ours: divide them in place
                out[key] = (np.divide(acc, acc.dtype.type(s), out=acc) if s > 0
                            else np.zeros_like(acc))
        return out

    def apply(self, lr=1.0) -> dict:
        out = {}
        for (key, t), m in zip(self._template.items(), self.mean().values()):
            with np.errstate(all="ignore"):
                value = t.astype(m.dtype) + m.dtype.type(lr) * m
                if t.dtype.kind == "i":
                    value = np.rint(value)
            out[key] = np.asarray(value).astype(t.dtype)
        return out

    def __getstate__(self):
        count, total, sums, accs = self._core.snapshot()
        return {"template": self._template, "accumulate": self._accumulate,
                "accumulators": accs, "weight_sums": list(sums), "count": count,
                "total_weight": total}

    def __setstate__(self, state):
        self._accumulate = state["accumulate"]
        self._template = state["template"]
        self._index = {k: i for i, k in enumerate(self._template)}
        self._start([np.ascontiguousarray(a) for a in state["accumulators"]])
        self._core.restore(state["count"], state["total_weight"], state["weight_sums"])
