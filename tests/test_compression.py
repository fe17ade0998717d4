"""Compressed input: wrappers, stream errors and their precedence, max_size, bombs."""

import gzip
import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from zlib_ng import zlib_ng

from blobs import (
    WBITS,
    WRAPPERS,
    assert_same_tensors,
    blob,
    check_error,
    decode_chunks,
    header,
    items,
    record,
    sample_tensors,
    waiting_item,
)


def stored(data: bytes, final: bool) -> bytes:
    """One raw DEFLATE stored block (RFC 1951 3.2.4)."""
    return bytes([int(final)]) + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def wrap(raw: bytes, plain: bytes, wrapper: str) -> bytes:
    """Put hand-made raw DEFLATE into a zlib or gzip container (checksums of ``plain``)."""
    if wrapper == "deflate":
        return raw
    if wrapper == "zlib":
        return b"\x78\x01" + raw + struct.pack(">I", zlib.adler32(plain))
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
        + raw
        + struct.pack("<II", zlib.crc32(plain), len(plain) & 0xFFFFFFFF)
    )


@pytest.fixture(scope="module")
def plain():
    import ptth

    return ptth.dumps(sample_tensors())


# ---- detection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "head, want",
    [
        (b"PTTH\x00\x00\x00\x01", "none"),
        (b"PTT", "none"),
        (b"PT", "none"),
        (b"P", "none"),
        (b"\x78\x01\x00\x00", "zlib"),
        (b"\x78\x5e\x00\x00", "zlib"),
        (b"\x78\x9c\x00\x00", "zlib"),
        (b"\x78\xda\x00\x00", "zlib"),
        (b"\x08\x1d\x00\x00", "zlib"),
        (b"\x48\x0d\x00\x00", "zlib"),
        (b"\x78\xbb\x00\x00", "zlib"),  # FDICT set: still zlib (then stream_corrupt)
        (b"\x78\x9d\x00\x00", "deflate"),  # check bits wrong
        (b"\x88\x98\x00\x00", "deflate"),  # CINFO 8 > 7 though (CMF*256+FLG) % 31 == 0
        (b"\x79\x9c\x00\x00", "deflate"),  # CM 9
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x1f\x8b\x07\x00", "deflate"),
        (b"\x1f\x8b", "deflate"),
        (b"PTTX", "deflate"),
        (b"ptth", "deflate"),
        (b"\x00\x00\x00\x00", "deflate"),
        (b"\xff", "deflate"),
        (b"\x78", "deflate"),
    ],
)
def test_detect_wrapper_table(backend, head, want):
    assert backend.detect_wrapper(head) == want
    if len(head) >= 4:  # only the first bytes matter
        assert backend.detect_wrapper(bytearray(head) + b"\xaa" * 8) == want
        assert backend.detect_wrapper(np.frombuffer(head + b"\x00", np.uint8)) == want


def test_detect_wrapper_every_first_pair(backend):
    for cmf in range(256):
        for flg in range(256):
            head = bytes([cmf, flg, 8, 0])
            if cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0:
                want = "zlib"
            elif head[:3] == b"\x1f\x8b\x08":
                want = "gzip"
            else:
                want = "deflate"
            assert backend.detect_wrapper(head) == want, head.hex()


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_detect_wrapper_of_own_output(backend, wrapper, plain):
    assert backend.detect_wrapper(backend.compress(plain, 6, wrapper)) == wrapper
    assert backend.detect_wrapper(plain) == "none"


# ---- other writers ------------------------------------------------------------


def test_foreign_compressors_decode(backend, plain):
    want = backend.loads(plain)
    zl = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw, as Apple's Compression framework
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", filename="update.ptth", mtime=1) as g:
        g.write(plain)  # FNAME and mtime set
    for data in (
        zlib.compress(plain, 1),
        zlib.compress(plain, 9),
        gzip.compress(plain),
        zl.compress(plain) + zl.flush(),
        buf.getvalue(),
        zlib_ng.compress(plain, 6, -15),
    ):
        assert_same_tensors(backend.loads(data), want)
        assert backend.decompress(data) == plain


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_hand_made_stored_blocks_decode(backend, wrapper, plain):
    raw = stored(plain[:7], False) + stored(b"", False) + stored(plain[7:], True)
    assert_same_tensors(backend.loads(wrap(raw, plain, wrapper)), backend.loads(plain))


