"""Aggregation of a round spread over many machines, on dask.distributed.

:func:`aggregate` folds uploads into partial aggregators on the workers that
hold them (files they can read, bytes futures already in their memory, or
the partitions of a ``dask.bag``), merges the partials' states in a tree of
tasks and returns one :class:`ptth.Aggregator`. The template is sent to the
cluster once, as a task's result that workers fetch from each other; what
crosses the network afterwards is accumulators and weight sums
(:class:`ptth.PartialAggregate`, pickled with protocol-5 buffers), never the
template again and never the uploads themselves.

Needs the ``ptth[dask]`` extra (``dask[distributed]``). The plan for a round
of 10^6 clients and the measured per-core figures are in ``docs/dask.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

import ptth

try:
    import dask.bag as _bag
    import distributed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"ptth.dask needs dask.distributed ({exc}): pip install 'ptth[dask]'"
    ) from exc

__all__ = ["ORDERS", "Partition", "Rejected", "RoundAggregator", "aggregate", "dask_rows"]

#: The merge orders :func:`aggregate` offers (see its docstring and docs/dask.md).
ORDERS = ("completion", "partition", "tree")

# Keywords of Aggregator.add that are also Aggregator options: they go to the
# constructor (on the workers and on the returned aggregator), the rest to add_many.
_CTOR_KW = ("byteorder", "relabel_float32", "allow_cast", "allow_nonfinite", "max_size")
# Merges run before queued folds, so partials (a model's worth of accumulators
# each) are combined as they appear instead of piling up in worker memory.
_MERGE_PRIORITY = 10


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An upload that was not counted, and why.

    Attributes:
        index: its position in ``updates`` (for a bag: in the bag's order).
        source: the path, the future's key, or ``None`` for bytes in a bag.
        reason: the :class:`ptth.PTTHError` reason (a key of ``ptth.REASONS``),
            ``"read_error"`` for a file that could not be read (an
            ``OSError``) or ``"upload_error"`` for a bytes future that had
            failed or was lost before the round started.
        message: the explanation.
        offset, record: where in the blob, as in :class:`ptth.PTTHError`.
    """

    index: int
    source: str | None
    reason: str
    message: str
    offset: int | None = None
    record: int | None = None


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partial aggregate of the round: which uploads it folded, where and how fast.

    Attributes:
        index: its place in the merge order (``order="partition"`` and
            ``"tree"`` merge by this index).
        indexes: the positions (in ``updates`` or the bag's order) of the
            uploads it held, in the order they were added.
        worker: the address of the worker that built it (the last one, when
            Dask had to run it again after a worker died).
        counted: how many of them were counted.
        seconds: the wall time spent reading and adding on the worker.
        cpu_seconds: the CPU time of that work (its thread's), which other
            load on the machine does not inflate: what sizing a cluster needs.
    """

    index: int
    indexes: Sequence[int]
    worker: str
    counted: int
    seconds: float
    cpu_seconds: float


class RoundAggregator(ptth.Aggregator):
    """The :class:`ptth.Aggregator` that :func:`aggregate` returns, with the round's report.

    It is an ordinary aggregator over the template (``mean``, ``apply``,
    further ``add`` and ``merge`` work as usual) carrying two lists:

    Attributes:
        rejected: a :class:`Rejected` per upload that was not counted, by index.
        partitions: a :class:`Partition` per partial aggregate, by index.
        order: the merge order used.

    It pickles as a plain :class:`ptth.Aggregator` (the report stays behind).
    """

    def __init__(self, template: Mapping[str, Any], **options: Any) -> None:
        super().__init__(template, **options)
        self.rejected: list[Rejected] = []
        self.partitions: list[Partition] = []
        self.order = "completion"


#: What a fold or merge task returns: the partial state and, per partition, its
#: report and the uploads it rejected (positions local to a bag partition until
#: the client renumbers them).
_Folded = tuple[ptth.PartialAggregate, list[tuple[Partition, list[Rejected]]]]


class _Shared:
    """The template, boxed so that Dask pickles it as one object (protocol-5 buffers).

    A bare dict would be serialized item by item: 3-10x slower for 200 tensors.
    """

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.template = template


class _Config(NamedTuple):
    """What every fold task needs besides its uploads (small: shipped with each task)."""

    ctor: dict[str, Any]
    add: dict[str, Any]
    batch_size: int
    file_limit: int


# ---- on the workers --------------------------------------------------------------------


def _file_limit(template: Mapping[str, Any]) -> int:
    """The largest file that can hold a valid update of `template`, in any wrapper.

    The aggregator's own bound on decoded size (every parameter at float64
    plus headers) with room for the DEFLATE framing of a stored stream.
    """
    cap = 12
    for name, value in template.items():
        arr = np.asarray(value)
        cap += 20 + len(str(name).encode("utf-8", "surrogatepass")) + 4 * arr.ndim + 8 * arr.size
    return cap + (cap >> 10) + (1 << 16)


def _read(path: str, limit: int) -> bytes:
    """The file's bytes, refusing one larger than `limit` before reading any of it."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ptth.PTTHError(
                "too_large",
                f"the file holds {size} bytes; no update of this template exceeds {limit}",
            )
        data = f.read(limit + 1)  # a file that grows while read is caught too
    if len(data) > limit:
        raise ptth.PTTHError("too_large", f"the file grew past {limit} bytes while read")
    return data


