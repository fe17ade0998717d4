"""ptth.dask on a real distributed.LocalCluster with two worker processes.

One module-scoped cluster (two single-threaded worker processes, each
limited to WORKER_MEMORY) serves every test; the test that kills a worker
waits for the nanny to bring it back. References are computed here, in
this process: a NumPy FedAvg for the values, and ptth.Aggregator over the
same partitions for the bit-for-bit checks of the fixed merge orders.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import zlib

import numpy as np
import pytest

import ptth

distributed = pytest.importorskip("distributed")
import dask.bag as db  # noqa: E402

import ptth.dask as pdask  # noqa: E402

WORKER_MEMORY = 400 * 2**20
TEMPLATE_SHAPES = {
    "conv.weight": ((16, 3, 3, 3), np.float32),
    "fc.weight": ((40, 64), np.float32),
    "fc.bias": ((40,), np.float64),
    "scale": ((10,), np.float16),
}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=WORKER_MEMORY,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def make_template(rng, shapes=TEMPLATE_SHAPES):
    return {k: rng.standard_normal(s).astype(t) for k, (s, t) in shapes.items()}


def make_round(rng, template, n):
    """n uploads in assorted encodings, their deltas as the numbers they carry, and weights."""
    blobs, deltas = [], []
    names = list(template)
    for i in range(n):
        keep = names if i % 4 != 3 else names[: 1 + i % len(names)]  # some partial updates
        delta = {k: rng.standard_normal(template[k].shape) * 1e-2 for k in keep}
        if i % 4 in (0, 2):
            delta = {k: v.astype(np.float16) for k, v in delta.items()}
        else:
            delta = {k: v.astype(np.float32) for k, v in delta.items()}
        if i % 4 == 1:
            blobs.append(ptth.dumps(delta))
        else:
            blobs.append(ptth.dumps(delta, compress=6, wrapper="gzip" if i % 4 == 2 else "zlib"))
        deltas.append(delta)
    weights = [float(w) for w in rng.integers(1, 200, n)]
    return blobs, deltas, weights


def numpy_fedavg(template, deltas, weights):
    """sum_i w_i d_i / sum_i w_i per parameter, over the uploads that hold it (float64)."""
    out = {}
    for name, t in template.items():
        acc, wsum = np.zeros(t.shape, np.float64), 0.0
        for d, w in zip(deltas, weights):
            if name in d:
                acc += w * d[name].astype(np.float64)
                wsum += w
        out[name] = acc / wsum
    return out


def write(directory, blobs):
    paths = []
    for i, b in enumerate(blobs):
        p = os.path.join(directory, f"upload-{i:04d}.ptth")
        with open(p, "wb") as f:
            f.write(b)
        paths.append(p)
    return paths


def bits(agg):
    """Everything the aggregate holds, exactly: the sums (float64 bits), weights, counts."""
    sums = agg.sum(dtype="float64", allow_empty=True)
    return (
        {k: (v.shape, v.tobytes()) for k, v in sums.items()},
        agg.weight_sums(),
        agg.count,
        agg.total_weight,
    )


def reference_partials(template, blobs, weights, partitions, **kw):
    """Each partition's partial aggregate, built here from the same uploads in the same order."""
    out = []
    for p in partitions:
        agg = ptth.Aggregator(template, accumulate=kw.pop("accumulate", "float64"), **kw)
        agg.add_many([blobs[i] for i in p.indexes], [weights[i] for i in p.indexes])
        out.append(agg.partial())
    return out


def assert_close(got, want, rtol=1e-12):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=0, err_msg=k)


@pytest.fixture(scope="module")
def round_files(tmp_path_factory):
    rng = np.random.default_rng(7)
    template = make_template(rng)
    blobs, deltas, weights = make_round(rng, template, 23)
    paths = write(tmp_path_factory.mktemp("round"), blobs)
    return template, blobs, deltas, weights, paths


# ---- the answer ---------------------------------------------------------------------------


def test_paths_default_order_matches_numpy_fedavg(client, round_files):
    template, blobs, deltas, weights, paths = round_files
    agg = pdask.aggregate(paths, template, weights=weights, client=client)
    assert isinstance(agg, ptth.Aggregator)
    assert agg.rejected == []
    assert agg.count == len(blobs)
    assert agg.total_weight == pytest.approx(sum(weights), rel=1e-15)
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(template, deltas, weights))
    # every upload is in exactly one partition, and both workers took part
    seen = sorted(i for p in agg.partitions for i in p.indexes)
    assert seen == list(range(len(blobs)))
    assert len({p.worker for p in agg.partitions}) == 2
    # the model in the template's dtypes, from the merged state
    new = agg.apply()
    assert {k: v.dtype for k, v in new.items()} == {k: v.dtype for k, v in template.items()}