# ---- stream errors -------------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["zlib", "gzip"])  # raw DEFLATE has no checksum
def test_bad_checksum(backend, wrapper, plain):
    z = backend.compress(plain, 6, wrapper)
    # zlib: Adler-32; gzip: CRC-32 then ISIZE ("incorrect length check")
    trailer = range(len(z) - 4, len(z)) if wrapper == "zlib" else range(len(z) - 8, len(z))
    for i in trailer:
        bad = bytearray(z)
        bad[i] ^= 0x10
        check_error(
            backend.loads, bytes(bad), reason="bad_checksum", offset=len(plain), record=None
        )
        check_error(backend.decompress, bytes(bad), reason="bad_checksum")
        check_error(
            decode_chunks,
            backend,
            [bytes(bad)],
            reason="bad_checksum",
            offset=len(plain),
            record=None,
        )


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stream_truncated_every_prefix(backend, wrapper, plain):
    z = backend.compress(plain, 6, wrapper)
    first = {"zlib": 2, "gzip": 3, "deflate": 1}[wrapper]  # shorter is detected as raw
    for n in range(first, len(z)):
        produced = len(zlib_ng.decompressobj(WBITS[wrapper]).decompress(z[:n]))
        # a raw stream cut before it yields the magic cannot be told from non-PTTH input
        reason = "not_ptth" if wrapper == "deflate" and produced < 4 else "stream_truncated"
        check_error(
            backend.loads, z[:n], reason=reason, offset=0 if reason == "not_ptth" else produced
        )
        check_error(backend.decompress, z[:n], reason="stream_truncated")


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stream_error_names_the_record_being_read(backend, wrapper, plain):
    # DEVELOPERS.md: record is the record being read; None only in the header / after the end
    z = backend.compress(plain, 0, wrapper)  # stored: output grows with input
    for n in (len(z) // 3, len(z) // 2, len(z) - 30):
        produced = len(zlib_ng.decompressobj(WBITS[wrapper]).decompress(z[:n]))
        assert 12 < produced < len(plain)
        _, rec = waiting_item(plain, produced)
        check_error(backend.loads, z[:n], reason="stream_truncated", offset=produced, record=rec)
    corrupt = wrap(stored(plain[:40], False) + b"\x01\x05\x00\x00\x00" + plain[40:], plain, wrapper)
    check_error(backend.loads, corrupt, reason="stream_corrupt", offset=40, record=0)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stream_trailing(backend, wrapper, plain):
    z = backend.compress(plain, 6, wrapper)
    for extra in (b"\x00", b"PTTH", z):
        check_error(
            backend.loads, z + extra, reason="stream_trailing", offset=len(plain), record=None
        )
        check_error(backend.decompress, z + extra, reason="stream_trailing")
        check_error(
            decode_chunks,
            backend,
            [z, extra],
            reason="stream_trailing",
            offset=len(plain),
            record=None,
        )


def test_second_gzip_member_is_trailing(backend, plain):
    data = gzip.compress(plain) + gzip.compress(b"")
    check_error(backend.loads, data, reason="stream_trailing", offset=len(plain))
    check_error(backend.decompress, data, reason="stream_trailing")


@pytest.mark.parametrize(
    "data",
    [
        b"\x78\x9c\xff\xff\xff\xff",  # zlib, invalid block type 3
        b"\xff\xff\xff\xff",  # raw, invalid block type 3
        b"\x07\x00\x00\x00",  # raw, invalid block type 3 (not final)
        b"\x78\xbb\x00\x00\x00\x01\x03\x00",  # zlib asking for a preset dictionary
        b"\x1f\x8b\x08\xe0\x00\x00\x00\x00\x00\x03",  # gzip, reserved flag bits
        b"\x01\x04\x00\x00\x00PTTH",  # raw, stored block with bad NLEN
    ],
    ids=[
        "zlib-btype3",
        "raw-btype3",
        "raw-btype3-nonfinal",
        "zlib-fdict",
        "gzip-flags",
        "raw-nlen",
    ],
)
def test_stream_corrupt_at_start(backend, data):
    # Input taken for raw DEFLATE that breaks before the magic is not a PTTH stream at all.
    reason = "not_ptth" if backend.detect_wrapper(data) == "deflate" else "stream_corrupt"
    err = check_error(backend.loads, data, reason=reason, offset=0, record=None)
    if reason == "not_ptth":
        assert data[:4].hex(" ") in err.message
    check_error(backend.decompress, data, reason="stream_corrupt")
    check_error(decode_chunks, backend, [data], reason=reason, offset=0)


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x14\x00\x00\x00",
        b"<!DOCTYPE html><html>",
        b"hello, world\n",
        b'{"weights_data": "UFRUSA=="}',
        b"\x00\x00\x00\x00",
    ],
)
def test_input_that_is_not_ptth(backend, data):
    err = check_error(backend.loads, data, reason="not_ptth", offset=0, record=None)
    assert data[:4].hex(" ") in err.message
    check_error(decode_chunks, backend, [data[:1], data[1:]], reason="not_ptth", offset=0)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_stream_corrupt_mid_blob(backend, wrapper, plain):
    n = 40
    raw = stored(plain[:n], False) + b"\x01\x05\x00\x00\x00" + plain[n:]  # bad NLEN
    data = wrap(raw, plain, wrapper)
    check_error(backend.loads, data, reason="stream_corrupt", offset=n)
    check_error(
        decode_chunks,
        backend,
        [data[i : i + 3] for i in range(0, len(data), 3)],
        reason="stream_corrupt",
        offset=n,
    )
    check_error(backend.decompress, data, reason="stream_corrupt", offset=n)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_ptth_rule_in_inflated_prefix_wins_over_stream_error(backend, wrapper):
    bad_version = header(0, version=2)
    raw = stored(bad_version, False) + b"\xff"  # then an invalid block
    check_error(backend.loads, wrap(raw, bad_version, wrapper), reason="bad_version", offset=4)
    trailing = blob(record("a", [], 0, b"\x00" * 4)) + b"\x00"
    z = bytearray(zlib_ng.compress(trailing, 6, WBITS[wrapper]))
    if wrapper != "deflate":
        z[-1] ^= 0xFF  # bad checksum too
    z += b"junk"  # and bytes after the stream
    check_error(
        backend.loads, bytes(z), reason="trailing_bytes", offset=len(trailing) - 1, record=None
    )


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_early_end_of_stream_with_junk_after_it_is_truncated(backend, wrapper, plain):
    # "When the stream ends: fewer [bytes] than the blob needs are truncated", in stream
    # order, before the junk after the end marker is looked at.
    cut = plain[:100]
    data = zlib_ng.compress(cut, 6, WBITS[wrapper]) + b"\x00junk"
    _, rec = waiting_item(plain, 100)
    check_error(backend.loads, data, reason="truncated", offset=100, record=rec)


