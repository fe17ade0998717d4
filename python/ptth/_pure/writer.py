"""dumps(): the PTTH encoder."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np

from ..errors import PTTHError
from .deflate import MAX_THREADS
from .deflate import compress as deflate_compress
from .format import (MAGIC, MAX_NDIM, VERSION, WBITS, check_choice,
                     check_float_dtype, check_int, dtype_code)
from .kernels import to_float16

U32_MAX = 0xFFFFFFFF


def _u32(value: int, what: str) -> bytes:
    if value > U32_MAX:
        raise PTTHError("bad_argument", f"{what} ({value}) does not fit in 32 bits")
    return struct.pack(">I", value)


def _record(key, value, target) -> list:
    """The byte pieces of one record."""
    if not isinstance(key, str):
        raise PTTHError("bad_argument", f"names must be str, not {type(key).__name__}")
    try:
        name = key.encode("utf-8")
    except UnicodeEncodeError:
        raise PTTHError("bad_name", f"{key!r} cannot be encoded as UTF-8") from None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise PTTHError("bad_argument", f"{key!r}: not an array: {exc}") from None
    code = dtype_code(array.dtype)
    if code is None:
        raise PTTHError("unsupported_dtype", f"{key!r}: PTTH has no code for {array.dtype}")
    if target == "float16" and code in (0, 1):
        array, code = to_float16(array), 3
    elif target == "float32" and code == 1:
        with np.errstate(all="ignore"):
            array, code = array.astype(np.float32), 0
    if array.ndim > MAX_NDIM:
        raise PTTHError("bad_argument", f"{key!r} has more than {MAX_NDIM} dims")
    pieces = [_u32(len(name), "name length"), name, _u32(array.ndim, "ndim")]
    pieces += [_u32(dim, "a dim") for dim in array.shape]
    pieces += [_u32(code, "dtype"), _u32(array.nbytes, "payload size")]
    # little-endian, C order, whatever the input's byte order or strides
    pieces.append(np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C"))
    return pieces


def dumps(tensors, *, dtype=None, compress=None, wrapper="zlib", threads=1) -> bytes:
    if not isinstance(tensors, Mapping):
        raise PTTHError("bad_argument", "tensors must be a mapping of name -> array")
    target = check_float_dtype(dtype, ("float16", "float32"))
    level = None if compress is None else check_int(compress, "compress", 0, 9)
    wrapper = check_choice(wrapper, "wrapper", tuple(WBITS))
    check_int(threads, "threads", 0, MAX_THREADS)  # one thread here; same bytes
    pieces = [MAGIC, struct.pack(">I", VERSION), _u32(len(tensors), "count")]
    for key, value in tensors.items():
        pieces += _record(key, value, target)
    blob = b"".join(pieces)
    if level is not None:
        blob = deflate_compress(blob, level, wrapper)
    return blob
