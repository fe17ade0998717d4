"""Every rule of docs/format.md broken on purpose: reason, offset and record per DEVELOPERS.md."""

import time
import tracemalloc

import numpy as np
import pytest

import ptth
from blobs import WRAPPERS, blob, check_error, field_offsets, header, record, u32, waiting_item

# A valid record 0 so that violations land in record 1 at non-trivial offsets.
R0 = record("a", [2], 0, np.array([1, 2], "<f4").tobytes())
R1_START = 12 + len(R0)
F32x3 = np.array([1, 2, 3], "<f4").tobytes()


def r1_field(field, name_len=1, ndim=1):
    return field_offsets(R1_START, name_len, ndim)[field]


# (id, blob, reason, offset, record); every case is also checked compressed.
CASES = [
    ("bad_version_2", header(0, version=2), "bad_version", 4, None),
    ("bad_version_0", header(1, version=0) + R0, "bad_version", 4, None),
    ("bad_version_max", header(0, version=0xFFFFFFFF), "bad_version", 4, None),
    ("duplicate_name", blob(R0, record("a", [3], 0, F32x3)), "duplicate_name", r1_field("name"), 1),
    (
        "duplicate_empty_name",
        blob(record("", [], 2, u32(0)), record("", [], 2, u32(0))),
        "duplicate_name",
        field_offsets(12 + 16 + 4, 0, 0)["name"],
        1,
    ),
    (
        "ndim_65",
        blob(R0, record("b", [1] * 65, 0, u32(0))),
        "too_many_dims",
        r1_field("ndim", ndim=65),
        1,
    ),
    (
        "ndim_max_u32",
        blob(R0, record("b", [], 0, b"", ndim=0xFFFFFFFF)),
        "too_many_dims",
        r1_field("ndim", ndim=0),
        1,
    ),
    ("dtype_4", blob(R0, record("b", [3], 4, F32x3)), "bad_dtype", r1_field("dtype"), 1),
    (
        "dtype_max_u32",
        blob(R0, record("b", [3], 0xFFFFFFFF, F32x3)),
        "bad_dtype",
        r1_field("dtype"),
        1,
    ),
    (
        "numel_overflows",
        blob(R0, record("b", [0xFFFFFFFF] * 3, 0, b"", data_len=0)),
        "size_overflow",
        r1_field("data_len", ndim=3),
        1,
    ),
    (
        "nbytes_overflows",
        blob(R0, record("b", [0xFFFFFFFF] * 2, 0, b"", data_len=0)),
        "size_overflow",
        r1_field("data_len", ndim=2),
        1,
    ),
    (
        "nbytes_overflows_f16",
        blob(R0, record("b", [0xFFFFFFFF] * 2, 3, b"", data_len=4)),
        "size_overflow",
        r1_field("data_len", ndim=2),
        1,
    ),
    (
        "length_short",
        blob(R0, record("b", [3], 0, F32x3, data_len=11)),
        "length_mismatch",
        r1_field("data_len"),
        1,
    ),
    (
        "length_long",
        blob(R0, record("b", [3], 0, F32x3, data_len=13)),
        "length_mismatch",
        r1_field("data_len"),
        1,
    ),
    (
        "length_huge_claim",
        blob(R0, record("b", [3], 0, b"", data_len=0xFFFFFFFF)),
        "length_mismatch",
        r1_field("data_len"),
        1,
    ),
    (
        "length_wrong_itemsize",
        blob(R0, record("b", [3], 1, F32x3)),
        "length_mismatch",
        r1_field("data_len"),
        1,
    ),
    (
        "length_scalar",
        blob(record("s", [], 0, b"")),
        "length_mismatch",
        field_offsets(12, 1, 0)["data_len"],
        0,
    ),
    (
        "length_zero_dim",
        blob(record("z", [4, 0], 0, F32x3[:4])),
        "length_mismatch",
        field_offsets(12, 1, 2)["data_len"],
        0,
    ),
    ("trailing_byte", blob(R0) + b"\x00", "trailing_bytes", 12 + len(R0), None),
    ("trailing_after_empty", header(0) + b"PTTH", "trailing_bytes", 12, None),
    ("trailing_record", blob(R0, count=0), "trailing_bytes", 12, None),
    (
        "count_too_large",
        blob(R0, record("b", [3], 0, F32x3), count=3),
        "truncated",
        12 + len(R0) + len(record("b", [3], 0, F32x3)),
        2,
    ),
    ("claims_4e9_records", header(4_000_000_000), "truncated", 12, 0),
    ("count_too_large_4e9", blob(R0, count=4_000_000_000), "truncated", R1_START, 1),
]
# name_len 0xFFFFFFFF: the blob ends 3 bytes after that field
_nl = header(2) + R0 + u32(0xFFFFFFFF) + b"xyz"
CASES.append(("name_len_huge_claim", _nl, "truncated", len(_nl), 1))
# a valid record header claiming a 4 GB payload, then 5 bytes of it
_pl = header(1) + record("p", [0x3FFFFFFF], 0, b"", data_len=0xFFFFFFFC) + b"12345"
CASES.append(("payload_huge_claim", _pl, "truncated", len(_pl), 0))
# Compressed and streamed input is bounded by max_size (512 MiB by default) first.
BOUNDED = {
    "name_len_huge_claim": ("too_large", R1_START + 4, 1),
    "payload_huge_claim": ("too_large", len(_pl) - 5, 0),
}

