"""Memory bounds measured in a fresh process (the native core's allocations are
invisible to tracemalloc): streaming, decompression bombs, lying lengths."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from zlib_ng import zlib_ng

from blobs import header, record, u32

PROBE = Path(__file__).with_name("memprobe.py")
MiB = 1 << 20
READ_CHUNK = MiB  # ptth._source.READ_CHUNK
RECORD = 2 * MiB
N_RECORDS = 100  # ~200 MB file

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"
)


def probe(backend, scenario, path, max_size=None):
    args = [sys.executable, str(PROBE), backend.backend, scenario, str(path)]
    if max_size is not None:
        args.append(str(max_size))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """A ~200 MB plain file of 2 MB float32 records and its zlib-compressed twin."""
    d = tmp_path_factory.mktemp("big")
    payload = np.random.default_rng(0).standard_normal(RECORD // 4).astype("<f4")
    payload[::7] = 0  # somewhat compressible
    raw = payload.tobytes()
    plain, packed = d / "big.ptth", d / "big.ptth.z"
    c = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15)
    with open(plain, "wb") as fp, open(packed, "wb") as fz:
        for part in [header(N_RECORDS)] + [
            record(f"layer{i}.weight", [RECORD // 4], 0, raw) for i in range(N_RECORDS)
        ]:
            fp.write(part)
            fz.write(c.compress(part))
        fz.write(c.flush())
    return {"plain": plain, "zlib": packed}


@pytest.mark.parametrize("kind", ["plain", "zlib"])
def test_iter_load_memory_is_one_chunk_and_one_record(backend, big_files, kind):
    path = big_files[kind]
    r = probe(backend, "iter_load", path)
    assert r["reason"] is None and r["records"] == N_RECORDS
    bound = READ_CHUNK + RECORD + 16 * MiB
    assert r["hwm_growth"] < bound, f"{r['hwm_growth'] / MiB:.1f} MiB for a {N_RECORDS * 2} MB file"


@pytest.fixture(scope="module")
def bomb_file(tmp_path_factory):
    """Header claiming a 1e9-byte record, then 1e9 zeros, deflated to ~1 MB."""
    n = 250_000_000
    c = zlib_ng.compressobj(6, zlib_ng.DEFLATED, 15)
    path = tmp_path_factory.mktemp("bomb") / "bomb.ptth.z"
    with open(path, "wb") as f:
        f.write(c.compress(header(1) + record("w", [n], 0, b"", data_len=4 * n)))
        zeros = bytes(MiB)
        for _ in range(4 * n // MiB):
            f.write(c.compress(zeros))
        f.write(c.compress(bytes(4 * n % MiB)))
        f.write(c.flush())
    return path


@pytest.mark.parametrize("scenario", ["loads", "feed"])
def test_bomb_allocates_nothing_near_the_claim(backend, bomb_file, scenario):
    r = probe(backend, scenario, bomb_file)
    assert r["reason"] == "too_large"
    assert r["hwm_growth"] < 32 * MiB
    assert r["peak_growth"] < 256 * MiB


def test_bomb_under_a_raised_limit_is_still_bounded_by_it(backend, bomb_file):
    r = probe(backend, "loads", bomb_file, max_size=100 * MiB)
    assert r["reason"] == "too_large" and r["peak_growth"] < 256 * MiB


@pytest.fixture(scope="module")
def lying_files(tmp_path_factory):
    """A record claiming a 4 GB payload followed by 64 KiB of it; plain and zlib."""
    d = tmp_path_factory.mktemp("lying")
    data = header(1) + record("p", [0x3FFFFFFF], 0, b"", data_len=0xFFFFFFFC) + bytes(64 * 1024)
    (d / "plain").write_bytes(data)
    c = zlib_ng.compressobj(6, zlib_ng.DEFLATED, 15)
    # sync-flushed, not finished: all 64 KiB come out, the stream stays open
    (d / "zlib").write_bytes(c.compress(data) + c.flush(zlib_ng.Z_SYNC_FLUSH))
    return d


@pytest.mark.parametrize(
    "scenario, kind", [("feed", "plain"), ("feed", "zlib"), ("loads", "zlib"), ("loads", "plain")]
)
def test_lying_payload_length_reserves_nothing(backend, lying_files, scenario, kind):
    # max_size raised so the claim passes the limit: memory must follow the bytes that arrived
    r = probe(backend, scenario, lying_files / kind, max_size=1 << 40)
    if scenario == "loads":
        assert r["reason"] == ("truncated" if kind == "plain" else "stream_truncated")
    else:
        assert r["reason"] is None
    assert r["hwm_growth"] < 32 * MiB
    assert r["peak_growth"] < 512 * MiB, f"{r['peak_growth'] / MiB:.0f} MiB reserved"
    assert r["size_growth"] < 512 * MiB


def test_claim_of_4e9_records_in_fresh_process(backend, tmp_path):
    path = tmp_path / "count.ptth"
    path.write_bytes(header(4_000_000_000) + u32(1) + b"a")
    for scenario in ("loads", "feed"):
        r = probe(backend, scenario, path)
        assert r["reason"] == ("truncated" if scenario == "loads" else None)
        assert r["hwm_growth"] < 8 * MiB and r["peak_growth"] < 64 * MiB
