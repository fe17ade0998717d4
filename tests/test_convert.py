"""ptth.convert: formats, the dtype policy and its report, views, atomic writes, arguments.

References come from NumPy (np.load/np.savez) and the safetensors library, never
from ptth.convert itself.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest
import safetensors.numpy as stn
from safetensors import safe_open

import ptth
import ptth.convert as pc

RNG = np.random.default_rng(1234)


def model(rng=RNG):
    """A state_dict-like model of PTTH dtypes (odd sizes so offsets are unaligned)."""
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(3).astype(np.float64),
        "bn.running_mean": rng.standard_normal(5).astype(np.float16),
        "bn.num_batches_tracked": np.array(17, np.int32),
        "empty": np.zeros((0, 3), np.float32),
        "gewicht.ä": rng.standard_normal((2, 1)).astype(np.float32),
    }


def same(a: dict, b: dict):
    assert list(a) == list(b)
    for k, x in a.items():
        assert x.dtype == b[k].dtype and x.shape == b[k].shape, k
        assert np.array_equal(x, b[k], equal_nan=True), k


def to_bytes(tensors, fmt, **kw):
    buf = io.BytesIO()
    pc.save_model(tensors, buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", pc.FORMATS)
def test_roundtrip_each_format(fmt, tmp_path):
    m = model()
    path = tmp_path / f"m.{fmt}"
    rep = pc.save_model(m, path)
    assert rep.target_format == fmt and rep.converted == list(m)
    assert rep.bytes_written == path.stat().st_size
    assert rep.parameters == sum(v.size for v in m.values())
    same(pc.load_model(path), m)
    assert pc.detect_format(path.read_bytes()) == fmt
    assert pc.detect_format(path) == fmt


def test_safetensors_matches_the_library():
    m = model()
    ours = to_bytes(m, "safetensors", align=True, metadata={"format": "pt"})
    assert ours == stn.save(m, metadata={"format": "pt"})
    same(dict(sorted(stn.load(ours).items())), dict(sorted(m.items())))
    # default order keeps the mapping's order and the library still reads it
    same({k: stn.load(to_bytes(m, "safetensors"))[k] for k in m}, m)


def test_library_files_load():
    m = model()
    blob = stn.save(m, metadata={"a": "1"})
    rep = pc.ConversionReport()
    got = pc.load_model(blob, report=rep)
    same({k: got[k] for k in m}, m)
    assert rep.metadata == {"a": "1"} and rep.source_format == "safetensors"


def test_npz_matches_numpy(tmp_path):
    m = model()
    for compress in (None, 6):
        data = to_bytes(m, "npz", compress=compress)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            same({k: z[k] for k in m}, m)
    np.savez(tmp_path / "a.npz", **m)
    np.savez_compressed(tmp_path / "b.npz", **m)
    same(pc.load_model(tmp_path / "a.npz"), m)
    same(pc.load_model(tmp_path / "b.npz"), m)


@pytest.mark.parametrize("fmt", pc.FORMATS)
def test_empty_model(fmt):
    # found by the fuzzer: an empty zip is 22 bytes, and zipfile seeks before its start
    assert pc.load_model(to_bytes({}, fmt)) == {}


def test_npz_output_is_deterministic():
    m = model()
    assert to_bytes(m, "npz") == to_bytes(m, "npz")


def test_npz_fortran_and_big_endian():
    a = np.asfortranarray(RNG.standard_normal((3, 4)))
    b = np.arange(6, dtype=">i4").reshape(2, 3)
    buf = io.BytesIO()
    np.savez(buf, a=a, b=b)
    got = pc.load_model(buf.getvalue())
    assert np.array_equal(got["a"], a) and np.array_equal(got["b"], b)
    assert ptth.loads(ptth.dumps(got))["b"].tolist() == b.tolist()


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "ptth"])
def test_views_into_the_mapped_file(fmt, tmp_path):
    m = {"w": np.arange(1000, dtype=np.float32), "b": np.ones(3, np.float64)}
    path = tmp_path / f"v.{fmt}"
    pc.save_model(m, path)
    got = pc.load_model(path)
    for arr in got.values():
        assert not arr.flags.writeable and not arr.flags.owndata
    del got
    os.unlink(path)  # the map keeps the data; nothing is left open by name


def test_bytes_and_file_sources():
    m = model()
    for fmt in pc.FORMATS:
        data = to_bytes(m, fmt)
        same(pc.load_model(data), m)
        same(pc.load_model(io.BytesIO(data), format=fmt), m)
        same(pc.load_model(memoryview(bytearray(data))), m)


# ---- the policy ------------------------------------------------------------------------


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of float32 values that are exact in bfloat16."""
    bits = values.astype(np.float32).view(np.uint32)
    assert not (bits & 0xFFFF).any()
    return (bits >> 16).astype(np.uint16)


