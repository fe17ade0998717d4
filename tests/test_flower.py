"""ptth.flower against stock Flower FedAvg, with real flwr Messages built and serialized in-process.

Replies go through Flower's own object serialization (deflate to bytes, inflate
back, as the SuperLink stores and serves them) before the strategy sees them.
References are computed independently in NumPy float64.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg as StockFedAvg
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity

import ptth
import ptth.flower as pf

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


# ---- Flower plumbing: identity, serialization, messages ---------------------------


@pytest.fixture(autouse=True)
def serverapp_identity():
    """What Flower's ServerApp runtime sets before the strategy builds Messages."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 11, 4242, SUPERLINK_NODE_ID
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def wire(msg: Message) -> Message:
    """The message after Flower's serialization: deflated to object bytes, inflated back.

    A message without an id gets its object id, as the SuperLink assigns it.
    """
    objects = get_all_nested_objects(msg)
    contents = {oid: obj.deflate() for oid, obj in objects.items()}
    oid = msg.object_id
    out = inflate_object_from_contents(oid, contents)
    out.metadata.__dict__["_message_id"] = msg.metadata.message_id or oid
    return out


def instruction(global_np: dict, node: int, server_round: int = 1) -> Message:
    content = RecordDict(
        {"arrays": plain(global_np), "config": ConfigRecord({"server-round": server_round})}
    )
    return wire(
        Message(
            content, dst_node_id=node, message_type=MessageType.TRAIN, group_id=str(server_round)
        )
    )


def plain(arrays: dict) -> ArrayRecord:
    """An ordinary Flower ArrayRecord (np.save'd arrays), as a stock client returns it."""
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def reply(ins: Message, record: ArrayRecord | None, weight, **metrics) -> Message:
    m = MetricRecord({"num-examples": weight, **metrics} if weight is not None else metrics)
    content = RecordDict({"metrics": m} if record is None else {"arrays": record, "metrics": m})
    return wire(Message(content, reply_to=ins))


def blob_record(values: dict, kind: str = "delta", **dumps_kw) -> ArrayRecord:
    """A PTTH reply record built by hand from `values` (dtypes kept unless dumps_kw says)."""
    data = ptth.dumps(values, **dumps_kw)
    key = pf.DELTA_KEY if kind == "delta" else pf.FULL_KEY
    return ArrayRecord({key: Array(dtype="uint8", shape=(len(data),), stype="ptth", data=data)})


def replies_for(
    global_np: dict, records: list, weights: list, server_round: int = 1, metrics=None
) -> list:
    out = []
    for i, (rec, w) in enumerate(zip(records, weights)):
        ins = instruction({}, node=100 + i, server_round=server_round)
        out.append(reply(ins, rec, w, **(metrics[i] if metrics else {"loss": 0.1 * (i + 1)})))
    return out


def model(seed: int = 0, dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"conv.weight": (8, 3, 3, 3), "fc.weight": (64, 33), "fc.bias": (64,), "scale": ()}
    return {k: np.asarray(rng.standard_normal(s) * 0.1, dtype) for k, s in shapes.items()}


def ours(global_np: dict, replies: list, server_round: int = 1, **kw):
    strategy = pf.FedAvg(**kw)
    strategy.set_global_arrays(server_round, plain(global_np))
    arrays, metrics = strategy.aggregate_train(server_round, replies)
    return strategy, arrays, metrics


def as_numpy(record: ArrayRecord) -> dict:
    return {k: a.numpy() for k, a in record.items()}


def reference(global_np: dict, updates: list) -> dict:
    """Per-parameter weighted FedAvg in float64: t + sum(w * d) / sum(w) over the updates
    touching it.

    updates: (arrays, weight, kind) with kind "full" (d = x - t) or "delta" (d = x).
    """
    out = {}
    for k, t in global_np.items():
        t64 = np.asarray(t, F64)
        acc, wsum = np.zeros(t64.shape, F64), 0.0
        for arrays, w, kind in updates:
            if k in arrays:
                x = np.asarray(arrays[k], F64)
                acc = acc + w * (x - t64 if kind == "full" else x)
                wsum += w
        out[k] = t64 + acc / wsum if wsum else t64
    return out


def ulps(got: np.ndarray, want64: np.ndarray) -> float:
    """Largest |got - want| in units of got's dtype's spacing at want."""
    spacing = np.spacing(np.abs(want64).astype(got.dtype)).astype(F64)
    return float(np.max(np.abs(got.astype(F64) - want64) / spacing))


# ---- construction ----------------------------------------------------------------