@pytest.mark.parametrize("order", ["partition", "tree"])
def test_fixed_orders_are_bit_identical_to_the_same_sums_here(client, round_files, order):
    template, blobs, _, weights, paths = round_files
    agg = pdask.aggregate(
        paths, template, weights=weights, client=client, order=order, partition_size=5
    )
    # paths are cut into consecutive runs of partition_size, numbered in input order
    assert [list(p.indexes) for p in agg.partitions] == [
        list(range(i, min(i + 5, len(blobs)))) for i in range(0, len(blobs), 5)
    ]
    partials = reference_partials(template, blobs, weights, agg.partitions)
    ref = ptth.Aggregator(template)
    if order == "partition":
        for p in partials:  # a sequential aggregator merging the partition sums in order
            ref.merge(p)
    else:
        level = partials  # (P0 + P1) + (P2 + P3), the odd one carried up a level
        while len(level) > 1:
            pairs = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
            level = pairs + level[len(level) - len(level) % 2 :]
        ref.merge(level[0])
    assert bits(agg) == bits(ref)
    again = pdask.aggregate(
        paths, template, weights=weights, client=client, order=order, partition_size=5
    )
    assert bits(again) == bits(agg)


def test_one_partition_is_bit_identical_to_one_aggregator(client, round_files):
    template, blobs, _, weights, paths = round_files
    agg = pdask.aggregate(
        paths, template, weights=weights, client=client, partition_size=len(paths), batch_size=3
    )
    ref = ptth.Aggregator(template)
    for b, w in zip(blobs, weights):
        ref.add(b, w)
    assert len(agg.partitions) == 1
    assert bits(agg) == bits(ref)


def test_default_order_agrees_with_fixed_order(client, round_files):
    template, _, _, weights, paths = round_files
    a = pdask.aggregate(paths, template, weights=weights, client=client, partition_size=3)
    b = pdask.aggregate(
        paths, template, weights=weights, client=client, partition_size=3, order="partition"
    )
    assert_close(a.sum(dtype="float64"), b.sum(dtype="float64"))
    assert (a.count, a.total_weight) == (b.count, b.total_weight)


def test_add_options_reach_the_workers(client, round_files, tmp_path):
    template, _, deltas, weights, paths = round_files
    full = [ptth.dumps({k: template[k] + d[k] for k in d}) for d in deltas]
    kw = dict(clip_norm=0.05, accumulate="float32", kind="full", allow_cast=True)
    agg = pdask.aggregate(
        write(tmp_path, full), template, weights=weights, client=client, partition_size=50, **kw
    )
    ref = ptth.Aggregator(template, accumulate="float32", allow_cast=True)
    ref.add_many(full, weights, kind="full", clip_norm=0.05)
    assert agg.accumulate == "float32"
    assert bits(agg) == bits(ref)
    # a norm bound rejects on the workers, and says so
    norms = [
        np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in d.values())) for d in deltas
    ]
    bound = float(np.median(norms))
    agg = pdask.aggregate(paths, template, weights=weights, client=client, max_norm=bound)
    too_big = [i for i, n in enumerate(norms) if n > bound]
    assert 0 < len(too_big) < len(deltas)
    assert [(r.index, r.reason) for r in agg.rejected] == [(i, "norm_exceeded") for i in too_big]
    assert agg.count == len(deltas) - len(too_big)


# ---- rejected uploads -------------------------------------------------------------------------