# (bytes, why) names that are not valid UTF-8 for Python's strict codec
BAD_NAMES = [
    (b"\xc0\xaf", "overlong 2-byte"),
    (b"\xc1\xbf", "overlong 2-byte C1"),
    (b"\xe0\x80\xaf", "overlong 3-byte"),
    (b"\xf0\x80\x80\xaf", "overlong 4-byte"),
    (b"\xed\xa0\x80", "high surrogate"),
    (b"\xed\xbf\xbf", "low surrogate"),
    (b"\xf4\x90\x80\x80", "above U+10FFFF"),
    (b"\xf5\x80\x80\x80", "lead byte F5"),
    (b"\xff", "byte FF"),
    (b"\x80", "stray continuation"),
    (b"ab\xbfc", "stray continuation inside"),
    (b"x\xe2\x82", "cut multibyte at end"),
    (b"\xe2\x28\xa1", "bad continuation"),
]
for _name, _why in BAD_NAMES:
    CASES.append(
        (
            f"bad_name {_why}",
            blob(R0, record(_name, [3], 0, F32x3)),
            "bad_name",
            r1_field("name", name_len=len(_name)),
            1,
        )
    )


@pytest.mark.parametrize(
    "data, reason, offset, rec", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_violation(backend, data, reason, offset, rec):
    check_error(backend.loads, data, reason=reason, offset=offset, record=rec)
    check_error(backend.loads, bytearray(data), copy=True, reason=reason, offset=offset, record=rec)


def bounded(case):
    return (case[1],) + BOUNDED.get(case[0], case[2:])


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize(
    "data, reason, offset, rec", [bounded(c) for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_violation_compressed(backend, wrapper, data, reason, offset, rec):
    # A valid stream of a bad blob: the PTTH rule is reported exactly as for plain input.
    z = backend.compress(data, 6, wrapper)
    check_error(backend.loads, z, reason=reason, offset=offset, record=rec)


@pytest.mark.parametrize(
    "data, reason, offset, rec", [bounded(c) for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_violation_streaming(backend, data, reason, offset, rec):
    def run():
        dec = backend.Decoder()
        for i in range(0, len(data), 7):
            dec.feed(data[i : i + 7])
        dec.close()

    check_error(run, reason=reason, offset=offset, record=rec)


def test_bad_magic_in_compressed_blob(backend):
    # Plain input that does not start with "PTTH" is raw DEFLATE by detection, so
    # a wrong magic can only show up inside a compressed stream.
    for bad in (b"PTTX", b"XTTH", b"ptth", b"PTT\x00"):
        data = bad + u32(1) + u32(0)
        check_error(
            backend.loads, backend.compress(data), reason="bad_magic", offset=0, record=None
        )
    # seen as soon as the mismatching byte arrives, even in a short blob
    check_error(backend.loads, backend.compress(b"PX"), reason="bad_magic", offset=0)
    check_error(backend.loads, backend.compress(b"PT"), reason="truncated", offset=2, record=None)


def test_bad_magic_streaming(backend):
    dec = backend.Decoder()
    check_error(
        dec.feed,
        backend.compress(b"QTTH" + u32(1) + u32(0)),
        reason="bad_magic",
        offset=0,
        record=None,
    )


@pytest.mark.parametrize("name", ["vector1_float32", "vector2_empty", "vector3_mixed"])
def test_every_prefix_is_truncated(backend, golden, name):
    data = golden[name]
    for n in range(len(data)):
        _, rec = waiting_item(data, n)
        check_error(backend.loads, data[:n], reason="truncated", offset=n, record=rec)


def test_every_prefix_of_multi_record_blob_is_truncated(backend):
    data = backend.dumps(
        {"": np.float64(1), "b": np.zeros((2, 0), np.int32), "c": np.arange(3, dtype=np.float16)}
    )
    for n in range(len(data)):
        _, rec = waiting_item(data, n)
        check_error(backend.loads, data[:n], reason="truncated", offset=n, record=rec)
        check_error(
            backend.loads, bytearray(data[:n]), copy=True, reason="truncated", offset=n, record=rec
        )


def test_count_zero_is_valid(backend):
    assert backend.loads(header(0)) == {}
    assert backend.loads(header(0), copy=True) == {}


def test_ndim_64_is_valid(backend):
    got = backend.loads(blob(record("b", [1] * 64, 2, u32(5))))
    assert got["b"].shape == (1,) * 64 and got["b"].dtype == np.int32


def test_empty_name_is_valid(backend):
    assert list(backend.loads(blob(record("", [], 0, F32x3[:4])))) == [""]


def test_names_are_unique_by_bytes(backend):
    nfc, nfd = "\u00e9", "e\u0301"  # look alike, differ as UTF-8
    got = backend.loads(blob(record(nfc, [], 0, F32x3[:4]), record(nfd, [], 0, F32x3[4:8])))
    assert list(got) == [nfc, nfd]


@pytest.mark.parametrize("dims", [[0, 0xFFFFFFFF], [0xFFFFFFFF, 0], [0x10000000, 0, 0xFFFFFFFF]])
def test_zero_dim_beside_huge_dims(backend, dims):
    for code, np_dtype in [(0, np.float32), (1, np.float64), (3, np.float16)]:
        got = backend.loads(blob(record("z", dims, code, b"")))
        assert got["z"].shape == tuple(dims) and got["z"].size == 0
        assert got["z"].dtype == np_dtype


def test_zero_dim_beside_dims_overflowing_64_bits(backend):
    # numel is 0 "even if the other dims would overflow" (DEVELOPERS.md); NumPy cannot
    # shape such an array, so the reader may refuse it, but only as a PTTHError.
    data = blob(record("z", [0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], 0, b""))
    for kw in ({}, {"copy": True}):
        try:
            got = backend.loads(data, **kw)
        except ptth.PTTHError as exc:
            assert exc.reason in ptth.REASONS
        else:
            assert got["z"].size == 0 and got["z"].shape == (0,) + (0xFFFFFFFF,) * 3


def test_claim_of_4e9_records_costs_nothing(backend):
    data = header(4_000_000_000)
    backend.loads(header(0))  # warm up
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for kw in ({}, {"copy": True}):
            check_error(backend.loads, data, reason="truncated", offset=12, record=0, **kw)
        dec = backend.Decoder()
        dec.feed(data)
        check_error(dec.close, reason="truncated", offset=12, record=0)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.25
    assert peak < 256 * 1024


def test_relabel_float32(backend):
    vals = np.array([1.5, -2.0], "<f4")
    f64_as_f32 = blob(record("d", [2], 1, vals.tobytes()))
    i32_as_f32 = blob(record("i", [2], 2, vals.tobytes()))
    check_error(backend.loads, f64_as_f32, reason="length_mismatch", offset=29, record=0)
    assert backend.loads(f64_as_f32, relabel_float32=True)["d"].tolist() == [1.5, -2.0]
    got = backend.loads(i32_as_f32, relabel_float32=True)["i"]
    assert got.dtype == np.float32 and got.tolist() == [1.5, -2.0]
    # code 2 keeps int32 without relabel: same length, so no error, wrong type
    assert backend.loads(i32_as_f32)["i"].dtype == np.int32


def test_relabel_keeps_the_codes_itemsize_otherwise(backend):
    f64 = blob(record("d", [2], 1, np.array([1.5, -2.0], "<f8").tobytes()))
    assert backend.loads(f64, relabel_float32=True)["d"].dtype == np.float64
    # relabel does not accept unknown codes
    check_error(
        backend.loads,
        blob(record("x", [1], 7, b"abcd")),
        relabel_float32=True,
        reason="bad_dtype",
        offset=25,
        record=0,
    )


def test_auto_byteorder_decides_on_first_telling_float32(backend):
    ones_be = np.array([1.0, 2.0, -3.0], ">f4").tobytes()
    data = blob(
        record("zeros", [2], 0, bytes(8)),  # tie: read little-endian
        record("before", [1], 2, np.array([7], "<i4").tobytes()),  # before the decision
        record("f", [3], 0, ones_be),  # decides big-endian
        record("after", [1], 2, np.array([9], ">i4").tobytes()),  # read big-endian
        record("h", [1], 3, np.array([1.5], ">f2").tobytes()),
    )
    got = backend.loads(data, byteorder="auto")
    assert [got[k].dtype.str for k in got] == ["<f4", "<i4", ">f4", ">i4", ">f2"]
    assert got["before"].tolist() == [7] and got["after"].tolist() == [9]
    assert got["f"].tolist() == [1.0, 2.0, -3.0] and got["h"].tolist() == [1.5]
    owned = backend.loads(data, byteorder="auto", copy=True)
    assert all(a.dtype.isnative for a in owned.values())
    assert owned["f"].tolist() == [1.0, 2.0, -3.0] and owned["after"].tolist() == [9]


def test_auto_byteorder_never_decided_reads_little_endian(backend):
    data = blob(record("i", [1], 2, np.array([7], "<i4").tobytes()), record("z", [4], 0, bytes(16)))
    got = backend.loads(data, byteorder="auto")
    assert [a.dtype.str for a in got.values()] == ["<i4", "<f4"]
    dec = backend.Decoder(byteorder="auto")
    dec.feed(data)
    assert dec.byteorder is None
    dec.close()


def test_auto_byteorder_scores_only_1024_words(backend):
    # First 1024 words lean little-endian (600 to 424); 3000 big-endian words follow.
    le_one = np.array([1.0], "<f4").tobytes()
    be_one = np.array([1.0], ">f4").tobytes()
    payload = le_one * 600 + be_one * 424 + be_one * 3000
    got = backend.loads(blob(record("x", [4024], 0, payload)), byteorder="auto")
    assert got["x"].dtype.str == "<f4"
    flipped = be_one * 600 + le_one * 424 + le_one * 3000
    got = backend.loads(blob(record("x", [4024], 0, flipped)), byteorder="auto")
    assert got["x"].dtype.str == ">f4"


def test_decoder_reports_byteorder(backend, golden):
    dec = backend.Decoder(byteorder="auto")
    assert dec.byteorder is None
    dec.feed(golden["vector4_android_be"])
    assert dec.byteorder == ">"
    dec.close()
    for bo in "<>":
        assert backend.Decoder(byteorder=bo).byteorder == bo
