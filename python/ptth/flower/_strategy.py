"""``ptth.flower.FedAvg``: Flower's FedAvg with every reply folded through one ptth.Aggregator."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg as _FlowerFedAvg

import ptth

from ._records import PTTH_STYPE, numpy_view, record_blob

_EMPTY_BLOB = b"PTTH\x00\x00\x00\x01\x00\x00\x00\x00"
_ACCUMULATE = ("float64", "float32")


@dataclass
class Rejection:
    """One reply left out of a round: who sent it and why.

    ``reason`` is a ``ptth.REASONS`` code when ptth refused the update (e.g.
    ``nonfinite``, ``shape_mismatch``, ``stream_corrupt``), or one of
    ``error_reply`` (the reply carries a Flower ``Error``), ``bad_records``
    (not exactly one ``ArrayRecord`` and one ``MetricRecord``), ``no_weight``
    (the ``weighted_by_key`` metric is missing), ``bad_weight`` (it is not a
    positive finite number), ``bad_ptth_record`` (a PTTH Array that is not
    alone in its record under ``"ptth.delta"`` or ``"ptth.full"``).
    """

    node_id: int
    reason: str
    detail: str


@dataclass
class RoundReport:
    """What ``aggregate_train`` did with one round's replies (kept as ``FedAvg.last_report``)."""

    server_round: int
    accepted: int = 0
    total_weight: float = 0.0
    rejected: list[Rejection] = field(default_factory=list)
    metrics_skipped: str | None = None


#: replies folded per pass over the accumulators (add_many); they are in memory already
_BATCH = 8


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _template(arrays: ArrayRecord | Mapping[str, Any]) -> dict:
    if isinstance(arrays, ArrayRecord):
        if any(a.stype == PTTH_STYPE for a in arrays.values()):
            raise ValueError(
                "the global model must be an ArrayRecord of NumPy arrays, not a PTTH record"
            )
        return {k: numpy_view(a, k) for k, a in arrays.items()}
    if not isinstance(arrays, Mapping):
        raise TypeError(
            f"arrays must be an ArrayRecord or a mapping of names to arrays, not "
            f"{type(arrays).__name__}"
        )
    return {k: np.asarray(v) for k, v in arrays.items()}


def _metric_shape(record: MetricRecord) -> tuple:
    """Keys and list lengths: stock's metric averaging needs them equal across replies."""
    return tuple(sorted((k, len(v) if isinstance(v, list) else -1) for k, v in record.items()))


