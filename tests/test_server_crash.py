"""kill -9 of a real ptth serve process at several points, restart on the same --state."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

import numpy as np
import pytest

import ptth
from test_server import (  # skips this module too when the server extra is missing
    ServerProcess,
    assert_model_equal,
    fedavg,
    httpx,
    make_template,
    make_uploads,
    post_all,
)


@pytest.fixture
def template():
    return make_template()


@pytest.fixture
def model_file(tmp_path, template):
    path = tmp_path / "model.ptth"
    ptth.dump(template, path)
    return path


async def _post_and_kill(srv: ServerProcess, uploads, kill_after: int):
    """Post all uploads concurrently; kill -9 the server once `kill_after` answers are in."""
    acked: dict = {}
    answered = asyncio.Event()

    async def killer():
        await answered.wait()
        srv.kill9()

    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:

        async def one(u):
            try:
                r = await client.post("/v1/updates", **u.request())
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                acked[u.key] = r.json()
            if len(acked) >= kill_after:
                answered.set()

        k = asyncio.create_task(killer())
        await asyncio.gather(*(one(u) for u in uploads))
        answered.set()
        await k
    return acked


def test_kill9_with_uploads_in_flight_loses_no_acknowledged_update(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    try:
        uploads = make_uploads(template, 40, seed=11)
        acked = asyncio.run(_post_and_kill(srv, uploads, kill_after=12))
        assert len(acked) >= 12  # usually fewer than 40: the rest were in flight
        srv.start()
        after = srv.status()["accepted"]
        # Every acknowledged update is there; at most the unanswered ones in flight were added.
        assert len(acked) <= after <= 40
        results = asyncio.run(post_all(srv.url, [u for u in uploads if u.key not in acked]))
        assert all(s == 200 for s, _ in results.values()), results
        dups = sum(r["duplicate"] for _, r in results.values())
        # The retries that were committed before the kill, and only those, are duplicates.
        assert dups == after - len(acked)
        assert srv.status()["accepted"] == 40
        assert srv.close_round().status_code == 200
        assert_model_equal(srv.model_now()[1], fedavg(template, uploads))
    finally:
        srv.stop()


def test_kill9_right_after_acknowledgements(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    try:
        uploads = make_uploads(template, 7, seed=12)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for u in uploads:
                assert c.post("/v1/updates", **u.request()).status_code == 200
        srv.kill9()  # immediately after the last 200
        srv.start()
        assert srv.status()["accepted"] == 7
        assert "7 updates replayed" in srv.log()
        assert srv.close_round().status_code == 200
        assert_model_equal(srv.model_now()[1], fedavg(template, uploads))
    finally:
        srv.stop()


def test_kill9_across_checkpoints_and_round_closes(tmp_path, model_file, template):
    # A checkpoint every few updates, so kills land before, during and after them.
    srv = ServerProcess(tmp_path, model_file, "--checkpoint-bytes", "30000").start()
    try:
        base = template
        for rnd in (1, 2, 3):
            uploads = make_uploads(base, 18, seed=20 + rnd, prefix=f"r{rnd}")
            acked = asyncio.run(_post_and_kill(srv, uploads, kill_after=4 + 3 * rnd))
            srv.start()
            assert srv.status()["round"] == rnd
            results = asyncio.run(post_all(srv.url, [u for u in uploads if u.key not in acked]))
            assert all(s == 200 for s, _ in results.values())
            assert srv.status()["accepted"] == 18
            # Kill while the round closes: afterwards it is either closed or still open.
            closer = threading.Thread(target=lambda: _quiet(srv.close_round))
            closer.start()
            time.sleep(0.02 * rnd)
            srv.kill9()
            closer.join()
            srv.start()
            st = srv.status()
            if st["round"] == rnd:
                assert st["accepted"] == 18
                assert srv.close_round().status_code == 200
            assert srv.status()["round"] == rnd + 1
            got_round, model = srv.model_now()
            assert got_round == rnd + 1
            want = fedavg(base, uploads)
            assert_model_equal(model, want)
            base = want
        assert len(list(srv.state.glob("checkpoint-*.ckpt"))) == 1
    finally:
        srv.stop()


def _quiet(call):
    try:
        call()
    except httpx.HTTPError:
        pass


def _segments(state):
    return sorted(state.glob("wal-*.log"))


def test_torn_log_tail_is_truncated_and_reported(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    try:
        uploads = make_uploads(template, 4, seed=30)
        asyncio.run(post_all(srv.url, uploads))
        srv.kill9()
        wal = _segments(srv.state)[-1]
        good_size = wal.stat().st_size
        blob = ptth.dumps({"head.bias": np.ones(16, np.float32)})
        meta = b'{"key":"torn"}'
        # An entry cut short: the header promises more body than the file holds.
        with open(wal, "ab") as f:
            f.write(struct.pack(">4sIQI", b"PWAL", len(meta), len(blob), 0) + meta + blob[:20])
        srv.start()
        assert srv.status()["accepted"] == 4
        assert "torn tail" in srv.log()
        assert wal.stat().st_size == good_size
        # A whole last entry whose checksum does not match is a torn tail too.
        srv.kill9()
        with open(wal, "ab") as f:
            f.write(struct.pack(">4sIQI", b"PWAL", len(meta), len(blob), 12345) + meta + blob)
        srv.start()
        assert srv.status()["accepted"] == 4 and wal.stat().st_size == good_size
        assert srv.close_round().status_code == 200
        assert_model_equal(srv.model_now()[1], fedavg(template, uploads))
    finally:
        srv.stop()


def test_corruption_inside_the_log_refuses_to_start(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    asyncio.run(post_all(srv.url, make_uploads(template, 3, seed=31)))
    srv.kill9()
    wal = _segments(srv.state)[-1]
    data = bytearray(wal.read_bytes())
    data[200] ^= 0x40  # inside the first entry, with two entries after it
    wal.write_bytes(bytes(data))
    code, log = srv.run_to_exit()
    assert code == 1
    assert "refusing to start" in log and "checksum mismatch" in log and wal.name in log


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_checkpoint_refuses_to_start(tmp_path, model_file, template, damage):
    srv = ServerProcess(tmp_path, model_file).start()
    asyncio.run(post_all(srv.url, make_uploads(template, 3, seed=32)))
    assert srv.close_round().status_code == 200  # writes the round-2 checkpoint
    srv.stop()
    (ckpt,) = srv.state.glob("checkpoint-*.ckpt")
    data = bytearray(ckpt.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) - 100 :]
    ckpt.write_bytes(bytes(data))
    code, log = srv.run_to_exit()
    assert code == 1 and "refusing to start" in log and ckpt.name in log
    assert ("checksum mismatch" if damage == "flip" else "size does not match") in log


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs: a real disk that fills up (needs root, as CI has)."""
    import os
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_stops_acknowledging_and_loses_nothing(
    tmp_path, model_file, template, tiny_disk
):
    srv = ServerProcess(tmp_path, model_file, state=tiny_disk / "state").start()
    try:
        uploads = make_uploads(template, 60, seed=50)
        codes = {}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for u in uploads:
                r = c.post("/v1/updates", **u.request())
                codes[u.key] = (r.status_code, r.json().get("reason"))
        acked = [k for k, (s, _) in codes.items() if s == 200]
        refused = [k for k, (s, _) in codes.items() if s != 200]
        assert acked and refused, codes
        assert all(codes[k] == (503, "state_failed") for k in refused)
        # Once failed, nothing more is acknowledged, even a small update.
        first_refused = list(codes).index(refused[0])
        assert all(codes[k][0] != 200 for k in list(codes)[first_refused:])
        st = srv.status()
        assert st["failed"] is True
        srv.kill9()
        srv.start()  # the log holds exactly the acknowledged updates (a torn tail is cut)
        assert srv.status()["accepted"] == len(acked)
    finally:
        srv.stop()
