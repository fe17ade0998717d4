"""Element kernels: NumPy's own operations, in the dtype csrc/core/kernels.hpp states."""

from __future__ import annotations

import numpy as np


def _convert(x: np.ndarray, dtype, out: np.ndarray) -> None:
    """x cast to dtype into out (same size), with the core's NaN policy."""
    out = out.reshape(x.shape)
    with np.errstate(all="ignore"):
        np.copyto(out, x, casting="unsafe")
    _quiet_nans(x, out)


# (source itemsize, target itemsize) -> (source bits, shift of the payload, target bits, quiet NaN)
_NAN_RULES = {
    (4, 2): (np.uint32, -13, np.uint16, 0x7E00),
    (8, 2): (np.uint64, -42, np.uint16, 0x7E00),
    (2, 4): (np.uint16, 13, np.uint32, 0x7FC00000),
}


def _quiet_nans(src: np.ndarray, dst: np.ndarray) -> None:
    """ptth's NaN policy for float16 conversions (kernels.hpp), what F16C does:
    a NaN keeps its sign and top payload bits and comes out quiet. NumPy keeps
    signaling NaNs signaling; for quiet NaNs the two agree."""
    rule = _NAN_RULES.get((src.dtype.itemsize, dst.dtype.itemsize))
    if rule is None or src.dtype.kind != "f" or dst.dtype.kind != "f":
        return
    nan = np.isnan(src)
    if not nan.any():
        return
    src_bits, shift, dst_bits, quiet = rule
    width = src.dtype.itemsize * 8
    b = src[nan].astype(src.dtype.newbyteorder("="), copy=False).view(src_bits).astype(np.uint64)
    sign = (b >> np.uint64(width - 1)) << np.uint64(dst.dtype.itemsize * 8 - 1)
    payload_mask = np.uint64((1 << {16: 10, 32: 23, 64: 52}[width]) - 1)
    payload = b & payload_mask
    payload = payload >> np.uint64(-shift) if shift < 0 else payload << np.uint64(shift)
    dst.view(dst_bits)[nan] = (sign | np.uint64(quiet) | payload).astype(dst_bits)


# ---- engine primitives: one per kernel, writing into `out` ----------------------
# Inputs are C-contiguous native arrays of the named dtype, `out` a writable
# C-contiguous array of the result dtype and the same size (the front checks).


def f32_to_f16(x: np.ndarray, out: np.ndarray) -> None:
    _convert(x, np.float16, out)


def f64_to_f16(x: np.ndarray, out: np.ndarray) -> None:
    _convert(x, np.float16, out)  # NumPy rounds float64 straight to float16: one rounding


def f16_to_f32(h: np.ndarray, out: np.ndarray) -> None:
    _convert(h, np.float32, out)


def _sub(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        if out.dtype == a.dtype:
            np.subtract(a, b, out=out)
            return
        difference = np.subtract(a, b)
    _convert(difference, out.dtype, out)  # then one rounding to the result type


sub_f32 = sub_f64 = sub_f32_to_f16 = sub_f64_to_f16 = _sub


def _axpy(base: np.ndarray, scale: float, x: np.ndarray, out: np.ndarray) -> None:
    """out = base + T(scale) * T(x) in base's type T: two roundings, never fused."""
    t = base.dtype
    with np.errstate(all="ignore"):
        step = x.astype(t)  # float16 widens exactly
        np.multiply(t.type(scale), step, out=step)
        np.add(base, step, out=out)


axpy_f32 = axpy_f32_f16 = axpy_f64 = _axpy
