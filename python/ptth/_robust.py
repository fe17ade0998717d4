"""Robust statistics over N uploads: coordinate-wise median and trimmed mean.

Flower's FedMedian and FedTrimmedAvg decode every upload, keep N full copies
of the model and stack them. Here the statistic is computed parameter by
parameter, and within a parameter block by block: an uncompressed upload is
read through zero-copy views (:func:`ptth.loads`), and a compressed one is
decoded once, record by record, into an unlinked temporary file from which
each parameter is read back when its turn comes. Peak memory is the result
plus about N x the largest parameter, not N x the model.

Both functions sit on the public API (``loads``, ``Decoder``,
``detect_wrapper``), so they run over whichever engine is active;
:func:`over` binds them to another copy of the front (the tests run them
over both engines that way).
"""

from __future__ import annotations

import math
import numbers
import tempfile
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any, Callable, Union

import numpy as np

from ._front import _flag, _type_name  # the front's argument rules
from .errors import PTTHError

__all__ = ["Bound", "median", "over", "trimmed_mean"]

Update = Union[bytes, bytearray, memoryview, np.ndarray, Mapping[str, Any], Any]

_SUPPORTED = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32))
_LOADS_KW = ("copy", "byteorder", "relabel_float32", "max_size")
_FEED = 1 << 20  # bytes fed to the decoder per step
_BLOCK_ELEMENTS = 1 << 17  # float64 values sorted per step (1 MiB: stays in L2)


def _retag(exc: PTTHError, where: str) -> PTTHError:
    """The same error, its message prefixed with which upload it is about."""
    return PTTHError(
        exc.reason, f"{where}: {exc.message}", offset=exc.offset, record=exc.record, name=exc.name
    )


# ---- where an upload's parameters live ------------------------------------------------


class _Spool:
    """Decoded records of compressed uploads, in one unlinked temporary file.

    The file lives in :func:`tempfile.gettempdir` (``TMPDIR``); on a tmpfs
    its pages are memory, on a disk they are page cache the kernel may drop.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="ptth-robust-", buffering=0)
        self._end = 0

    def append(self, arr: np.ndarray) -> int:
        """Write a C-contiguous array at the end; return its offset."""
        offset = self._end
        view = arr.reshape(-1).view(np.uint8).data
        while view.nbytes:  # a raw write may be partial
            n = self._file.write(view)
            view = view[n:]
        self._end += arr.nbytes
        return offset

    def read(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, dtype)
        view = out.reshape(-1).view(np.uint8).data
        self._file.seek(offset)
        while view.nbytes:
            n = self._file.readinto(view)
            if not n:
                raise OSError("the temporary file of decoded uploads ended early")
            view = view[n:]
        return out

    def close(self) -> None:
        self._file.close()


class _Entry:
    """One parameter of one upload: an array (a view or the caller's), or a spooled record."""

    __slots__ = ("array", "dtype", "offset", "shape")

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        array: np.ndarray | None = None,
        offset: int = 0,
    ) -> None:
        self.shape, self.dtype, self.array, self.offset = shape, dtype, array, offset

    def values(self, spool: _Spool | None) -> np.ndarray:
        if self.array is not None:
            return self.array
        assert spool is not None
        return spool.read(self.offset, self.dtype, self.shape)


def _from_mapping(update: Mapping[Any, Any], where: str) -> dict[str, _Entry]:
    entries = {}
    for key, value in update.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: names must be str, not {_type_name(key)}")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise PTTHError(
                "unsupported_dtype", f"{where}[{key!r}] is not an array: {exc}", name=key
            ) from None
        if arr.dtype.newbyteorder("=") not in _SUPPORTED:
            raise PTTHError(
                "unsupported_dtype",
                f"{where}[{key!r}] has dtype {arr.dtype}; updates hold float16, float32, "
                "float64 or int32",
                name=key,
            )
        entries[key] = _Entry(arr.shape, arr.dtype, array=arr)
    return entries


def _from_blob(
    api: ModuleType, data: Any, opts: dict[str, Any], spool: Callable[[], _Spool]
) -> dict[str, _Entry]:
    if api.detect_wrapper(data) == "none":
        records = api.loads(data, copy=False, **opts)  # views: nothing is copied
        return {name: _Entry(a.shape, a.dtype, array=a) for name, a in records.items()}
    # Decoded once, a record at a time, into the spool: memory is one record and one chunk.
    entries = {}
    dec = api.Decoder(**opts)
    view = _byte_view(data)
    for lo in range(0, view.nbytes, _FEED):
        for name, arr in dec.feed(view[lo : lo + _FEED]):
            arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # 0-d stays 0-d
            entries[name] = _Entry(arr.shape, arr.dtype, offset=spool().append(arr))
    dec.close()
    return entries


