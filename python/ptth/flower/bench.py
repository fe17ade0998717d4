"""ptth.flower.FedAvg beside stock Flower FedAvg on the same replies: time, peak memory, error.

Used by ``benchmarks/test_flower.py`` and, through ``flower_rows``, by ``ptth bench``.
The replies are real flwr Messages (as Flower's ServerApp hands them to the
strategy); both strategies aggregate the same list. Peak memory is measured
in a fresh process: VmHWM after ``aggregate_train`` minus VmRSS before it,
with the replies already in memory (what they hold is reported apart, as
"bytes held").

    python -m ptth.flower.bench [--quick]      # prints the rows
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg as StockFedAvg

import ptth
from ptth._bench_inputs import _status

from ._records import encode_record, numpy_view
from ._strategy import FedAvg

#: replies per round and the model size (float32 bytes) of the row
CLIENTS = 8
MODEL_BYTES = 95_000_000
QUICK_BYTES = 4_000_000

F64 = np.dtype(np.float64)


def _identity() -> None:
    """The task identity Flower's ServerApp runtime sets; Messages need it to be built."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    if TaskIdentity._run_id is None:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID


def global_model(nbytes: int) -> dict:
    """The 200-tensor float32 model ``ptth bench`` uses, of about `nbytes` bytes."""
    from ptth._bench_inputs import model

    return model(max(1024, nbytes // 4))


def weights(n: int) -> list:
    return [10 * (i + 1) + i for i in range(n)]


def trained(glob: dict, i: int) -> dict:
    """Client i's full weights: the global model plus a ~N(0, 1e-3) step (float32)."""
    rng = np.random.default_rng(1000 + i)
    return {
        k: v + rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)
        for k, v in glob.items()
    }


def replies(records: list, ws: list) -> list:
    """One train reply Message per record, as the grid returns them to the strategy."""
    _identity()
    out = []
    for i, (rec, w) in enumerate(zip(records, ws)):
        ins = Message(RecordDict(), dst_node_id=i + 1, message_type=MessageType.TRAIN)
        content = RecordDict({"arrays": rec, "metrics": MetricRecord({"num-examples": w})})
        out.append(Message(content, reply_to=ins))
    return out


def plain(arrays: dict) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def scenario(name: str, nbytes: int, clients: int = CLIENTS):
    """(global ArrayRecord, replies, the float64 reference result, bytes held by the replies).

    f32: full float32 weights as ordinary ArrayRecords (what stock clients send);
    f16: the same, as float16 ArrayRecords (stock's way of halving the bytes);
    ptth-f16: float16 full-weight PTTH blobs, uncompressed;
    ptth-f16-zlib: float16 deltas, zlib level 6 (what ``ptth_mod`` sends).
    """
    glob = global_model(nbytes)
    ws = weights(clients)
    records = []
    acc = {k: np.zeros(v.shape, F64) for k, v in glob.items()}  # the reference, as replies come
    for i in range(clients):
        t = trained(glob, i)
        if name == "f32":
            values, rec = t, plain(t)
        elif name in ("f16", "ptth-f16"):
            values = {k: v.astype(np.float16) for k, v in t.items()}
            rec = (
                plain(values) if name == "f16" else encode_record(values, dtype=None, compress=None)
            )
        elif name == "ptth-f16-zlib":
            rec = encode_record(t, glob)
            values = {k: glob[k].astype(F64) + d.astype(F64) for k, d in _decoded(rec).items()}
        else:
            raise ValueError(f"unknown scenario {name!r}")
        records.append(rec)
        for k, v in values.items():
            acc[k] += ws[i] * np.asarray(v, F64)
        del t, values
    total = float(sum(ws))
    ref = {k: a / total for k, a in acc.items()}
    held = sum(len(a.data) for r in records for a in r.values())
    return plain(glob), replies(records, ws), ref, held


def _decoded(rec: ArrayRecord) -> dict:
    from ._records import decode_record

    return decode_record(rec)[1]


def stock_round(glob: ArrayRecord, msgs: list, **kw):
    return StockFedAvg().aggregate_train(1, msgs)[0]


def ptth_round(glob: ArrayRecord, msgs: list, **kw):
    strategy = FedAvg(**kw)
    strategy.set_global_arrays(1, glob)
    return strategy.aggregate_train(1, msgs)[0]


IMPLS: dict[str, tuple[Callable, dict]] = {
    "stock": (stock_round, {}),
    "ptth": (ptth_round, {"accumulate": "float64"}),
    "ptth-f32acc": (ptth_round, {"accumulate": "float32"}),
}


def max_error(result: ArrayRecord, ref: dict) -> float:
    return max(float(np.max(np.abs(numpy_view(a).astype(F64) - ref[k]))) for k, a in result.items())


def max_ulps(result: ArrayRecord, ref: dict) -> float:
    """The error in units of the result dtype's spacing (0.5 = the reference rounded once)."""
    worst = 0.0
    for k, a in result.items():
        got = numpy_view(a)
        spacing = np.spacing(np.abs(ref[k]).astype(got.dtype)).astype(F64)
        worst = max(worst, float(np.max(np.abs(got.astype(F64) - ref[k]) / spacing)))
    return worst


def apply_share(glob: ArrayRecord, msgs: list, accumulate: str = "float64") -> tuple:
    """(seconds folding the replies, seconds in ``apply()``): aggregate_train's work."""
    agg = ptth.Aggregator({k: numpy_view(a) for k, a in glob.items()}, accumulate=accumulate)
    t0 = time.perf_counter()
    for m in msgs:
        rec = next(iter(m.content.array_records.values()))
        w = next(iter(m.content.metric_records.values()))["num-examples"]
        agg.add({k: numpy_view(a) for k, a in rec.items()}, w, kind="full")
    t1 = time.perf_counter()
    agg.apply()
    return t1 - t0, time.perf_counter() - t1


# ---- peak memory in a fresh process -------------------------------------------------


def _trim() -> None:
    """Give freed heap back to the kernel, so VmRSS before the round counts only live memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


#: A fixed mmap threshold (glibc otherwise raises it after large frees, and heap reuse then
#: hides allocations from VmHWM); the same for stock and ptth.
_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _child(name: str, impl: str, nbytes: int, clients: int) -> dict:
    glob, msgs, ref, held = scenario(name, nbytes, clients)
    fn, kw = IMPLS[impl]
    small_glob, small_msgs, _, _ = scenario(name, 8192, 2)
    fn(small_glob, small_msgs, **kw)  # lazy imports and code paths, outside the measurement
    del small_glob, small_msgs
    gc.collect()
    _trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    result = fn(glob, msgs, **kw)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - rss0
    return {
        "scenario": name,
        "impl": impl,
        "peak": peak,
        "seconds": seconds,
        "held": held,
        "max_error": max_error(result, ref),
        "max_ulps": max_ulps(result, ref),
    }


def peak_memory(name: str, impl: str, nbytes: int, clients: int = CLIENTS) -> dict:
    """Run one (scenario, implementation) in a fresh process; its peak above the start, and more.

    Keys: peak (bytes above VmRSS before aggregate_train), seconds, held (bytes
    the replies' Arrays hold), max_error and max_ulps against the float64 mean.
    """
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptth.flower.bench",
            "--_child",
            name,
            impl,
            str(nbytes),
            str(clients),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **_CHILD_ENV},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_available() -> bool:
    return os.path.exists("/proc/self/clear_refs")


# ---- rows for ``ptth bench`` ----------------------------------------------------------


def _median(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _pair(ours, base, repeat: int) -> tuple:
    """Median times, alternating the two so a shared machine's drift falls on both."""
    ours()
    base()
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeat):
        for fn, times in ((base, t_base), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(t_ours)), float(np.median(t_base))


def flower_rows(quick: bool) -> list:
    """``ptth bench`` rows: keyword arguments of ``ptth.bench.Row`` (op, ours, base, kind, target,
    note, met), ptth.flower.FedAvg against stock FedAvg on the same replies.

    quick: a 4 MB model and 3 repeats (seconds); otherwise the 95 MB model, 5 repeats.
    Example: ``[Row(**r) for r in flower_rows(quick=True)]``.
    """
    nbytes, repeat = (QUICK_BYTES, 3) if quick else (MODEL_BYTES, 5)
    rows, held32 = _float32_rows(nbytes, repeat)
    return rows + _float16_rows(nbytes, repeat, held32)


def _float32_rows(nbytes: int, repeat: int) -> tuple:
    glob, msgs, ref, held = scenario("f32", nbytes)
    t_ours, t_base = _pair(lambda: ptth_round(glob, msgs), lambda: stock_round(glob, msgs), repeat)
    fold, apply_s = apply_share(glob, msgs)
    ours = ptth_round(glob, msgs)
    ours_err, ours_ulps = max_error(ours, ref), max_ulps(ours, ref)
    del ours
    base_err = max_error(stock_round(glob, msgs), ref)
    rows = [
        {
            "op": f"flower FedAvg, {CLIENTS} f32 replies",
            "ours": t_ours,
            "base": t_base,
            "kind": "time",
            "target": 1.0,
            "note": f"vs stock FedAvg, {nbytes / 1e6:.0f} MB model; apply() {apply_s * 1e3:.0f} "
            f"ms of it, folds {fold * 1e3:.0f} ms; max error {ours_err:.1e} = {ours_ulps:.2f} ulp "
            f"(stock {base_err:.1e})",
        }
    ]
    if memory_available():
        del glob, msgs, ref  # the children build their own replies
        mem = {impl: peak_memory("f32", impl, nbytes) for impl in ("ptth", "ptth-f32acc", "stock")}
        f32acc = mem["ptth-f32acc"]["peak"] / 1e6
        rows.append(
            {
                "op": f"  peak memory, {CLIENTS} f32 replies",
                "ours": mem["ptth"]["peak"],
                "base": mem["stock"]["peak"],
                "kind": "memory",
                "met": mem["ptth"]["peak"] <= mem["stock"]["peak"],
                "note": f"target <= stock's; accumulate='float32': {f32acc:.0f} MB; replies "
                f"hold {held / 1e6:.0f} MB",
            }
        )
    return rows, held


def _float16_rows(nbytes: int, repeat: int, held32: int) -> list:
    t_stock16, err_stock16, held16 = _stock_float16(nbytes, repeat)
    return [
        _float16_row(name, label, nbytes, repeat, t_stock16, err_stock16, held32, held16)
        for name, label in (("ptth-f16", "f16 PTTH"), ("ptth-f16-zlib", "f16+zlib PTTH deltas"))
    ]


def _stock_float16(nbytes: int, repeat: int) -> tuple:
    glob, msgs, ref, held = scenario("f16", nbytes)
    return (
        _median(lambda: stock_round(glob, msgs), repeat),
        max_error(stock_round(glob, msgs), ref),
        held,
    )


def _float16_row(name, label, nbytes, repeat, t_stock16, err_stock16, held32, held16) -> dict:
    glob, msgs, ref, held = scenario(name, nbytes)
    t_ours = _median(lambda: ptth_round(glob, msgs), repeat)
    res = ptth_round(glob, msgs)
    err, ulp = max_error(res, ref), max_ulps(res, ref)
    return {
        "op": f"flower FedAvg, {CLIENTS} {label}",
        "ours": t_ours,
        "base": t_stock16,
        "kind": "time",
        "target": 1.0,
        "met": held <= held32 / 2 and ulp <= 0.5 + 1e-6,
        "note": f"vs stock on f16 ArrayRecords; bytes held {held / 1e6:.0f} MB (f32 "
        f"{held32 / 1e6:.0f}, f16 {held16 / 1e6:.0f}); max error {err:.1e} = {ulp:.2f} ulp of "
        f"f32 (stock f16 {err_stock16:.1e}); met = half the bytes and exact",
    }


def float16_error_200(nbytes: int = 1_000_000, clients: int = 200) -> dict:
    """The error case of stock float16 averaging: `clients` float16 full-weight uploads around 1.0.

    Returns the max error against the float64 NumPy mean of the same float16
    values: stock FedAvg on float16 ArrayRecords, and ptth on float16 PTTH
    blobs over a float64 and a float32 global model.
    """
    rng = np.random.default_rng(7)
    n = max(256, nbytes // 4)
    glob64 = {"w": np.ones(n, F64)}
    ws = [int(w) for w in rng.integers(1, 100, clients)]
    ups = [{"w": (1.0 + rng.standard_normal(n) * 0.05).astype(np.float16)} for _ in range(clients)]
    ref = {"w": sum(w * u["w"].astype(F64) for u, w in zip(ups, ws)) / float(sum(ws))}
    stock = stock_round(plain(glob64), replies([plain(u) for u in ups], ws))
    blobs = replies([encode_record(u, dtype=None, compress=None) for u in ups], ws)
    ours64 = ptth_round(plain(glob64), blobs)
    ours32 = ptth_round(plain({"w": np.ones(n, np.float32)}), blobs)
    return {
        "clients": clients,
        "elements": n,
        "stock": max_error(stock, ref),
        "ptth_float64_model": max_error(ours64, ref),
        "ptth_float32_model": max_error(ours32, ref),
        "ptth_float32_model_ulps": max_ulps(ours32, ref),
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        print(json.dumps(_child(argv[1], argv[2], int(argv[3]), int(argv[4]))))
        return 0
    for row in flower_rows("--quick" in argv):
        print(row)
    print(float16_error_200(250_000 if "--quick" in argv else 1_000_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
