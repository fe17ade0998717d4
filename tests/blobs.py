"""Test helpers: a byte-level PTTH builder, a reference item walker, comparisons.

Built by hand from docs/format.md so the tests never use the library to make their
expected values.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

import ptth

GOLDEN = Path(__file__).parent / "golden"
WRAPPERS = ("zlib", "gzip", "deflate")
WBITS = {"zlib": 15, "gzip": 31, "deflate": -15}
CODES = {"float32": 0, "float64": 1, "int32": 2, "float16": 3}
UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
API = (
    "loads",
    "dumps",
    "load",
    "dump",
    "iter_load",
    "Decoder",
    "compress",
    "decompress",
    "detect_wrapper",
    "DEFAULT_MAX_SIZE",
    "backend",
)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def header(count: int, *, version: int = 1, magic: bytes = b"PTTH") -> bytes:
    return magic + u32(version) + u32(count)


def record(name, dims, code, payload: bytes = b"", *, data_len=None, ndim=None) -> bytes:
    """One record; ``data_len``/``ndim`` override the honest values."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    return (
        u32(len(name))
        + name
        + u32(len(dims) if ndim is None else ndim)
        + b"".join(u32(d) for d in dims)
        + u32(code)
        + u32(len(payload) if data_len is None else data_len)
        + payload
    )


def blob(*records: bytes, count=None) -> bytes:
    return header(len(records) if count is None else count) + b"".join(records)


def field_offsets(record_start: int, name_len: int, ndim: int) -> dict:
    """Offsets of a record's fields (DEVELOPERS.md's table)."""
    name = record_start + 4
    ndim_at = name + name_len
    dtype = ndim_at + 4 + 4 * ndim
    return {
        "name_len": record_start,
        "name": name,
        "ndim": ndim_at,
        "dims": ndim_at + 4,
        "dtype": dtype,
        "data_len": dtype + 4,
        "payload": dtype + 8,
    }


def items(data: bytes):
    """(start, end, record) of every item of a *valid* plain blob, in stream order."""
    out = [(0, 4, None), (4, 8, None), (8, 12, None)]
    (count,) = struct.unpack_from(">I", data, 8)
    pos = 12
    for i in range(count):
        (n,) = struct.unpack_from(">I", data, pos)
        out += [(pos, pos + 4, i), (pos + 4, pos + 4 + n, i)]
        pos += 4 + n
        (ndim,) = struct.unpack_from(">I", data, pos)
        out += [(pos, pos + 4, i), (pos + 4, pos + 4 + 4 * ndim, i)]
        pos += 4 + 4 * ndim
        (_, data_len) = struct.unpack_from(">II", data, pos)
        out += [(pos, pos + 4, i), (pos + 4, pos + 8, i), (pos + 8, pos + 8 + data_len, i)]
        pos += 8 + data_len
    assert pos == len(data), "items() wants a valid blob"
    return out


def waiting_item(data: bytes, offset: int):
    """(start, record) of the item a reader waits for with bytes [0, offset) parsed."""
    for start, end, rec in items(data):
        if end > offset:
            return start, rec
    return None


def error_of(fn, *args, **kw) -> ptth.PTTHError:
    """Call fn, which must raise PTTHError with a reason from ptth.REASONS."""
    try:
        fn(*args, **kw)
    except ptth.PTTHError as exc:
        assert exc.reason in ptth.REASONS, exc.reason
        return exc
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise PTTHError")


def where(exc: ptth.PTTHError):
    return exc.reason, exc.offset, exc.record


def check_error(fn, *args, reason, offset="any", record="any", **kw) -> ptth.PTTHError:
    exc = error_of(fn, *args, **kw)
    assert exc.reason == reason, str(exc)
    if offset != "any":
        assert exc.offset == offset, str(exc)
    if record != "any":
        assert exc.record == record, str(exc)
    return exc


def check_arg_error(fn, *args, exc=(TypeError, ValueError), names=None, **kw) -> Exception:
    """fn(*args, **kw) must raise a plain TypeError/ValueError (a bad argument, not bad
    data: never a PTTHError) whose message names the argument `names` when given."""
    try:
        fn(*args, **kw)
    except exc as err:
        assert not isinstance(err, ptth.PTTHError), repr(err)
        if names is not None:
            assert names in str(err), (names, str(err))
        return err
    raise AssertionError(f"{fn.__name__} did not raise {exc}")


