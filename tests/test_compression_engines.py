"""Compressed output and whole-buffer inflate: standard streams, threads, engines, bombs.

docs/compression.md, "Compressed output": compress()/dumps(compress=) write one
standard zlib / gzip / raw DEFLATE stream in 1 MiB blocks whose bytes do not
depend on `threads`; the fallback writes the same bytes; the stdlib reads
them and ptth reads the stdlib's. Whole-buffer inflate (libdeflate) gives the
streaming path's result or hands over to it for the exact error.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from zlib_ng import zlib_ng

from blobs import WBITS, WRAPPERS, check_arg_error, check_error, decode_chunks, header, record

BLOCK = 1 << 20


def _float_payloads():
    """float16 and float32 deltas and float32 weights, as PTTH blobs (about 1.2-2.5 MB each)."""
    import ptth as _pure  # the public API: the engine does not change the blob

    rng = np.random.default_rng(7)
    w = {
        f"l{i}.weight": rng.standard_normal((300, 512), dtype=np.float32) * np.float32(0.05)
        for i in range(4)
    }
    d32 = {
        k: rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3) for k, v in w.items()
    }
    return {
        "f16 delta": _pure.dumps(d32, dtype="float16"),
        "f32 delta": _pure.dumps(d32),
        "weights": _pure.dumps(w),
    }


@pytest.fixture(scope="module")
def payloads():
    return _float_payloads()


@pytest.fixture(scope="module")
def inputs(payloads):
    rng = np.random.default_rng(3)
    return {
        "empty": b"",
        "one byte": b"x",
        "text": b"".join(b"federated %d round %d\n" % (i, i % 7) for i in range(20_000)),
        "low entropy, 2.3 blocks": rng.integers(0, 4, 2 * BLOCK + BLOCK // 3, np.uint8).tobytes(),
        "random, 1 block + 1": rng.bytes(BLOCK + 1),
        "zeros, 3 blocks": bytes(3 * BLOCK),
        "f16 delta": payloads["f16 delta"],
    }


def _engine(native):
    return native.build_info().get("deflate_engine")


# ---- the stdlib reads ptth's streams --------------------------------------------


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stdlib_reads_every_level(backend, inputs, wrapper):
    for name, data in inputs.items():
        for level in range(10):
            z = backend.compress(data, level, wrapper)
            assert zlib.decompress(z, WBITS[wrapper]) == data, (name, level)
            if wrapper == "gzip":
                assert gzip.decompress(z) == data, (name, level)
                with gzip.GzipFile(fileobj=io.BytesIO(z)) as f:
                    assert f.read() == data
            assert backend.decompress(z) == data, (name, level)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stdlib_reads_in_every_chunking(backend, inputs, wrapper):
    data = inputs["low entropy, 2.3 blocks"]
    for level in (0, 1, 6, 9):
        z = backend.compress(data, level, wrapper, threads=2)
        for step in (1 << 20, 65_536, 4_099, 997):
            d = zlib.decompressobj(WBITS[wrapper])
            got = (
                b"".join(d.decompress(z[i : i + step]) for i in range(0, len(z), step)) + d.flush()
            )
            assert got == data and d.eof and not d.unused_data, (level, step)
    small = backend.compress(inputs["text"][:3000], 6, wrapper)
    d = zlib.decompressobj(WBITS[wrapper])  # byte by byte
    assert (
        b"".join(d.decompress(small[i : i + 1]) for i in range(len(small))) == inputs["text"][:3000]
    )


def test_headers_follow_zlib(backend):
    for level, flg in [(0, 0x01), (1, 0x01), (2, 0x5E), (5, 0x5E), (6, 0x9C), (7, 0xDA), (9, 0xDA)]:
        assert backend.compress(b"abc", level, "zlib")[:2] == bytes([0x78, flg])
    for level, xfl in [(0, 4), (1, 4), (6, 0), (9, 2)]:
        z = backend.compress(b"abc", level, "gzip")
        assert z[:10] == bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, xfl, 3])


def test_blocks_are_joined_by_sync_flushes(backend, inputs):
    """pigz's layout: each block after the first is primed with the 32 KiB before it."""
    data = inputs["low entropy, 2.3 blocks"]
    raw = backend.compress(data, 6, "deflate")
    # a sync flush ends every block but the last: an empty stored block, byte-aligned
    assert raw.count(b"\x00\x00\xff\xff") >= len(range(0, len(data), BLOCK)) - 1
    # the stream stops cleanly at each block end: a decoder fed a prefix up to a
    # marker has produced exactly the blocks before it
    d = zlib.decompressobj(-15)
    cut = raw.index(b"\x00\x00\xff\xff") + 4
    assert len(d.decompress(raw[:cut])) % BLOCK == 0


# ---- ptth reads the stdlib's streams ---------------------------------------------


