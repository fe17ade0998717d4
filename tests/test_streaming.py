"""Decoder.feed / close and iter_load: any chunking gives the one-shot result."""

import io
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blobs import (
    WRAPPERS,
    assert_same_tensors,
    check_arg_error,
    check_error,
    decode_chunks,
    header,
    items,
    sample_tensors,
    waiting_item,
)

KINDS = (None,) + WRAPPERS  # None: plain


def small_blob(backend, kind):
    plain = backend.dumps(sample_tensors())
    return plain if kind is None else backend.compress(plain, 6, kind)


def assert_owned(arrays):
    for name, arr in arrays.items():
        assert arr.flags.writeable and arr.flags.c_contiguous, name
        assert arr.ctypes.data % 64 == 0 and arr.dtype.isnative, name


@pytest.mark.parametrize("kind", KINDS)
def test_split_at_every_offset(backend, kind):
    data = small_blob(backend, kind)
    want = backend.loads(data)
    for i in range(len(data) + 1):
        got = decode_chunks(backend, [data[:i], data[i:]])
        assert_same_tensors(got, want)
        assert_owned(got)


@pytest.mark.parametrize("kind", KINDS)
def test_one_byte_at_a_time(backend, kind):
    data = small_blob(backend, kind)
    got = decode_chunks(backend, [data[i : i + 1] for i in range(len(data))])
    assert_same_tensors(got, backend.loads(data))
    assert_owned(got)


@pytest.mark.parametrize("kind", KINDS)
@given(cuts=st.lists(st.integers(0, 400), max_size=12))
def test_random_chunkings(backend, kind, cuts):
    data = small_blob(backend, kind)
    cuts = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    chunks = [bytearray(c) if i % 2 else memoryview(c) for i, c in enumerate(chunks)]
    assert_same_tensors(decode_chunks(backend, chunks), backend.loads(data))


def test_records_come_out_as_they_complete(backend):
    data = backend.dumps(sample_tensors())
    names = list(sample_tensors())
    record_ends = [max(e for _, e, r in items(data) if r == k) for k in range(len(names))]
    dec = backend.Decoder()
    pos = 0
    for k, end in enumerate(record_ends):
        assert [name for name, _ in dec.feed(data[pos:end])] == [names[k]]
        pos = end
    dec.close()


def test_big_endian_streaming(backend, golden):
    for bo in (">", "auto"):
        dec = backend.Decoder(byteorder=bo)
        got = dict(dec.feed(golden["vector4_android_be"]))
        dec.close()
        assert got["w"].dtype.isnative and got["w"].tolist() == [1.0, -2.0]


@pytest.mark.parametrize("kind", KINDS)
def test_iter_load_equals_load(backend, tmp_path, kind):
    data = small_blob(backend, kind)
    path = tmp_path / "x.ptth"
    path.write_bytes(data)
    want = backend.load(path)
    assert_same_tensors(dict(backend.iter_load(path)), want)
    assert_same_tensors(dict(backend.iter_load(str(path))), want)
    with open(path, "rb") as f:
        assert_same_tensors(dict(backend.iter_load(f)), want)
    with open(path, "rb", buffering=0) as f:
        assert_same_tensors(dict(backend.iter_load(f)), want)
    assert_same_tensors(dict(backend.iter_load(io.BytesIO(data))), want)


def test_iter_load_is_lazy(backend, tmp_path):
    # a bad tail is only seen after the good records were yielded
    data = backend.dumps(sample_tensors())[:-1]
    path = tmp_path / "cut.ptth"
    path.write_bytes(data)
    it = backend.iter_load(path)
    name, _ = next(it)
    assert name == "conv.weight"
    check_error(list, it, reason="truncated", offset=len(data), record=5)


def test_iter_load_bad_source(backend, tmp_path):
    check_arg_error(lambda: list(backend.iter_load(12)), exc=TypeError, names="source")
    path = tmp_path / "x.ptth"
    path.write_bytes(backend.dumps(sample_tensors()))
    with open(path) as text:  # text mode
        check_arg_error(lambda: list(backend.iter_load(text)), exc=TypeError, names="binary")
    with open(path, "rb") as f:
        assert len(dict(backend.iter_load(f))) == len(sample_tensors())


@pytest.mark.parametrize("kind", KINDS)
def test_iter_load_keyword_arguments(backend, tmp_path, golden, kind):
    path = tmp_path / "be.ptth"
    data = golden["vector4_android_be"]
    path.write_bytes(data if kind is None else backend.compress(data, 6, kind))
    assert dict(backend.iter_load(path, byteorder=">"))["w"].tolist() == [1.0, -2.0]
    check_error(
        lambda: list(backend.iter_load(path, max_size=40)), reason="too_large", offset=33, record=0
    )


def test_close_on_incomplete_plain_blob(backend):
    data = backend.dumps(sample_tensors())
    for n in range(len(data)):
        dec = backend.Decoder()
        dec.feed(data[:n])
        _, rec = waiting_item(data, n)
        check_error(dec.close, reason="truncated", offset=n, record=rec)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_close_on_incomplete_compressed_blob(backend, wrapper):
    data = small_blob(backend, wrapper)
    for n in range(4, len(data)):
        dec = backend.Decoder()
        dec.feed(data[:n])
        reason = "stream_truncated"
        if wrapper == "deflate" and len(zlib.decompressobj(-15).decompress(data[:n])) < 4:
            reason = "not_ptth"  # cut before the magic: indistinguishable from other input
        check_error(dec.close, reason=reason)


def test_empty_input_is_truncated(backend):
    dec = backend.Decoder()
    dec.feed(b"")
    check_error(dec.close, reason="truncated", offset=0, record=None)
    check_error(backend.loads, b"", reason="truncated", offset=0, record=None)


def test_short_ptth_prefix_waits_for_more(backend):
    dec = backend.Decoder()
    for b in b"PTTH":
        assert dec.feed(bytes([b])) == []
    dec.feed(header(0)[4:])
    dec.close()


@pytest.mark.parametrize("kind", KINDS)
def test_feed_after_close_is_closed(backend, kind):
    dec = backend.Decoder()
    assert dec.feed(small_blob(backend, kind)) != []
    dec.close()
    check_error(dec.feed, b"", reason="closed")
    check_error(dec.feed, b"PTTH", reason="closed")


def test_feed_after_failed_close_is_closed(backend):
    dec = backend.Decoder()
    dec.feed(b"PTTH")
    check_error(dec.close, reason="truncated")
    check_error(dec.feed, b"\x00", reason="closed")


def test_empty_chunks_are_harmless(backend):
    data = backend.dumps(sample_tensors())
    chunks = [b""] + [c for i in range(0, len(data), 16) for c in (data[i : i + 16], b"")]
    assert_same_tensors(decode_chunks(backend, chunks), sample_tensors())


def test_decoder_max_size_applies_to_plain_input(backend, golden):
    data = golden["vector1_float32"]
    dec = backend.Decoder(max_size=40)
    check_error(dec.feed, data, reason="too_large", offset=33, record=0)
    assert_same_tensors(decode_chunks(backend, [data], max_size=41), backend.loads(data))


def test_decoder_rejects_bad_keywords(backend):
    for kw, exc in (
        ({"byteorder": "big"}, ValueError),
        ({"max_size": -1}, ValueError),
        ({"max_size": 1.5}, TypeError),
        ({"relabel_float32": "yes"}, ValueError),
        ({"copy": None}, TypeError),
    ):
        check_arg_error(backend.Decoder, exc=exc, names=next(iter(kw)), **kw)