def test_bad_uploads_are_reported_and_the_round_completes(client, round_files, tmp_path):
    template, blobs, deltas, weights, _ = round_files
    bad = {
        3: blobs[3][:-5],  # truncated
        5: b"not a blob at all",
        8: ptth.dumps({"fc.bias": np.zeros(41, np.float32)}),  # wrong shape
        11: ptth.dumps({"nope": np.zeros(2, np.float32)}),
        13: ptth.dumps({"fc.bias": np.full(40, np.nan, np.float32)}),
    }
    uploads = [bad.get(i, b) for i, b in enumerate(blobs)]
    paths = write(tmp_path, uploads)
    paths.append(str(tmp_path / "missing.ptth"))
    os.mkdir(tmp_path / "a-directory")
    paths.append(str(tmp_path / "a-directory"))
    agg = pdask.aggregate(
        paths, template, weights=weights + [1.0, 1.0], client=client, partition_size=4
    )
    got = {r.index: r for r in agg.rejected}
    assert {i: got[i].reason for i in bad} == {
        3: "stream_truncated",  # upload 3 is zlib-compressed
        5: "not_ptth",
        8: "shape_mismatch",
        11: "unknown_name",
        13: "nonfinite",
    }
    assert got[len(blobs)].reason == "read_error" and "FileNotFound" in got[len(blobs)].message
    assert got[len(blobs) + 1].reason == "read_error"
    assert [r.source for r in agg.rejected] == [paths[i] for i in sorted(got)]
    assert len(agg.rejected) == len(bad) + 2
    good = [i for i in range(len(blobs)) if i not in bad]
    assert agg.count == len(good)
    assert_close(
        agg.mean(dtype="float64"),
        numpy_fedavg(template, [deltas[i] for i in good], [weights[i] for i in good]),
    )


def test_every_upload_rejected_gives_an_empty_round(client, round_files):
    template = round_files[0]
    agg = pdask.aggregate([b"junk"] * 3, template, client=client)
    assert agg.count == 0 and [r.reason for r in agg.rejected] == ["not_ptth"] * 3
    with pytest.raises(ptth.PTTHError) as err:
        agg.mean()
    assert err.value.reason == "no_contributions"
    empty = pdask.aggregate([], template, client=client)
    assert empty.count == 0 and empty.partitions == [] and empty.rejected == []


def test_the_result_pickles_as_a_plain_aggregator(client, round_files):
    template, _, _, weights, paths = round_files
    agg = pdask.aggregate(paths, template, weights=weights, client=client)
    back = pickle.loads(pickle.dumps(agg, protocol=5))
    assert type(back) is ptth.Aggregator
    assert bits(back) == bits(agg)


def test_partials_travel_as_out_of_band_buffers(round_files):
    """What a merge ships: a small pickle plus the accumulators as separate frames."""
    from distributed.protocol import serialize

    template, blobs = round_files[:2]
    agg = ptth.Aggregator(template)
    agg.add_many(blobs, None)
    part = agg.partial()
    header, frames = serialize(part)
    sizes = [memoryview(f).nbytes for f in frames]
    assert header["serializer"] == "pickle"
    assert sum(sizes[1:]) == part.nbytes  # one frame per accumulator, never copied into...
    assert sizes[0] < 4096  # ...the pickle, which holds names, shapes, weight sums, counts
    # the template is not in it
    assert part.nbytes == 8 * sum(v.size for v in template.values())


# ---- where the work runs -------------------------------------------------------------------------


def test_futures_are_folded_where_their_bytes_are(client, round_files):
    template, blobs, deltas, weights, _ = round_files
    a, b = sorted(client.nthreads())
    futures = client.scatter(blobs[:10], workers=[a], hash=False) + client.scatter(
        blobs[10:], workers=[b], hash=False
    )
    failed = client.submit(lambda: 1 / 0, pure=False)
    distributed.wait(failed)
    agg = pdask.aggregate(
        futures + [failed], template, weights=weights + [1.0], client=client, partition_size=4
    )
    assert [(r.index, r.reason) for r in agg.rejected] == [(len(blobs), "upload_error")]
    assert "ZeroDivisionError" in agg.rejected[0].message or "division" in agg.rejected[0].message
    for p in agg.partitions:
        assert {p.worker} == {a if i < 10 else b for i in p.indexes}
    # the uploads did not travel: each is still held by its one worker only
    assert all(len(w) == 1 for w in client.who_has(futures).values())
    assert agg.count == len(blobs)
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(template, deltas, weights))


def test_paths_run_on_the_workers_that_can_read_them(client, round_files):
    template, _, deltas, weights, paths = round_files
    _, b = sorted(client.nthreads())
    agg = pdask.aggregate(
        paths, template, weights=weights, client=client, partition_size=4, workers=lambda p: b
    )
    assert {p.worker for p in agg.partitions} == {b}
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(template, deltas, weights))