def _stdlib_streams(data):
    yield "zlib.compress 0..9", [zlib.compress(data, lv) for lv in range(10)]
    yield "gzip.compress", [gzip.compress(data, mtime=0), gzip.compress(data, 1, mtime=5)]
    for wbits in (15, 31, -15):
        c = zlib.compressobj(6, zlib.DEFLATED, wbits)
        parts = [
            c.compress(data[:1000]),
            c.flush(zlib.Z_SYNC_FLUSH),
            c.compress(data[1000:]),
            c.flush(zlib.Z_FULL_FLUSH),
            c.flush(),
        ]
        yield f"compressobj wbits {wbits} with flushes", [b"".join(parts)]
    c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
    yield "filtered", [c.compress(data) + c.flush()]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", filename="update.ptth", mtime=1) as g:
        g.write(data)
    yield "GzipFile with FNAME", [buf.getvalue()]


def test_ptth_reads_stdlib_streams(backend):
    import ptth as _pure  # the public API: the engine does not change the blob

    tensors = {
        "w": np.arange(300_000, dtype=np.float32) * np.float32(1e-3),
        "b": np.ones(7, np.float16),
    }
    plain = _pure.dumps(tensors)
    for what, streams in _stdlib_streams(plain):
        for z in streams:
            assert backend.decompress(z) == plain, what
            got = backend.loads(z)
            assert got.keys() == tensors.keys(), what
            assert all(np.array_equal(got[k], v) for k, v in tensors.items()), what
            for step in (len(z), 7919, 3):
                if step == 3 and len(z) > 40_000:
                    continue
                out = dict(
                    decode_chunks(backend, [z[i : i + step] for i in range(0, len(z), step)])
                )
                assert np.array_equal(out["w"], tensors["w"]), (what, step)


# ---- threads -----------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_threads_give_identical_bytes(backend, inputs, wrapper):
    for name, data in inputs.items():
        for level in (0, 1, 5, 6, 9):
            one = backend.compress(data, level, wrapper, threads=1)
            for threads in (2, 0, 3, 16):
                assert backend.compress(data, level, wrapper, threads=threads) == one, (
                    name,
                    level,
                    threads,
                )


def test_dumps_threads(backend):
    rng = np.random.default_rng(11)
    t = {"a": rng.standard_normal(700_000, dtype=np.float32), "b": np.zeros(3, np.int32)}
    want = backend.compress(backend.dumps(t, dtype="float16"), 6, "gzip")
    for threads in (1, 2, 0):
        assert (
            backend.dumps(t, dtype="float16", compress=6, wrapper="gzip", threads=threads) == want
        )


@pytest.mark.parametrize("bad", [-1, 1 << 17, 1.5, True, "2", None])
def test_threads_argument(backend, bad):
    exc = TypeError if not isinstance(bad, int) or isinstance(bad, bool) else ValueError
    check_arg_error(backend.compress, b"abc", 6, "zlib", threads=bad, exc=exc, names="threads")
    check_arg_error(
        backend.dumps,
        {"a": np.ones(2, np.float32)},
        compress=6,
        threads=bad,
        exc=exc,
        names="threads",
    )


# ---- the engines write the same bytes -------------------------------------------------


def test_native_and_fallback_identical_everywhere(native, pure, inputs):
    if _engine(native) != "isal":
        pytest.skip("this core deflates with zlib-ng (no ISA-L): bytes differ from the fallback's")
    wrong = []
    for name, data in inputs.items():
        for wrapper in WRAPPERS:
            for level in range(10):
                want = pure.compress(data, level, wrapper)
                for threads in (1, 2, 0):
                    if native.compress(data, level, wrapper, threads=threads) != want:
                        wrong.append((name, wrapper, level, threads))
    assert not wrong


def test_build_info_names_the_engines(native):
    info = native.build_info()
    assert info["deflate_engine"] in ("isal", "zlib-ng")
    assert info["inflate_engine"] in ("libdeflate", "zlib-ng")
    assert info["deflate_block"] == BLOCK
    if info["deflate_engine"] == "isal":
        import isal

        # the fallback's module carries the same ISA-L: the reason the bytes agree
        assert info["isal"] == isal.ISAL_VERSION
        assert info["isal_origin"] in ("installed", "bundled-build")
    else:
        assert info["isal_origin"].startswith("off")
    if info["inflate_engine"] == "libdeflate":
        major, minor = (int(x) for x in info["libdeflate"].split(".")[:2])
        assert (major, minor) >= (1, 14)


# ---- the level contract: ratio on float payloads -------------------------------------


