"""PTTH constants, the enums the engines share, the dtype table and wrapper detection.

The enums mirror the native engine's (``csrc/bindings/module.cpp``): the same
names, so the front can use either engine's.
"""

from __future__ import annotations

import enum
import sys

import numpy as np

MAGIC = b"PTTH"
VERSION = 1
MAX_NDIM = 64
DEFAULT_MAX_SIZE = 512 * 1024 * 1024
NO_LIMIT = 2**64 - 1


class ByteOrder(enum.IntEnum):
    little = 0
    big = 1
    auto = 2


class Relabel(enum.IntEnum):
    off = 0
    on = 1
    auto = 2


class Wrapper(enum.IntEnum):
    none = 0
    zlib = 1
    gzip = 2
    deflate = 3


class DType(enum.IntEnum):
    float32 = 0
    float64 = 1
    int32 = 2
    float16 = 3


class Convert(enum.IntEnum):
    none = 0
    f32_to_f16 = 1
    f64_to_f16 = 2
    f64_to_f32 = 3


class Accum(enum.IntEnum):
    f64 = 0
    f32 = 1


class Kind(enum.IntEnum):
    delta = 0
    full = 1


class Output(enum.IntEnum):
    sum = 0
    mean = 1
    apply = 2


#: dtype code -> (element name, itemsize)
DTYPES = {0: ("f4", 4), 1: ("f8", 8), 2: ("i4", 4), 3: ("f2", 2)}
#: DType -> native NumPy dtype
NUMPY = {
    DType.float32: np.dtype(np.float32),
    DType.float64: np.dtype(np.float64),
    DType.int32: np.dtype(np.int32),
    DType.float16: np.dtype(np.float16),
}

NATIVE = "<" if sys.byteorder == "little" else ">"
# NumPy rejects shapes whose non-zero dims times itemsize exceed intp, even
# when another dim is 0.
MAX_INTP = np.iinfo(np.intp).max

WBITS = {Wrapper.zlib: 15, Wrapper.gzip: 31, Wrapper.deflate: -15}


def dtype_of(dtype: np.dtype) -> DType | None:
    """The PTTH dtype of an array dtype (any byte order), or None."""
    code = {("f", 4): 0, ("f", 8): 1, ("i", 4): 2, ("f", 2): 3}.get((dtype.kind, dtype.itemsize))
    return None if code is None else DType(code)


def numel(dims) -> int:
    """Product of dims; 1 for no dims; 0 when any dim is 0."""
    n = 1
    for d in dims:
        if d == 0:
            return 0
        n *= d
    return n


def numpy_can_shape(dims, itemsize: int) -> bool:
    size = itemsize
    for d in dims:
        if d:
            size *= d
    return size <= MAX_INTP


def detect_wrapper(head) -> Wrapper:
    """Wrapper of a stream from its first bytes (up to 4; fewer at its end)."""
    head = bytes(head[:4])
    if head == MAGIC or (len(head) < 4 and MAGIC.startswith(head)):
        return Wrapper.none
    if len(head) >= 2:
        cmf, flg = head[0], head[1]
        if cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0:
            return Wrapper.zlib
    if head[:3] == b"\x1f\x8b\x08":
        return Wrapper.gzip
    return Wrapper.deflate


def describe_start(head: bytes) -> str:
    """The first bytes of an input, as the not_ptth message shows them."""
    if not head:
        return "nothing"
    text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in head)
    return " ".join(f"{b:02x}" for b in head) + f' ("{text}")'


def shape_text(dims) -> str:
    """A shape as Python writes a tuple: (2, 3), (4,), ()."""
    return str(tuple(int(d) for d in dims))