def test_flower_arguments_pass_through():
    def fn(records, key):
        return MetricRecord()

    args = (0.5, 0.25, 3, 4, 5, "samples", "weights", "cfg", fn, fn)
    stock, mine = StockFedAvg(*args), pf.FedAvg(*args, accumulate="float32")
    for name, value in vars(stock).items():
        assert getattr(mine, name) == value, name
    kw = {"fraction_train": 0.3, "min_train_nodes": 7, "weighted_by_key": "n"}
    stock, mine = StockFedAvg(**kw), pf.FedAvg(**kw, kind="delta")
    assert {k: getattr(mine, k) for k in vars(stock)} == vars(stock)
    assert isinstance(mine, StockFedAvg) and mine.kind == "delta"


@pytest.mark.parametrize(
    "kw",
    [
        {"accumulate": "float16"},
        {"accumulate": 64},
        {"kind": "weights"},
        {"byteorder": "big"},
        {"max_size": "1GB"},
    ],
)
def test_bad_ptth_options_raise_at_construction(kw):
    with pytest.raises((TypeError, ValueError)):
        pf.FedAvg(**kw)


@pytest.mark.parametrize("keyword", ["clip_norm", "max_norm"])
def test_clipping_keywords_are_checked_by_ptth_at_construction(keyword):
    pf.FedAvg(**{keyword: 1.0})
    pf.FedAvg(**{keyword: None})  # None is "off", never an error
    with pytest.raises(ValueError, match=keyword):
        pf.FedAvg(**{keyword: -1.0})


def test_replies_are_clipped_and_norm_bounded_in_the_fold():
    glob = {"w": np.zeros(4, np.float32)}
    deltas = [np.array([3, 4, 0, 0], np.float32), np.array([0, 0, 0.3, 0.4], np.float32)]
    records = [blob_record({"w": d}) for d in deltas]
    _, arrays, _ = ours(glob, replies_for(glob, records, [1, 1]), clip_norm=1.0)
    # norms 5 and 0.5: the first is scaled to norm 1, the second kept
    want = (deltas[0] / 5 + deltas[1]) / 2
    np.testing.assert_allclose(as_numpy(arrays)["w"], want, rtol=1e-6)
    strategy, arrays, _ = ours(glob, replies_for(glob, records, [1, 1]), max_norm=1.0)
    assert [r.reason for r in strategy.last_report.rejected] == ["norm_exceeded"]
    np.testing.assert_allclose(as_numpy(arrays)["w"], deltas[1], rtol=1e-6)


def test_aggregate_needs_the_rounds_global_model():
    strategy = pf.FedAvg()
    with pytest.raises(RuntimeError, match="server_round=1"):
        strategy.aggregate_train(1, [])
    strategy.set_global_arrays(2, plain(model()))
    with pytest.raises(RuntimeError, match="round 2"):
        strategy.aggregate_train(3, [])
    assert strategy.aggregate_train(2, []) == (None, None)
    with pytest.raises(RuntimeError):  # one aggregation per round
        strategy.aggregate_train(2, [])


def test_a_global_model_ptth_cannot_carry_fails_before_training():
    glob = {**model(), "bn.num_batches_tracked": np.array(5, np.int64)}
    # the global model is the aggregator's template, an argument: a TypeError naming it
    with pytest.raises(TypeError) as info:
        pf.FedAvg().set_global_arrays(1, plain(glob))
    assert "num_batches_tracked" in str(info.value) and "int64" in str(info.value)


# ---- against stock FedAvg ---------------------------------------------------------


def test_float32_replies_match_stock_within_float32_rounding():
    glob = model(0)
    clients = [model(10 + i) for i in range(8)]
    weights = [10 * (i + 1) + i for i in range(8)]
    metrics = [{"loss": 0.5 + i, "acc": [0.1 * i, 0.2]} for i in range(8)]
    replies = replies_for(glob, [plain(c) for c in clients], weights, metrics=metrics)
    stock_arrays, stock_metrics = StockFedAvg().aggregate_train(1, replies)
    _, arrays, got_metrics = ours(glob, replies)
    got, theirs = as_numpy(arrays), as_numpy(stock_arrays)
    total = float(sum(weights))
    for k in glob:
        exact = sum(w * c[k].astype(F64) for c, w in zip(clients, weights)) / total
        # ptth: float64 accumulation, one rounding to float32 at the end
        assert got[k].dtype == F32 and ulps(got[k], exact) <= 0.5 + 1e-6, k
        # stock: the same sum in float32, each term x * (w / W) rounded, in reply order
        emulated = clients[0][k] * (weights[0] / total)
        for c, w in zip(clients[1:], weights[1:]):
            emulated = emulated + c[k] * (w / total)
        np.testing.assert_array_equal(theirs[k], emulated, err_msg=k)
        # its error is bounded by the terms' size, not the mean's (cancellation), and ptth's is less
        eps32, biggest = np.finfo(F32).eps, max(float(np.max(np.abs(c[k]))) for c in clients)
        stock_err = float(np.max(np.abs(theirs[k].astype(F64) - exact)))
        assert stock_err <= len(clients) * eps32 * biggest, k
        assert float(np.max(np.abs(got[k].astype(F64) - exact))) <= stock_err, k
    # the metrics are stock's own function over the same replies
    assert got_metrics == stock_metrics


