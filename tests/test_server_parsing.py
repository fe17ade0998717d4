"""The server's pure request parsers: results against json/base64, and only BadRequest out."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

parsing = pytest.importorskip("ptth.server.parsing")  # the server extra (ptth[server])
BadRequest = parsing.BadRequest

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
metadata = st.dictionaries(
    st.text(max_size=12).filter(
        lambda k: k not in ("weights_data", "sample_count", "update_format", "round")
    ),
    json_values,
    max_size=5,
)


def _body(blob, count, fmt, meta, *, escape_slashes, indent, first):
    obj = {
        "weights_data": base64.b64encode(blob).decode(),
        "sample_count": count,
        "update_format": fmt,
    }
    items = list(meta.items())
    obj = dict(items + list(obj.items())) if first else dict(list(obj.items()) + items)
    text = json.dumps(obj, indent=indent)
    if escape_slashes:
        text = text.replace("/", "\\/")
    return text.encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    blob=st.binary(max_size=300),
    count=st.integers(1, 10**6) | st.floats(0.001, 1e9),
    fmt=st.sampled_from(["delta", "weights", "state_dict"]),
    meta=metadata,
    escape=st.booleans(),
    indent=st.sampled_from([None, 1]),
    first=st.booleans(),
    as_bytearray=st.booleans(),
)
def test_json_update_matches_json_and_base64(
    blob, count, fmt, meta, escape, indent, first, as_bytearray
):
    body = _body(blob, count, fmt, meta, escape_slashes=escape, indent=indent, first=first)
    got = parsing.parse_json_update(bytearray(body) if as_bytearray else body)
    ref = json.loads(body)
    assert got.blob == base64.b64decode(ref["weights_data"], validate=True) == blob
    assert got.weight == float(count)
    assert got.kind == parsing.KINDS[fmt]
    assert got.metadata == {
        k: v for k, v in ref.items() if k not in ("weights_data", "sample_count", "update_format")
    }


def test_the_field_is_found_only_at_the_top_level():
    blob = b"PTTH\x00\x00\x00\x01\x00\x00\x00\x00"
    b64 = base64.b64encode(blob).decode()
    body = json.dumps(
        {
            "note": '"weights_data": "AAAA"',
            "nested": {"weights_data": "QUJD"},
            "list": [{"weights_data": "x"}, "}", "{", "\\"],
            "weights_data": b64,
            "sample_count": 3,
            "update_format": "delta",
            "round": 4,
        }
    ).encode()
    u = parsing.parse_json_update(body)
    assert u.blob == blob and u.round == 4
    assert u.metadata["nested"] == {"weights_data": "QUJD"}


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "bad_json"),
        (b"[1]", "bad_json"),
        (b"{}", "missing_field"),
        (b'{"weights_data": "UFRUSA==", "weights_data": "UFRUSA=="}', "bad_json"),
        (b'{"weights_data": 5}', "bad_json"),
        (b'{"weights_\\u0064ata": "UFRUSA=="}', "bad_json"),
        (b'{"weights_data": "UFRUSA=="', "bad_json"),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": 1, "update_format": "delta"} x',
            "bad_json",
        ),
        (
            b'{"weights_data": "UFRU\\u0053A==", "sample_count": 1, "update_format": "delta"}',
            "bad_base64",
        ),
        (
            b'{"weights_data": "UFR USA==", "sample_count": 1, "update_format": "delta"}',
            "bad_base64",
        ),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": "3", "update_format": "delta"}',
            "bad_weight",
        ),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": 1e999, "update_format": "delta"}',
            "bad_weight",
        ),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": 1, "update_format": "delta", '
            b'"round": -1}',
            "bad_round",
        ),
        (b'\xef\xbb\xbf{"weights_data": ""}', "bad_json"),
        (b"{" * 100_000, "bad_json"),
    ],
)
def test_bad_json_bodies(body, reason):
    with pytest.raises(BadRequest) as info:
        parsing.parse_json_update(body)
    assert info.value.reason == reason and info.value.status == 400


def test_weight_cap_rejects_instead_of_clamping():
    body = _body(b"PTTH", 500, "delta", {}, escape_slashes=False, indent=None, first=False)
    with pytest.raises(BadRequest) as info:
        parsing.parse_json_update(body, max_weight=100)
    assert info.value.reason == "weight_too_large"
    assert parsing.parse_weight("100", max_weight=100) == 100.0


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_result_or_bad_request(data):
    try:
        parsing.parse_json_update(data)
    except BadRequest as exc:
        assert exc.reason in (
            "bad_json",
            "missing_field",
            "bad_base64",
            "bad_weight",
            "weight_too_large",
            "bad_update_format",
            "bad_round",
        )


@settings(max_examples=300)
@given(st.text(max_size=40) | st.none())
def test_header_parsers_raise_only_bad_request(value):
    for call in (
        lambda: parsing.parse_weight(value),
        lambda: parsing.parse_kind(value),
        lambda: parsing.parse_byteorder(value, default="<"),
        lambda: parsing.parse_round(value),
        lambda: parsing.parse_idempotency_key(value),
        lambda: parsing.parse_content_length(value, limit=1000),
    ):
        try:
            call()
        except BadRequest:
            pass
    token = parsing.parse_bearer(value)
    assert token is None or (token and token == token.strip())


@pytest.mark.parametrize("value, want", [("12", 12.0), (" 0.5 ", 0.5), ("1e3", 1000.0)])
def test_weights(value, want):
    assert parsing.parse_weight(value) == want


@pytest.mark.parametrize("value", ["0", "-3", "inf", "nan", "", "abc", "1" * 70])
def test_bad_weights(value):
    with pytest.raises(BadRequest):
        parsing.parse_weight(value)


def test_content_length_limit_is_413():
    with pytest.raises(BadRequest) as info:
        parsing.parse_content_length("1001", limit=1000)
    assert info.value.status == 413 and info.value.reason == "body_too_large"
    assert parsing.parse_content_length(None, limit=1) is None
    with pytest.raises(BadRequest):
        parsing.parse_content_length("-1", limit=1000)