def bits(arr: np.ndarray) -> np.ndarray:
    """The values as native-order unsigned ints of the same width (NaN-safe)."""
    arr = np.asarray(arr)
    native = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    return np.ascontiguousarray(native).view(UINTS[arr.dtype.itemsize])


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=")
        and a.shape == b.shape
        and np.array_equal(bits(a), bits(b))
    )


def assert_same_tensors(got: dict, want: dict, *, strict_dtype: bool = False) -> None:
    """Same names in the same order, same dtype, shape and bits."""
    assert list(got) == list(want)
    for k in want:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        if strict_dtype:
            assert g.dtype.str == w.dtype.str, (k, g.dtype.str, w.dtype.str)
        assert g.dtype.newbyteorder("=") == w.dtype.newbyteorder("="), (k, g.dtype, w.dtype)
        assert g.shape == w.shape, (k, g.shape, w.shape)
        assert np.array_equal(bits(g), bits(w)), k


def outcome(fn, *args, **kw):
    """('ok', result) or ('error', reason, offset, record): what differential tests compare."""
    try:
        return ("ok", fn(*args, **kw))
    except ptth.PTTHError as exc:
        assert exc.reason in ptth.REASONS, exc.reason
        return ("error",) + where(exc)


def describe_array(a: np.ndarray):
    """Everything two backends must agree on for one array."""
    return (a.dtype.str, a.shape, bits(a).tobytes(), bool(a.flags.writeable))


def describe(result):
    """outcome() made comparable: dicts and (name, array) lists become tuples."""
    if result[0] != "ok":
        return result
    value = result[1]
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, list):
        return ("ok", [(k, describe_array(v)) for k, v in value])
    return result


def feed_all(dec, chunks):
    out = []
    for c in chunks:
        out += dec.feed(c)
    dec.close()
    return out


def decode_chunks(backend, chunks, **kw):
    return dict(feed_all(backend.Decoder(**kw), chunks))


def sample_tensors() -> dict:
    """A small multi-dtype dict with awkward values and names."""
    f32 = np.array([[1.0, -0.0, np.inf], [np.nan, 1e-45, -3.25]], np.float32)
    return {
        "conv.weight": f32,
        "conv.bias": np.array([0.5, -1.5, 2.0], np.float64),
        "": np.array(7, np.int32),
        "héllo 🎉": np.array([[65504, -0.0], [np.float16(6e-8), -np.inf]], np.float16),
        "empty": np.zeros((3, 0, 2), np.float32),
        "steps": np.arange(5, dtype=np.int32) - 2,
    }


def big_tensors() -> dict:
    """~600 KB over several records: crosses deflate staging and read chunks."""
    rng = np.random.default_rng(7)
    return {
        "noise": rng.standard_normal(60_000).astype(np.float32),
        "smooth": np.repeat(np.arange(2_000, dtype=np.float64), 40).reshape(80, 1000),
        "ramp": np.arange(50_000, dtype=np.int32),
        "half": rng.standard_normal(30_000).astype(np.float16),
        "scalar": np.float32(1.5),
    }


def f16_like_ptth(v: np.ndarray) -> np.ndarray:
    """NumPy's astype(float16) with ptth's NaN policy (kernels.hpp): a NaN keeps
    its sign and top payload bits and comes out quiet, as F16C converts it."""
    v = np.asarray(v)
    with np.errstate(all="ignore"):
        h = v.astype(np.float16)
    nan = np.isnan(v)
    if v.dtype.itemsize in (4, 8) and nan.any():
        native = v.astype(v.dtype.newbyteorder("="))
        if native.dtype.itemsize == 4:
            b = native.view(np.uint32).astype(np.uint64)
            sign, payload = (b >> 16) & 0x8000, (b >> 13) & 0x3FF
        else:
            b = native.view(np.uint64)
            sign, payload = (b >> 48) & 0x8000, (b >> 42) & 0x3FF
        quiet = (sign | 0x7E00 | payload).astype(np.uint16)
        h.view(np.uint16)[nan] = quiet[nan]
    return h