def test_bag_of_pairs_paths_and_blobs(client, round_files):
    template, blobs, deltas, weights, paths = round_files
    elements = [(paths[i] if i % 2 else blobs[i], weights[i]) for i in range(len(blobs))]
    elements[6] = (b"junk", 1.0)
    bag = db.from_sequence(elements, npartitions=4)
    agg = pdask.aggregate(bag, template, client=client, order="partition")
    assert [(r.index, r.reason) for r in agg.rejected] == [(6, "not_ptth")]
    assert [p.index for p in agg.partitions] == [0, 1, 2, 3]
    assert sorted(i for p in agg.partitions for i in p.indexes) == list(range(len(blobs)))
    good = [i for i in range(len(blobs)) if i != 6]
    assert_close(
        agg.mean(dtype="float64"),
        numpy_fedavg(template, [deltas[i] for i in good], [weights[i] for i in good]),
    )
    uploads = [b"junk" if i == 6 else b for i, b in enumerate(blobs)]
    ws = [1.0 if i == 6 else w for i, w in enumerate(weights)]
    ref = ptth.Aggregator(template)
    for p in reference_partials(template, uploads, ws, agg.partitions):
        ref.merge(p)
    assert bits(agg) == bits(ref)
    # a bag of bare blobs weighs each 1.0
    plain = pdask.aggregate(db.from_sequence(blobs, npartitions=3), template, client=client)
    assert plain.total_weight == len(blobs)


# ---- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        (dict(order="random"), ValueError, "order"),
        (dict(weights=[1.0] * 22), ValueError, "weights has 22"),
        (dict(weights=[1.0] * 22 + [float("nan")]), ValueError, r"weights\[22\]"),
        (dict(weights=[1.0] * 22 + [-1.0]), ValueError, r"weights\[22\]"),
        (dict(weights=[1.0] * 22 + ["2"]), TypeError, r"weights\[22\]"),
        (dict(kind="diff"), ValueError, "kind"),
        (dict(clip_norm=-1.0), ValueError, "clip_norm"),
        (dict(accumulate="float16"), ValueError, "accumulate"),
        (dict(frobnicate=1), TypeError, "frobnicate"),
        (dict(partition_size=0), ValueError, "partition_size"),
        (dict(batch_size=1.5), TypeError, "batch_size"),
        (dict(workers="tcp://x"), TypeError, "workers"),
    ],
)
def test_bad_arguments_fail_before_any_work(client, round_files, kw, exc, text):
    template, _, _, _, paths = round_files
    with pytest.raises(exc, match=text):
        pdask.aggregate(paths, template, client=client, **kw)
    assert not any(client.processing().values())


def test_bad_updates_argument(client, round_files):
    template, blobs = round_files[:2]
    with pytest.raises(TypeError, match="updates"):
        pdask.aggregate(b"a single blob", template, client=client)
    with pytest.raises(TypeError, match=r"updates\[1\]"):
        pdask.aggregate([blobs[0], 42], template, client=client)
    # a malformed bag element is the caller's bug, not a bad upload: the round fails
    with pytest.raises(ValueError, match="update, weight"):
        pdask.aggregate(db.from_sequence([(blobs[0], 1.0, 2)]), template, client=client)
    with pytest.raises(ValueError, match="bag"):
        pdask.aggregate(db.from_sequence([b"x"]), template, weights=[1.0], client=client)
    with pytest.raises(TypeError, match="template"):
        pdask.aggregate([], [1, 2, 3], client=client)


# ---- faults -------------------------------------------------------------------------------