def handmade_safetensors(entries, metadata=None) -> bytes:
    """A safetensors file written here by hand from (name, code, shape, raw bytes)."""
    header, offset, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, code, shape, raw in entries:
        header[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def state_dict_file():
    values = np.array([1.0, -2.5, 3.0e38, 2.0**-130, 0.0, -0.0], np.float32)
    values[2] = np.float32(np.uint32(0x7F7F0000).view(np.float32))  # largest bfloat16
    return values, handmade_safetensors(
        [
            ("w.bf16", "BF16", (2, 3), bf16_bits(values).tobytes()),
            ("bn.num_batches_tracked", "I64", (), np.array(123456, "<i8").tobytes()),
            ("mask", "BOOL", (3,), bytes([1, 0, 1])),
            ("q", "I8", (2,), bytes([0xFF, 1])),
            ("f8", "F8_E4M3", (2,), bytes([0x38, 0xB8])),
            ("cplx", "C64", (1,), np.array([1 + 2j], "<c8").tobytes()),
            ("big", "I64", (2,), np.array([1, 2**40], "<i8").tobytes()),
            ("u", "U32", (2,), np.array([7, 2**31 - 1], "<u4").tobytes()),
        ],
        metadata={"format": "pt", "step": "9"},
    )


def test_policy_refuses_by_default_naming_the_tensor():
    _, blob = state_dict_file()
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(blob)
    assert err.value.reason == "unsupported_dtype" and "'mask'" in str(err.value)
    assert "skip" in str(err.value)


def test_policy_skip_reports_everything():
    values, blob = state_dict_file()
    rep = pc.ConversionReport()
    got = pc.load_model(blob, unsupported="skip", report=rep)
    assert list(got) == ["w.bf16", "bn.num_batches_tracked", "u"]
    assert got["w.bf16"].dtype == np.float32
    assert np.array_equal(got["w.bf16"].reshape(-1).view(np.uint32), values.view(np.uint32))
    assert (
        got["bn.num_batches_tracked"].dtype == np.int32
        and int(got["bn.num_batches_tracked"]) == 123456
    )
    assert got["u"].dtype == np.int32 and got["u"].tolist() == [7, 2**31 - 1]
    assert rep.widened == ["w.bf16"] and rep.narrowed == ["bn.num_batches_tracked", "u"]
    assert set(rep.skipped) == {"mask", "q", "f8", "cplx", "big"}
    assert "int32" in rep.skipped["big"] and "bool" in rep.skipped["mask"]
    assert rep.tensors["w.bf16"] == ("bfloat16", "float32")
    assert rep.metadata == {"format": "pt", "step": "9"}


def test_int64_out_of_range_is_an_error_naming_it():
    with pytest.raises(ptth.PTTHError) as err:
        pc.save_model({"steps": np.array([2**31])}, io.BytesIO(), format="ptth")
    assert err.value.reason == "overflow" and "'steps'" in str(err.value)
    assert pc.save_model(
        {"steps": np.array([-(2**31), 2**31 - 1])}, io.BytesIO(), format="ptth"
    ).narrowed == ["steps"]


def test_policy_switches_turn_widening_and_narrowing_off():
    _, blob = state_dict_file()
    rep = pc.ConversionReport()
    got = pc.load_model(
        blob, widen_bfloat16=False, narrow_int64=False, unsupported="skip", report=rep
    )
    assert got == {} and len(rep.skipped) == 8
    assert "widen_bfloat16=True" in rep.skipped["w.bf16"]


def test_convert_to_safetensors_keeps_every_dtype_and_metadata(tmp_path):
    _, blob = state_dict_file()
    out = io.BytesIO()
    rep = pc.convert(blob, out, dst_format="safetensors")
    assert rep.widened == rep.narrowed == [] and rep.skipped == {} and rep.dropped == {}
    n_in, n_out = (struct.unpack("<Q", b[:8])[0] for b in (blob, out.getvalue()))
    assert out.getvalue()[8 + n_out :] == blob[8 + n_in :]  # the data section, byte for byte
    assert json.loads(out.getvalue()[8 : 8 + n_out]) == json.loads(blob[8 : 8 + n_in])
    path = tmp_path / "all.safetensors"
    path.write_bytes(out.getvalue())
    with safe_open(str(path), framework="np") as f:  # the library's parser accepts it
        assert f.metadata() == {"format": "pt", "step": "9"}
        assert set(f.keys()) == set(json.loads(blob[8 : 8 + n_in])) - {"__metadata__"}
        assert f.get_tensor("big").tolist() == [1, 2**40] and f.get_tensor("mask").dtype == bool
    tensors, meta, _ = pc.read_tensors(out.getvalue())
    assert meta == {"format": "pt", "step": "9"} and tensors["f8"].dtype == "float8_e4m3fn"
    assert bytes(tensors["f8"].array) == bytes([0x38, 0xB8])


def test_convert_to_ptth_and_npz_drops_metadata_and_says_so():
    _, blob = state_dict_file()
    for fmt in ("ptth", "npz"):
        rep = pc.convert(blob, io.BytesIO(), dst_format=fmt, unsupported="skip")
        assert "__metadata__" in rep.dropped and "format, step" in rep.dropped["__metadata__"]
    rep = pc.convert(blob, io.BytesIO(), dst_format="npz", unsupported="skip")
    assert set(rep.skipped) == {"f8"}  # npz holds bool, int8, complex and int64
    assert rep.widened == ["w.bf16"] and rep.narrowed == []


def test_canonical_dtype_names():
    from ptth.convert._dtypes import canonical_dtype

    assert canonical_dtype(np.dtype(">i8")) == "int64"
    assert canonical_dtype(np.dtype(bool)) == "bool"
    assert canonical_dtype(np.dtype("<c16")) == "complex128"
    for odd in (object, "U3", "M8[ns]", [("x", "<u2")]):
        assert canonical_dtype(np.dtype(odd)) is None


def test_names_the_targets_cannot_hold():
    w = np.ones(1, np.float32)
    with pytest.raises(ptth.PTTHError) as err:
        pc.save_model({"__metadata__": w}, io.BytesIO(), format="safetensors")
    assert err.value.reason == "unsupported_name" and "__metadata__" in str(err.value)
    with pytest.raises(ptth.PTTHError) as err:
        pc.save_model({"a\x00b": w}, io.BytesIO(), format="npz")
    assert err.value.reason == "unsupported_name"
    for fmt in pc.FORMATS:
        with pytest.raises(ptth.PTTHError) as err:
            pc.save_model({"\ud800": w}, io.BytesIO(), format=fmt)
        assert err.value.reason == "unsupported_name"
    # what they can: empty names, slashes, unicode
    odd = {"": w, "a/b": w, "ü.ñ": w}
    for fmt in pc.FORMATS:
        same(pc.load_model(to_bytes(odd, fmt)), odd)


def test_object_arrays_are_refused_even_when_skipping():
    buf = io.BytesIO()
    np.savez(buf, ok=np.ones(2), obj=np.array([{"x": 1}], dtype=object))
    for unsupported in ("error", "skip"):
        with pytest.raises(ptth.PTTHError) as err:
            pc.load_model(buf.getvalue(), unsupported=unsupported)
        assert err.value.reason == "unsupported_dtype" and "never unpickles" in str(err.value)


def test_pytorch_zip_gets_a_hint(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ptth.PTTHError) as err:
        pc.load_model(path)
    assert err.value.reason == "bad_npz" and "PyTorch" in str(err.value)


# ---- writing -----------------------------------------------------------------------


def test_failed_write_leaves_the_target_untouched(tmp_path):
    path = tmp_path / "model.ptth"
    pc.save_model({"a": np.ones(2, np.float32)}, path)
    before = path.read_bytes()
    with pytest.raises(ptth.PTTHError):
        pc.save_model({"a": np.ones(2, np.float32), "b": np.ones(2, bool)}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.ptth"]  # no temporary left behind


def test_convert_in_place(tmp_path):
    path = tmp_path / "m.npz"
    m = model()
    pc.save_model(m, path)
    pc.convert(path, path, dst_format="npz", compress=9)
    same(pc.load_model(path), m)


def test_ptth_options(tmp_path):
    m = model()
    rep = pc.save_model(m, tmp_path / "m.ptth", compress=6, wrapper="gzip")
    data = (tmp_path / "m.ptth").read_bytes()
    assert ptth.detect_wrapper(data) == "gzip" and rep.bytes_written == len(data)
    same(pc.load_model(data), m)
    android = ptth.dumps({"w": np.array([1.0, -2.0], ">f4").astype("<f4")})
    be = android[:-8] + np.array([1.0, -2.0], ">f4").tobytes()
    assert pc.load_model(be, byteorder=">")["w"].tolist() == [1.0, -2.0]


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: pc.load_model(b"", format="onnx"), ValueError),
        (lambda: pc.load_model(12), TypeError),
        (lambda: pc.load_model(b"PTTH", unsupported="drop"), ValueError),
        (lambda: pc.load_model(b"PTTH", widen_bfloat16="yes"), TypeError),
        (lambda: pc.load_model(b"PK\x05\x06" + bytes(18), byteorder=">"), ValueError),
        (lambda: pc.load_model(b"PTTH", max_size=-1), ValueError),
        (lambda: pc.load_model(b"PTTH", report={}), TypeError),
        (lambda: pc.save_model({}, "model.bin"), ValueError),
        (lambda: pc.save_model({}, io.BytesIO(), format="ptth", compress=10), ValueError),
        (lambda: pc.save_model({}, io.BytesIO(), format="ptth", compress=True), ValueError),
        (lambda: pc.save_model({}, io.BytesIO(), format="ptth", wrapper="zstd"), ValueError),
        (lambda: pc.save_model({}, io.BytesIO(), format="ptth", metadata={"a": "b"}), ValueError),
        (
            lambda: pc.save_model({}, io.BytesIO(), format="safetensors", metadata={"a": 1}),
            TypeError,
        ),
        (lambda: pc.save_model({}, io.BytesIO(), format="safetensors", compress=1), ValueError),
        (lambda: pc.save_model([], io.BytesIO(), format="npz"), TypeError),
        (lambda: pc.save_model({1: np.ones(1)}, io.BytesIO(), format="npz"), TypeError),
        (lambda: pc.save_model({}, io.StringIO(), format="npz"), TypeError),
        (lambda: pc.save_model({}, 3.5, format="npz"), TypeError),
        (lambda: pc.detect_format(3), TypeError),
    ],
)
def test_bad_arguments_are_plain_errors(call, exc):
    with pytest.raises(exc) as err:
        call()
    assert not isinstance(err.value, ptth.PTTHError)


def test_unsupported_array_types():
    with pytest.raises(ptth.PTTHError) as err:
        pc.save_model({"s": np.array(["a"])}, io.BytesIO(), format="npz")
    assert err.value.reason == "unsupported_dtype" and "'s'" in str(err.value)
    rep = pc.save_model(
        {"c": np.ones(2, np.complex128), "w": np.ones(1, np.float32)},
        io.BytesIO(),
        format="safetensors",
        unsupported="skip",
    )
    assert list(rep.skipped) == ["c"] and rep.converted == ["w"]


def test_report_is_json_ready():
    _, blob = state_dict_file()
    rep = pc.convert(blob, io.BytesIO(), dst_format="ptth", unsupported="skip")
    again = json.loads(json.dumps(rep.to_dict()))
    assert again["widened"] == ["w.bf16"] and again["source_format"] == "safetensors"
    assert any(line.startswith("skipped big") for line in rep.lines())
