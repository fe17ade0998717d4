"""PTTH constants, the dtype table, wrapper detection and argument checks."""

from __future__ import annotations

import operator
import sys

import numpy as np

from ..errors import PTTHError

MAGIC = b"PTTH"
VERSION = 1
MAX_NDIM = 64
DEFAULT_MAX_SIZE = 512 * 1024 * 1024

#: dtype code -> (element name, itemsize)
DTYPES = {0: ("f4", 4), 1: ("f8", 8), 2: ("i4", 4), 3: ("f2", 2)}

NATIVE = "<" if sys.byteorder == "little" else ">"
# NumPy rejects shapes whose non-zero dims times itemsize exceed intp, even
# when another dim is 0.
MAX_INTP = np.iinfo(np.intp).max

WBITS = {"zlib": 15, "gzip": 31, "deflate": -15}
BYTEORDERS = ("<", ">", "auto")


def dtype_code(dtype: np.dtype) -> int | None:
    """The PTTH code of an array dtype (any byte order), or None."""
    key = (dtype.kind, dtype.itemsize)
    return {("f", 4): 0, ("f", 8): 1, ("i", 4): 2, ("f", 2): 3}.get(key)


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


def detect_wrapper(head) -> str:
    """Wrapper of a stream from its first bytes (up to 4; fewer at its end)."""
    head = bytes(head[:4])
    if head == MAGIC or (len(head) < 4 and MAGIC.startswith(head)):
        return "none"
    if len(head) >= 2:
        cmf, flg = head[0], head[1]
        if cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0:
            return "zlib"
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    return "deflate"


def byte_view(data) -> memoryview:
    """A flat unsigned-byte memoryview of any C-contiguous buffer."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous or data.dtype.hasobject:
            raise PTTHError("bad_argument", "the array must be C-contiguous, without objects")
        data = data.reshape(-1).view(np.uint8)
    try:
        view = memoryview(data)
    except (TypeError, ValueError) as exc:
        raise PTTHError("bad_argument",
                        f"expected a bytes-like object, got {type(data).__name__}") from exc
    if not view.c_contiguous:
        raise PTTHError("bad_argument", "the buffer must be C-contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def check_int(value, name: str, lo: int, hi: int | None = None) -> int:
    """An integer argument in [lo, hi]; anything else is bad_argument."""
    if isinstance(value, (bool, np.bool_)):
        raise PTTHError("bad_argument", f"{name} must be an integer, not a bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise PTTHError("bad_argument", f"{name} must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        raise PTTHError("bad_argument", f"{name}={value} is out of range")
    return value


def check_max_size(max_size) -> int:
    if max_size is None:
        return DEFAULT_MAX_SIZE
    return check_int(max_size, "max_size", 0)


def check_choice(value, name: str, choices):
    if not isinstance(value, str) or value not in choices:
        raise PTTHError("bad_argument", f"{name} must be one of {', '.join(choices)}")
    return value


def check_float_dtype(dtype, allowed) -> str | None:
    """None or a floating dtype in ``allowed``: its exact name, or a type / np.dtype of it."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except (TypeError, ValueError):
            name = None
    if name not in allowed:
        raise PTTHError("bad_argument", f"dtype must be None or one of {', '.join(allowed)}")
    return name


class LoadOptions:
    """The keywords shared by loads, load, iter_load and Decoder, checked once."""

    __slots__ = ("copy", "byteorder", "relabel_float32", "max_size")

    def __init__(self, copy=False, byteorder="<", relabel_float32=False, max_size=None):
        self.copy = bool(copy)
        self.byteorder = check_choice(byteorder, "byteorder", BYTEORDERS)
        self.relabel_float32 = bool(relabel_float32)
        self.max_size = check_max_size(max_size)
