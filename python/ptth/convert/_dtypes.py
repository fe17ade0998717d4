"""Element types across PTTH, safetensors and .npz, and the policy for what PTTH cannot carry.

A tensor travels as a :class:`Tensor`: a canonical dtype name (NumPy's, or
ml_dtypes' for the types NumPy lacks, e.g. ``"bfloat16"``), a shape and an
array. For dtypes NumPy has, the array is a view of that dtype and shape; for
the others (bfloat16, float8, float4/6) it is the raw little-endian bytes
(``uint8``, 1-D), since NumPy cannot compute with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PTTHError

#: safetensors dtype code -> (canonical name, bits per element, NumPy dtype or None).
#: Listed in the safetensors library's enum order, which its writer sorts by.
SAFETENSORS = {
    "BOOL": ("bool", 8, np.dtype("?")),
    "F4": ("float4_e2m1fn", 4, None),
    "F6_E2M3": ("float6_e2m3fn", 6, None),
    "F6_E3M2": ("float6_e3m2fn", 6, None),
    "U8": ("uint8", 8, np.dtype("u1")),
    "I8": ("int8", 8, np.dtype("i1")),
    "F8_E5M2": ("float8_e5m2", 8, None),
    "F8_E4M3": ("float8_e4m3fn", 8, None),
    "F8_E8M0": ("float8_e8m0fnu", 8, None),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8, None),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8, None),
    "I16": ("int16", 16, np.dtype("<i2")),
    "U16": ("uint16", 16, np.dtype("<u2")),
    "F16": ("float16", 16, np.dtype("<f2")),
    "BF16": ("bfloat16", 16, None),
    "I32": ("int32", 32, np.dtype("<i4")),
    "U32": ("uint32", 32, np.dtype("<u4")),
    "F32": ("float32", 32, np.dtype("<f4")),
    "C64": ("complex64", 64, np.dtype("<c8")),
    "F64": ("float64", 64, np.dtype("<f8")),
    "I64": ("int64", 64, np.dtype("<i8")),
    "U64": ("uint64", 64, np.dtype("<u8")),
}
#: canonical name -> safetensors code
SAFETENSORS_CODE = {name: code for code, (name, _, _) in SAFETENSORS.items()}
#: safetensors code -> rank in the library's enum (its writer sorts by it, descending)
SAFETENSORS_RANK = {code: i for i, code in enumerate(SAFETENSORS)}
#: dtypes NumPy has no type for, by canonical name -> bits per element
FOREIGN_BITS = {name: bits for name, bits, np_dtype in SAFETENSORS.values() if np_dtype is None}

#: what PTTH stores (the format's dtype table)
PTTH_DTYPES = ("float32", "float64", "int32", "float16")
#: integer dtypes that narrow to int32 when every value fits
NARROWABLE = ("int64", "uint32", "uint64")
#: NumPy kinds an .npz member may hold (bool, integers, floats, complex)
NPZ_KINDS = "biufc"
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class Tensor:
    """One named tensor between a reader and a writer (see the module docstring)."""

    dtype: str
    shape: tuple
    array: np.ndarray

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.array.nbytes


def canonical_dtype(dtype: np.dtype) -> str | None:
    """The canonical name of a NumPy dtype, or None for non-numeric ones (object, str, ...)."""
    if dtype.name in FOREIGN_BITS:  # an ml_dtypes type such as bfloat16
        return dtype.name
    if dtype.kind in NPZ_KINDS and dtype.fields is None and dtype.subdtype is None:
        return np.dtype(dtype.str.lstrip("<>=|")).name if dtype.kind != "b" else "bool"
    return None


def tensor_from_array(name: str, value) -> Tensor:
    """A Tensor from a caller's array (NumPy, or anything ``np.asarray`` takes)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tensor {name!r} is not an array: {exc}") from None
    dtype = canonical_dtype(arr.dtype)
    if dtype is None:
        raise PTTHError(
            "unsupported_dtype",
            f"tensor {name!r} has dtype {arr.dtype}, which no model format holds "
            "(only bool, integer, floating and complex arrays)",
        )
    if dtype in FOREIGN_BITS:
        bits = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        return Tensor(dtype, tuple(arr.shape), bits)
    return Tensor(dtype, tuple(arr.shape), arr)


