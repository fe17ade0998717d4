"""The format's canonical vectors (docs/format.md), committed as tests/golden/*.ptth."""

import numpy as np
import pytest

from blobs import assert_same_tensors, bits

SPEC_HEX = {
    "vector1_float32": (
        "5054544800000001000000010000000177000000010000000200000000000000080000803f000000c0"
    ),
    "vector2_empty": "505454480000000100000000",
    "vector3_mixed": (
        "5054544800000001000000030000000966632e776569676874000000020000000200000003000000030000"
        "000c003800bc00400000ff7b00b40000000766632e626961730000000000000001000000080000000000000c"
        "4000000005737465707300000001000000000000000200000000"
    ),
    "vector4_android_be": (
        "5054544800000001000000010000000177000000010000000200000000000000083f800000c0000000"
    ),
}

VECTOR1 = {"w": np.array([1.0, -2.0], np.float32)}
VECTOR2 = {}
VECTOR3 = {
    "fc.weight": np.array([[0.5, -1, 2], [0, 65504, -0.25]], np.float16),
    "fc.bias": np.array(3.5, np.float64),
    "steps": np.zeros((0,), np.int32),
}


def test_golden_files_are_the_spec_vectors(golden):
    assert {k: v.hex() for k, v in golden.items()} == SPEC_HEX
    assert [len(golden[k]) for k in sorted(golden)] == [41, 12, 113, 41]


@pytest.mark.parametrize(
    "name, tensors",
    [("vector1_float32", VECTOR1), ("vector2_empty", VECTOR2), ("vector3_mixed", VECTOR3)],
)
def test_decode_vectors(backend, golden, name, tensors):
    got = backend.loads(golden[name])
    assert_same_tensors(got, tensors)
    for arr in got.values():
        assert arr.dtype.byteorder in "<|="  # little-endian wire order


def test_vector3_details(backend, golden):
    got = backend.loads(golden["vector3_mixed"])
    assert got["fc.weight"].dtype == np.float16 and got["fc.weight"].shape == (2, 3)
    assert got["fc.bias"].ndim == 0 and got["fc.bias"][()] == 3.5
    assert got["steps"].shape == (0,) and got["steps"].dtype == np.int32
    assert bits(got["fc.weight"]).tolist() == [[0x3800, 0xBC00, 0x4000], [0x0000, 0x7BFF, 0xB400]]


@pytest.mark.parametrize(
    "name, tensors",
    [("vector1_float32", VECTOR1), ("vector2_empty", VECTOR2), ("vector3_mixed", VECTOR3)],
)
def test_dumps_reproduces_vectors(backend, golden, name, tensors):
    assert backend.dumps(tensors) == golden[name]


@pytest.mark.parametrize("byteorder", [">", "auto"])
def test_vector4_big_endian(backend, golden, byteorder):
    got = backend.loads(golden["vector4_android_be"], byteorder=byteorder)
    assert list(got) == ["w"]
    assert got["w"].dtype.str == ">f4"  # views keep the wire order
    assert got["w"].tolist() == [1.0, -2.0]
    owned = backend.loads(golden["vector4_android_be"], byteorder=byteorder, copy=True)
    assert owned["w"].dtype.isnative and owned["w"].tolist() == [1.0, -2.0]


def test_vector4_read_little_endian_is_garbage_not_error(backend, golden):
    got = backend.loads(golden["vector4_android_be"])
    assert got["w"].dtype.str == "<f4"
    assert bits(got["w"]).tolist() == [0x0000803F, 0x000000C0]


def test_vector1_auto_stays_little_endian(backend, golden):
    got = backend.loads(golden["vector1_float32"], byteorder="auto")
    assert got["w"].dtype.str == "<f4" and got["w"].tolist() == [1.0, -2.0]