def test_float16_deltas_are_exact_in_float64():
    """Weighted sums of float16 values with integer weights are exact in float64, so ptth's result
    is the reference bit for bit: t + sum(w * d) / sum(w), rounded once."""
    rng = np.random.default_rng(3)
    for dtype in (F64, F32):
        glob = model(1, dtype)
        deltas = [
            {k: (rng.standard_normal(v.shape) * 1e-2).astype(F16) for k, v in glob.items()}
            for _ in range(50)
        ]
        weights = [int(w) for w in rng.integers(1, 1000, 50)]
        records = [blob_record(d, compress=6) for d in deltas]
        _, arrays, _ = ours(glob, replies_for(glob, records, weights))
        want = reference(glob, [(d, w, "delta") for d, w in zip(deltas, weights)])
        got = as_numpy(arrays)
        for k in glob:
            assert got[k].dtype == dtype
            np.testing.assert_array_equal(got[k], want[k].astype(dtype), err_msg=k)


def test_float16_full_weights_vs_stock():
    """200 float16 uploads around 1.0: stock averages in float16, ptth in float64."""
    rng = np.random.default_rng(4)
    glob = {"w": np.ones(4096, F64), "b": np.ones(64, F64)}
    uploads = [
        {k: (1.0 + rng.standard_normal(v.shape) * 0.05).astype(F16) for k, v in glob.items()}
        for _ in range(200)
    ]
    weights = [int(w) for w in rng.integers(1, 100, 200)]
    exact = reference(glob, [(u, w, "full") for u, w in zip(uploads, weights)])
    stock_arrays, _ = StockFedAvg().aggregate_train(
        1, replies_for(glob, [plain(u) for u in uploads], weights)
    )
    ptth_replies = replies_for(glob, [pf.encode_record(u, dtype=None) for u in uploads], weights)
    _, arrays, _ = ours(glob, ptth_replies)
    got, theirs = as_numpy(arrays), as_numpy(stock_arrays)
    for k in glob:
        assert theirs[k].dtype == F16 and got[k].dtype == F64
        ptth_err = np.max(np.abs(got[k] - exact[k]))
        stock_err = np.max(np.abs(theirs[k].astype(F64) - exact[k]))
        assert ptth_err <= 4 * np.spacing(2.0), k  # t + sum(w (x - t)) / W vs sum(w x) / W
        assert stock_err > 1e-4, k  # float16 rounding of every partial sum


def test_stock_fedavg_refuses_ptth_replies_loudly():
    """A PTTH reply reaching stock FedAvg fails (Array.numpy() refuses the stype)."""
    glob = model(16)
    replies = replies_for(glob, [pf.encode_record(model(17), glob)] * 2, [1, 2])
    with pytest.raises(TypeError, match="ptth"):
        StockFedAvg().aggregate_train(1, replies)


def test_partial_updates_are_weighted_per_parameter():
    glob = model(2)
    a = {"fc.weight": model(20)["fc.weight"], "scale": model(20)["scale"]}  # full, partial
    b = {"fc.bias": (model(21)["fc.bias"] * 0.01).astype(F16)}  # delta, partial
    c = {k: v for k, v in model(22).items() if k != "conv.weight"}  # full, partial
    d = {"fc.weight": (model(23)["fc.weight"] * 0.01).astype(F16)}  # delta, partial
    records = [plain(a), blob_record(b, compress=6), blob_record(c, "full"), blob_record(d)]
    weights = [3, 5, 7, 11]
    replies = replies_for(glob, records, weights)
    with pytest.raises(InconsistentMessageReplies):
        StockFedAvg().aggregate_train(1, replies)
    strategy, arrays, _ = ours(glob, replies)
    got = as_numpy(arrays)
    want = reference(glob, [(a, 3, "full"), (b, 5, "delta"), (c, 7, "full"), (d, 11, "delta")])
    for k in glob:
        assert ulps(got[k], want[k]) <= 0.5 + 1e-6, k
    np.testing.assert_array_equal(got["conv.weight"], glob["conv.weight"])  # untouched
    assert strategy.last_report.accepted == 4 and strategy.last_report.total_weight == 26