@dataclass(frozen=True)
class Policy:
    """What to do with a tensor the target format cannot hold as it is.

    Attributes:
        widen_bfloat16: bfloat16 becomes float32 (exact) when the target lacks bfloat16.
        narrow_int64: int64, uint32 and uint64 become int32 for PTTH when every value fits.
        unsupported: ``"error"`` raises :class:`ptth.PTTHError` naming the tensor;
            ``"skip"`` leaves it out and reports it.
    """

    widen_bfloat16: bool = True
    narrow_int64: bool = True
    unsupported: str = "error"

    @classmethod
    def from_kwargs(cls, widen_bfloat16=True, narrow_int64=True, unsupported="error"):
        for key, value in (("widen_bfloat16", widen_bfloat16), ("narrow_int64", narrow_int64)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{key} must be True or False, not {value!r}")
        if unsupported not in ("error", "skip"):
            raise ValueError(f"unsupported must be 'error' or 'skip', not {unsupported!r}")
        return cls(bool(widen_bfloat16), bool(narrow_int64), unsupported)


def carries(fmt: str, dtype: str) -> bool:
    """Whether format `fmt` stores dtype `dtype` as it is."""
    if fmt == "ptth":
        return dtype in PTTH_DTYPES
    if fmt == "safetensors":
        return dtype in SAFETENSORS_CODE
    if fmt == "npz":  # any NumPy numeric dtype; the foreign ones have no .npy descr
        return dtype not in FOREIGN_BITS
    raise AssertionError(fmt)


def bfloat16_to_float32(bits: np.ndarray, shape: tuple) -> np.ndarray:
    """Exact widening: a bfloat16 is the top half of the float32 with the same value."""
    halves = bits.view("<u2")
    out = np.empty(halves.shape, np.uint32)
    np.left_shift(halves, 16, out=out, dtype=np.uint32)
    return out.view(np.float32).reshape(shape)


class Unsupported(Exception):
    """Internal: the tensor cannot go to the target; ``reason`` and str(self) say why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def adapt(name: str, t: Tensor, fmt: str, policy: Policy, report) -> Tensor | None:
    """`t` as format `fmt` can hold it, per `policy`; None when skipped. Fills `report`."""
    try:
        out = _adapt(t, fmt, policy)
    except Unsupported as why:
        if policy.unsupported == "skip":
            report.skipped[name] = str(why)
            return None
        raise PTTHError(
            why.reason,
            f"tensor {name!r}: {why}; pass unsupported='skip' (--skip-unsupported) to leave it out",
        ) from None
    if out.dtype != t.dtype:
        (report.widened if out.dtype == "float32" else report.narrowed).append(name)
    report.tensors[name] = (t.dtype, out.dtype)
    report.parameters += out.numel
    return out


_U32_MAX = 0xFFFFFFFF


def _adapt(t: Tensor, fmt: str, policy: Policy) -> Tensor:
    out = _adapt_dtype(t, fmt, policy)
    # a PTTH record stores each dim and the payload length in 32 bits (docs/format.md)
    if fmt == "ptth" and (out.nbytes > _U32_MAX or any(d > _U32_MAX for d in out.shape)):
        raise Unsupported(
            "size_overflow",
            f"shape {list(out.shape)} ({out.nbytes} bytes) does "
            "not fit a PTTH record (32-bit dims and payload length)",
        )
    return out


def _adapt_dtype(t: Tensor, fmt: str, policy: Policy) -> Tensor:
    if carries(fmt, t.dtype):
        return t
    if t.dtype == "bfloat16" and policy.widen_bfloat16:
        return Tensor("float32", t.shape, bfloat16_to_float32(t.array, t.shape))
    if fmt == "ptth" and t.dtype in NARROWABLE and policy.narrow_int64:
        arr = t.array
        if arr.size and (arr.min() < _INT32.min or arr.max() > _INT32.max):
            lo, hi = arr.min(), arr.max()
            raise Unsupported("overflow", f"{t.dtype} values from {lo} to {hi} do not fit in int32")
        return Tensor("int32", t.shape, arr.astype(np.int32))
    where = {
        "ptth": "PTTH stores float32, float64, int32 and float16",
        "safetensors": "safetensors has no such dtype",
        "npz": "an .npz member needs a NumPy dtype",
    }[fmt]
    hint = ""
    if t.dtype == "bfloat16":
        hint = " (widen_bfloat16=True converts it exactly)"
    elif t.dtype in NARROWABLE and fmt == "ptth":
        hint = " (narrow_int64=True narrows it when every value fits)"
    raise Unsupported("unsupported_dtype", f"dtype {t.dtype} cannot be stored: {where}{hint}")