@pytest.mark.parametrize("name", ["f16 delta", "f32 delta", "weights"])
def test_levels_keep_zlib_ng_level6_ratio_on_floats(backend, payloads, name):
    data = payloads[name]
    ref = len(zlib_ng.compress(data, 6))
    for level in range(1, 10):
        got = len(backend.compress(data, level, "zlib"))
        # docs/compression.md: levels 1..9 keep zlib-ng level 6's ratio within 0.5%
        assert got <= ref * 1.005, (level, got, ref)
    # level 0: stored pieces of at most 65535 bytes within each block, 5 bytes each
    pieces = sum(-(-len(data[i : i + BLOCK]) // 65535) for i in range(0, len(data), BLOCK))
    assert len(backend.compress(data, 0, "zlib")) == len(data) + 5 * pieces + 6


# ---- whole-buffer inflate: same result or the streaming path's error ---------------


@pytest.fixture(scope="module")
def big_zlib(payloads):
    return payloads["f16 delta"], zlib_ng.compress(payloads["f16 delta"], 6)


def test_whole_buffer_errors_match_streaming(native, pure, big_zlib):
    from blobs import describe, outcome

    plain, z = big_zlib
    cases = {
        "ok": z,
        "truncated": z[: len(z) // 2],
        "no trailer": z[:-4],
        "bad checksum": z[:-1] + bytes([z[-1] ^ 1]),
        "trailing": z + b"\x00",
        "second stream": z + z,
    }
    flipped = bytearray(z)
    flipped[len(z) // 3] ^= 0x40
    cases["flipped bit"] = bytes(flipped)
    for what, data in cases.items():
        for fn in ("loads", "decompress"):
            a = describe(outcome(getattr(native, fn), data))
            b = describe(outcome(getattr(pure, fn), data))
            assert a == b, (what, fn)
        for m in (len(plain) - 1, len(plain), 1000):
            a = describe(outcome(native.loads, data, max_size=m))
            b = describe(outcome(pure.loads, data, max_size=m))
            assert a == b, (what, m)
            a = describe(outcome(native.decompress, data, max_size=m))
            b = describe(outcome(pure.decompress, data, max_size=m))
            assert a == b, (what, m)


def test_small_window_and_header_crc_decode(backend):
    """Headers the whole-buffer path leaves to zlib-ng still decode (or fail) as before."""
    plain = header(1) + record("w", [3], 0, np.arange(3, dtype="<f4").tobytes())
    c = zlib.compressobj(6, zlib.DEFLATED, 9)  # CINFO 1: a 512-byte window
    z = c.compress(plain) + c.flush()
    assert z[0] >> 4 == 1
    assert backend.decompress(z) == plain and list(backend.loads(z)) == ["w"]
    g = bytearray(gzip.compress(plain, mtime=0))
    g[3] |= 0x02  # FHCRC, with its CRC-16 after the 10-byte header
    hcrc = zlib.crc32(bytes(g[:10])) & 0xFFFF
    fh = bytes(g[:10]) + hcrc.to_bytes(2, "little") + bytes(g[10:])
    assert backend.decompress(fh) == plain
    bad = bytes(g[:10]) + (hcrc ^ 1).to_bytes(2, "little") + bytes(g[10:])
    check_error(backend.decompress, bad, reason="stream_corrupt")


# ---- bombs -------------------------------------------------------------------------

_BOMB_CHILD = textwrap.dedent("""
    import struct, sys
    from zlib_ng import zlib_ng
    import ptth
    kind, limit, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    def rec(name, numel, data_len):  # a float32 record's header, payload to follow
        return (struct.pack(">I", len(name)) + name + struct.pack(">III", 1, numel, 0)
                + struct.pack(">I", data_len))
    head = b"PTTH" + struct.pack(">II", 1, 2 if first else 1)
    if first:  # a real first record, then the claim
        head += rec(b"a", first // 4, first) + bytes(first)
    head += rec(b"w", 300_000_000, 1_200_000_000)
    c = zlib_ng.compressobj(6)
    zeros = bytes(1 << 20)
    # 256 MiB of zeros behind the claim: the stream outgrows max_size (64 MiB) 4x
    parts = [c.compress(head)] + [c.compress(zeros) for _ in range(256)] + [c.flush()]
    data = b"".join(parts)
    ptth.loads(ptth.dumps({"w": [1.0]}, compress=6))  # warm up
    def hwm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = hwm()
    try:
        (ptth.loads if kind == "loads" else ptth.decompress)(data, max_size=limit)
        print("accepted")
    except ptth.PTTHError as e:
        print(e.reason, e.offset, hwm() - before, len(head))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "kind, first_record", [("decompress", 0), ("loads", 0), ("loads", 300_000)]
)
def test_bomb_touches_no_more_than_max_size(kind, first_record):
    """256 MiB of zeros in about 250 KB: fails with too_large, peak RSS within max_size."""
    limit = 64 << 20
    out = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, kind, str(limit), str(first_record)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    reason, offset, grew, payload_at = out.stdout.split()
    assert reason == "too_large"
    if kind == "loads":
        assert int(offset) == int(payload_at)  # the payload's start, as the streaming path says
    # beside the small input, at most max_size was touched (a loads bomb: far less)
    assert int(grew) <= limit + (8 << 20), int(grew)
    if kind == "loads":
        assert int(grew) < 24 << 20, int(grew)
