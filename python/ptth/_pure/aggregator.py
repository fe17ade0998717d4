"""The aggregator core in NumPy: the reference for csrc/core/aggregator.cpp.

Every rule, check order and rounding of the core is mirrored here, so the two
engines agree bit for bit (DEVELOPERS.md, "The aggregator").
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..errors import PTTHError
from .decode import decode_view
from .format import (
    NUMPY,
    Accum,
    ByteOrder,
    DType,
    Kind,
    Output,
    Relabel,
    Wrapper,
    detect_wrapper,
    shape_text,
)
from .kernels import f32_to_f16, f64_to_f16

CHUNK = 4096  # elements per statistics chunk (the norm's summation order)
LANES = 16  # interleaved lanes per chunk
BLOCK = 256 * CHUNK  # elements per NumPy step (bounds temporaries)
HEADER_SIZE = 12
_INT32_LO, _INT32_HI = -(2.0**31), 2.0**31 - 1
_F32_TINY = np.finfo(np.float32).tiny


class AddOptions:
    """The options of one add (the front builds them; the core's AddOptions)."""

    __slots__ = (
        "allow_cast",
        "allow_nonfinite",
        "byteorder",
        "clip_norm",
        "count_empty",
        "kind",
        "max_abs",
        "max_norm",
        "max_size",
        "relabel",
    )

    def __init__(
        self,
        *,
        kind,
        byteorder,
        relabel,
        max_size,
        allow_nonfinite,
        allow_cast,
        count_empty,
        clip_norm,
        max_norm,
        max_abs,
    ):
        self.kind, self.byteorder, self.relabel = Kind(kind), ByteOrder(byteorder), Relabel(relabel)
        self.max_size = int(max_size)
        self.allow_nonfinite, self.allow_cast = bool(allow_nonfinite), bool(allow_cast)
        self.count_empty = bool(count_empty)
        self.clip_norm, self.max_norm, self.max_abs = (
            float(clip_norm),
            float(max_norm),
            float(max_abs),
        )


class SnapshotLock:
    """Many adders share it; a snapshot waits for the adders in flight and lets
    no new one in ahead of it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    def acquire_shared(self):
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1

    def release_shared(self):
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire(self):
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True

    def release(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()


# ---- statistics ------------------------------------------------------------------------


def chunk_sums(sq: np.ndarray) -> np.ndarray:
    """The sum of each 4096-element chunk of squares: 16 interleaved lanes added in
    order, then combined as the core's fixed binary tree."""
    chunks = -(-sq.size // CHUNK)
    # A lone short chunk adds only the rows it fills: the padding's +0.0 changes no lane
    # (squares are >= +0), and a per-record cost of 256 steps made small records costly.
    depth = CHUNK // LANES if chunks > 1 else -(-sq.size // LANES)
    padded = np.zeros(chunks * depth * LANES, np.float64)
    padded[: sq.size] = sq
    rows = padded.reshape(chunks, depth, LANES)
    lanes = rows[:, 0, :].copy()
    for k in range(1, depth):
        lanes += rows[:, k, :]
    pairs = lanes[:, 0::2] + lanes[:, 1::2]
    quads = pairs[:, 0::2] + pairs[:, 1::2]
    return (quads[:, 0] + quads[:, 1]) + (quads[:, 2] + quads[:, 3])


class Stats:
    __slots__ = ("finite", "maxabs", "sumsq")

    def __init__(self):
        self.finite, self.sumsq, self.maxabs = True, 0.0, 0.0

    def add_values(self, v: np.ndarray) -> None:
        """Fold a block of values (widened to float64, a multiple of CHUNK long
        except at a parameter's end) in order."""
        with np.errstate(all="ignore"):
            if not np.isfinite(v).all():
                self.finite = False
            sums = chunk_sums(v * v)
            self.maxabs = max(self.maxabs, float(np.fmax.reduce(np.abs(v), initial=0.0)))
        total = self.sumsq
        for s in sums.tolist():  # one rounding per addition, in order
            total = total + s
        self.sumsq = total

    def merge(self, other: Stats) -> None:
        self.finite = self.finite and other.finite
        self.sumsq = self.sumsq + other.sumsq
        self.maxabs = max(self.maxabs, other.maxabs)


def _blocks(n: int):
    for lo in range(0, n, BLOCK):
        yield lo, min(n, lo + BLOCK)


class _Part:
    __slots__ = ("offset", "param", "record", "values")

    def __init__(self, param, values, offset, record):
        self.param, self.values, self.offset, self.record = param, values, offset, record


class _Prepared:
    __slots__ = ("parts", "result", "scale", "weight")

    def __init__(self, weight):
        self.parts, self.weight, self.scale = [], weight, 1.0
        # norm, max_abs, factor, parameters, elements, byteorder, relabelled, counted
        self.result = [0.0, 0.0, 1.0, 0, 0, "<", 0, False]


class AggregatorCore:
    """Accumulators, weight sums and counts over a borrowed template."""

    def __init__(self, names, templates, accum):
        self._accum = Accum(accum)
        self._t = np.dtype(np.float64 if self._accum == Accum.f64 else np.float32)
        if len(names) != len(templates):
            raise ValueError("one name per template array")
        self._names = list(names)
        self._templates = list(templates)
        self._index = {}
        cap = HEADER_SIZE
        for i, (name, t) in enumerate(zip(self._names, self._templates)):
            if name in self._index:
                raise ValueError(f"the template names {name!r} twice")
            self._index[name] = i
            cap += 4 + len(name.encode("utf-8")) + 4 + 4 * t.ndim + 4 + 4 + 8 * t.size
        self.blob_cap = min(cap, 2**64 - 1)
        self._acc = [np.zeros(t.shape, self._t) for t in self._templates]
        self._locks = [threading.Lock() for _ in self._templates]
        self._sums = [0.0] * len(self._templates)
        self._totals = [0, 0.0, 0]  # count, total weight, empty
        self._totals_lock = threading.Lock()
        self._state = SnapshotLock()

    # -- matching and validation ------------------------------------------------------

    def _match(self, name, dims, dtype, final, opts, offset, record):
        i = self._index.get(name)
        if i is None:
            raise PTTHError(
                "unknown_name",
                f"the update names {name!r}, which the template lacks",
                offset=offset,
                record=record,
                name=name,
            )
        t = self._templates[i]
        if tuple(dims) != t.shape:
            raise PTTHError(
                "shape_mismatch",
                f"{name!r} has shape {shape_text(dims)} in the "
                f"update, {shape_text(t.shape)} in the template",
                offset=offset,
                record=record,
                name=name,
            )
        if final and not opts.allow_cast and t.dtype.kind == "f" and dtype == DType.int32:
            raise PTTHError(
                "dtype_mismatch",
                f"{name!r} is int32 in the update, {t.dtype} in "
                "the template (pass allow_cast=True to fold it anyway)",
                offset=offset,
                record=record,
                name=name,
            )
        return i

    def _check_weight(self, weight):
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError("weight must be a positive finite number")
        if self._accum == Accum.f32:
            with np.errstate(all="ignore"):
                w32 = np.float32(weight)
            if not (np.isfinite(w32) and w32 >= _F32_TINY):
                raise ValueError("weight is outside float32's normal range (accumulate float32)")

    def _prepare_blob(self, view, weight, opts):
        self._check_weight(weight)
        prepared = _Prepared(weight)
        wrapper = detect_wrapper(view[:4])
        limit = 2**64 - 1 if wrapper == Wrapper.none else min(opts.max_size, self.blob_cap)
        copy = wrapper != Wrapper.none or opts.byteorder != ByteOrder.little
        state = {}
        read_little = []  # parts read little-endian, for a later "auto" decision

        def on_header(name, dims, code, elem, offset, index, final):
            dtype = DType({"f4": 0, "f8": 1, "i4": 2, "f2": 3}[elem])
            state["param"] = self._match(name, dims, dtype, final, opts, offset, index)

        def on_record(name, array, code, offset, index, order):
            dtype = DType({"f": {4: 0, 8: 1, 2: 3}, "i": {4: 2}}[array.dtype.kind][array.itemsize])
            if opts.relabel == Relabel.auto and code == DType.int32:
                self._match(name, array.shape, dtype, True, opts, offset, index)
            prepared.parts.append(_Part(state["param"], array, offset, index))
            if order == ">":
                prepared.result[5] = ">"
            else:
                read_little.append(array)
            if int(dtype) != code:
                prepared.result[6] += 1

        def on_finish(reader):
            # Under "auto" the blob's decision holds for every payload, also those read
            # before it; a blob that never decided although a payload may read either
            # way is refused.
            if opts.byteorder != ByteOrder.auto:
                return
            if reader.byteorder == ">":
                for array in read_little:  # owned: "auto" always copies
                    array.byteswap(inplace=True)
                prepared.result[5] = ">"
            elif reader.byteorder is None and reader.ambiguity is not None:
                record, offset, name = reader.ambiguity
                raise PTTHError(
                    "ambiguous_byteorder",
                    "byteorder 'auto' cannot tell the byte order: no float32 payload reads "
                    f"plausibly in one order only, and {name!r} reads differently in the two; "
                    "pass byteorder='<' or '>'",
                    offset=offset,
                    record=record,
                    name=name,
                )

        try:
            decode_view(
                view, copy, opts.byteorder, opts.relabel, limit, on_header, on_record, on_finish
            )
        except PTTHError as exc:
            # The template's cap cannot be raised: say what it is rather than how to lift
            # max_size.
            if exc.reason != "too_large" or limit != self.blob_cap:
                raise
            raise PTTHError(
                "too_large",
                f"the upload would decode past {self.blob_cap} bytes, the most a valid update "
                "of this template can be (every parameter as float64, plus headers)",
                offset=exc.offset,
                record=exc.record,
                name=exc.name,
            ) from None
        self._validate(prepared, opts)
        return prepared

    def _prepare_arrays(self, items, weight, opts):
        self._check_weight(weight)
        prepared = _Prepared(weight)
        seen = set()
        for name, array in items:
            if name in seen:
                raise PTTHError("duplicate_name", f"{name!r} occurs twice in the update", name=name)
            seen.add(name)
            dtype = DType({"f": {4: 0, 8: 1, 2: 3}, "i": {4: 2}}[array.dtype.kind][array.itemsize])
            i = self._match(name, array.shape, dtype, True, opts, None, None)
            prepared.parts.append(_Part(i, array, None, None))
        self._validate(prepared, opts)
        return prepared

    def _stats(self, part, kind):
        """Statistics of the update's values (delta) or of T(x) - T(t) (full), and
        whether x itself was finite."""
        x = part.values.reshape(-1)
        stats, x_finite = Stats(), True
        if kind == Kind.full:
            t = self._templates[part.param].reshape(-1)
            for lo, hi in _blocks(x.size):
                with np.errstate(all="ignore"):
                    if not np.isfinite(x[lo:hi]).all():  # x itself, before any conversion
                        x_finite = False
                    d = x[lo:hi].astype(self._t) - t[lo:hi].astype(self._t)
                stats.add_values(d.astype(np.float64))
        else:
            for lo, hi in _blocks(x.size):
                with np.errstate(invalid="ignore"):  # a signaling NaN widens quiet, as in C++
                    wide = x[lo:hi].astype(np.float64)  # exact widening
                stats.add_values(wide)
        return stats, x_finite

    def _validate(self, p, opts):
        total = Stats()
        need_finite = not opts.allow_nonfinite
        for part in p.parts:
            name = self._names[part.param]

            def fail(reason, message, part=part, name=name):
                return PTTHError(reason, message, offset=part.offset, record=part.record, name=name)

            stats, x_finite = self._stats(part, opts.kind)
            if not stats.finite and need_finite:
                if opts.kind == Kind.full and x_finite:
                    raise fail(
                        "overflow",
                        f"{name!r}: the update minus the template overflows the accumulate dtype",
                    )
                raise fail("nonfinite", f"{name!r} holds NaN or infinity")
            t = self._templates[part.param]
            if (
                not opts.allow_cast
                and t.dtype.kind == "i"
                and part.values.dtype.kind == "f"
                and not _integral_int32(part.values)
            ):
                raise fail(
                    "dtype_mismatch",
                    f"{name!r} is int32 in the template but the update "
                    "holds values that are not int32 integers (pass allow_cast=True to "
                    "fold them anyway)",
                )
            if stats.maxabs > opts.max_abs:
                raise fail(
                    "norm_exceeded",
                    f"{name!r} holds an element of magnitude "
                    f"{stats.maxabs:g}, beyond max_abs={opts.max_abs:g}",
                )
            total.merge(stats)
            p.result[4] += part.values.size
        r = p.result
        r[3] = len(p.parts)
        r[0] = math.sqrt(total.sumsq) if total.sumsq >= 0 else math.nan
        r[1] = total.maxabs
        bounded = opts.clip_norm > 0 or opts.max_norm < math.inf
        if bounded and not math.isfinite(r[0]):
            raise PTTHError(
                "nonfinite", "the update's norm is not finite: it cannot be clipped or bounded"
            )
        if r[0] > opts.max_norm:
            raise PTTHError(
                "norm_exceeded", f"the update's L2 norm {r[0]:g} exceeds max_norm={opts.max_norm:g}"
            )
        r[2] = opts.clip_norm / r[0] if opts.clip_norm > 0 and r[0] > opts.clip_norm else 1.0
        p.scale = p.weight * r[2]
        if total.finite:
            peak = p.scale * total.maxabs
            with np.errstate(all="ignore"):
                fits = (
                    math.isfinite(peak)
                    if self._accum == Accum.f64
                    else bool(np.isfinite(np.float32(peak)))
                )
            if not fits:
                raise PTTHError(
                    "overflow",
                    "weight x the update's largest element overflows the accumulate dtype",
                )
        r[7] = bool(p.parts) or opts.count_empty

    # -- folding --------------------------------------------------------------------------

    def _fold(self, batch, kind):
        self._state.acquire_shared()
        try:
            with self._totals_lock:
                sums, totals = list(self._sums), list(self._totals)
                for p in batch:
                    for part in p.parts:
                        sums[part.param] += p.weight
                    if p.result[7]:
                        totals[0] += 1
                        totals[1] += p.weight
                    else:
                        totals[2] += 1
                if not math.isfinite(totals[1]):
                    raise PTTHError("overflow", "the round's total weight would overflow float64")
                self._sums, self._totals = sums, totals
            t = self._t
            for p in batch:
                for part in p.parts:
                    acc = self._acc[part.param].reshape(-1)
                    x = part.values.reshape(-1)
                    tmpl = self._templates[part.param].reshape(-1)
                    with self._locks[part.param], np.errstate(all="ignore"):
                        for lo, hi in _blocks(x.size):
                            step = x[lo:hi].astype(t)  # T(x): exact widening or one rounding
                            if kind == Kind.full:
                                np.subtract(step, tmpl[lo:hi].astype(t), out=step)
                            np.multiply(t.type(p.scale), step, out=step)
                            np.add(acc[lo:hi], step, out=acc[lo:hi])
        finally:
            self._state.release_shared()

    def add_blob(self, data, weight, opts):
        p = self._prepare_blob(memoryview(data), float(weight), opts)
        self._fold([p], opts.kind)
        return tuple(p.result)

    def add_arrays(self, items, weight, opts):
        p = self._prepare_arrays(items, float(weight), opts)
        self._fold([p], opts.kind)
        return tuple(p.result)

    def add_many(self, uploads, weights, opts):
        if len(weights) != len(uploads):
            raise ValueError("one weight per upload")
        out, valid = [None] * len(uploads), []
        for i, (u, w) in enumerate(zip(uploads, weights)):
            try:
                if isinstance(u, list):
                    p = self._prepare_arrays(u, float(w), opts)
                else:
                    p = self._prepare_blob(memoryview(u), float(w), opts)
            except PTTHError as exc:
                out[i] = exc
                continue
            valid.append((i, p))
        try:
            self._fold([p for _, p in valid], opts.kind)
        except PTTHError as exc:
            for i, _ in valid:
                out[i] = exc
            return out
        for i, p in valid:
            out[i] = tuple(p.result)
        return out

    def merge(self, other):
        if other is self:
            raise ValueError("an aggregator cannot merge itself")
        if other._accum != self._accum:
            raise ValueError("the aggregators accumulate in different dtypes")
        if len(other._names) != len(self._names):
            raise PTTHError("shape_mismatch", "the aggregators hold different parameters")
        for i, name in enumerate(self._names):
            if other._names[i] != name or other._templates[i].shape != self._templates[i].shape:
                raise PTTHError(
                    "shape_mismatch",
                    f"parameter {name!r} differs between the aggregators",
                    name=name,
                )
        # A fixed lock order: a.merge(b) and b.merge(a) at once cannot deadlock.
        first, second = sorted((self, other), key=id)
        first._state.acquire()
        second._state.acquire()
        try:
            self._check_merged_weights(other._sums, other._totals[1])
            for mine, theirs in zip(self._acc, other._acc):
                np.add(mine, theirs, out=mine)
            with self._totals_lock:
                self._sums = [a + b for a, b in zip(self._sums, other._sums)]
                self._totals = [a + b for a, b in zip(self._totals, other._totals)]
        finally:
            second._state.release()
            first._state.release()

    def _check_merged_weights(self, sums, total):
        """(Under the exclusive lock.) Weight sums that overflow would turn every mean
        into 0 without an error: refused before anything moves."""
        with self._totals_lock:
            finite = math.isfinite(self._totals[1] + total) and all(
                math.isfinite(a + b) for a, b in zip(self._sums, sums)
            )
        if not finite:
            raise PTTHError("overflow", "merging would overflow the round's weight sums (float64)")

    def totals(self):
        with self._totals_lock:
            return tuple(self._totals)

    def hold(self):
        return Hold(self)

    # -- state ---------------------------------------------------------------------------

    def restore(self, accs, sums, count, total, empty, merge):
        accs = list(accs)
        if len(accs) != len(self._names):
            raise PTTHError(
                "bad_state",
                f"the state holds {len(accs)} accumulators for a "
                f"template of {len(self._names)} parameters",
            )
        arrays = []
        for i, a in enumerate(accs):
            a = np.asarray(a)
            name = self._names[i]
            if a.dtype != self._t or not a.flags.c_contiguous or a.shape != self._acc[i].shape:
                raise PTTHError(
                    "bad_state",
                    f"the accumulator of {name!r} is not a C-contiguous "
                    f"{self._t.name} array of the template's shape",
                    name=name,
                )
            arrays.append(a)
        sums = [float(s) for s in sums]
        if len(sums) != len(self._names):
            raise PTTHError(
                "bad_state",
                f"the state holds {len(accs)} accumulators for a "
                f"template of {len(self._names)} parameters",
            )
        for name, s in zip(self._names, sums):
            if not (math.isfinite(s) and s >= 0):
                raise PTTHError(
                    "bad_state",
                    f"the weight sum of {name!r} is not a finite non-negative number",
                    name=name,
                )
        if not (math.isfinite(total) and total >= 0):
            raise PTTHError("bad_state", "the total weight is not a finite non-negative number")
        for name, a in zip(self._names, arrays):
            if not np.isfinite(a).all():
                raise PTTHError(
                    "bad_state", f"the accumulator of {name!r} is not finite", name=name
                )
        self._state.acquire()
        try:
            if merge:
                self._check_merged_weights(sums, float(total))
            for mine, theirs in zip(self._acc, arrays):
                if merge:
                    np.add(mine, theirs, out=mine)
                else:
                    np.copyto(mine, theirs)
            with self._totals_lock:
                if merge:
                    self._sums = [a + b for a, b in zip(self._sums, sums)]
                    c, w, e = self._totals
                    self._totals = [c + int(count), w + float(total), e + int(empty)]
                else:
                    self._sums = sums
                    self._totals = [int(count), float(total), int(empty)]
        finally:
            self._state.release()


def _integral_int32(values: np.ndarray) -> bool:
    v = values.reshape(-1)
    for lo, hi in _blocks(v.size):
        b = v[lo:hi].astype(np.float64)
        with np.errstate(all="ignore"):
            ok = (b == np.rint(b)) & (b >= _INT32_LO) & (b <= _INT32_HI)
        if not ok.all():
            return False
    return True


class Hold:
    """Keeps adds out while the front reads the state or writes outputs."""

    def __init__(self, core: AggregatorCore):
        self._core = core
        core._state.acquire()
        self._held = True

    def release(self):
        if self._held:
            self._held = False
            self._core._state.release()

    def _check(self):
        if not self._held:
            raise ValueError("the hold was released")

    def accumulators(self):
        self._check()
        views = []
        for a in self._core._acc:
            v = a.view()
            v.flags.writeable = False
            views.append(v)
        return views

    def weight_sums(self):
        self._check()
        return list(self._core._sums)

    def totals(self):
        self._check()
        return tuple(self._core._totals)

    def output(self, index, what, lr, denominator, allow_nonfinite, out, noise=None):
        """Parameter `index`'s sum, mean or applied value, written into `out`."""
        self._check()
        core = self._core
        if not 0 <= index < len(core._names):
            raise IndexError("no such parameter")
        acc = core._acc[index].reshape(-1)
        t_arr = core._templates[index].reshape(-1)
        dst = out.reshape(-1)
        if dst.size != acc.size:
            raise ValueError("out has the wrong size")
        nz = None if noise is None else np.asarray(noise).reshape(-1)
        T = core._t
        dd = denominator if denominator > 0 else core._sums[index]
        d, lr_t = T.type(dd), T.type(lr)
        check = not allow_nonfinite or dst.dtype.kind == "i"
        ok = True
        with np.errstate(all="ignore"):
            for lo, hi in _blocks(acc.size):
                m = acc[lo:hi] + nz[lo:hi] if nz is not None else acc[lo:hi].copy()
                if what != Output.sum:
                    if dd > 0:
                        np.divide(m, d, out=m)
                    else:
                        m[:] = 0
                res = m
                if what == Output.apply:
                    res = t_arr[lo:hi].astype(T)
                    if dd > 0:  # a parameter nobody updated keeps its value (and sign of zero)
                        np.add(res, lr_t * m, out=res)
                if not _store(res, dst[lo:hi], check):
                    ok = False
        if not ok:
            name = core._names[index]
            detail = " (out of range after rounding)" if dst.dtype.kind == "i" else " (not finite)"
            raise PTTHError(
                "overflow",
                f"the result for {name!r} does not fit {dst.dtype.name}{detail}",
                name=name,
            )


def _store(r: np.ndarray, dst: np.ndarray, check: bool) -> bool:
    if dst.dtype == np.float16:
        (f64_to_f16 if r.dtype == np.float64 else f32_to_f16)(r, dst)
    elif dst.dtype.kind == "i":
        v = np.rint(r.astype(np.float64))
        fits = (v >= _INT32_LO) & (v <= _INT32_HI)
        dst[:] = np.where(fits, v, 0).astype(np.int32)
        return bool(fits.all())
    else:
        dst[:] = r  # numpy's rounding of float64 to float32 is the core's
    return not check or bool(np.isfinite(dst).all())


_ = NUMPY  # (the dtype table is the reader's; the aggregator needs no other)