def raw_deflate_bomb(head: bytes, zeros: int) -> bytes:
    """A raw DEFLATE stream of `head` then `zeros` zero bytes, built without inflating it
    (after a full flush, every 16 MiB of zeros compresses to the same bytes)."""
    chunk = 16 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return first + block * (zeros // chunk) + c.flush()


def worker_pids(client):
    return client.run(os.getpid)


def test_huge_bogus_uploads_are_refused_without_the_memory(client, round_files, tmp_path):
    template, blobs, deltas, weights, _ = round_files
    claimed = 3 << 30  # 3 GiB decoded: far beyond the workers' memory limit
    assert claimed > 5 * WORKER_MEMORY
    head = ptth.dumps({k: np.zeros_like(v) for k, v in template.items()})
    bomb = raw_deflate_bomb(head, claimed)
    assert len(bomb) < 4 << 20
    zbomb = b"\x78\xda" + bomb  # the same stream in a zlib wrapper (never read to its checksum)
    # an uncompressed header claiming 2^31 elements of float32 for a template parameter
    claim = (
        b"PTTH"
        + (1).to_bytes(4, "big")
        + (1).to_bytes(4, "big")
        + (7).to_bytes(4, "big")
        + b"fc.bias"
        + (1).to_bytes(4, "big")
        + (1 << 31).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + (1 << 33 & 0xFFFFFFFF).to_bytes(4, "big")
    )
    sparse = tmp_path / "sparse.ptth"
    with open(sparse, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of holes: the size is known before a byte is read
    before = worker_pids(client)
    uploads = client.scatter([bomb, zbomb, claim], hash=False)
    paths = write(tmp_path, blobs[:4])
    agg = pdask.aggregate(
        [str(sparse), *uploads, *paths], template, client=client, weights=[1.0] * 4 + weights[:4]
    )
    reasons = {r.index: r.reason for r in agg.rejected}
    assert reasons[0] == "too_large"
    assert reasons[1] in ("too_large", "trailing_bytes") and reasons[2] == reasons[1]
    assert reasons[3] in ("shape_mismatch", "length_mismatch", "truncated", "size_overflow")
    assert len(reasons) == 4
    assert agg.count == 4
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(template, deltas[:4], weights[:4]))
    # the same workers, never restarted: no process was killed for memory
    assert worker_pids(client) == before
    # a caller's max_size below a valid upload's decoded size refuses it on the workers too
    small = pdask.aggregate(blobs[:1], template, client=client, max_size=64)
    assert [r.reason for r in small.rejected] == ["too_large"]


def test_a_worker_killed_mid_round(client, tmp_path):
    """os.kill(SIGKILL) of a worker in the middle of a fold: Dask runs its lost tasks again
    on the survivor and the nanny's replacement; no upload is counted twice or missed.

    The last upload is a named pipe: the task that folds it blocks in open() until this
    test writes the blob, so the kill lands while that fold is in progress, every time.
    """
    rng = np.random.default_rng(11)
    template = make_template(rng, {"w": ((200, 1000), np.float32), "b": ((1000,), np.float32)})
    blobs, deltas, weights = make_round(rng, template, 24)
    paths = write(tmp_path, blobs[:-1])
    fifo = str(tmp_path / "slow-upload.ptth")
    os.mkfifo(fifo)
    paths.append(fifo)
    before = worker_pids(client)
    box = {}

    def run():
        try:
            box["agg"] = pdask.aggregate(
                paths,
                template,
                weights=weights,
                client=client,
                order="partition",
                partition_size=2,
            )
        except BaseException as exc:  # reported by the assertion below
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    last = f"ptth-fold-{(len(paths) - 1) // 2}-"
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith(last) for k in keys):
                victim = worker
        time.sleep(0.01)
    assert victim is not None, "the fold of the named pipe never started"
    # let the victim's other work land in its memory (a fold or merge result it holds),
    # so the kill loses finished state as well as the fold in progress
    while time.monotonic() < deadline:
        held = [k for k, w in client.who_has().items() if "ptth-" in str(k) and victim in w]
        if held:
            break
        time.sleep(0.01)
    assert held, "the victim held no partial state when killed"
    time.sleep(0.2)  # the task is blocked in open(): in the middle of its fold
    os.kill(before[victim], signal.SIGKILL)

    def serve():
        """Write the blob to the first reader that reads all of it: the rerun, wherever Dask
        put it (a reader that dies on the way, the victim, breaks the pipe: try again)."""
        while True:
            try:
                with open(fifo, "wb") as f:  # blocks until a reader opens the pipe
                    f.write(blobs[-1])
                return
            except BrokenPipeError:
                continue

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    thread.join(120)
    assert not thread.is_alive(), "the round did not finish"
    assert "error" not in box, box.get("error")
    agg = box["agg"]
    client.wait_for_workers(2, timeout=60)
    assert before[victim] not in worker_pids(client).values()
    # the named pipe's partition was folded again elsewhere (finished partitions that
    # were already merged into state on the survivor keep the victim's name)
    assert agg.partitions[-1].worker != victim
    assert agg.rejected == []
    assert agg.count == len(blobs) and agg.total_weight == sum(weights)
    assert sorted(i for p in agg.partitions for i in p.indexes) == list(range(len(blobs)))
    ref = ptth.Aggregator(template)
    for p in reference_partials(template, blobs, weights, agg.partitions):
        ref.merge(p)
    assert bits(agg) == bits(ref)
    assert_close(agg.mean(dtype="float64"), numpy_fedavg(template, deltas, weights))


