"""A safetensors reader and writer that treat the file as untrusted.

The format: an unsigned 64-bit little-endian header length ``N``, ``N`` bytes of
UTF-8 JSON (an object that starts with ``{``, padded with spaces), then the data
section. Each header entry but ``__metadata__`` (a map of str to str) names a
tensor: ``{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`` with
offsets relative to the data section, little-endian C-order payloads. The
tensors must cover the data section exactly, without holes or overlaps.

Every check runs before any tensor is built; any violation is a
:class:`ptth.PTTHError` with reason ``bad_safetensors`` and the byte offset in
the file where it was found. Tensors are views into the caller's buffer.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..errors import PTTHError
from ._dtypes import (
    FOREIGN_BITS,
    SAFETENSORS,
    SAFETENSORS_CODE,
    SAFETENSORS_RANK,
    Tensor,
)

#: the safetensors library's cap on the header, which it calls a sanity limit
MAX_HEADER = 100_000_000
MAX_NDIM = 64
_MAX_INTP = np.iinfo(np.intp).max
_FIELDS = {"dtype", "shape", "data_offsets"}
_RESERVED = "__metadata__"


def _bad(message: str, offset: int | None = None, record: int | None = None) -> PTTHError:
    return PTTHError("bad_safetensors", message, offset=offset, record=record)


class _Duplicate(Exception):
    pass


def _pairs(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constant)


def _is_uint(v) -> bool:
    return type(v) is int and v >= 0


def parse_header(buf) -> tuple[int, dict, list]:
    """Check the header of `buf`; return (data start, metadata, [(name, code, shape, begin, end)]).

    The list is in data-offset order (header order among equal offsets).
    """
    total = len(buf)
    if total < 8:
        raise _bad(f"truncated: {total} bytes, the 8-byte header length is missing", total)
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER:
        raise _bad(f"header length {n} exceeds the {MAX_HEADER:,}-byte limit", 0)
    if n > total - 8:
        raise _bad(f"truncated: the header claims {n} bytes, {total - 8} follow", total)
    if n < 2:
        raise _bad(f"header length {n}: the header is a JSON object, at least 2 bytes", 0)
    raw = bytes(buf[8 : 8 + n])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("the header is not valid UTF-8", 8 + exc.start) from None
    if text[0] != "{":
        raise _bad("the header does not start with '{'", 8)
    try:
        header, end = _DECODER.raw_decode(text)
    except _Duplicate as dup:
        raise _bad(f"the header names {str(dup.args[0])!r} twice", 8) from None
    except json.JSONDecodeError as exc:
        raise _bad(
            f"the header is not valid JSON: {exc.msg}", 8 + len(text[: exc.pos].encode("utf-8"))
        ) from None
    except (ValueError, RecursionError) as exc:  # digit limits, NaN, nesting depth
        raise _bad(f"the header is not valid JSON: {exc}", 8) from None
    if text[end:].strip(" "):
        raise _bad(
            "the header has bytes after its JSON object (padding must be spaces)",
            8 + len(text[:end].encode("utf-8")),
        )
    return 8 + n, *_entries(header, total - 8 - n, 8 + n)


def _entries(header: dict, data_len: int, data_start: int) -> tuple[dict, list]:
    metadata = {}
    entries = []
    for index, (name, info) in enumerate(header.items()):
        if name == _RESERVED:
            if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in info.items()
            ):
                raise _bad("__metadata__ must map strings to strings", 8)
            metadata = info
            continue
        _check_name(name, index)
        if not isinstance(info, dict) or set(info) != _FIELDS:
            raise _bad(
                f"tensor {name!r}: an entry holds exactly dtype, shape and data_offsets", 8, index
            )
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in SAFETENSORS:
            raise _bad(f"tensor {name!r}: unknown dtype {code!r}", 8, index)
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise _bad(f"tensor {name!r}: shape must be a list of non-negative integers", 8, index)
        if len(shape) > MAX_NDIM:
            raise _bad(
                f"tensor {name!r}: {len(shape)} dimensions, more than NumPy's {MAX_NDIM}", 8, index
            )
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)
        ):
            raise _bad(f"tensor {name!r}: data_offsets must be two non-negative integers", 8, index)
        begin, end = offsets
        if begin > end or end > data_len:
            raise _bad(
                f"tensor {name!r}: data_offsets [{begin}, {end}] lie outside the "
                f"{data_len}-byte data section",
                data_start + min(begin, data_len),
                index,
            )
        bits = SAFETENSORS[code][1]
        numel, nonzero = 1, 1
        for d in shape:
            numel *= d
            nonzero *= max(d, 1)
        if numel * bits % 8:
            raise _bad(
                f"tensor {name!r}: {numel} elements of {code} do not fill whole bytes",
                data_start + begin,
                index,
            )
        nbytes = numel * bits // 8
        if nbytes != end - begin:
            raise _bad(
                f"tensor {name!r}: shape {shape} of {code} needs {nbytes} bytes, "
                f"data_offsets give {end - begin}",
                data_start + begin,
                index,
            )
        if nonzero * max(bits // 8, 1) > _MAX_INTP:
            raise _bad(
                f"tensor {name!r}: shape {shape} is too large for NumPy", data_start + begin, index
            )
        entries.append((name, code, tuple(shape), begin, end, index))
    entries.sort(key=lambda e: (e[3], e[4]))  # stable: header order among equal offsets
    expected = 0
    for name, _, _, begin, end, index in entries:
        if begin != expected:
            what = "overlaps the previous tensor" if begin < expected else "leaves a hole"
            raise _bad(
                f"tensor {name!r} starts at data offset {begin}, the previous one ends "
                f"at {expected}: it {what}",
                data_start + begin,
                index,
            )
        expected = end
    if expected != data_len:
        raise _bad(
            f"the tensors cover {expected} of the {data_len} data bytes (the data "
            "section must be covered exactly)",
            data_start + expected,
        )
    return metadata, [e[:5] for e in entries]


def _check_name(name: str, index: int) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(
            f"tensor name {name!r} is not valid UTF-8 (a lone surrogate escape)", 8, index
        ) from None


def read(buf) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file held in `buf`, views into it."""
    data_start, metadata, entries = parse_header(buf)
    tensors = {}
    for name, code, shape, begin, end in entries:
        _, bits, np_dtype = SAFETENSORS[code]
        start = data_start + begin
        if np_dtype is None:
            arr = np.frombuffer(buf, np.uint8, end - begin, start)
        elif end == begin:
            arr = np.empty(shape, np_dtype)  # frombuffer cannot start at the buffer's end
        else:
            arr = np.frombuffer(buf, np_dtype, (end - begin) * 8 // bits, start).reshape(shape)
        tensors[name] = Tensor(SAFETENSORS[code][0], shape, arr)
    return tensors, metadata


def check_name(name: str) -> None:
    """Raise unless safetensors can hold `name` as a tensor name."""
    if name == _RESERVED:
        raise PTTHError(
            "unsupported_name",
            "safetensors reserves the name '__metadata__' for its metadata; rename the tensor",
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PTTHError(
            "unsupported_name", f"tensor name {name!r} cannot be written as UTF-8 JSON"
        ) from None


def _payload(t: Tensor) -> memoryview:
    """The tensor's bytes as safetensors stores them: little-endian, C order."""
    arr = t.array
    if t.dtype not in FOREIGN_BITS:  # foreign dtypes already are their raw bytes
        arr = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
    flat = np.ascontiguousarray(arr).reshape(-1)
    # NumPy arrays support the buffer protocol; the stubs do not say so.
    return memoryview(flat).cast("B") if flat.size else memoryview(b"")  # type: ignore[arg-type]


def header_bytes(items: list, metadata: dict | None) -> bytes:
    """The padded header for [(name, Tensor)] laid out in that order."""
    header = {}
    if metadata:
        header[_RESERVED] = dict(metadata)
    offset = 0
    for name, t in items:
        n = t.nbytes
        header[name] = {
            "dtype": SAFETENSORS_CODE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the library pads to 8 bytes so the data is aligned
    return struct.pack("<Q", len(text)) + text


def library_order(items: list) -> list:
    """[(name, Tensor)] sorted as the safetensors library lays them out: dtype, then name."""
    return sorted(
        items,
        key=lambda it: (-SAFETENSORS_RANK[SAFETENSORS_CODE[it[1].dtype]], it[0].encode("utf-8")),
    )


def write(items: list, metadata: dict | None, f) -> int:
    """Write [(name, Tensor)] in that order to binary file `f`; return the bytes written."""
    for name, _ in items:
        check_name(name)
    head = header_bytes(items, metadata)
    f.write(head)
    written = len(head)
    for _, t in items:
        view = _payload(t)
        f.write(view)
        written += len(view)
    return written