def _is_path(item: object) -> bool:
    return isinstance(item, (str, os.PathLike))


def _reject(index: int, source: str | None, err: BaseException) -> Rejected:
    if isinstance(err, ptth.PTTHError):
        return Rejected(index, source, err.reason, err.message, err.offset, err.record)
    return Rejected(index, source, "read_error", f"{type(err).__name__}: {err}")


def _fold(
    template: _Shared,
    cfg: _Config,
    part: int,
    items: Iterable[tuple[int, str | None, Any, float]],
) -> _Folded:
    """Fold (position, source, update or path, weight) items into one partial aggregate."""
    t0, c0 = time.perf_counter(), time.thread_time()
    agg = ptth.Aggregator(template.template, **cfg.ctor)
    positions: list[int] = []
    rejected: list[Rejected] = []
    counted = 0
    batch: list[tuple[int, str | None, Any, float]] = []

    def flush() -> None:
        nonlocal counted
        results = agg.add_many([b[2] for b in batch], [b[3] for b in batch], **cfg.add)
        for (pos, source, _, _), res in zip(batch, results):
            if isinstance(res, ptth.PTTHError):
                rejected.append(_reject(pos, source, res))
            elif res.counted:
                counted += 1
        batch.clear()

    for pos, source, item, weight in items:
        positions.append(pos)
        if _is_path(item):
            try:
                item = _read(os.fspath(item), cfg.file_limit)
            except (OSError, ptth.PTTHError) as err:
                rejected.append(_reject(pos, source, err))
                continue
        batch.append((pos, source, item, weight))
        if len(batch) >= cfg.batch_size:
            flush()
    if batch:
        flush()
    worker = distributed.get_worker().address
    info = Partition(
        part, positions, worker, counted, time.perf_counter() - t0, time.thread_time() - c0
    )
    return agg.partial(), [(info, rejected)]


def _fold_list(
    template: _Shared,
    cfg: _Config,
    part: int,
    indexes: list[int],
    sources: list[str | None],
    updates: list[Any],
    weights: list[float],
) -> _Folded:
    """A partition of a list: paths read here, or bytes Dask resolved from futures."""
    return _fold(template, cfg, part, zip(indexes, sources, updates, weights))


def _bag_items(elements: Iterable[Any]) -> Iterator[tuple[int, str | None, Any, float]]:
    for pos, element in enumerate(elements):
        if isinstance(element, tuple) and len(element) != 2:
            raise ValueError(
                f"a bag element tuple must be (update, weight), not {len(element)} items"
            )
        update, weight = element if isinstance(element, tuple) else (element, 1.0)
        yield pos, (os.fspath(update) if _is_path(update) else None), update, weight


def _fold_bag(
    elements: Iterable[Any], part: Iterable[int], template: _Shared, cfg: _Config
) -> list[_Folded]:
    """A bag partition (a lazy iterator: uploads are read as they are folded)."""
    (index,) = part
    return [_fold(template, cfg, index, _bag_items(elements))]


def _merge(
    a: _Folded,
    b: _Folded,
) -> _Folded:
    """``a + b`` in that order, with their reports."""
    return a[0] + b[0], a[1] + b[1]


# ---- on the client -----------------------------------------------------------------------


