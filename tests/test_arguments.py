"""Argument agreement by construction: every public call, one argument at a time made wild.

For each public function and method, hypothesis replaces one argument of a
valid call with an arbitrary value (wrong types, out-of-range numbers, NaN,
huge integers, odd strings, exotic arrays and buffers) and runs the call over
both engines. Both must return equal results or raise the same exception
type; a PTTHError must carry the same reason, offset, record and name; a
TypeError or ValueError (a bad argument) must name the argument it is about.
"""

from __future__ import annotations

import decimal
import fractions
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ptth
from blobs import describe_array

BLOB = ptth.dumps({"w": np.array([1.0, -2.0], np.float32), "s": np.array(3, np.int32)})
ZBLOB = ptth.dumps({"w": np.array([0.5, 0.25], np.float32)}, dtype="float16", compress=6)
TEMPLATE = {"w": np.zeros(2, np.float32), "s": np.array(0, np.int32)}
F32 = np.array([1.5, -2.0, 1e-3], np.float32)


def _wild_values():
    """Values no argument should crash on, each built fresh (arrays are mutable)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.sampled_from([0, 1, 3, 6, 9, 10, -1, 2**31, 2**32, 2**63, 2**64, 2**64 - 1]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(
            [
                "<",
                ">",
                "auto",
                "zlib",
                "gzip",
                "deflate",
                "none",
                "float16",
                "float32",
                "float64",
                "int32",
                "int8",
                "delta",
                "full",
                "",
                "\udc80",
                "x",
                "big",
                "PTTH",
            ]
        ),
        st.text(max_size=4),
        st.binary(max_size=16),
        st.builds(lambda: fractions.Fraction(1, 3)),
        st.builds(lambda: decimal.Decimal("1.5")),
        st.builds(lambda: complex(1, 1)),
        st.builds(lambda: object()),
        st.sampled_from(["np.float32", "np.int64", "np.bool_", "np.nan"]).map(
            lambda k: {
                "np.float32": np.float32(2),
                "np.int64": np.int64(5),
                "np.bool_": np.bool_(True),
                "np.nan": np.float64("nan"),
            }[k]
        ),
        st.sampled_from(["list", "dict", "tuple"]).map(
            lambda k: {"list": [1, 2], "dict": {}, "tuple": (1,)}[k]
        ),
        st.sampled_from(["obj", "f16", "i8", "nc", "be", "empty2d", "u8", "f32x"]).map(_array),
        st.sampled_from(["mv", "mv0", "ba"]).map(_buffer),
        st.sampled_from(["dict-bad", "dict-int-key", "dict-ok", "dict-f16", "dict-nan"]).map(
            _mapping
        ),
    )


def _array(kind):
    return {
        "obj": lambda: np.array([b"P"], dtype=object),
        "f16": lambda: np.ones(3, np.float16),
        "i8": lambda: np.ones(3, np.int8),
        "nc": lambda: np.ones(8, np.float32)[::2],
        "be": lambda: np.ones(3, ">f4"),
        "empty2d": lambda: np.zeros((0, 4), np.float32),
        "u8": lambda: np.frombuffer(BLOB, np.uint8).copy(),
        "f32x": lambda: np.ones((2, 3), np.float32),
    }[kind]()


def _buffer(kind):
    return {
        "mv": lambda: memoryview(BLOB),
        "mv0": lambda: memoryview(np.zeros((0, 4), np.float32)),
        "ba": lambda: bytearray(ZBLOB),
    }[kind]()


def _mapping(kind):
    return {
        "dict-bad": lambda: {"w": "text"},
        "dict-int-key": lambda: {1: np.ones(2, np.float32)},
        "dict-ok": lambda: {"w": np.ones(2, np.float32)},
        "dict-f16": lambda: {"w": np.ones(2, np.float16), "s": np.array(1, np.int32)},
        "dict-nan": lambda: {"w": np.array([np.nan, 1], np.float32)},
    }[kind]()


WILD = _wild_values()


def canon(value):
    """A result made comparable across engines."""
    if isinstance(value, np.ndarray):
        return describe_array(value)
    if isinstance(value, dict):
        return ("dict", [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, ptth.PTTHError):
        return ("PTTHError", value.reason, value.offset, value.record, value.name)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [canon(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def outcome(call, api):
    try:
        return ("ok", canon(call(api)))
    except ptth.PTTHError as exc:
        return canon(exc)
    except (TypeError, ValueError, OverflowError, OSError, IndexError) as exc:
        return (type(exc).__name__, str(exc))


# Each call: its valid arguments, and how to run it with them. Arguments are
# produced by callables so every run gets fresh objects.
CALLS = {
    "loads": (
        {
            "data": lambda: BLOB,
            "copy": lambda: False,
            "byteorder": lambda: "<",
            "relabel_float32": lambda: False,
            "max_size": lambda: None,
        },
        lambda api, a: api.loads(a.pop("data"), **a),
    ),
    "loads-z": (
        {
            "data": lambda: ZBLOB,
            "copy": lambda: True,
            "byteorder": lambda: "auto",
            "relabel_float32": lambda: "auto",
            "max_size": lambda: 1000,
        },
        lambda api, a: api.loads(a.pop("data"), **a),
    ),
    "dumps": (
        {
            "tensors": lambda: {"w": F32.copy()},
            "dtype": lambda: "float16",
            "compress": lambda: 6,
            "wrapper": lambda: "gzip",
            "saturate": lambda: False,
        },
        lambda api, a: api.dumps(a.pop("tensors"), **a),
    ),
    "compress": (
        {"data": lambda: BLOB, "level": lambda: 6, "wrapper": lambda: "zlib"},
        lambda api, a: api.compress(a["data"], a["level"], a["wrapper"]),
    ),
    "decompress": (
        {"data": lambda: ZBLOB, "wrapper": lambda: "auto", "max_size": lambda: None},
        lambda api, a: api.decompress(a.pop("data"), **a),
    ),
    "detect_wrapper": ({"data": lambda: ZBLOB}, lambda api, a: api.detect_wrapper(a["data"])),
    "Decoder": (
        {
            "copy": lambda: True,
            "byteorder": lambda: "<",
            "relabel_float32": lambda: False,
            "max_size": lambda: None,
            "chunk": lambda: ZBLOB,
        },
        lambda api, a: _decode(api, a),
    ),
    "to_float16": (
        {"x": lambda: F32.copy(), "out": lambda: None},
        lambda api, a: api.to_float16(a["x"], out=a["out"]),
    ),
    "to_float32": (
        {"h": lambda: F32.astype(np.float16), "out": lambda: None},
        lambda api, a: api.to_float32(a["h"], out=a["out"]),
    ),
    "subtract": (
        {
            "updated": lambda: F32.copy(),
            "base": lambda: F32 / 2,
            "dtype": lambda: None,
            "out": lambda: None,
        },
        lambda api, a: api.subtract(a.pop("updated"), a.pop("base"), **a),
    ),
    "compute_delta": (
        {
            "updated": lambda: {"w": F32.copy()},
            "base": lambda: {"w": F32 / 2},
            "dtype": lambda: "float16",
        },
        lambda api, a: api.compute_delta(a.pop("updated"), a.pop("base"), **a),
    ),
    "apply_delta": (
        {"base": lambda: {"w": F32.copy()}, "delta": lambda: {"w": F32 / 2}, "scale": lambda: 0.5},
        lambda api, a: api.apply_delta(a.pop("base"), a.pop("delta"), **a),
    ),
    "Aggregator": (
        {
            "template": lambda: dict(TEMPLATE),
            "accumulate": lambda: "float64",
            "byteorder": lambda: "auto",
            "relabel_float32": lambda: "auto",
            "allow_cast": lambda: False,
            "allow_nonfinite": lambda: False,
            "max_size": lambda: None,
        },
        lambda api, a: _agg_round(api.Aggregator(a.pop("template"), **a)),
    ),
    "Aggregator.add": (
        {
            "update": lambda: BLOB,
            "weight": lambda: 2.0,
            "kind": lambda: "delta",
            "clip_norm": lambda: None,
            "max_norm": lambda: None,
            "max_abs": lambda: None,
            "allow_nonfinite": lambda: None,
            "allow_cast": lambda: None,
            "count_empty": lambda: False,
            "byteorder": lambda: "<",
            "relabel_float32": lambda: False,
            "max_size": lambda: None,
        },
        lambda api, a: _add(api, a),
    ),
    "Aggregator.add_many": (
        {
            "updates": lambda: [BLOB, ZBLOB],
            "weights": lambda: [1.0, 3.0],
            "kind": lambda: "delta",
            "clip_norm": lambda: 1.0,
        },
        lambda api, a: _agg(api).add_many(a.pop("updates"), a.pop("weights"), **a),
    ),
    "Aggregator.mean": (
        {
            "dtype": lambda: None,
            "out": lambda: None,
            "denominator": lambda: None,
            "allow_empty": lambda: False,
            "allow_nonfinite": lambda: False,
        },
        lambda api, a: _agg(api, add=True).mean(**a),
    ),
    "Aggregator.apply": (
        {
            "lr": lambda: 1.0,
            "dtype": lambda: None,
            "denominator": lambda: 4.0,
            "noise_std": lambda: 0.5,
            "allow_empty": lambda: False,
        },
        lambda api, a: _agg(api, add=True).apply(a.pop("lr"), rng=np.random.default_rng(0), **a),
    ),
    "Aggregator.sum": (
        {"dtype": lambda: "float64", "allow_empty": lambda: True},
        lambda api, a: _agg(api).sum(**a),
    ),
    "Aggregator.merge": (
        {"other": lambda: "same-template"},
        lambda api, a: _merge(api, a["other"]),
    ),
}


def _decode(api, a):
    chunk = a.pop("chunk")
    dec = api.Decoder(**a)
    out = dec.feed(chunk)
    dec.close()
    return out


def _agg(api, add=False):
    agg = api.Aggregator(TEMPLATE)
    if add:
        agg.add(BLOB, 2.0)
    return agg


def _agg_round(agg):
    agg.add(BLOB, 1.0)
    return agg.apply()


def _add(api, a):
    update, weight = a.pop("update"), a.pop("weight")
    return _agg(api).add(update, weight, **a)


def _merge(api, other):
    agg = _agg(api, add=True)
    if isinstance(other, str) and other == "same-template":
        other = _agg(api, add=True)
    agg.merge(other)
    return agg.apply()


# Words a bad-argument message may use for an argument.
ALIASES = {
    "tensors": ("tensor",),
    "relabel_float32": ("relabel_float32",),
    "update": ("update", "data"),
    "updates": ("update",),
    "template": ("template",),
    "updated": ("updated",),
    "base": ("base",),
    "delta": ("delta",),
    "other": ("merge",),
    "chunk": ("chunk",),
    "compress": ("compress", "level"),
    "weights": ("weight",),
}


@pytest.mark.parametrize("call", list(CALLS))
@settings(max_examples=60)
@given(data=st.data())
def test_engines_agree_on_every_argument(native, pure, call, data):
    params, run = CALLS[call]
    name = data.draw(st.sampled_from(list(params)), label="argument")
    wild = data.draw(WILD, label="value")
    outcomes = []
    for api in (native, pure):
        args = {k: make() for k, make in params.items()}
        args[name] = _fresh(wild)
        outcomes.append(outcome(lambda api, args=args: run(api, args), api))
    got_native, got_pure = outcomes
    # messages may differ between engines; the exception type and the reason may not
    if got_native[0] in ("TypeError", "ValueError", "OverflowError", "OSError", "IndexError"):
        assert got_pure[0] == got_native[0], (call, name, wild, got_native, got_pure)
        if got_native[0] in ("TypeError", "ValueError"):
            words = ALIASES.get(name, (name,))
            assert any(w in got_native[1] for w in words), (call, name, got_native)
    else:
        assert got_native == got_pure, (call, name, wild)


def _fresh(value):
    """A private copy of a mutable wild value, so the two engines see the same input."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in value.items()}
    return value


