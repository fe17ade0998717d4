"""encode(): the PTTH encoder, the reference for csrc/core/writer.cpp."""

from __future__ import annotations

import struct
from typing import Any, cast

import numpy as np

from ..errors import PTTHError
from .deflate import compress as deflate_compress
from .format import MAGIC, MAX_NDIM, NUMPY, VERSION, Convert, DType
from .kernels import f32_to_f16, f64_to_f16

U32_MAX = 0xFFFFFFFF
_ITEMSIZE = {DType.float32: 4, DType.float64: 8, DType.int32: 4, DType.float16: 2}
_HALF_MAX, _FLOAT_MAX = np.float16(65504), np.finfo(np.float32).max


def _fail(reason: str, name: str, what: str) -> PTTHError:
    return PTTHError(reason, f"parameter {name!r}: {what}", name=name)


def _payload(
    name: str, array: np.ndarray, written: DType, convert: Convert, saturate: bool
) -> np.ndarray:
    """The record's values as written, little-endian, C order."""
    if convert == Convert.none:
        return array
    if convert == Convert.f64_to_f32:
        with np.errstate(all="ignore"):
            out = array.astype(np.float32)
    else:
        out = np.empty(array.shape, np.float16)
        (f32_to_f16 if convert == Convert.f32_to_f16 else f64_to_f16)(array, out)
    if not np.isfinite(out).all():
        # finite inputs that came out infinite overflowed; inf and NaN stay what they were
        over = np.isinf(out) & np.isfinite(array)
        if over.any():
            if not saturate:
                first = int(np.flatnonzero(over.reshape(-1))[0])
                kind = "float16" if written == DType.float16 else "float32"
                raise PTTHError(
                    "overflow",
                    f"tensor {name!r}: element {first} does not fit "
                    f"{kind} (pass saturate=True to clip it)",
                    name=name,
                )
            top = _HALF_MAX if written == DType.float16 else _FLOAT_MAX
            out[over] = np.copysign(top, array[over]).astype(out.dtype)
    return out


def encode(records, level: int, wrapper, saturate: bool, threads: int = 1) -> bytes:
    """records: [(name, C-contiguous native array, DType written, Convert)]; level < 0: none."""
    if len(records) > U32_MAX:
        raise PTTHError("not_representable", "more than 2**32-1 records")
    pieces = [MAGIC, struct.pack(">I", VERSION), struct.pack(">I", len(records))]
    for name, array, written, convert in records:
        written, convert = DType(written), Convert(convert)
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            raise PTTHError("bad_name", f"{name!r} cannot be encoded as UTF-8") from None
        if len(encoded) > U32_MAX:
            raise _fail("not_representable", name, "the name is longer than 2**32-1 bytes")
        if array.ndim > MAX_NDIM:
            raise _fail("not_representable", name, "more than 64 dims")
        if any(d > U32_MAX for d in array.shape):
            raise _fail("not_representable", name, "a dim does not fit in 32 bits")
        nbytes = array.size * _ITEMSIZE[written]
        if nbytes > U32_MAX:
            raise _fail("not_representable", name, "its payload is larger than 4 GiB - 1 bytes")
        payload = _payload(name, array, written, convert, saturate)
        pieces += [struct.pack(">I", len(encoded)), encoded, struct.pack(">I", array.ndim)]
        pieces += [struct.pack(">I", d) for d in array.shape]
        pieces += [struct.pack(">I", int(written)), struct.pack(">I", nbytes)]
        # NUMPY holds np.dtype objects; its inferred value type is a join mypy makes object
        native = cast("np.dtype[Any]", NUMPY[written])
        # little-endian, C order, whatever the input's byte order or strides (an ndarray
        # among the bytes: b"".join takes any buffer, which the stubs do not say)
        pieces.append(np.asarray(payload, dtype=native.newbyteorder("<"), order="C"))  # type: ignore[arg-type]
    blob = b"".join(pieces)
    if level >= 0:
        blob = deflate_compress(memoryview(blob), level, wrapper.name, threads)
    return blob