def _byte_view(data: Any) -> memoryview:
    """A flat byte view of a C-contiguous buffer (detect_wrapper has checked it is one)."""
    view = memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    try:
        return view.cast("B")
    except (TypeError, ValueError):
        return np.asarray(view).reshape(-1).view(np.uint8).data


def _bytes_like(value: object) -> bool:
    if isinstance(value, str):
        return False
    try:
        memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


# ---- the statistics over one block -------------------------------------------------------


def _median_rows(v: np.ndarray, out: np.ndarray, nonfinite: bool) -> None:
    """np.median of each sorted row: the middle value, or the mean of the two middle ones."""
    k = v.shape[1]
    if k % 2:
        out[:] = v[:, k // 2]
    else:
        # np.median's mean of the two: (a + b) / 2, bit for bit
        np.add(v[:, k // 2 - 1], v[:, k // 2], out=out)
        np.divide(out, 2.0, out=out)
    if nonfinite:
        out[np.isnan(v[:, -1])] = np.nan  # NaN sorts last; np.median gives NaN for any NaN


def _trimmed_rows(proportion: float) -> Callable[[np.ndarray, np.ndarray, bool], None]:
    def rows(v: np.ndarray, out: np.ndarray, nonfinite: bool) -> None:
        k = v.shape[1]
        cut = int(proportion * k)  # scipy.stats.trim_mean's cut, per parameter's N
        kept = v[:, cut : k - cut]
        np.sum(kept, axis=1, out=out)
        np.divide(out, float(kept.shape[1]), out=out)
        if nonfinite:
            out[np.isnan(v[:, -1])] = np.nan  # scipy's nan_policy="propagate", trimmed or not

    return rows


def _reduce(
    name: str,
    holders: list[tuple[int, np.ndarray]],
    base: np.ndarray | None,
    rows: Callable[[np.ndarray, np.ndarray, bool], None],
    allow_nonfinite: bool,
    out: np.ndarray,
) -> None:
    """out[i] = rows(sorted(x_j[i] (- base[i]) for each holder j)), block by block."""
    k = len(holders)
    flat = [(j, x.reshape(-1)) for j, x in holders]
    dst = out.reshape(-1)
    t = None if base is None else base.reshape(-1)
    n = dst.size
    step = max(64, _BLOCK_ELEMENTS // k)
    buf = np.empty((min(step, max(n, 1)), k), np.float64)
    with np.errstate(all="ignore"):
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            v = buf[: hi - lo]
            for col, (_, x) in enumerate(flat):
                v[:, col] = x[lo:hi]  # exact widening of every PTTH dtype
            if not allow_nonfinite:
                _check_finite(v, flat, name, "nonfinite", "holds NaN or infinity")
            if t is not None:
                np.subtract(v, t[lo:hi, None], out=v)  # float64(x) - float64(t): one rounding
                if not allow_nonfinite:
                    _check_finite(
                        v, flat, name, "overflow", "minus the template is not finite in float64"
                    )
            v.sort(axis=1)  # NaN last, as np.sort and np.partition order them
            rows(v, dst[lo:hi], allow_nonfinite)
            if not allow_nonfinite and not np.isfinite(dst[lo:hi]).all():
                # finite inputs, yet the sum of the kept values (or the middle pair) overflowed
                raise PTTHError(
                    "overflow",
                    f"{name!r}: the statistic of finite values overflows float64 (pass "
                    "allow_nonfinite=True for NumPy's result, infinity)",
                    name=name,
                )


def _check_finite(
    v: np.ndarray, flat: list[tuple[int, np.ndarray]], name: str, reason: str, what: str
) -> None:
    ok = np.isfinite(v)
    if ok.all():
        return
    col = int(np.argmin(ok.all(axis=0)))
    raise PTTHError(
        reason,
        f"updates[{flat[col][0]}]: {name!r} {what} (pass allow_nonfinite=True for NumPy's "
        "handling of NaN and infinity)",
        name=name,
    )


# ---- the functions ---------------------------------------------------------------------


def _statistic(
    api: ModuleType,
    what: str,
    updates: Iterable[Update],
    rows: Callable[[np.ndarray, np.ndarray, bool], None],
    template: Mapping[str, Any] | None,
    kind: str,
    allow_nonfinite: bool,
    loads_kw: dict[str, Any],
) -> dict[str, np.ndarray]:
    if not isinstance(kind, str):
        raise TypeError(f"kind must be 'delta' or 'full', not {_type_name(kind)}")
    if kind not in ("delta", "full"):
        raise ValueError(f"kind must be 'delta' or 'full', not {kind!r}")
    nonfinite_ok = _flag(allow_nonfinite, "allow_nonfinite")
    unknown = sorted(set(loads_kw) - set(_LOADS_KW))
    if unknown:
        raise TypeError(f"{what}() got an unexpected keyword argument {unknown[0]!r}")
    # Never copied (views are read once and dropped); accepted for symmetry with loads.
    _flag(loads_kw.get("copy", False), "copy")
    opts: dict[str, Any] = {
        k: loads_kw[k] for k in ("byteorder", "relabel_float32", "max_size") if k in loads_kw
    }
    api.Decoder(**opts)  # checks the options now, whether or not an upload is a blob
    tmpl = _template(template)
    if kind == "full" and tmpl is None:
        raise ValueError("kind='full' needs template= (the statistic is of update - template)")
    if isinstance(updates, (Mapping, str)) or _bytes_like(updates):
        raise TypeError(
            "updates must be an iterable of blobs or mappings (a list of uploads), "
            f"not a single {_type_name(updates)}"
        )
    try:
        items = iter(updates)
    except TypeError:
        raise TypeError(
            f"updates must be an iterable of blobs or mappings, not {_type_name(updates)}"
        ) from None

    spool_box: list[_Spool] = []

    def spool() -> _Spool:
        if not spool_box:
            spool_box.append(_Spool())
        return spool_box[0]

    try:
        uploads: list[dict[str, _Entry]] = []
        for i, update in enumerate(items):
            where = f"updates[{i}]"
            if isinstance(update, Mapping):
                uploads.append(_from_mapping(update, where))
            elif _bytes_like(update):
                try:
                    uploads.append(_from_blob(api, update, opts, spool))
                except PTTHError as exc:
                    raise _retag(exc, where) from None
            else:
                raise TypeError(
                    f"{where} must be a bytes-like blob or a mapping of names to arrays, "
                    f"not {_type_name(update)}"
                )
        order = _plan(uploads, tmpl)
        if not order:
            raise PTTHError(
                "no_contributions",
                f"no upload holds a parameter: there is no {what} to take"
                + ("" if uploads else " (updates is empty)"),
            )
        result: dict[str, np.ndarray] = {}
        store = spool_box[0] if spool_box else None
        for name, (shape, holders) in order.items():
            arrays = [(i, uploads[i][name].values(store)) for i in holders]
            base = None if kind == "delta" or tmpl is None else tmpl[name]
            out = np.empty(shape, np.float64)
            _reduce(name, arrays, base, rows, nonfinite_ok, out)
            del arrays  # spooled copies go before the next parameter's are read
            result[name] = out
        return result
    finally:
        for s in spool_box:
            s.close()


def _template(template: object) -> dict[str, np.ndarray] | None:
    if template is None:
        return None
    if not isinstance(template, Mapping):
        raise TypeError(
            f"template must be a mapping of names to arrays or None, not {_type_name(template)}"
        )
    out = {}
    for key, value in template.items():
        if not isinstance(key, str):
            raise TypeError(f"template names must be str, not {_type_name(key)}")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"template[{key!r}] is not an array: {exc}") from None
        if arr.dtype.newbyteorder("=") not in _SUPPORTED:
            raise TypeError(
                f"template[{key!r}] has dtype {arr.dtype}; templates hold float16, float32, "
                "float64 and int32"
            )
        out[key] = arr
    return out


def _plan(
    uploads: list[dict[str, _Entry]], tmpl: dict[str, np.ndarray] | None
) -> dict[str, tuple[tuple[int, ...], list[int]]]:
    """name -> (shape, indices of the uploads that hold it), in the result's order.

    With a template: its order, names it lacks are ``unknown_name``, shapes
    must be its shapes, and an int32 record for a floating parameter is
    ``dtype_mismatch`` (an iOS float32 payload under code 2 read without
    ``relabel_float32``). Without: first-seen order, and the uploads must
    agree on each name's shape and on int32 against floating point.
    """
    plan: dict[str, tuple[tuple[int, ...], list[int]]] = {}
    kinds: dict[str, tuple[bool, int]] = {}
    if tmpl is not None:
        for name, arr in tmpl.items():
            plan[name] = (arr.shape, [])
            kinds[name] = (arr.dtype.kind == "i", -1)
    for i, entries in enumerate(uploads):
        for name, e in entries.items():
            is_int = e.dtype.kind == "i"
            if name not in plan:
                if tmpl is not None:
                    raise PTTHError(
                        "unknown_name",
                        f"updates[{i}] names {name!r}, which the template lacks",
                        name=name,
                    )
                plan[name] = (e.shape, [])
                kinds[name] = (is_int, i)
            shape, holders = plan[name]
            first = "the template" if kinds[name][1] < 0 else f"updates[{kinds[name][1]}]"
            if e.shape != shape:
                raise PTTHError(
                    "shape_mismatch",
                    f"updates[{i}]: {name!r} has shape {e.shape}, {first} {shape}",
                    name=name,
                )
            int_before = kinds[name][0]
            if is_int and not int_before:
                raise PTTHError(
                    "dtype_mismatch",
                    f"updates[{i}]: {name!r} is int32 where {first} has floating point "
                    "(an iOS float32 payload under code 2 needs relabel_float32=True)",
                    name=name,
                )
            if int_before and not is_int and tmpl is None:
                raise PTTHError(
                    "dtype_mismatch",
                    f"updates[{i}]: {name!r} is {e.dtype} where {first} has int32",
                    name=name,
                )
            holders.append(i)
    return {name: entry for name, entry in plan.items() if entry[1]}


def _proportion(value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"proportion must be a real number, not {_type_name(value)}")
    p = float(value)
    if not (math.isfinite(p) and 0 <= p < 0.5):
        raise ValueError(f"proportion must be >= 0 and < 0.5, not {p!r}")
    return p


def _median(
    api: ModuleType,
    updates: Iterable[Update],
    template: Mapping[str, Any] | None,
    kind: str,
    allow_nonfinite: bool,
    loads_kw: dict[str, Any],
) -> dict[str, np.ndarray]:
    return _statistic(
        api, "median", updates, _median_rows, template, kind, allow_nonfinite, loads_kw
    )


def _trimmed_mean(
    api: ModuleType,
    updates: Iterable[Update],
    proportion: float,
    template: Mapping[str, Any] | None,
    kind: str,
    allow_nonfinite: bool,
    loads_kw: dict[str, Any],
) -> dict[str, np.ndarray]:
    rows = _trimmed_rows(_proportion(proportion))
    return _statistic(api, "trimmed_mean", updates, rows, template, kind, allow_nonfinite, loads_kw)


def _active() -> ModuleType:
    from . import _front

    return _front


def median(
    updates: Iterable[Update],
    *,
    template: Mapping[str, Any] | None = None,
    kind: str = "delta",
    allow_nonfinite: bool = False,
    **loads_kw: Any,
) -> dict[str, np.ndarray]:
    """The coordinate-wise median of the uploads, parameter by parameter, in float64.

    Equal to ``np.median(np.stack(values).astype(np.float64), axis=0)`` per
    parameter, bit for bit, without stacking the uploads: uncompressed blobs
    are read through zero-copy views, a compressed one is decoded once into an
    unlinked temporary file (in ``TMPDIR``), and peak memory is the result plus
    about N x the largest parameter.

    Args:
        updates: an iterable of uploads, each a PTTH blob (any bytes-like
            object, e.g. ``bytes`` or an ``mmap``; any wrapper) or a mapping of
            names to arrays. An upload may hold a subset of the parameters:
            each parameter's median is over the uploads that hold it, and a
            parameter that no upload holds is absent from the result (never
            zeros).
        template: name -> array. With it the result follows its order and
            every upload must fit it (names, shapes; an int32 record for a
            floating parameter is ``dtype_mismatch``). Default: no template;
            the result follows the order in which names first appear.
        kind: ``"delta"`` (default: the uploads are deltas) or ``"full"``
            (full weights: the median is of ``float64(update) -
            float64(template)``, so the result is a delta; needs ``template``).
        allow_nonfinite: take NaN and infinity as NumPy does (a coordinate with
            a NaN has median NaN; infinities are ordered) instead of refusing
            the upload (default False: ``nonfinite``).
        **loads_kw: ``byteorder``, ``relabel_float32``, ``max_size`` as for
            :func:`ptth.loads`, with its defaults (``copy`` is accepted and
            ignored: nothing is kept).

    Returns:
        name -> float64 array of the parameter's shape.

    Raises:
        PTTHError: a malformed upload (its reason; the message starts with
            ``updates[i]``), ``unknown_name``, ``shape_mismatch``,
            ``dtype_mismatch``, ``unsupported_dtype``, ``nonfinite`` (NaN or
            infinity without ``allow_nonfinite``), ``overflow`` (``kind="full"``:
            a difference that is not finite; or finite values whose statistic
            overflows, e.g. a middle pair near 1.8e308), or ``no_contributions`` when no
            upload holds any parameter (an empty ``updates`` too).
        TypeError, ValueError: an argument has the wrong type or value.

    Example:
        >>> ups = [{"w": np.array([1.0, 5.0])}, {"w": np.array([2.0, 0.0])},
        ...        ptth.dumps({"w": np.array([9.0, 1.0])}, compress=6)]
        >>> ptth.median(ups)["w"]
        array([2., 1.])
    """
    return _median(_active(), updates, template, kind, allow_nonfinite, loads_kw)


def trimmed_mean(
    updates: Iterable[Update],
    proportion: float,
    *,
    template: Mapping[str, Any] | None = None,
    kind: str = "delta",
    allow_nonfinite: bool = False,
    **loads_kw: Any,
) -> dict[str, np.ndarray]:
    """The coordinate-wise trimmed mean of the uploads, parameter by parameter, in float64.

    For a parameter held by ``n`` uploads, ``int(proportion * n)`` values are
    cut from each end of every coordinate's sorted values and the rest are
    averaged: ``scipy.stats.trim_mean(stack, proportion, axis=0)`` of the
    float64 stack, equal up to the order of the additions (which scipy leaves
    to ``np.partition``). Memory as for :func:`median`.

    Args:
        updates, template, kind, **loads_kw: as for :func:`median`.
        proportion: the fraction cut from each end, ``0 <= proportion < 0.5``
            (``0`` is the plain mean).
        allow_nonfinite: as for :func:`median`: a coordinate with a NaN gives NaN
            even where the NaN would be trimmed (scipy's default
            ``nan_policy="propagate"``); infinities are ordered and may be trimmed.

    Returns:
        name -> float64 array of the parameter's shape.

    Raises:
        PTTHError, TypeError, ValueError: as for :func:`median`; ``proportion``
            outside ``[0, 0.5)`` is a ValueError.

    Example:
        >>> ups = [{"w": np.array([v])} for v in (1.0, 2.0, 3.0, 100.0)]
        >>> ptth.trimmed_mean(ups, 0.25)["w"]
        array([2.5])
    """
    return _trimmed_mean(_active(), updates, proportion, template, kind, allow_nonfinite, loads_kw)


def over(front: ModuleType) -> Bound:
    """``median`` and ``trimmed_mean`` over another copy of the public API.

    Args:
        front: a module with ``loads``, ``Decoder`` and ``detect_wrapper``,
            e.g. ``ptth._engine.front_for("python")``.

    Example:
        >>> from ptth._engine import front_for
        >>> over(front_for("python")).median([{"w": np.zeros(2)}])["w"]
        array([0., 0.])
    """
    return Bound(front)


class Bound:
    """:func:`median` and :func:`trimmed_mean` bound to one front (see :func:`over`)."""

    def __init__(self, front: ModuleType) -> None:
        self.front = front

    def median(
        self,
        updates: Iterable[Update],
        *,
        template: Mapping[str, Any] | None = None,
        kind: str = "delta",
        allow_nonfinite: bool = False,
        **loads_kw: Any,
    ) -> dict[str, np.ndarray]:
        """:func:`median` over this front."""
        return _median(self.front, updates, template, kind, allow_nonfinite, loads_kw)

    def trimmed_mean(
        self,
        updates: Iterable[Update],
        proportion: float,
        *,
        template: Mapping[str, Any] | None = None,
        kind: str = "delta",
        allow_nonfinite: bool = False,
        **loads_kw: Any,
    ) -> dict[str, np.ndarray]:
        """:func:`trimmed_mean` over this front."""
        return _trimmed_mean(
            self.front, updates, proportion, template, kind, allow_nonfinite, loads_kw
        )