def _round_tasks(dask_scheduler, tag_of):
    """On the scheduler: state, dependents' states and holders of the round's tasks."""
    return {
        str(k): (ts.state, [d.state for d in ts.dependents], len(ts.who_has or ()))
        for k, ts in dask_scheduler.tasks.items()
        if str(k).startswith(("ptth-fold", "ptth-merge")) and str(k).endswith(tag_of)
    }


def test_merged_partials_are_released_during_the_round(client, round_files, tmp_path):
    """A partial is released as soon as the merge that consumes it has run, not held until
    the round ends (a model's worth of accumulators each). The last fold blocks on a named
    pipe while the rest of the round settles."""
    template, blobs, _, weights, _ = round_files
    paths = write(tmp_path, blobs[:-1])
    fifo = str(tmp_path / "last.ptth")
    os.mkfifo(fifo)
    paths.append(fifo)
    box = {}
    thread = threading.Thread(
        target=lambda: box.update(
            agg=pdask.aggregate(paths, template, weights=weights, client=client, partition_size=2)
        )
    )
    thread.start()
    last = f"ptth-fold-{(len(paths) - 1) // 2}-"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = client.run_on_scheduler(_round_tasks, tag_of="")
        folds = {k: v for k, v in tasks.items() if k.startswith("ptth-fold")}
        blocked = [k for k, v in folds.items() if k.startswith(last) and v[0] == "processing"]
        settled = all(v[0] in ("memory", "released") for k, v in folds.items() if k not in blocked)
        if blocked and settled and len(folds) == (len(paths) + 1) // 2:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # merges that can run (on the worker not blocked) have run
    tasks = client.run_on_scheduler(_round_tasks, tag_of=blocked[0][len(last) :])
    # in memory while every merge that takes it has already run: held for nothing
    stale = [
        k
        for k, (state, dependents, holders) in tasks.items()
        if holders and dependents and all(d in ("memory", "released") for d in dependents)
    ]
    with open(fifo, "wb") as f:
        f.write(blobs[-1])
    thread.join(60)
    assert blocked and stale == [], stale
    assert box["agg"].count == len(blobs)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # releases reach the scheduler after the return
        after = client.run_on_scheduler(_round_tasks, tag_of=blocked[0][len(last) :])
        if all(h == 0 for _, _, h in after.values()):
            break
        time.sleep(0.05)
    assert all(h == 0 for _, _, h in after.values()), after  # nothing of the round is left


def test_the_template_survives_the_death_of_its_only_holder(client):
    """The template is a task's result, not scattered data: when the one worker holding it
    dies, Dask recomputes it for the next fold instead of cancelling the round."""
    rng = np.random.default_rng(5)
    template = make_template(rng)
    a, b = sorted(client.nthreads())
    shared = pdask._share(client, template, "survival")
    assert set(client.who_has(shared)[shared.key]) == {a, b}  # copied to every worker
    client.amm.run_once()  # what Dask's memory manager does every 2 s: one copy is left
    deadline = time.monotonic() + 10
    while len(client.who_has(shared)[shared.key]) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    (holder,) = client.who_has(shared)[shared.key]
    os.kill(worker_pids(client)[holder], signal.SIGKILL)
    other = b if holder == a else a
    blob = ptth.dumps({k: np.ones_like(v) for k, v in template.items()})
    cfg = pdask._Config({}, {"kind": "delta"}, 8, pdask._file_limit(template))
    fut = client.submit(
        pdask._fold_list, shared, cfg, 0, [0], [None], [blob], [2.0], workers=[other], pure=False
    )
    partial, [(info, rejected)] = fut.result(timeout=60)
    assert rejected == [] and info.worker == other and partial.count == 1
    client.wait_for_workers(2, timeout=60)


def test_workers_on_the_pure_engine_give_the_same_bits(round_files):
    """Workers started with PTTH_BACKEND=python (NumPy engine) against this process's native
    engine: the partial states are engine-neutral and the sums identical."""
    template, blobs, _, weights, paths = round_files
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"PTTH_BACKEND": "python"},
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        assert set(c.run(lambda: ptth.backend).values()) == {"python"}
        agg = pdask.aggregate(
            paths, template, weights=weights, client=c, order="partition", partition_size=6
        )
    ref = ptth.Aggregator(template)
    for p in reference_partials(template, blobs, weights, agg.partitions):
        ref.merge(p)
    assert ptth.backend == "native"
    assert bits(agg) == bits(ref)
