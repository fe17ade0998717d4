"""The buffer-type matrix: zero-copy views, read-only flags, copy=True, lifetimes."""

import gc
import mmap

import numpy as np
import pytest

from blobs import assert_same_tensors, check_arg_error, check_error, sample_tensors

# sample_tensors() without empty arrays (they share no memory with anything)
TENSORS = {k: v for k, v in sample_tensors().items() if v.size}


def make_inputs(data: bytes, tmp_path):
    """(id, buffer, writable, cleanup) for every accepted buffer type."""
    path = tmp_path / "blob.ptth"
    path.write_bytes(data)
    f_ro, f_rw = open(path, "rb"), open(path, "r+b")
    m_ro = mmap.mmap(f_ro.fileno(), 0, access=mmap.ACCESS_READ)
    m_rw = mmap.mmap(f_rw.fileno(), 0, access=mmap.ACCESS_WRITE)
    arr_ro = np.frombuffer(bytearray(data), np.uint8)
    arr_ro.setflags(write=False)
    inputs = [
        ("bytes", data, False),
        ("bytearray", bytearray(data), True),
        ("memoryview-bytes", memoryview(data), False),
        ("memoryview-bytearray", memoryview(bytearray(data)), True),
        ("memoryview-readonly", memoryview(bytearray(data)).toreadonly(), False),
        ("mmap-read", m_ro, False),
        ("mmap-write", m_rw, True),
        ("ndarray", np.frombuffer(bytearray(data), np.uint8), True),
        ("ndarray-readonly", arr_ro, False),
    ]

    def cleanup():
        gc.collect()
        for m in (m_ro, m_rw):
            m.close()
        f_ro.close()
        f_rw.close()

    return inputs, cleanup


def address_range(buf):
    """[start, end) of the buffer's memory."""
    a = np.frombuffer(buf, np.uint8)
    return a.ctypes.data, a.ctypes.data + a.nbytes


def test_zero_copy_views(backend, tmp_path):
    data = backend.dumps(TENSORS)
    inputs, cleanup = make_inputs(data, tmp_path)
    try:
        for label, buf, writable in inputs:
            got = backend.loads(buf)
            assert_same_tensors(got, TENSORS)
            lo, hi = address_range(buf)
            whole = np.frombuffer(buf, np.uint8)
            for name, arr in got.items():
                assert np.shares_memory(arr, whole), (label, name)
                assert lo <= arr.ctypes.data and arr.ctypes.data + arr.nbytes <= hi, (label, name)
                assert arr.flags.writeable == writable, (label, name)
                assert not arr.flags.owndata, (label, name)
            del got, whole
    finally:
        cleanup()


def test_copy_true_gives_owned_aligned_native_arrays(backend, tmp_path):
    data = backend.dumps(TENSORS)
    inputs, cleanup = make_inputs(data, tmp_path)
    try:
        for label, buf, _ in inputs:
            for bo in ("<", ">", "auto"):
                got = backend.loads(buf, copy=True, byteorder=bo)
                whole = np.frombuffer(buf, np.uint8)
                for name, arr in got.items():
                    assert not np.shares_memory(arr, whole), (label, name)
                    assert arr.flags.writeable and arr.flags.c_contiguous, (label, name)
                    assert arr.ctypes.data % 64 == 0, (label, name)
                    assert arr.dtype.isnative, (label, name)
                del got, whole
    finally:
        cleanup()


def test_copy_true_values(backend, golden):
    assert_same_tensors(backend.loads(backend.dumps(sample_tensors()), copy=True), sample_tensors())
    be = backend.loads(golden["vector4_android_be"], copy=True, byteorder=">")["w"]
    assert be.dtype.str == "<f4" and be.tolist() == [1.0, -2.0]


def test_writing_through_a_view_reaches_the_input(backend):
    buf = bytearray(backend.dumps({"x": np.zeros(4, np.float32)}))
    backend.loads(buf)["x"][2] = 1.0
    assert backend.loads(bytes(buf))["x"].tolist() == [0, 0, 1, 0]


def test_mmap_write_view_writes_the_file(backend, tmp_path):
    path = tmp_path / "x.ptth"
    path.write_bytes(backend.dumps({"x": np.zeros(3, np.int32)}))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        arr = backend.loads(m)["x"]
        arr[:] = [4, 5, 6]
        del arr
        gc.collect()
        m.flush()
    assert backend.load(path)["x"].tolist() == [4, 5, 6]


@pytest.mark.parametrize("kind", ["bytearray", "ndarray", "memoryview"])
def test_views_outlive_the_input(backend, kind):
    blob = backend.dumps(TENSORS)
    if kind == "bytearray":
        data = bytearray(blob)
    elif kind == "ndarray":
        data = np.frombuffer(bytearray(blob), np.uint8).copy()
    else:
        data = memoryview(bytearray(blob))
    got = backend.loads(data)
    del data
    gc.collect()
    # churn the allocator so freed memory would be reused
    junk = [bytearray(len(blob)) for _ in range(64)]
    assert_same_tensors(got, TENSORS)
    del junk


def test_bytearray_cannot_be_resized_under_a_view(backend):
    data = bytearray(backend.dumps(TENSORS))
    got = backend.loads(data)
    with pytest.raises(BufferError):
        data.extend(b"\x00" * 4096)
    del got
    gc.collect()
    data.extend(b"\x00")  # released with the views


def test_mmap_cannot_be_closed_under_a_view(backend, tmp_path):
    path = tmp_path / "x.ptth"
    path.write_bytes(backend.dumps(TENSORS))
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        got = backend.loads(m)
        with pytest.raises(BufferError):
            m.close()
        assert_same_tensors(got, TENSORS)
        del got
        gc.collect()
        m.close()


def test_compressed_input_gives_owned_arrays(backend, tmp_path):
    data = backend.dumps(TENSORS, compress=6)
    inputs, cleanup = make_inputs(data, tmp_path)
    try:
        for label, buf, _ in inputs:
            got = backend.loads(buf)
            assert_same_tensors(got, TENSORS)
            whole = np.frombuffer(buf, np.uint8)
            for arr in got.values():
                assert not np.shares_memory(arr, whole), label
                assert arr.flags.writeable and arr.ctypes.data % 64 == 0, label
            del got, whole
    finally:
        cleanup()


@pytest.mark.parametrize(
    "bad, exc",
    [
        (None, TypeError),
        (12, TypeError),
        ("PTTH", TypeError),
        ([0x50, 0x54], TypeError),
        (np.array([b"P", b"T"], dtype=object), TypeError),
        (np.zeros(24, np.uint8)[::2], ValueError),
        (np.zeros((4, 6), np.uint8)[:, :3], ValueError),
    ],
)
def test_non_buffers_are_bad_arguments(backend, bad, exc):
    check_arg_error(backend.loads, bad, exc=exc, names="data")
    check_arg_error(backend.Decoder().feed, bad, exc=exc, names="chunk")


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0,), (2, 0, 3)])
def test_empty_buffers_of_any_shape_are_empty_input(backend, shape):
    view = memoryview(np.zeros(shape, np.float32))
    check_error(backend.loads, view, reason="truncated", offset=0)


def test_two_dim_uint8_array_is_read_as_bytes(backend):
    data = np.frombuffer(backend.dumps({"x": np.arange(2, dtype=np.float32)}), np.uint8)
    got = backend.loads(data.reshape(1, -1))["x"]
    assert got.tolist() == [0, 1] and np.shares_memory(got, data)