@pytest.mark.parametrize(
    "compress, wrapper", [(1, "zlib"), (9, "zlib"), (6, "gzip"), (6, "deflate")]
)
def test_compressed_blobs_give_the_uncompressed_result(compress, wrapper):
    glob = model(5)
    trained = [
        {k: v + np.float32(0.01 * (i + 1)) for k, v in model(30 + i).items()} for i in range(4)
    ]
    weights = [1, 2, 3, 4]
    raw = replies_for(glob, [pf.encode_record(t, glob, compress=None) for t in trained], weights)
    packed_records = [
        pf.encode_record(t, glob, compress=compress, wrapper=wrapper) for t in trained
    ]
    assert ptth.detect_wrapper(packed_records[0][pf.DELTA_KEY].data) == wrapper
    packed = replies_for(glob, packed_records, weights)
    _, want, _ = ours(glob, raw)
    _, got, _ = ours(glob, packed)
    assert {k: a.data for k, a in got.items()} == {k: a.data for k, a in want.items()}


def test_result_keeps_the_global_dtypes():
    glob = {
        "w": np.linspace(-1, 1, 10, dtype=F32),
        "s": np.array(2.5, F64),
        "steps": np.array(100, np.int32),
    }
    ups = [
        {"w": glob["w"] + 1, "s": np.array(3.5), "steps": np.array(103, np.int32)},
        {"w": glob["w"] - 1, "s": np.array(1.5), "steps": np.array(110, np.int32)},
    ]
    _, arrays, _ = ours(glob, replies_for(glob, [plain(u) for u in ups], [1, 2]))
    got = as_numpy(arrays)
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in glob.items()}
    want = reference(glob, [(ups[0], 1, "full"), (ups[1], 2, "full")])
    assert got["steps"] == np.rint(want["steps"]) and got["s"] == want["s"]


def test_float32_accumulation_stays_within_float32_rounding():
    glob = model(6)
    clients = [model(40 + i) for i in range(8)]
    replies = replies_for(glob, [plain(c) for c in clients], list(range(1, 9)))
    _, arrays, _ = ours(glob, replies, accumulate="float32")
    want = reference(glob, [(c, i + 1, "full") for i, c in enumerate(clients)])
    got = as_numpy(arrays)
    eps32 = float(np.finfo(F32).eps)
    for k in glob:  # each of 8 float32 adds of w * (x - t), the division and the final add rounds
        scale = max(float(np.max(np.abs(c[k] - glob[k]))) for c in clients)
        err = float(np.max(np.abs(got[k].astype(F64) - want[k])))
        assert err <= 12 * eps32 * scale + float(np.max(np.spacing(got[k]))), k


# ---- rejected replies ---------------------------------------------------------------