def _weights(weights: Iterable[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise TypeError(f"weights must be a sequence of numbers, not {type(weights).__name__}")
    ws = list(weights)
    if len(ws) != n:
        raise ValueError(f"weights has {len(ws)} values for {n} updates")
    for i, w in enumerate(ws):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
            raise TypeError(f"weights[{i}] must be a number, not {type(w).__name__}")
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"weights[{i}] must be a finite number > 0, not {w!r}")
    return [float(w) for w in ws]


def _chunks(seq: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _merge_all(client: Any, parts: list[Any], order: str, tag: str) -> Any:
    """One future of the merged (partial, report), by `order` (see :func:`aggregate`).

    Empties `parts`: a future the client still holds keeps its partial in worker
    memory after it is merged (a model's worth of accumulators per partition).
    """
    count = 0
    level = parts[:]
    parts.clear()

    def merge(a: Any, b: Any) -> Any:
        nonlocal count
        count += 1
        return client.submit(
            _merge, a, b, key=f"ptth-merge-{count}-{tag}", priority=_MERGE_PRIORITY
        )

    if order == "partition":
        acc = level.pop(0)
        while level:
            acc = merge(acc, level.pop(0))
        return acc
    if order == "tree":
        while len(level) > 1:
            nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            level = nxt + level[len(level) - len(level) % 2 :]
        return level[0]
    ready = distributed.as_completed(level, loop=client.loop)
    level.clear()
    held = None
    for fut in ready:
        if held is None:
            held = fut
        else:
            ready.add(merge(held, fut))
            held = None
        del fut
    return held


def aggregate(
    updates: Any,
    template: Mapping[str, Any],
    *,
    weights: Iterable[float] | None = None,
    kind: str = "delta",
    client: Any = None,
    accumulate: str = "float64",
    order: str = "completion",
    partition_size: int | None = None,
    batch_size: int = 8,
    workers: Callable[[str], str | Sequence[str]] | None = None,
    **add_kw: Any,
) -> RoundAggregator:
    """Aggregate a round whose uploads live on Dask workers; return one merged aggregator.

    Each partition of the uploads is folded into a partial aggregator on a
    worker (``Aggregator.add_many``, ``batch_size`` uploads per pass); the
    partials' states (:meth:`ptth.Aggregator.partial`: accumulators and weight
    sums, no template) are merged in a tree of tasks, and the final state is
    merged into the returned aggregator on the client. The template is sent
    to the cluster once. Bad uploads are reported in
    ``.rejected``, never fatal; the round fails only if Dask itself gives up
    (e.g. a task whose workers kept dying, or bytes lost with their worker).

    Args:
        updates: one of
            - a list of paths (``str`` or ``os.PathLike``), read by the
              workers, which must see the files (a file larger than any valid
              update of the template is refused before it is read);
            - a list of ``distributed.Future`` s of bytes (or mappings) held
              by the workers: each partition is folded on the worker that
              holds its bytes, so uploads do not travel;
            - a ``dask.bag.Bag`` whose elements are blobs, paths or mappings,
              or ``(update, weight)`` pairs: one partial per bag partition;
            - a list of blobs or mappings held here: sent in the fold tasks.
        template: the round's global model, name -> array (as for
            :class:`ptth.Aggregator`).
        weights: one positive number per upload (default 1.0 each); for a bag,
            put ``(update, weight)`` pairs in the bag instead.
        kind: ``"delta"`` or ``"full"``, as for :meth:`ptth.Aggregator.add`.
        client: the ``distributed.Client`` (default: the current one).
        accumulate: ``"float64"`` (default) or ``"float32"``.
        order: how partials are merged, which fixes the floating-point order of the sum:
            - ``"completion"`` (default): in pairs as they complete; fastest,
              but the order of the additions depends on timing (it differs
              from another order by float64 rounding only);
            - ``"partition"``: ``((P0 + P1) + P2) + ...`` by partition index,
              bit-identical to an aggregator that merges the partitions'
              partial aggregates in index order (N - 1 merges in a chain);
            - ``"tree"``: a fixed pairwise tree by index,
              ``(P0 + P1) + (P2 + P3)`` ..., an odd last one carried up a
              level; deterministic, depth ``ceil(log2 N)``.
            Within a partition, uploads are added in their order (bit-identical
            to sequential adds). A round of one partition is therefore
            bit-identical to one aggregator adding every upload in order.
        partition_size: uploads per partial for a list (default: the list
            split over twice the cluster's threads); a bag keeps its
            partitions. Futures are grouped by the worker holding them first.
        batch_size: uploads per ``add_many`` call on a worker (memory per
            running task: the accumulators plus ``batch_size`` uploads and
            their decoded payloads).
        workers: for paths on workers' local disks: path -> the worker
            address(es) or host name(s) that can read it, or None for any (a
            host name survives a worker's restart, an address does not).
        **add_kw: :meth:`ptth.Aggregator.add`'s keywords (``clip_norm``,
            ``max_norm``, ``max_abs``, ``allow_nonfinite``, ``allow_cast``,
            ``count_empty``, ``byteorder``, ``relabel_float32``, ``max_size``);
            the ones that are also :class:`ptth.Aggregator` options are set on
            the returned aggregator too.

    Returns:
        A :class:`RoundAggregator`: the merged round, with ``.rejected`` and
        ``.partitions``.

    Raises:
        TypeError, ValueError: an argument is not acceptable (checked here,
            before any work is sent).
        Exception: what Dask raises when it cannot complete a task.

    Example:
        >>> from distributed import Client
        >>> client = Client(n_workers=2, processes=True)       # doctest: +SKIP
        >>> agg = ptth.dask.aggregate(paths, model, weights=samples)  # doctest: +SKIP
        >>> [(r.source, r.reason) for r in agg.rejected]       # doctest: +SKIP
        [('/uploads/17.ptth', 'truncated')]
        >>> new_model = agg.apply()                            # doctest: +SKIP
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    for name, value in (("batch_size", batch_size), ("partition_size", partition_size)):
        if value is None and name == "partition_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, not {value}")
    if workers is not None and not callable(workers):
        raise TypeError(
            f"workers must be a callable (path -> workers), not {type(workers).__name__}"
        )
    ctor = {k: add_kw.pop(k) for k in _CTOR_KW if k in add_kw}
    add = dict(add_kw, kind=kind)
    # Every argument rule is the aggregator's own: a bad one fails here, before any task.
    result = RoundAggregator(template, accumulate=accumulate, **ctor)
    result.add_many([], None, **add)
    result.order = order
    client = distributed.get_client() if client is None else client
    cfg = _Config(dict(ctor, accumulate=accumulate), add, batch_size, _file_limit(template))
    tag = uuid.uuid4().hex[:12]
    shared = _share(client, template, tag)

    bag_offsets = False
    rejected: list[Rejected] = []
    if isinstance(updates, _bag.Bag):
        if weights is not None:
            raise ValueError(
                "weights must be None for a dask.bag: put (update, weight) pairs in it"
            )
        index_bag = _bag.from_sequence(range(updates.npartitions), npartitions=updates.npartitions)
        folded = updates.map_partitions(_fold_bag, index_bag, shared, cfg)
        parts = client.compute([_first(d) for d in folded.to_delayed()], priority=0)
        bag_offsets = True
    else:
        if isinstance(updates, (str, bytes, Mapping)) or not isinstance(updates, Iterable):
            raise TypeError(
                "updates must be a list of paths, futures, blobs or mappings, or a dask.bag, "
                f"not {type(updates).__name__}"
            )
        items = list(updates)
        ws = _weights(weights, len(items))
        parts, rejected = _submit_list(client, items, ws, shared, cfg, partition_size, workers, tag)
    if not parts:
        result.rejected = sorted(rejected, key=lambda r: r.index)
        return result
    partial, reports = _merge_all(client, parts, order, tag).result()
    partitions, late = _report(reports, bag_offsets)
    result.merge(partial)
    result.partitions = partitions
    result.rejected = sorted(rejected + late, key=lambda r: r.index)
    return result


def _share(client: Any, template: Mapping[str, Any], tag: str) -> Any:
    """The template as the result of a task, copied to every worker before the folds start.

    Not ``client.scatter``: scattered data has no lineage, and Dask's active
    memory manager drops the extra replicas of a key nobody waits for, so a
    worker that died holding the last copy would cancel the whole round. A
    task's result is recomputed from its spec, which the scheduler keeps. The
    copies spread the folds: with one copy, Dask would run them all where it is.
    """
    with warnings.catch_warnings():
        # the template is the one large thing a round sends, and it is sent once
        warnings.filterwarnings("ignore", message="Sending large graph")
        shared = client.submit(_Shared, template, key=f"ptth-template-{tag}", pure=False)
    client.replicate([shared])
    return shared


def _first(d: Any) -> Any:
    import dask

    return dask.delayed(operator.getitem, pure=True)(d, 0)


def _report(
    reports: list[tuple[Partition, list[Rejected]]], bag: bool
) -> tuple[list[Partition], list[Rejected]]:
    """The partitions by index and the rejected uploads by position in the whole input.

    A bag partition numbers its uploads from 0; they are renumbered after the
    partitions before it, in the bag's order.
    """
    partitions, rejected, start = [], [], 0
    for info, rejs in sorted(reports, key=lambda r: r[0].index):
        if bag:
            n = len(info.indexes)
            info = dataclasses.replace(info, indexes=range(start, start + n))
            rejs = [dataclasses.replace(r, index=start + r.index) for r in rejs]
            start += n
        partitions.append(info)
        rejected.extend(rejs)
    return partitions, rejected


def _submit_list(
    client: Any,
    items: list[Any],
    weights: list[float],
    shared: Any,
    cfg: _Config,
    partition_size: int | None,
    workers: Callable[[str], str | Sequence[str]] | None,
    tag: str,
) -> tuple[list[Any], list[Rejected]]:
    """Fold tasks for a list of paths / futures / local objects, and the uploads refused here."""
    rejected: list[Rejected] = []
    local = [
        i for i, u in enumerate(items) if not _is_path(u) and not isinstance(u, distributed.Future)
    ]
    for i in local:
        if not isinstance(items[i], Mapping):
            try:
                memoryview(items[i])
            except TypeError:
                raise TypeError(
                    f"updates[{i}] must be a path, a future, a blob (bytes-like) or a mapping, "
                    f"not {type(items[i]).__name__}"
                ) from None
    futures = [i for i, u in enumerate(items) if isinstance(u, distributed.Future)]
    # Groups of positions that must be folded together on the same worker(s).
    groups: dict[Any, list[int]] = {}
    if futures:
        distributed.wait([items[i] for i in futures])
        holders = client.who_has([items[i] for i in futures])
        for i in futures:
            fut = items[i]
            where = holders.get(fut.key) or ()
            if fut.status != "finished" or not where:
                err = fut.exception() if fut.status == "error" else f"the future is {fut.status}"
                rejected.append(Rejected(i, str(fut.key), "upload_error", str(err)))
                continue
            groups.setdefault(("future", sorted(where)[0]), []).append(i)
    for i, u in enumerate(items):
        if _is_path(u):
            where = workers(os.fspath(u)) if workers is not None else None
            key = None if where is None else tuple([where] if isinstance(where, str) else where)
            groups.setdefault(("path", key), []).append(i)
    # Blobs held here travel in their fold task's spec, which the scheduler keeps: a
    # worker that dies mid-fold does not lose them (scattered data would be).
    for i in local:
        groups.setdefault(("local", None), []).append(i)
    total = sum(len(g) for g in groups.values())
    if partition_size is None:
        threads = max(1, sum(client.nthreads().values()))
        partition_size = max(1, math.ceil(total / (2 * threads)))
    chunks = [
        (key, chunk) for key, group in groups.items() for chunk in _chunks(group, partition_size)
    ]
    chunks.sort(key=lambda kc: kc[1][0])  # partitions numbered by their first upload
    parts = []
    for part, ((what, where), chunk) in enumerate(chunks):
        restrict: dict[str, Any] = {}
        values = [items[i] for i in chunk]
        if what == "future":
            restrict = {"workers": [where], "allow_other_workers": True}
            sources: list[str | None] = [str(items[i].key) for i in chunk]
        elif what == "path":
            restrict = {} if where is None else {"workers": list(where)}
            sources = values = [os.fspath(items[i]) for i in chunk]
        else:
            sources = [None] * len(chunk)
        parts.append(
            client.submit(
                _fold_list,
                shared,
                cfg,
                part,
                chunk,
                sources,
                values,
                [weights[i] for i in chunk],
                key=f"ptth-fold-{part}-{tag}",
                **restrict,
            )
        )
    return parts, rejected


# ---- measurement (``ptth bench`` and benchmarks/test_dask.py) ---------------------------


def _bench_uploads(
    directory: str, params: int, count: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """A float32 model and `count` client deltas of it as files, in two encodings.

    ``"f16-zlib"``: float16 deltas at zlib level 6 (what a phone should send);
    ``"f32"``: uncompressed float32 deltas. Returns the template and the paths.
    """
    from ptth import _bench_inputs as bench

    template = bench.model(params)
    paths: dict[str, list[str]] = {"f16-zlib": [], "f32": []}
    for i in range(count):
        delta = bench.delta(template, seed=100 + i)
        for enc, blob in (
            ("f16-zlib", ptth.dumps(delta, compress=6)),
            ("f32", ptth.dumps({k: v.astype(np.float32) for k, v in delta.items()})),
        ):
            path = os.path.join(directory, f"{enc}-{i:04d}.ptth")
            with open(path, "wb") as f:
                f.write(blob)
            paths[enc].append(path)
    return template, paths


def _local_round(paths: list[str], template: Mapping[str, Any], batch_size: int = 8) -> Any:
    """The baseline: this process reads the same files and folds them with add_many."""
    agg = ptth.Aggregator(template)
    for i in range(0, len(paths), batch_size):
        blobs = []
        for p in paths[i : i + batch_size]:
            with open(p, "rb") as f:
                blobs.append(f.read())
        agg.add_many(blobs, None)
    return agg


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of `fn` after one warm-up call.

    CPU seconds: this thread's for a local round, the sum of the partitions'
    (on the workers) for a distributed one.
    """
    fn()  # warm-up: imports, the template on the workers, the page cache
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        agg = fn()
        walls.append(time.perf_counter() - t0)
        if isinstance(agg, RoundAggregator):
            cpus.append(sum(p.cpu_seconds for p in agg.partitions))
        else:
            cpus.append(time.thread_time() - c0)
    return float(np.median(walls)), float(np.median(cpus))


def dask_rows(quick: bool) -> list[dict[str, Any]]:
    """Uploads/s of :func:`aggregate` on 1 and 2 local worker processes, beside one process.

    The same files are folded (a) in this process by ``add_many`` (the
    baseline: one core, no Dask), (b) by ``aggregate`` on a LocalCluster of
    one worker process and (c) of two, each with one thread; for float16 +
    zlib and for uncompressed float32 deltas. Each row's ``ratio`` is its
    throughput over the baseline's. The note gives uploads per CPU-second
    of folding (on the workers; here for the baseline), which other load on
    the machine does not change: on a busy machine the wall-clock figures
    follow the CPU share the kernel grants, so compare rows of one run only.

    Args:
        quick: a 250k-parameter model and 16 uploads (seconds) instead of 2M
            parameters and 48 uploads.

    Returns:
        One dict per row, keyed as ``ptth bench``'s JSON rows (operation,
        ptth, baseline, ratio, target, met, note, plus ``ours`` /
        ``baseline_value`` / ``ratio_value`` in uploads/s and ``met_value``).
    """
    import tempfile

    params, count, repeat = (250_000, 16, 3) if quick else (2_000_000, 48, 3)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ptth-dask-bench-") as d:
        template, paths = _bench_uploads(d, params, count)
        base = {
            enc: _timed(functools.partial(_local_round, p, template), repeat)
            for enc, p in paths.items()
        }
        for workers in (1, 2):
            with (
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                ) as cluster,
                distributed.Client(cluster, set_as_default=False) as client,
            ):
                for enc, p in paths.items():
                    wall, cpu = _timed(
                        functools.partial(aggregate, p, template, client=client), repeat
                    )
                    ours, theirs = count / wall, count / base[enc][0]
                    size = sum(os.path.getsize(x) for x in p) / count
                    rows.append(
                        {
                            "operation": f"dask.aggregate, {workers} worker(s), {enc}",
                            "ptth": f"{ours:.1f} up/s",
                            "baseline": f"{theirs:.1f} up/s",
                            "ratio": f"{ours / theirs:.2f}x",
                            "target": "-",
                            "met": "-",
                            "note": f"{count} uploads of {size / 1e6:.1f} MB ({params:,} params); "
                            f"per CPU-s: {count / cpu:.0f} on workers, "
                            f"{count / base[enc][1]:.0f} in one process (the baseline)",
                            "ours": ours,
                            "baseline_value": theirs,
                            "ratio_value": ours / theirs,
                            "met_value": None,
                        }
                    )
    return rows