def test_forced_wrapper_mismatch(backend, plain):
    z = backend.compress(plain, 6, "zlib")
    check_error(backend.decompress, z, wrapper="gzip", reason="stream_corrupt")
    assert backend.decompress(z, wrapper="zlib") == plain
    assert backend.decompress(backend.compress(plain, 6, "deflate"), wrapper="deflate") == plain
    assert backend.decompress(plain, wrapper="none") == plain
    assert backend.decompress(plain) == plain
    assert isinstance(backend.decompress(bytearray(plain)), bytes)


# ---- max_size -------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_max_size_boundary_every_value(backend, golden, wrapper):
    data = golden["vector3_mixed"]
    z = backend.compress(data, 6, wrapper)
    for m in range(len(data)):
        start, rec = next((s, r) for s, e, r in items(data) if e > m)
        check_error(backend.loads, z, max_size=m, reason="too_large", offset=start, record=rec)
        check_error(
            decode_chunks, backend, [z], max_size=m, reason="too_large", offset=start, record=rec
        )
        check_error(
            decode_chunks, backend, [data], max_size=m, reason="too_large", offset=start, record=rec
        )
        assert backend.loads(data, max_size=m).keys() == {"fc.weight", "fc.bias", "steps"}
        check_error(backend.decompress, z, max_size=m, reason="too_large")
    assert len(backend.loads(z, max_size=len(data))) == 3
    assert backend.decompress(z, max_size=len(data)) == data


def test_default_max_size(backend):
    assert backend.DEFAULT_MAX_SIZE == 512 * 1024 * 1024


# ---- decompression bomb -------------------------------------------------------

BOMB_RECORD = 250_000_000  # float32 elements: a 1e9-byte payload


@pytest.fixture(scope="module")
def bomb():
    """A valid zlib stream: a header claiming a 1e9-byte record, then 1e9 zeros (~1 MB)."""
    head = header(1) + record("w", [BOMB_RECORD], 0, b"", data_len=4 * BOMB_RECORD)
    c = zlib_ng.compressobj(6, zlib_ng.DEFLATED, 15)
    parts = [c.compress(head)]
    zeros = bytes(1 << 20)
    left = 4 * BOMB_RECORD
    while left:
        parts.append(c.compress(zeros[: min(left, len(zeros))]))
        left -= min(left, len(zeros))
    parts.append(c.flush())
    data = b"".join(parts)
    assert len(data) < 2 << 20
    return data, len(head)


def test_bomb_fails_fast_without_allocating(backend, bomb):
    data, payload_at = bomb
    backend.loads(backend.compress(header(0)))  # warm up
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        check_error(backend.loads, data, reason="too_large", offset=payload_at, record=0)
        check_error(
            decode_chunks,
            backend,
            [data[i : i + 65536] for i in range(0, len(data), 65536)],
            reason="too_large",
            offset=payload_at,
            record=0,
        )
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 8 << 20  # one copy of the 1 MB input at most


def test_decompress_bomb_respects_max_size(backend, bomb):
    data, _ = bomb
    tracemalloc.start()
    try:
        check_error(backend.decompress, data, max_size=10 << 20, reason="too_large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20


def test_bomb_with_raised_max_size_is_decoded_then_fails_on_shape(backend):
    # a smaller bomb inside the limit decodes for real: the limit is not a fixed cap
    n = 2_000_000
    head = header(1) + record("w", [n], 0, b"", data_len=4 * n)
    z = zlib_ng.compress(head + bytes(4 * n), 6, 15)
    got = backend.loads(z, max_size=len(head) + 4 * n)
    assert got["w"].shape == (n,) and not got["w"].any()
    check_error(
        backend.loads,
        z,
        max_size=len(head) + 4 * n - 1,
        reason="too_large",
        offset=len(head),
        record=0,
    )
