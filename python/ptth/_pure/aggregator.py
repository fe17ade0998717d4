"""Weighted FedAvg in NumPy: the reference for the native aggregator (DEVELOPERS.md)."""

from __future__ import annotations

import numbers
import threading
from collections.abc import Mapping

import numpy as np

from ..errors import PTTHError
from .decode import loads
from .format import dtype_code

ACCUMULATE = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}


def _native(arr: np.ndarray) -> np.ndarray:
    """arr in native byte order and C order, without a copy when it already is."""
    return arr.astype(arr.dtype.newbyteorder("="), order="C", copy=False)


def _payload_offsets(records: dict) -> list:
    """Where each record's payload starts in the blob: records are back to back."""
    offsets, pos = [], 12
    for name, arr in records.items():
        pos += 4 + len(name.encode("utf-8")) + 4 + 4 * arr.ndim + 4 + 4
        offsets.append(pos)
        pos += arr.nbytes
    return offsets


class Aggregator:
    def __init__(self, template, *, accumulate="float64"):
        if not isinstance(template, Mapping):
            raise PTTHError("bad_argument", "template must be a mapping of names to arrays")
        if accumulate not in ACCUMULATE:
            raise PTTHError("bad_argument",
                            f"accumulate must be 'float64' or 'float32', not {accumulate!r}")
        self._accumulate = accumulate
        self._template = {}
        for name, value in template.items():
            if not isinstance(name, str):
                raise PTTHError("bad_argument", "parameter names must be str")
            arr = np.asarray(value)
            if dtype_code(arr.dtype) is None:
                raise PTTHError("unsupported_dtype", f"template {name!r} has dtype {arr.dtype}")
            self._template[name] = _native(arr)
        t = ACCUMULATE[accumulate]
        self._acc = {k: np.zeros(v.shape, t) for k, v in self._template.items()}
        self._wsum = dict.fromkeys(self._template, 0.0)
        self._count = 0
        self._total = 0.0
        self._lock = threading.Lock()

    # -- adding ---------------------------------------------------------------

    @staticmethod
    def _check_weight(weight) -> float:
        ok = isinstance(weight, numbers.Real) and not isinstance(weight, (bool, np.bool_))
        if ok:
            try:
                weight = float(weight)
            except OverflowError:
                ok = False
        if not ok or not (np.isfinite(weight) and weight > 0):
            raise PTTHError("bad_argument", f"weight must be a positive finite number, not {weight!r}")
        return weight

    def add(self, update, weight=1.0, *, kind="delta", allow_nonfinite=False, **loads_kw):
        weight = self._check_weight(weight)
        if kind not in ("delta", "full"):
            raise PTTHError("bad_argument", f"kind must be 'delta' or 'full', not {kind!r}")
        # Validate everything first: structure, then values; only then accumulate.
        if isinstance(update, Mapping):
            parts = [(name, arr, None, None) for name, arr in self._mapping_parts(update)]
        else:
            records = loads(update, **loads_kw)
            offsets = _payload_offsets(records)
            parts = []
            for i, ((name, arr), off) in enumerate(zip(records.items(), offsets)):
                if name not in self._template:
                    raise PTTHError("unknown_name", f"the update names {name!r}, which the "
                                    "template lacks", offset=off, record=i)
                if arr.shape != self._template[name].shape:
                    raise PTTHError("shape_mismatch", f"{name!r} does not have the template's "
                                    "shape", offset=off, record=i)
                parts.append((name, arr, off, i))
        if not allow_nonfinite:
            for name, arr, off, i in parts:
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise PTTHError("nonfinite", f"{name!r} holds NaN or infinity",
                                    offset=off, record=i)
        t = ACCUMULATE[self._accumulate]
        with self._lock, np.errstate(all="ignore"):
            for name, arr, _, _ in parts:
                x = arr.astype(t)
                if kind == "full":
                    np.subtract(x, self._template[name].astype(t), out=x)
                np.multiply(t.type(weight), x, out=x)
                np.add(self._acc[name], x, out=self._acc[name])
            for name, _, _, _ in parts:
                self._wsum[name] += weight
            self._count += 1
            self._total += weight

    def _mapping_parts(self, update):
        for name, value in update.items():
            arr = np.asarray(value)
            if dtype_code(arr.dtype) is None:
                raise PTTHError("unsupported_dtype", f"update {name!r} has dtype {arr.dtype}")
            if name not in self._template:
                raise PTTHError("unknown_name", f"the update names {name!r}, which the template lacks")
            if arr.shape != self._template[name].shape:
                raise PTTHError("shape_mismatch", f"{name!r} has shape {arr.shape}, the template "
                                f"{self._template[name].shape}")
            yield name, arr

    def merge(self, other) -> None:
        if not isinstance(other, Aggregator):
            raise PTTHError("bad_argument", f"can only merge an Aggregator, not {type(other).__name__}")
        if other is self:
            raise PTTHError("bad_argument", "an aggregator cannot merge itself")
        if other._accumulate != self._accumulate:
            raise PTTHError("bad_argument", "the aggregators accumulate in different dtypes")
        if len(other._template) != len(self._template):
            raise PTTHError("shape_mismatch", "the aggregators hold different parameters")
        for (a, ta), (b, tb) in zip(self._template.items(), other._template.items()):
            if a != b or ta.shape != tb.shape:
                raise PTTHError("shape_mismatch", f"parameter {a!r} differs between the aggregators")
        with self._lock, other._lock:
            for name in self._acc:
                np.add(self._acc[name], other._acc[name], out=self._acc[name])
                self._wsum[name] += other._wsum[name]
            self._count += other._count
            self._total += other._total

    # -- results ----------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    @property
    def total_weight(self) -> float:
        return self._total

    def mean(self) -> dict:
        with self._lock, np.errstate(all="ignore"):
            out = {}
            for name, acc in self._acc.items():
                s = self._wsum[name]
                out[name] = (np.divide(acc, acc.dtype.type(s), out=np.empty_like(acc)) if s > 0
                             else np.zeros_like(acc))
            return out

    def apply(self, lr=1.0) -> dict:
        out = {}
        for (name, t), m in zip(self._template.items(), self.mean().values()):
            with np.errstate(all="ignore"):
                value = t.astype(m.dtype) + m.dtype.type(lr) * m
                if t.dtype.kind == "i":
                    value = np.rint(value)
            out[name] = np.asarray(value).astype(t.dtype)
        return out

    def __getstate__(self):
        with self._lock:
            return {"template": self._template, "accumulate": self._accumulate,
                    "accumulators": [a.copy() for a in self._acc.values()],
                    "weight_sums": list(self._wsum.values()), "count": self._count,
                    "total_weight": self._total}

    def __setstate__(self, state):
        self._accumulate = state["accumulate"]
        self._template = state["template"]
        self._acc = {k: np.array(a) for k, a in zip(self._template, state["accumulators"])}
        self._wsum = dict(zip(self._template, state["weight_sums"]))
        self._count = state["count"]
        self._total = state["total_weight"]
        self._lock = threading.Lock()