def _bad_replies(glob: dict) -> list:
    """(reply, expected reason) for every way a reply can be unusable."""
    good = {k: v + np.float32(0.5) for k, v in glob.items()}
    ins = instruction({}, node=900)
    ptth_delta = pf.encode_record(good, glob, compress=None)[pf.DELTA_KEY].data
    zipped = pf.encode_record(good, glob)[pf.DELTA_KEY].data
    shaped = {**good, "fc.bias": np.zeros(65, np.float32)}
    nan = {**good, "fc.weight": np.full((64, 33), np.nan, np.float32)}
    inf16 = ptth.dumps({"fc.bias": np.full(64, np.inf, np.float16)})
    bomb = ptth.dumps({"fc.bias": np.zeros(1 << 20, np.float64)}, compress=9)
    torn = Array(
        dtype="float32", shape=(64,), stype="numpy.ndarray", data=b"\x93NUMPX" + b"\0" * 80
    )

    def blob(data, key=pf.DELTA_KEY):
        return ArrayRecord({key: Array(dtype="uint8", shape=(len(data),), stype="ptth", data=data)})

    def rep(record, weight=5):
        return reply(ins, record, weight)

    error = wire(
        Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="OOM"), reply_to=ins)
    )
    two = wire(
        Message(
            RecordDict(
                {"a": plain(good), "b": plain(good), "metrics": MetricRecord({"num-examples": 5})}
            ),
            reply_to=ins,
        )
    )
    return [
        (rep(blob(ptth_delta[:-7])), "truncated"),
        (rep(blob(zipped[:-4] + bytes([zipped[-4] ^ 1]) + zipped[-3:])), "bad_checksum"),
        (rep(blob(zipped[: len(zipped) // 2])), "stream_truncated"),
        (rep(blob(bomb)), "too_large"),
        (rep(blob(ptth.dumps(shaped))), "shape_mismatch"),
        (rep(plain(shaped)), "shape_mismatch"),
        (rep(blob(ptth.dumps({"head.weight": np.ones(3, np.float32)}))), "unknown_name"),
        (rep(plain({**good, "extra": np.ones(2, np.float32)})), "unknown_name"),
        (rep(plain(nan)), "nonfinite"),
        (rep(blob(inf16)), "nonfinite"),
        (rep(plain({"fc.bias": np.ones(64, np.int64)})), "unsupported_dtype"),
        (
            rep(
                ArrayRecord(
                    {
                        "fc.bias": Array(
                            dtype="float32", shape=(64,), stype="torch", data=b"\0" * 256
                        )
                    }
                )
            ),
            "unsupported_dtype",
        ),
        (rep(ArrayRecord({"fc.bias": torn})), "bad_magic"),
        (rep(blob(ptth_delta, key="ptth")), "bad_ptth_record"),
        (
            rep(
                ArrayRecord(
                    {
                        pf.DELTA_KEY: blob(ptth_delta)[pf.DELTA_KEY],
                        "fc.bias": Array(good["fc.bias"]),
                    }
                )
            ),
            "bad_ptth_record",
        ),
        (error, "error_reply"),
        (two, "bad_records"),
        (rep(None), "bad_records"),
        (rep(plain(good), weight=None), "no_weight"),
        (rep(plain(good), weight=0), "bad_weight"),
        (rep(plain(good), weight=-3.0), "bad_weight"),
        (rep(plain(good), weight=float("nan")), "bad_weight"),
        (rep(plain(good), weight=[1.0, 2.0]), "bad_weight"),
    ]


def test_rejected_replies_are_logged_and_the_round_continues(caplog):
    glob = model(7)
    goods = [{k: v + np.float32(0.1 * (i + 1)) for k, v in glob.items()} for i in range(3)]
    good_replies = replies_for(glob, [pf.encode_record(g, glob) for g in goods], [4, 5, 6])
    bad = _bad_replies(glob)
    mixed = (
        [good_replies[0]]
        + [r for r, _ in bad[: len(bad) // 2]]
        + [good_replies[1]]
        + [r for r, _ in bad[len(bad) // 2 :]]
        + [good_replies[2]]
    )
    _, want_arrays, want_metrics = ours(glob, good_replies)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        strategy, arrays, metrics = ours(glob, mixed)
    assert {k: a.data for k, a in arrays.items()} == {k: a.data for k, a in want_arrays.items()}
    assert metrics == want_metrics
    report = strategy.last_report
    assert report.accepted == 3 and report.total_weight == 15
    assert [r.reason for r in report.rejected] == [reason for _, reason in bad]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for rej in report.rejected:
        assert any(f"({rej.reason})" in w and str(rej.node_id) in w for w in warnings), rej


def test_a_round_with_every_reply_rejected_returns_none(caplog):
    glob = model(8)
    bad = [r for r, _ in _bad_replies(glob)]
    with caplog.at_level(logging.INFO, logger="flwr"):
        strategy, arrays, metrics = ours(glob, bad)
    assert (arrays, metrics) == (None, None)
    assert strategy.last_report.accepted == 0 and len(strategy.last_report.rejected) == len(bad)
    assert any(
        r.levelno == logging.WARNING and "no accepted reply" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flwr"):  # no replies at all: not a warning
        assert ours(glob, [])[1:] == (None, None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_inconsistent_metrics_skip_the_metrics_not_the_round(caplog):
    glob = model(9)
    clients = [model(50 + i) for i in range(3)]
    metrics = [{"loss": 1.0}, {"loss": 2.0, "acc": 0.5}, {"loss": 3.0}]
    replies = replies_for(glob, [plain(c) for c in clients], [1, 1, 1], metrics=metrics)
    with pytest.raises(InconsistentMessageReplies):
        StockFedAvg().aggregate_train(1, replies)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        strategy, arrays, got_metrics = ours(glob, replies)
    assert got_metrics is None and arrays is not None
    assert "differ" in strategy.last_report.metrics_skipped
    assert any("metrics skipped" in r.getMessage() for r in caplog.records)


def test_big_endian_android_blobs_with_byteorder_option():
    glob = model(10)
    trained = {k: v + np.float32(0.25) for k, v in glob.items()}
    delta = {k: np.asarray(trained[k] - glob[k]).astype(">f4") for k in glob}
    # As the Android extractor writes it (docs/format.md): big-endian header and float32 payloads.
    be = struct.pack(">4sII", b"PTTH", 1, len(delta))
    for name, arr in delta.items():
        encoded = name.encode()
        be += struct.pack(
            f">I{len(encoded)}sI{arr.ndim}I", len(encoded), encoded, arr.ndim, *arr.shape
        )
        be += struct.pack(">II", 0, arr.nbytes) + arr.tobytes()
    rec = ArrayRecord({pf.DELTA_KEY: Array("uint8", (len(be),), "ptth", bytes(be))})
    _, got, _ = ours(glob, replies_for(glob, [rec], [1]), byteorder=">")
    want = reference(glob, [(delta, 1, "delta")])
    for k, v in as_numpy(got).items():
        np.testing.assert_array_equal(v, want[k].astype(F32))


# ---- the client side ----------------------------------------------------------------


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.ones((3, 5), F64)),
        np.array(2.5, F16),
        np.zeros((0, 4), np.float32),
        np.arange(5, dtype=">i4"),
        np.arange(6, dtype=np.int64),
    ],
    ids=["f32", "fortran", "scalar", "empty", "big-endian", "int64"],
)
def test_numpy_view_reads_what_array_numpy_reads_without_a_copy(arr):
    a = wire(
        Message(
            RecordDict({"r": ArrayRecord({"x": Array(arr)})}),
            dst_node_id=1,
            message_type=MessageType.TRAIN,
        )
    ).content["r"]["x"]
    view = pf.numpy_view(a)
    want = a.numpy()
    assert view.dtype == want.dtype and view.shape == want.shape
    np.testing.assert_array_equal(view, want)
    if arr.size:
        assert not view.flags.owndata and not view.flags.writeable  # a view of Array.data


def test_numpy_view_refuses_what_np_load_would():
    structured = Array(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))
    with pytest.raises(ptth.PTTHError) as info:
        pf.numpy_view(structured)
    assert info.value.reason == "unsupported_dtype"
    good = Array(np.ones(4, np.float32))
    short = Array(good.dtype, good.shape, good.stype, good.data[:-1])
    with pytest.raises(ptth.PTTHError) as info:
        pf.numpy_view(short)
    assert info.value.reason == "length_mismatch"
    with pytest.raises(ptth.PTTHError) as info:
        pf.numpy_view(Array(good.dtype, good.shape, good.stype, good.data[:6]))
    assert info.value.reason == "truncated"


@pytest.mark.parametrize("dtype", ["float16", "float32", None])
@pytest.mark.parametrize("compress", [None, 1, 6])
def test_encode_record_round_trip(dtype, compress):
    glob = {**model(11), "steps": np.array(7, np.int32), "s64": np.linspace(0, 1, 5)}
    trained = {
        k: v + v.dtype.type(3) if v.dtype.kind == "i" else v + v.dtype.type(0.125)
        for k, v in glob.items()
    }
    rec = wire(
        Message(
            RecordDict(
                {"a": pf.encode_record(plain(trained), plain(glob), dtype=dtype, compress=compress)}
            ),
            dst_node_id=1,
            message_type=MessageType.TRAIN,
        )
    ).content["a"]
    assert list(rec) == [pf.DELTA_KEY] and rec[pf.DELTA_KEY].stype == "ptth"
    kind, got = pf.decode_record(rec)
    assert kind == "delta" and list(got) == list(glob)
    for k, t in glob.items():
        diff = trained[k] - t
        if t.dtype.kind == "i":
            want = diff
        elif dtype == "float16":
            want = diff.astype(F16)
        elif dtype == "float32":
            want = diff.astype(F32)
        else:
            want = diff
        assert got[k].dtype == want.dtype, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
    kind, full = pf.decode_record(pf.encode_record(trained, dtype=dtype, compress=compress))
    assert kind == "full"
    for k, v in trained.items():
        want = v.astype(F16) if dtype == "float16" and v.dtype.kind == "f" else v
        if dtype == "float32" and v.dtype == F64:
            want = v.astype(F32)
        np.testing.assert_array_equal(full[k], want, err_msg=k)


def test_encode_record_refuses_silent_damage():
    glob = model(12)
    with pytest.raises(ptth.PTTHError) as info:  # float16 cannot hold it: never a silent inf
        pf.encode_record({"fc.bias": glob["fc.bias"] + np.float32(1e5)}, glob)
    assert info.value.reason == "nonfinite"
    with pytest.raises(ptth.PTTHError) as info:
        pf.encode_record({"fc.bias": np.full(64, 7e4, np.float32)})
    assert info.value.reason == "nonfinite"
    with pytest.raises(ptth.PTTHError) as info:
        pf.encode_record({"head": np.ones(2, np.float32)}, glob)
    assert info.value.reason == "unknown_name"
    with pytest.raises(ptth.PTTHError) as info:
        pf.encode_record({"fc.bias": np.ones(65, np.float32)}, glob)
    assert info.value.reason == "shape_mismatch"
    with pytest.raises(ValueError):
        pf.encode_record(glob, dtype="float64")
    with pytest.raises(ptth.PTTHError):
        pf.decode_record(plain(glob))


def _client_app(mod, train_fn):
    app = ClientApp(mods=[mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return train_fn(msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(
            RecordDict({"metrics": MetricRecord({"num-examples": 3, "acc": 0.5})}), reply_to=msg
        )

    return app


def _context(node: int) -> Context:
    return Context(run_id=4242, node_id=node, node_config={}, state=RecordDict(), run_config={})


def test_ptth_mod_sends_a_float16_zlib_delta():
    glob = model(13)
    trained = {k: v + np.float32(0.01) for k, v in glob.items()}

    def train(msg):
        assert {k: pf.numpy_view(a).tobytes() for k, a in msg.content["arrays"].items()} == {
            k: v.tobytes() for k, v in glob.items()
        }  # the mod left the incoming model alone
        return Message(
            RecordDict({"model": plain(trained), "metrics": MetricRecord({"num-examples": 9})}),
            reply_to=msg,
        )

    app = _client_app(pf.ptth_mod, train)
    out = wire(app(instruction(glob, node=5), _context(5)))
    rec = out.content["model"]
    assert list(rec) == [pf.DELTA_KEY]
    assert ptth.detect_wrapper(rec[pf.DELTA_KEY].data) == "zlib"
    kind, got = pf.decode_record(rec)
    assert kind == "delta"
    for k in glob:
        np.testing.assert_array_equal(got[k], (trained[k] - glob[k]).astype(F16), err_msg=k)
    assert len(rec[pf.DELTA_KEY].data) < sum(v.nbytes for v in glob.values()) / 2
    ev = Message(
        RecordDict({"arrays": plain(glob)}), dst_node_id=5, message_type=MessageType.EVALUATE
    )
    assert wire(app(wire(ev), _context(5))).content["metrics"]["acc"] == 0.5  # untouched


def test_ptth_mod_turns_bad_updates_into_error_replies():
    glob = model(14)

    def new_layer(msg):
        return Message(
            RecordDict(
                {
                    "arrays": plain({**glob, "head": np.ones(2, np.float32)}),
                    "metrics": MetricRecord({"num-examples": 1}),
                }
            ),
            reply_to=msg,
        )

    def two_records(msg):
        return Message(
            RecordDict(
                {"a": plain(glob), "b": plain(glob), "metrics": MetricRecord({"num-examples": 1})}
            ),
            reply_to=msg,
        )

    for fn, words in ((new_layer, "unknown_name"), (two_records, "found 2")):
        out = _client_app(pf.ptth_mod, fn)(instruction(glob, node=6), _context(6))
        assert out.has_error() and out.error.code == ErrorCode.MOD_FAILED_PRECONDITION
        assert words in out.error.reason
    with pytest.raises(ValueError):
        pf.make_ptth_mod(dtype="int8")
    with pytest.raises((TypeError, ValueError)):
        pf.make_ptth_mod(compress=12)
    with pytest.raises((TypeError, ValueError)):
        pf.make_ptth_mod(wrapper="zstd")


# ---- a whole run: Flower's in-memory grid and link state, ClientApps with the mod ----------


def _flower_run(num_nodes: int):
    """Flower's InMemoryGrid over an InMemoryLinkState with registered nodes and a run."""
    import secrets

    from flwr.common.constant import HEARTBEAT_INTERVAL_INF, NOOP_ACCOUNT_NAME, NOOP_FLWR_AID
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.superlink.federation.noop_federation_manager import NoOpFederationManager
    from flwr.superlink.grid import InMemoryGrid

    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state = factory.state()
    nodes = []
    for _ in range(num_nodes):
        node = state.create_node(
            NOOP_FLWR_AID,
            NOOP_ACCOUNT_NAME,
            secrets.token_bytes(32),
            heartbeat_interval=HEARTBEAT_INTERVAL_INF,
        )
        state.acknowledge_node_heartbeat(node_id=node, heartbeat_interval=HEARTBEAT_INTERVAL_INF)
        nodes.append(node)
    run_id = state.create_run(
        None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp"
    )
    run = state.get_run_info(run_ids=[run_id])[0]
    grid = InMemoryGrid(factory, pull_interval=0.01)
    grid.set_run(run)
    return grid, state, sorted(nodes), run


def test_two_rounds_through_start_with_the_mod_on_every_client():
    """strategy.start() over Flower's in-memory grid; each SuperNode's work (pull the instruction,
    run the ClientApp, push the reply, through Flower's serialization) is done by a thread."""
    import threading
    from uuid import uuid4

    grid, state, nodes, run = _flower_run(4)
    TaskIdentity.task_id, TaskIdentity.run_id = run.primary_task_id, run.run_id
    glob = model(15)
    step = {n: np.float32(0.01 * (i + 1)) for i, n in enumerate(nodes)}
    weight = {n: 10 + i for i, n in enumerate(nodes)}
    poisoned = nodes[-1]  # trains to NaN every round: left out, the rounds go on

    def train(msg):
        node = msg.metadata.dst_node_id
        arrays = {k: pf.numpy_view(a) for k, a in msg.content["arrays"].items()}
        new = {k: v + step[node] for k, v in arrays.items()}
        if node == poisoned:
            new["fc.bias"] = np.full_like(new["fc.bias"], np.nan)
        return Message(
            RecordDict(
                {
                    "arrays": plain(new),
                    "metrics": MetricRecord(
                        {"num-examples": weight[node], "loss": float(node % 7)}
                    ),
                }
            ),
            reply_to=msg,
        )

    app = _client_app(pf.ptth_mod, train)
    stop = threading.Event()

    def supernodes():
        while not stop.is_set():
            for node in nodes:
                for ins in state.get_message_ins(node_id=node, limit=1):
                    out = wire(app(wire(ins), _context(node)))
                    out.metadata.__dict__["_message_id"] = str(uuid4())
                    state.store_message_res(out)
            stop.wait(0.01)

    thread = threading.Thread(target=supernodes, daemon=True)
    thread.start()
    strategy = pf.FedAvg(min_available_nodes=4, fraction_evaluate=0.0)
    try:
        result = strategy.start(grid=grid, initial_arrays=plain(glob), num_rounds=2, timeout=20)
    finally:
        stop.set()
        thread.join(10)
    want = {k: np.asarray(v) for k, v in glob.items()}
    for _ in range(2):  # the reference: each honest client's float16 delta, weighted
        deltas = [
            ({k: ((v + step[n]) - v).astype(F16) for k, v in want.items()}, weight[n], "delta")
            for n in nodes
            if n != poisoned
        ]
        want = {k: v.astype(F32) for k, v in reference(want, deltas).items()}
    got = as_numpy(result.arrays)
    for k in glob:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert strategy.last_report.accepted == 3
    # the poisoned client's mod refuses to encode NaN: its reply is a Flower error, left out
    [rej] = strategy.last_report.rejected
    assert (rej.node_id, rej.reason) == (poisoned, "error_reply") and "nonfinite" in rej.detail
    assert set(result.train_metrics_clientapp) == {1, 2}


def test_the_python_backend_gives_the_same_round():
    """The same round under PTTH_BACKEND=python, in a fresh process: identical bytes."""
    script = r"""
import hashlib, numpy as np, ptth, ptth.flower as pf
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
assert ptth.backend == BACKEND
TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 2, 0
rng = np.random.default_rng(0)
glob = {"w": rng.standard_normal((32, 17)).astype(np.float32), "b": np.zeros(17, np.float32)}
replies = []
for i in range(6):
    d = {k: (rng.standard_normal(v.shape) * 1e-2).astype(np.float16) for k, v in glob.items()}
    ins = Message(RecordDict(), dst_node_id=i + 1, message_type=MessageType.TRAIN)
    rec = pf.encode_record({k: glob[k] + d[k] for k in d}, glob, compress=6)
    replies.append(Message(RecordDict({"a": rec, "m": MetricRecord({"num-examples": i + 1})}),
                           reply_to=ins))
s = pf.FedAvg()
s.set_global_arrays(1, ArrayRecord({k: Array(v) for k, v in glob.items()}))
arrays, _ = s.aggregate_train(1, replies)
assert s.last_report.accepted == 6
print(hashlib.sha256(b"".join(a.data for a in arrays.values())).hexdigest())
"""
    digests = []
    for backend in ("native", "python"):
        env = {**os.environ, "PTTH_BACKEND": backend}
        res = subprocess.run(
            [sys.executable, "-c", script.replace("BACKEND", repr(backend))],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        digests.append(res.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def test_numpy_view_takes_np_save_headers_fast_and_the_rest_through_numpy():
    # A header np.save writes, one it could write with padding changed, and a hostile shape.
    for arr in (np.ones((2, 3), "<f4"), np.ones(3, "|b1"), np.ones((4, 1), ">f8")):
        a = Array(arr)
        assert pf._records._npy_header_fast(a.data) is not None
        np.testing.assert_array_equal(pf.numpy_view(a), arr)
    header = (
        b"{'shape': (3,), 'fortran_order': False, 'descr': '<f4'}"  # key order of an older numpy
    )
    header += b" " * (63 - len(header)) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 12
    a = Array("float32", (3,), "numpy.ndarray", data)
    assert pf._records._npy_header_fast(data) is None
    np.testing.assert_array_equal(pf.numpy_view(a), a.numpy())
    huge = b"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"
    huge += b" " * (127 - len(huge)) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(huge).to_bytes(2, "little") + huge
    with pytest.raises(ptth.PTTHError) as info:
        pf.numpy_view(Array("float32", (1,), "numpy.ndarray", data))
    assert info.value.reason == "length_mismatch"


def test_flower_rows_for_ptth_bench():
    """ptth bench's rows (quick): Row keyword arguments; the accuracy claims hold on them."""
    from ptth.bench import Row
    from ptth.flower.bench import flower_rows

    rows = flower_rows(quick=True)
    for row in rows:
        cells = Row(**row).cells()
        assert cells[0] == row["op"] and row["ours"] > 0 and row["base"] > 0
    f16 = [r for r in rows if "PTTH" in r["op"]]
    assert len(f16) == 2 and all(r["met"] for r in f16)  # half the bytes, 0.5 ulp: measured, exact
    assert "ulp" in rows[0]["note"]
