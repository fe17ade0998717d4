"""Foreign-format readers on lying input: every lie is a PTTHError, never another exception.

Each safetensors case is built by hand from the format's description; where the
safetensors library also has an opinion it must reject the same file. The
hypothesis tests mutate valid files and check that whatever ptth accepts, the
reference reader (the safetensors library, np.load) accepts with the same values.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
import safetensors.numpy as stn
from hypothesis import given, settings
from hypothesis import strategies as st

import ptth
import ptth.convert as pc


def st_file(header, data=b"", *, raw=None) -> bytes:
    text = raw if raw is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def entry(code="F32", shape=(1,), offsets=(0, 4)):
    return {"dtype": code, "shape": list(shape), "data_offsets": list(offsets)}


F4 = b"\x00\x00\x80\x3f"
SAFETENSORS_LIES = {
    "empty": b"",
    "short length": b"\x02\x00\x00",
    "header over the cap": struct.pack("<Q", 100_000_001) + b"{}",
    "header longer than the file": struct.pack("<Q", 50) + b"{}",
    "length 2**64-1": b"\xff" * 8 + b"{}",
    "header of 1 byte": struct.pack("<Q", 1) + b"{",
    "not utf-8": st_file(None, raw=b'{"\xff":1}'),
    "no brace first": st_file(None, raw=b" {}"),
    "not json": st_file(None, raw=b"{nope}"),
    "json array": st_file(None, raw=b"[]      "),
    "NaN literal": st_file(None, raw=b'{"a":NaN}'),
    "deep nesting": st_file(None, raw=b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "huge integer": st_file(
        None,
        raw=b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}',
        data=F4,
    ),
    "text after the object": st_file(None, raw=b"{}x"),
    "newline padding": st_file(None, raw=b"{}\n"),
    "duplicate tensor": st_file(
        None,
        raw=b'{"a":'
        + json.dumps(entry()).encode()
        + b',"a":'
        + json.dumps(entry(offsets=(4, 8))).encode()
        + b"}",
        data=F4 * 2,
    ),
    "duplicate field": st_file(
        None, raw=b'{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', data=F4
    ),
    "metadata not str": st_file({"__metadata__": {"k": 1}}),
    "metadata a list": st_file({"__metadata__": ["k"]}),
    "entry not an object": st_file({"a": [1, 2]}),
    "unknown field": st_file({"a": {**entry(), "extra": 1}}, F4),
    "missing field": st_file({"a": {"dtype": "F32", "shape": [1]}}, F4),
    "unknown dtype": st_file({"a": entry(code="F128")}, F4),
    "dtype not a string": st_file({"a": entry(code=3)}, F4),
    "negative dim": st_file({"a": entry(shape=(-1,))}, F4),
    "float dim": st_file({"a": entry(shape=(1.0,))}, F4),
    "bool dim": st_file({"a": entry(shape=(True,))}, F4),
    "65 dims": st_file({"a": entry(shape=(1,) * 65)}, F4),
    "one offset": st_file({"a": {**entry(), "data_offsets": [0]}}, F4),
    "begin after end": st_file({"a": entry(offsets=(4, 0))}, F4),
    "end past the data": st_file({"a": entry(offsets=(0, 8))}, F4),
    "offset 2**64": st_file({"a": entry(offsets=(0, 2**64))}, F4),
    "size lies": st_file({"a": entry(shape=(2,))}, F4),
    "huge shape": st_file({"a": entry(shape=(2**40, 2**40), offsets=(0, 4))}, F4),
    "zero dim beside huge ones": st_file({"a": entry(shape=(0, 2**62, 2**62), offsets=(0, 0))}),
    "overlap": st_file({"a": entry(offsets=(0, 4)), "b": entry(offsets=(0, 4))}, F4),
    "hole": st_file({"a": entry(offsets=(4, 8))}, F4 * 2),
    "trailing data": st_file({"a": entry()}, F4 + b"\x00"),
    "missing data": st_file({"a": entry(offsets=(0, 4)), "b": entry(offsets=(4, 8))}, F4),
    "lone surrogate name": st_file(
        None, raw=b'{"\\ud800":' + json.dumps(entry()).encode() + b"}", data=F4
    ),
    "half a byte of F4": st_file({"a": entry(code="F4", shape=(3,), offsets=(0, 2))}, b"\0\0"),
}
#: cases the safetensors library accepts although the format forbids them
LIBRARY_LENIENT = {
    "no brace first",
    "unknown field",
    "newline padding",
    "65 dims",
    "zero dim beside huge ones",
}


@pytest.mark.parametrize("case", list(SAFETENSORS_LIES))
def test_safetensors_lies(case):
    data = SAFETENSORS_LIES[case]
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(data, format="safetensors", unsupported="skip")
    assert err.value.reason == "bad_safetensors", err.value
    assert err.value.offset is None or 0 <= err.value.offset <= len(data)
    if case not in LIBRARY_LENIENT:
        with pytest.raises(Exception):
            stn.load(data)


def test_safetensors_valid_edge_cases():
    cases = {
        "empty header": (st_file({}), {}),
        "padded": (st_file(None, raw=b"{}      "), {}),
        "scalar": (st_file({"s": entry(shape=())}, F4), {"s": np.float32(1.0)}),
        "zero-size tensors share an offset": (
            st_file(
                {
                    "a": entry(shape=(0, 5), offsets=(0, 0)),
                    "b": entry(offsets=(0, 4)),
                    "c": entry(shape=(3, 0), offsets=(4, 4)),
                },
                F4,
            ),
            {
                "a": np.zeros((0, 5), np.float32),
                "b": np.ones(1, np.float32),
                "c": np.zeros((3, 0), np.float32),
            },
        ),
        "header order differs from data order": (
            st_file(
                {"b": entry(offsets=(4, 8)), "a": entry(offsets=(0, 4))}, F4 + b"\x00\x00\x00\x40"
            ),
            {"a": np.ones(1, np.float32), "b": np.full(1, 2.0, np.float32)},
        ),
    }
    for name, (data, expected) in cases.items():
        got = pc.load_model(data)
        assert list(got) == list(expected), name  # data order
        for k, v in expected.items():
            assert got[k].shape == np.shape(v) and np.array_equal(got[k], v), name
        assert {k: v.tolist() for k, v in stn.load(data).items()} == {
            k: np.asarray(v).tolist() for k, v in expected.items()
        }, name


def npz_bytes(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_raw(header: str, payload: bytes = b"") -> bytes:
    text = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


GOOD = npy(np.arange(4, dtype="<f4"))
with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile warns, and writes it
    DUPLICATE = npz_bytes([("a.npy", GOOD), ("a.npy", GOOD)])


def set_crc(data: bytes, crc: int) -> bytes:
    """The same archive with the CRC-32 fields of its first member replaced."""
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        pos = data.index(sig)
        out[pos + at : pos + at + 4] = struct.pack("<I", crc)
    return bytes(out)


def set_flag(data: bytes, flag: int) -> bytes:
    central = data.index(b"PK\x01\x02")
    out = bytearray(data)
    out[central + 8] |= flag
    return bytes(out)


def set_local_method(data: bytes, method: int) -> bytes:
    out = bytearray(data)
    pos = data.index(b"PK\x03\x04")
    out[pos + 8 : pos + 10] = struct.pack("<H", method)
    return bytes(out)


def set_method(data: bytes, method: int) -> bytes:
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        pos = data.index(sig)
        out[pos + at : pos + at + 2] = struct.pack("<H", method)
    return bytes(out)


NPZ_LIES = {
    "not a zip": (b"PK\x03\x04garbage", "bad_npz"),
    "truncated": (npz_bytes([("a.npy", GOOD)])[:-30], "bad_npz"),
    "stored CRC mismatch": (
        npz_bytes([("a.npy", GOOD)]).replace(GOOD[-4:], b"\x00\x00\xc0\x7f"),
        "bad_npz",
    ),
    "deflated CRC mismatch": (
        set_crc(npz_bytes([("a.npy", GOOD)], zipfile.ZIP_DEFLATED), 1),
        "bad_npz",
    ),
    "not .npy": (npz_bytes([("a.txt", b"hi")]), "bad_npz"),
    # found by the mutation test: zipfile compares the local name with the directory's
    "local name differs": (npz_bytes([("a.npy", GOOD)]).replace(b"a.npy", b"b.npy", 1), "bad_npz"),
    "local method differs": (set_local_method(npz_bytes([("a.npy", GOOD)]), 8), "bad_npz"),
    "duplicate member": (DUPLICATE, "duplicate_name"),
    "encrypted": (set_flag(npz_bytes([("a.npy", GOOD)]), 1), "bad_npz"),
    "strong encryption": (set_flag(npz_bytes([("a.npy", GOOD)]), 0x40), "bad_npz"),
    "patch data": (set_flag(npz_bytes([("a.npy", GOOD)]), 0x20), "bad_npz"),
    "bzip2": (set_method(npz_bytes([("a.npy", GOOD)]), 12), "bad_npz"),
    "no npy magic": (npz_bytes([("a.npy", b"NUMPY" + GOOD)]), "bad_npz"),
    "npy version 9": (npz_bytes([("a.npy", b"\x93NUMPY\x09\x00" + GOOD[8:])]), "bad_npz"),
    "npy header too long": (
        npz_bytes([("a.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 1_000_000) + b" " * 100)]),
        "bad_npz",
    ),
    "npy header past the member": (
        npz_bytes([("a.npy", b"\x93NUMPY\x01\x00\xff\x00{")]),
        "bad_npz",
    ),
    "npy header code": (npz_bytes([("a.npy", npy_raw("__import__('os')"))]), "bad_npz"),
    "npy header list": (npz_bytes([("a.npy", npy_raw("[1, 2]"))]), "bad_npz"),
    "npy missing shape": (
        npz_bytes([("a.npy", npy_raw("{'descr': '<f4', 'fortran_order': False}"))]),
        "bad_npz",
    ),
    "npy fortran not bool": (
        npz_bytes([("a.npy", npy_raw("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", F4))]),
        "bad_npz",
    ),
    "npy negative dim": (
        npz_bytes(
            [("a.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", F4))]
        ),
        "bad_npz",
    ),
    "npy payload short": (
        npz_bytes(
            [("a.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", F4))]
        ),
        "bad_npz",
    ),
    "npy payload long": (
        npz_bytes(
            [
                (
                    "a.npy",
                    npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", F4 + b"x"),
                )
            ]
        ),
        "bad_npz",
    ),
    "npy huge shape": (
        npz_bytes(
            [
                (
                    "a.npy",
                    npy_raw(
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62)}", F4
                    ),
                )
            ]
        ),
        "bad_npz",
    ),
    "object array": (
        npz_bytes(
            [
                (
                    "a.npy",
                    npy_raw(
                        "{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", b"\x80\x04N."
                    ),
                )
            ]
        ),
        "unsupported_dtype",
    ),
    "structured with objects": (
        npz_bytes(
            [
                (
                    "a.npy",
                    npy_raw(
                        "{'descr': [('x', '|O')], 'fortran_order': False, 'shape': (1,)}", b"x" * 8
                    ),
                )
            ]
        ),
        "unsupported_dtype",
    ),
}


@pytest.mark.parametrize("case", list(NPZ_LIES))
def test_npz_lies(case):
    data, reason = NPZ_LIES[case]
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(data, format="npz", unsupported="skip")
    assert err.value.reason == reason, err.value


def test_npz_inflate_is_capped_by_max_size():
    big = npz_bytes([("a.npy", npy(np.zeros(1 << 20, np.float32)))], zipfile.ZIP_DEFLATED)
    assert len(big) < 10_000
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(big, max_size=1 << 20)
    assert err.value.reason == "too_large"
    assert pc.load_model(big, max_size=(1 << 22) + 200)["a"].size == 1 << 20


def test_npz_member_that_inflates_past_its_declared_size():
    payload = npy(np.zeros(1000, np.float32))
    data = bytearray(npz_bytes([("a.npy", payload)], zipfile.ZIP_DEFLATED))
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        pos = data.index(sig)
        data[pos + at : pos + at + 4] = struct.pack("<I", 100)
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(bytes(data))
    assert err.value.reason == "bad_npz"


# ---- mutations: whatever ptth accepts, the reference accepts with the same values ---------


def _valid_safetensors() -> bytes:
    rng = np.random.default_rng(5)
    return stn.save(
        {
            "a": rng.standard_normal((3, 2)).astype(np.float32),
            "b": np.arange(3, dtype=np.int64),
            "c": np.ones(2, np.float16),
        },
        metadata={"k": "v"},
    )


def _valid_npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.array(3, np.int64))
    return buf.getvalue()


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, pos, value in edits:
        if not out:
            break
        pos %= len(out)
        if kind == 0:
            out[pos] = value
        elif kind == 1:
            del out[pos:]
        else:
            out[pos:pos] = bytes([value])
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300)
@given(EDITS)
def test_safetensors_mutations(edits):
    data = mutate(_valid_safetensors(), edits)
    try:
        tensors, _, _ = pc.read_tensors(data, format="safetensors")
    except ptth.PTTHError as exc:
        assert exc.reason == "bad_safetensors"
        return
    lib = stn.load(data)
    assert set(lib) == set(tensors)
    for name, t in tensors.items():
        if t.array.dtype != np.uint8 or t.dtype == "uint8":
            assert np.array_equal(lib[name], t.array, equal_nan=True)


@settings(max_examples=200)
@given(st.booleans(), EDITS)
def test_npz_mutations(compressed, edits):
    data = mutate(_valid_npz(compressed), edits)
    try:
        tensors, _, _ = pc.read_tensors(data, format="npz")
    except ptth.PTTHError as exc:
        assert exc.reason in ("bad_npz", "duplicate_name", "unsupported_dtype", "too_large")
        return
    # NpzFile directly: np.load would not look past bytes prepended to the zip, zipfile does
    with np.lib.npyio.NpzFile(io.BytesIO(data), allow_pickle=False) as ref:
        for name, t in tensors.items():
            if not t.dtype.startswith("unreadable"):
                assert np.array_equal(ref[name], t.array, equal_nan=True)


def test_crc_catches_a_flipped_payload_byte():
    data = bytearray(_valid_npz(False))
    pos = data.index(b"\x93NUMPY") + 128 + 4  # inside a's payload
    data[pos] ^= 0x40
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(bytes(data))
    assert err.value.reason == "bad_npz" and "CRC" in str(err.value)
    assert zlib.crc32(b"") == 0
