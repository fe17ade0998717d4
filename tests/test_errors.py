"""PTTHError: a ValueError with reason, offset and record that survives pickling."""

import copy
import pickle

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
    plain = ptth.PTTHError("bad_argument", "nope")
    assert (plain.offset, plain.record) == (None, None)
    assert str(plain) == "bad_argument: nope"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles(protocol):
    e = ptth.PTTHError("duplicate_name", "twice", offset=17, record=3)
    back = pickle.loads(pickle.dumps(e, protocol))
    assert type(back) is ptth.PTTHError
    assert (back.reason, back.message, back.offset, back.record) == ("duplicate_name", "twice", 17, 3)
    assert str(back) == str(e)
    assert copy.deepcopy(e).offset == 17


def test_raised_errors_pickle(backend):
    e = check_error(backend.loads, header(1), reason="truncated", offset=12, record=0)
    assert type(e) is ptth.PTTHError
    back = pickle.loads(pickle.dumps(e))
    assert (back.reason, back.offset, back.record, str(back)) == (
        e.reason, e.offset, e.record, str(e))


def test_reasons_table():
    assert all(isinstance(k, str) and v for k, v in ptth.REASONS.items())
    for reason in ("bad_magic", "bad_version", "truncated", "bad_name", "duplicate_name",
                   "too_many_dims", "bad_dtype", "size_overflow", "length_mismatch",
                   "trailing_bytes", "too_large", "stream_corrupt", "bad_checksum",
                   "stream_truncated", "stream_trailing", "bad_argument", "unsupported_dtype",
                   "closed"):
        assert reason in ptth.REASONS


def test_every_error_carries_a_known_reason(backend):
    # error_of() asserts reason in REASONS; a sample from each family
    seen = {error_of(backend.loads, b"").reason,
            error_of(backend.loads, header(1, version=3)).reason,
            error_of(backend.loads, b"\x78\x9c\xff\xff").reason,
            error_of(backend.dumps, {"x": [1, 2]}).reason,
            error_of(backend.compress, b"", 11).reason}
    assert seen == {"truncated", "bad_version", "stream_corrupt", "unsupported_dtype",
                    "bad_argument"}
