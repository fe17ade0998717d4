"""The pure engine: Python + NumPy + zlib_ng, the reference the native engine is checked against.

It exports exactly the primitives the native engine (``ptth._native``) does,
with the same names and meanings; the front (``ptth._front``) calls them.
It never imports the compiled module, so ptth runs where that was not built.
"""

from __future__ import annotations

import platform
from typing import Any, cast

import numpy as np
from zlib_ng import zlib_ng

from ..errors import REASONS
from .aggregator import AddOptions, AggregatorCore, Hold
from .decode import Decoder, decode
from .deflate import BLOCK
from .deflate import compress as _compress
from .format import (
    DEFAULT_MAX_SIZE,
    NUMPY,
    Accum,
    ByteOrder,
    Convert,
    DType,
    Kind,
    Output,
    Relabel,
    Wrapper,
)
from .format import detect_wrapper as _detect
from .inflate import decompress as _decompress
from .kernels import (
    axpy_f32,
    axpy_f32_f16,
    axpy_f64,
    f16_to_f32,
    f32_to_f16,
    f64_to_f16,
    sub_f32,
    sub_f32_to_f16,
    sub_f64,
    sub_f64_to_f16,
)
from .writer import encode

NAME = "python"

__all__ = [
    "DEFAULT_MAX_SIZE",
    "NAME",
    "Accum",
    "AddOptions",
    "AggregatorCore",
    "ByteOrder",
    "Convert",
    "DType",
    "Decoder",
    "Hold",
    "Kind",
    "Output",
    "Relabel",
    "Wrapper",
    "axpy_f32",
    "axpy_f32_f16",
    "axpy_f64",
    "build_info",
    "compress",
    "decode",
    "decompress",
    "detect_wrapper",
    "empty",
    "encode",
    "f16_to_f32",
    "f32_to_f16",
    "f64_to_f16",
    "reasons",
    "release_memory",
    "sub_f32",
    "sub_f32_to_f16",
    "sub_f64",
    "sub_f64_to_f16",
]


def _isal_version() -> str:
    from isal import isal_zlib

    return str(getattr(isal_zlib, "ISAL_VERSION", ""))


def reasons() -> list[tuple[str, str]]:
    """(name, description) of every PTTHError reason."""
    return list(REASONS.items())


def build_info() -> dict:
    """What this engine runs on: no compiled core, no SIMD tier; the Python codecs."""
    return {
        "compiler": None,
        "simd": None,
        "simd_available": [],
        "simd_note": "",
        "zlib_ng": zlib_ng.ZLIBNG_VERSION,
        "zlib_ng_origin": "python zlib_ng module",
        "huge_pages": None,
        "pool_idle_bytes": 0,
        "pool_cap_bytes": 0,
        "deflate_engine": "isal",
        "isal": _isal_version(),
        "isal_origin": "python isal module",
        "inflate_engine": "zlib-ng",
        "deflate_block": BLOCK,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array (NumPy's allocator: the pure engine keeps no pool)."""
    # NUMPY holds np.dtype objects; its inferred value type is a join mypy makes object
    return np.empty(tuple(shape), cast("np.dtype[Any]", NUMPY[DType(dtype)]))


def release_memory() -> int:
    """The pure engine keeps no memory of its own: nothing to release."""
    return 0


def detect_wrapper(data) -> Wrapper:
    return _detect(memoryview(data)[:4])


def compress(data, level: int, wrapper, threads: int = 1) -> bytes:
    return _compress(memoryview(data), int(level), Wrapper(wrapper).name, int(threads))


def decompress(data, wrapper, max_size: int) -> bytes:
    name = "auto" if wrapper is None else Wrapper(wrapper).name
    return _decompress(memoryview(data), wrapper=name, max_size=int(max_size))