# The findings that motivated the generated test, pinned.


def test_fraction_weight_and_copy_keyword(native, pure):
    for api in (native, pure):
        agg = api.Aggregator(TEMPLATE)
        assert agg.add(BLOB, weight=fractions.Fraction(1, 2), copy=True).counted
        assert agg.total_weight == 0.5


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda api: api.compress(BLOB, level=2**70), ValueError),
        (lambda api: api.dumps({"w": F32}, dtype=object()), TypeError),
        (lambda api: api.loads(np.array([b"P"], dtype=object)), TypeError),
        (lambda api: api.Aggregator({"\udc80": F32}), ValueError),
        (lambda api: api.Aggregator(TEMPLATE).add(BLOB, weight=decimal.Decimal(1)), TypeError),
    ],
)
def test_pinned_argument_errors(native, pure, call, exc):
    for api in (native, pure):
        with pytest.raises(exc) as err:
            call(api)
        assert not isinstance(err.value, ptth.PTTHError)


def test_zero_size_buffers_of_any_shape(native, pure):
    for api in (native, pure):
        with pytest.raises(ptth.PTTHError) as err:
            api.loads(memoryview(np.zeros((0, 4), np.float32)))
        assert err.value.reason == "truncated"


def test_template_dimension_beyond_32_bits(native, pure):
    """A template parameter with a dim of 2**32 is kept exactly (no blob can match it)."""
    big = np.zeros((0, 2**32), np.float32)
    for api in (native, pure):
        agg = api.Aggregator({"e": big, "w": np.zeros(2, np.float32)})
        blob = api.dumps({"e": np.zeros((0, 2**32 - 1), np.float32)})
        with pytest.raises(ptth.PTTHError) as err:
            agg.add(blob)
        assert err.value.reason == "shape_mismatch" and "4294967296" in err.value.message
        assert agg.add({"e": big}).parameters == 1
