"""Element kernels: NumPy's own operations, in the dtype DEVELOPERS.md states."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from ..errors import PTTHError
from .format import check_float_dtype, dtype_code

FLOAT_CODES = (0, 1, 3)
INT32_CODE = 2
SUBTRACT_DTYPES = ("float16", "float32", "float64")


def _array(x) -> np.ndarray:
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise PTTHError("bad_argument", f"not an array: {exc}") from None


def _check_out(out, dtype, shape) -> None:
    """out must be a writable C-contiguous array of dtype (native order) and shape."""
    if (not isinstance(out, np.ndarray) or out.dtype != dtype
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise PTTHError("bad_argument",
                        f"out must be a writable C-contiguous {np.dtype(dtype).name} array")
    if out.shape != shape:
        raise PTTHError("shape_mismatch", f"out has shape {out.shape}, expected {shape}")


def _check_shapes(a: np.ndarray, b: np.ndarray, name=None) -> None:
    if a.shape != b.shape:
        where = f"{name!r}: " if name is not None else ""
        raise PTTHError("shape_mismatch", f"{where}shapes {a.shape} and {b.shape} differ")


def _convert(x: np.ndarray, dtype, out):
    """x cast to dtype as a new C-contiguous array, or into out."""
    with np.errstate(all="ignore"):
        if out is None:
            result = x.astype(dtype, order="C")
        else:
            _check_out(out, dtype, x.shape)
            np.copyto(out, x, casting="unsafe")
            result = out
    _quiet_nans(x, result)
    return result


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


def to_float16(x, out=None) -> np.ndarray:
    x = _array(x)
    if dtype_code(x.dtype) not in FLOAT_CODES:
        raise PTTHError("unsupported_dtype", f"to_float16 takes float32 or float64, not {x.dtype}")
    # float64 goes straight to float16: one rounding
    return _convert(x, np.float16, out)


def to_float32(h, out=None) -> np.ndarray:
    h = _array(h)
    if dtype_code(h.dtype) != 3:
        raise PTTHError("unsupported_dtype", f"to_float32 takes float16, not {h.dtype}")
    return _convert(h, np.float32, out)


def subtract(updated, base, *, dtype=None, out=None, _name=None) -> np.ndarray:
    updated, base = _array(updated), _array(base)
    _check_shapes(updated, base, _name)
    code = dtype_code(updated.dtype)
    if code not in (0, 1) or dtype_code(base.dtype) != code:
        raise PTTHError("unsupported_dtype",
                        f"subtract takes two float32 or two float64 arrays, "
                        f"not {updated.dtype} and {base.dtype}")
    target = check_float_dtype(dtype, SUBTRACT_DTYPES)
    compute = np.dtype(np.float32 if code == 0 else np.float64)
    result = compute if target is None else np.dtype(target)
    if out is not None:
        _check_out(out, result, updated.shape)
    with np.errstate(all="ignore"):
        if result == compute:
            difference = out if out is not None else np.empty(updated.shape, compute)
            np.subtract(updated, base, out=difference)
            return difference
        difference = np.empty(updated.shape, compute)
        np.subtract(updated, base, out=difference)
    # then one rounding to the requested type
    return _convert(difference, result, out)


def _mapping(value, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise PTTHError("bad_argument", f"{what} must be a mapping of name -> array")
    return value


def compute_delta(updated, base, *, dtype=None) -> dict:
    target = check_float_dtype(dtype, SUBTRACT_DTYPES)
    updated, base = _mapping(updated, "updated"), _mapping(base, "base")
    delta = {}
    for name, new in updated.items():
        if name not in base:
            raise PTTHError("unknown_name", f"{name!r} is not in base")
        new, old = _array(new), _array(base[name])
        if dtype_code(new.dtype) == INT32_CODE and dtype_code(old.dtype) == INT32_CODE:
            _check_shapes(new, old, name)
            # counters: int32 arithmetic, wrapping
            delta[name] = np.empty(new.shape, np.int32)
            with np.errstate(all="ignore"):
                np.subtract(new, old, out=delta[name])
        else:
            delta[name] = subtract(new, old, dtype=target, _name=name)
    return delta


def apply_delta(base, delta, *, scale=1.0) -> dict:
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise PTTHError("bad_argument", "scale must be a real number")
    try:
        scale = float(scale)
    except OverflowError:
        raise PTTHError("bad_argument", "scale does not fit in a float64") from None
    base, delta = _mapping(base, "base"), _mapping(delta, "delta")
    for name in delta:
        if name not in base:
            raise PTTHError("unknown_name", f"{name!r} is in delta but not in base")
    result = {}
    for name, old in base.items():
        old = _array(old)
        if name not in delta:
            result[name] = old
            continue
        change = _array(delta[name])
        _check_shapes(old, change, name)
        old_code, change_code = dtype_code(old.dtype), dtype_code(change.dtype)
        with np.errstate(all="ignore"):
            if old_code == INT32_CODE and change_code == INT32_CODE:
                # counters: scale does not apply
                new = np.empty(old.shape, np.int32)
                np.add(old, change, out=new)
            elif old_code in FLOAT_CODES and change_code in FLOAT_CODES:
                # base + T(scale) * T(delta) in the base's type T: two roundings
                kind = old.dtype.newbyteorder("=")
                new = change.astype(kind, order="C")
                np.multiply(kind.type(scale), new, out=new)
                np.add(old, new, out=new)
            else:
                raise PTTHError("unsupported_dtype",
                                f"{name!r}: cannot apply a {change.dtype} delta to {old.dtype}")
        result[name] = new
    return result