class FedAvg(_FlowerFedAvg):
    """Flower's FedAvg (``flwr.serverapp.strategy.FedAvg``) aggregating through ``ptth.Aggregator``.

    A drop-in: every positional and keyword argument of Flower's FedAvg
    (``fraction_train``, ``fraction_evaluate``, ``min_train_nodes``,
    ``min_evaluate_nodes``, ``min_available_nodes``, ``weighted_by_key``,
    ``arrayrecord_key``, ``configrecord_key``, ``train_metrics_aggr_fn``,
    ``evaluate_metrics_aggr_fn``) passes through unchanged. Sampling,
    configuration, evaluation and metric averaging are Flower's. What differs
    is ``aggregate_train``:

    - Each reply is folded as it comes into one ``ptth.Aggregator`` over the
      round's global model (the ``ArrayRecord`` that ``configure_train`` sent)
      and weighted by its ``weighted_by_key`` metric; no reply is decoded into
      arrays beyond the one being folded.
    - A reply may carry ordinary Flower arrays (folded as `kind`), or one PTTH
      blob (``ptth.flower.encode_record`` / ``ptth_mod``: float16, compressed,
      partial, delta or full weights).
    - A reply that cannot be used (a Flower error, missing weight, malformed
      blob, unknown parameter, wrong shape, NaN...) is logged with its reason
      and left out; the others make the round (see ``last_report``).
    - The result has the global model's dtypes; parameters no accepted reply
      touched keep their global value. With no reply accepted, it returns
      ``(None, None)`` and logs a warning: ``start()`` then keeps the global
      model unchanged, as stock FedAvg does with no results.

    ptth's keyword-only parameters:
        accumulate: ``"float64"`` (default; results exact up to one final
            rounding) or ``"float32"`` (half the accumulator memory).
        kind: how ordinary ``ArrayRecord`` replies are read: ``"full"``
            (default: full weights, as stock FedAvg's clients send) or
            ``"delta"``. PTTH replies declare theirs by key.
        byteorder, relabel_float32: ``ptth.loads`` options for PTTH replies
            (Android's big-endian payloads, iOS's relabelled float32).
        max_size: cap on a compressed PTTH reply's decoded size. ``None``
            (default) caps at the largest blob a valid update of the round's
            global model can be (every parameter as float64, with its header).
        clip_norm, max_norm: passed to ``Aggregator.add`` when not ``None``.
            A ptth whose ``Aggregator.add`` lacks them raises ``TypeError`` here.

    Raises:
        TypeError, ValueError (or ``ptth.PTTHError``, a ValueError): a bad ptth
            option, at construction, before any client trains.

    Example::

        from flwr.serverapp import ServerApp
        import ptth.flower

        app = ServerApp()

        @app.main()
        def main(grid, context):
            strategy = ptth.flower.FedAvg(fraction_train=0.5, accumulate="float64")
            result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=3)
    """

    def __init__(
        self,
        *args: Any,
        accumulate: str = "float64",
        kind: str = "full",
        byteorder: str = "<",
        relabel_float32: bool = False,
        max_size: int | None = None,
        clip_norm: float | None = None,
        max_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(accumulate, str) or accumulate not in _ACCUMULATE:
            raise ValueError(f"accumulate must be 'float64' or 'float32', not {accumulate!r}")
        self.accumulate = accumulate
        self.kind = kind
        self.clip_kw: dict[str, Any] = {
            k: v for k, v in (("clip_norm", clip_norm), ("max_norm", max_norm)) if v is not None
        }
        self.loads_kw: dict[str, Any] = {"byteorder": byteorder, "relabel_float32": relabel_float32}
        self.max_size = max_size
        # ptth's own argument rules, once: an empty add on an empty aggregator checks them all.
        probe = ptth.Aggregator({}, accumulate=accumulate)
        probe.add(_EMPTY_BLOB, 1.0, kind=kind, max_size=max_size, **self.loads_kw, **self.clip_kw)
        self._round: tuple[int, ptth.Aggregator] | None = None
        self.last_report: RoundReport | None = None

    # -- the round's global model --------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's ``configure_train``, after noting `arrays` as the round's global model."""
        self.set_global_arrays(server_round, arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def set_global_arrays(self, server_round: int, arrays: ArrayRecord | Mapping[str, Any]) -> None:
        """Make `arrays` the global model that round `server_round`'s replies are folded over.

        ``configure_train`` calls it; call it yourself only when you drive
        ``aggregate_train`` without ``configure_train``. The aggregator is
        created here (its accumulators are zero pages until the first reply),
        so a model ptth cannot aggregate fails before any client trains.

        Raises:
            ptth.PTTHError: a parameter whose dtype PTTH cannot carry
                (``unsupported_dtype``; PTTH has float16/32/64 and int32, so an
                int64 counter such as BatchNorm's ``num_batches_tracked`` must
                be cast or left out of the ArrayRecord), or a damaged Array.
            TypeError, ValueError: `arrays` is not an ArrayRecord of NumPy
                arrays or a mapping of arrays.

        Example::

            strategy.set_global_arrays(1, ArrayRecord(model.state_dict()))
            new_arrays, metrics = strategy.aggregate_train(1, replies)
        """
        template = _template(arrays)
        agg = ptth.Aggregator(template, accumulate=self.accumulate)
        self._round = (server_round, agg)

    # -- aggregation -----------------------------------------------------------------

    def aggregate_train(
        self,
        server_round: int,
        replies: Iterable[Message],
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Fold each reply into the round's aggregator; the new global arrays and the metrics.

        Returns ``(arrays, metrics)`` like Flower's FedAvg: `arrays` in the
        global model's dtypes, `metrics` from ``train_metrics_aggr_fn`` over the
        accepted replies (their MetricRecords and ConfigRecords; their arrays
        are already folded). If the accepted replies' MetricRecords differ in
        keys or list lengths, `metrics` is ``None`` with a warning (stock FedAvg
        raises ``InconsistentMessageReplies`` and loses the round). With no
        reply accepted, ``(None, None)``. ``last_report`` says who was left out.

        Raises:
            RuntimeError: no global model for `server_round` (neither
                ``configure_train`` nor ``set_global_arrays`` was called for it,
                or its replies were already aggregated).
        """
        if self._round is None or self._round[0] != server_round:
            have = "none" if self._round is None else f"round {self._round[0]}'s"
            raise RuntimeError(
                f"aggregate_train(server_round={server_round}) needs that round's "
                f"global model (have {have}): call configure_train or "
                "set_global_arrays for it first"
            )
        _, agg = self._round
        self._round = None  # one aggregation per round; the accumulators go with this call
        report = RoundReport(server_round)
        self.last_report = report
        kept: list[RecordDict] = []
        batch: list[tuple[Message, Any, float]] = []
        batch_key: tuple | None = None

        def flush(agg: ptth.Aggregator) -> None:
            if not batch:
                return
            kind, loads_kw = batch_key  # type: ignore[misc]
            results = self._fold(
                agg, [u for _, u, _ in batch], [w for _, _, w in batch], kind, dict(loads_kw)
            )
            for (msg, _, weight), r in zip(batch, results):
                if isinstance(r, ptth.PTTHError):
                    self._reject(report, msg.metadata.src_node_id, r.reason, str(r))
                    continue
                report.accepted += 1
                report.total_weight += weight
                kept.append(
                    RecordDict(
                        {k: v for k, v in msg.content.items() if not isinstance(v, ArrayRecord)}
                    )
                )
            batch.clear()

        for msg in replies:
            node = msg.metadata.src_node_id
            try:
                update, weight, kind, loads_kw = self._prepare(msg)
            except _Rejected as rej:
                self._reject(report, node, rej.reason, rej.detail)
                continue
            except ptth.PTTHError as err:
                self._reject(report, node, err.reason, str(err))
                continue
            key = (kind, tuple(sorted(loads_kw.items())))
            if key != batch_key or len(batch) >= _BATCH:
                flush(agg)
                batch_key = key
            batch.append((msg, update, weight))
        flush(agg)
        log(
            INFO,
            "aggregate_train: %d replies folded (total weight %g), %d rejected",
            report.accepted,
            report.total_weight,
            len(report.rejected),
        )
        if not report.accepted:
            log(
                WARNING if report.rejected else INFO,
                "aggregate_train: round %d has no accepted reply; the global model stays unchanged",
                server_round,
            )
            return None, None
        new = agg.apply()
        del agg  # the accumulators are freed before the result is serialized
        arrays = ArrayRecord({k: Array(np.asarray(new.pop(k))) for k in list(new)})
        return arrays, self._metrics(kept, report)

    def _prepare(self, msg: Message) -> tuple[Any, float, str, dict]:
        """(update, weight, kind, loads options) of one reply, or _Rejected / PTTHError."""
        if msg.has_error():
            raise _Rejected("error_reply", f"code {msg.error.code}: {msg.error.reason}")
        content = msg.content
        records, metrics = content.array_records, content.metric_records
        if len(records) != 1 or len(metrics) != 1:
            raise _Rejected(
                "bad_records",
                f"expected one ArrayRecord and one MetricRecord, found "
                f"{len(records)} and {len(metrics)}",
            )
        metric = next(iter(metrics.values()))
        if self.weighted_by_key not in metric:
            raise _Rejected("no_weight", f"the MetricRecord has no {self.weighted_by_key!r}")
        weight = metric[self.weighted_by_key]
        try:
            ok = not isinstance(weight, (bool, list)) and math.isfinite(weight) and weight > 0
        except (TypeError, OverflowError):
            ok = False
        if not ok:
            raise _Rejected(
                "bad_weight",
                f"{self.weighted_by_key!r} is {weight!r}, not a positive finite number",
            )
        number = cast(float, weight)  # ok: a number, not a list
        record = next(iter(records.values()))
        if any(a.stype == PTTH_STYPE for a in record.values()):
            try:
                kind, blob = record_blob(record)
            except ptth.PTTHError as err:
                raise _Rejected("bad_ptth_record", err.message) from None
            # Without max_size the aggregator caps a blob at the most a valid update of
            # its template can decode to.
            limit = {} if self.max_size is None else {"max_size": self.max_size}
            return blob, float(number), kind, {**self.loads_kw, **limit}
        return ({k: numpy_view(a, k) for k, a in record.items()}, float(number), self.kind, {})

    def _fold(self, agg, updates: list, weights: list[float], kind: str, loads_kw: dict) -> list:
        """Fold a batch of replies in one pass over the accumulators (``add_many``): an
        ``AddResult`` or the ``PTTHError`` that rejected it, per reply, in order."""
        return agg.add_many(updates, weights, kind=kind, **loads_kw, **self.clip_kw)

    def _reject(self, report: RoundReport, node: int, reason: str, detail: str) -> None:
        report.rejected.append(Rejection(node, reason, detail))
        log(WARNING, "aggregate_train: reply from node %s rejected (%s): %s", node, reason, detail)

    def _metrics(self, kept: list[RecordDict], report: RoundReport) -> MetricRecord | None:
        shapes = {_metric_shape(next(iter(c.metric_records.values()))) for c in kept}
        if len(shapes) > 1:
            report.metrics_skipped = (
                f"the accepted replies' MetricRecords differ in keys or "
                f"list lengths ({len(shapes)} variants)"
            )
            log(WARNING, "aggregate_train: train metrics skipped: %s", report.metrics_skipped)
            return None
        return self.train_metrics_aggr_fn(kept, self.weighted_by_key)

    def summary(self) -> None:
        """Flower's summary, and ptth's settings."""
        super().summary()
        log(
            INFO,
            "\t└──> ptth: accumulate %s, plain ArrayRecords as %s, loads %s%s%s",
            self.accumulate,
            self.kind,
            self.loads_kw,
            f", max_size {self.max_size}" if self.max_size is not None else "",
            f", {self.clip_kw}" if self.clip_kw else "",
        )
