"""PTTHError: a ValueError with reason, offset and record that survives pickling."""

import copy
import pickle

import numpy as np
import pytest

import ptth
from blobs import check_error, error_of, header


def test_is_a_value_error():
    assert issubclass(ptth.PTTHError, ValueError)
    with pytest.raises(ValueError):
        ptth.loads(header(2))


def test_attributes_and_message():
    e = ptth.PTTHError("truncated", offset=12, record=0)
    assert (e.reason, e.offset, e.record) == ("truncated", 12, 0)
    assert str(e).startswith("truncated: ") and "offset 12" in str(e) and "record 0" in str(e)
    plain = ptth.PTTHError("overflow", "nope")
    assert (plain.offset, plain.record, plain.name) == (None, None, None)
    assert str(plain) == "overflow: nope"
    named = ptth.PTTHError("shape_mismatch", "x", name="fc.weight")
    assert named.name == "fc.weight" and pickle.loads(pickle.dumps(named)).name == "fc.weight"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles(protocol):
    e = ptth.PTTHError("duplicate_name", "twice", offset=17, record=3)
    back = pickle.loads(pickle.dumps(e, protocol))
    assert type(back) is ptth.PTTHError
    assert (back.reason, back.message, back.offset, back.record) == (
        "duplicate_name",
        "twice",
        17,
        3,
    )
    assert str(back) == str(e)
    assert copy.deepcopy(e).offset == 17


def test_raised_errors_pickle(backend):
    e = check_error(backend.loads, header(1), reason="truncated", offset=12, record=0)
    assert type(e) is ptth.PTTHError
    back = pickle.loads(pickle.dumps(e))
    assert (back.reason, back.offset, back.record, str(back)) == (
        e.reason,
        e.offset,
        e.record,
        str(e),
    )


def test_reasons_table():
    assert all(isinstance(k, str) and v for k, v in ptth.REASONS.items())
    for reason in (
        "bad_magic",
        "bad_version",
        "truncated",
        "bad_name",
        "duplicate_name",
        "too_many_dims",
        "bad_dtype",
        "size_overflow",
        "length_mismatch",
        "trailing_bytes",
        "too_large",
        "stream_corrupt",
        "bad_checksum",
        "stream_truncated",
        "stream_trailing",
        "unsupported_dtype",
        "not_ptth",
        "not_representable",
        "dtype_mismatch",
        "norm_exceeded",
        "overflow",
        "no_contributions",
        "bad_state",
        "closed",
    ):
        assert reason in ptth.REASONS


def test_every_error_carries_a_known_reason(backend):
    # error_of() asserts reason in REASONS; a sample from each family
    seen = {
        error_of(backend.loads, b"").reason,
        error_of(backend.loads, header(1, version=3)).reason,
        error_of(backend.loads, b"\x78\x9c\xff\xff").reason,
        error_of(backend.dumps, {"x": [1, 2]}).reason,
        error_of(backend.loads, b"junk").reason,
    }
    assert seen == {"truncated", "bad_version", "stream_corrupt", "unsupported_dtype", "not_ptth"}


def test_errors_name_the_parameter(backend):
    """Once a record's name is known, the error carries it."""
    good = ptth.dumps({"fc.weight": np.ones(3, np.float32), "fc.bias": np.ones(2, np.float32)})
    err = error_of(backend.loads, good[:-1])
    assert (err.reason, err.record, err.name) == ("truncated", 1, "fc.bias")
    agg = backend.Aggregator({"fc.weight": np.zeros((3, 1), np.float32)})
    err = error_of(agg.add, good)
    assert (err.reason, err.name) == ("shape_mismatch", "fc.weight")
    assert "(3,)" in err.message and "(3, 1)" in err.message
