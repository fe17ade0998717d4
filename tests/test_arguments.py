"""Argument handling: bad values are PTTHError("bad_argument") (or the named reason), the same on both backends."""

from __future__ import annotations

import numpy as np
import pytest

ONE = {"a": np.ones(2)}

CASES = {
    "numpy integers accepted": (lambda b: sorted(b.loads(b.dumps(ONE, compress=np.int64(3)),
                                                         max_size=np.int32(1000))), None),
    "bool level": (lambda b: b.compress(b"x", True), "bad_argument"),
    "level 12": (lambda b: b.compress(b"x", 12), "bad_argument"),
    "float level": (lambda b: b.dumps(ONE, compress=6.0), "bad_argument"),
    "unknown wrapper, no compression": (lambda b: b.dumps(ONE, wrapper="lz4"), "bad_argument"),
    "decompress unknown wrapper": (lambda b: b.decompress(b"PTTH", wrapper="lz4"), "bad_argument"),
    "negative max_size": (lambda b: b.loads(b.dumps(ONE), max_size=-1), "bad_argument"),
    "byteorder x": (lambda b: b.loads(b.dumps(ONE), byteorder="x"), "bad_argument"),
    "byteorder None": (lambda b: b.loads(b.dumps(ONE), byteorder=None), "bad_argument"),
    "dumps not a mapping": (lambda b: b.dumps([np.ones(2)]), "bad_argument"),
    "dumps int key": (lambda b: b.dumps({1: np.ones(2)}), "bad_argument"),
    "dumps surrogate name": (lambda b: b.dumps({"\udc80": np.ones(2)}), "bad_name"),
    "dumps int64": (lambda b: b.dumps({"a": np.ones(2, np.int64)}), "unsupported_dtype"),
    "dumps ragged": (lambda b: b.dumps({"a": [[1], [1, 2]]}), "bad_argument"),
    "dumps dtype int8": (lambda b: b.dumps(ONE, dtype="int8"), "bad_argument"),
    "compute_delta dtype int8": (lambda b: b.compute_delta({}, {}, dtype="int8"), "bad_argument"),
    "compute_delta int64": (lambda b: b.compute_delta({"a": np.ones(2, np.int64)},
                                                      {"a": np.ones(2, np.int64)}),
                            "unsupported_dtype"),
    "apply_delta float16 base": (lambda b: b.apply_delta(
        {"a": np.array([1, 2], np.float16)}, {"a": np.array([0.1, 3], np.float32)},
        scale=0.5)["a"].view(np.uint16).tolist(), None),
    "apply_delta int32 base, float delta": (lambda b: b.apply_delta(
        {"a": np.ones(2, np.int32)}, {"a": np.ones(2, np.float32)}), "unsupported_dtype"),
    "apply_delta scale str": (lambda b: b.apply_delta(ONE, ONE, scale="x"), "bad_argument"),
    "to_float16 list of str": (lambda b: b.to_float16(np.array(["a"])), "unsupported_dtype"),
    "loads str": (lambda b: b.loads("PTTH"), "bad_argument"),
    "aggregator accumulate": (lambda b: b.Aggregator(ONE, accumulate="int8"), "bad_argument"),
    "aggregator weight str": (lambda b: b.Aggregator(ONE).add(ONE, "1"), "bad_argument"),
}


def outcome(fn, backend):
    try:
        return ("ok", fn(backend))
    except Exception as exc:  # noqa: BLE001 - the type is part of what is compared
        return (type(exc).__name__, getattr(exc, "reason", str(exc)))


@pytest.mark.parametrize("case", list(CASES))
def test_arguments(native, pure, case):
    fn, reason = CASES[case]
    got_native, got_pure = outcome(fn, native), outcome(fn, pure)
    assert got_native == got_pure
    if reason is None:
        assert got_native[0] == "ok"
    else:
        assert got_native == ("PTTHError", reason)
