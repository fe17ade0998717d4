"""Pure functions that turn HTTP headers and bodies into update parameters.

Nothing here touches the network, the aggregator or the disk, so the fuzz
target (``fuzz/fuzz_server_parsing.py``) and the tests call these directly.
Every failure raises :class:`BadRequest` (a ``ValueError``); nothing else may
come out for any input.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pybase64

__all__ = [
    "KINDS",
    "BadRequest",
    "JsonUpdate",
    "parse_bearer",
    "parse_byteorder",
    "parse_content_length",
    "parse_idempotency_key",
    "parse_json_update",
    "parse_kind",
    "parse_round",
    "parse_weight",
]

#: ``update_format`` of the iOS JSON body -> ``kind`` of ``Aggregator.add``.
KINDS = {"delta": "delta", "weights": "full", "state_dict": "full"}

_MAX_KEY = 200
_KEY_RE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no spaces, no control characters


class BadRequest(ValueError):
    """A request the server cannot accept, before any blob is decoded.

    Attributes:
        reason: short stable code (e.g. ``"bad_weight"``, ``"bad_json"``).
        message: one line for the client.
        status: the HTTP status the server answers with (400 unless said).
    """

    def __init__(self, reason: str, message: str, status: int = 400):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass
class JsonUpdate:
    """The iOS JSON body, decoded.

    Attributes:
        blob: the PTTH blob (``weights_data`` base64-decoded).
        weight: ``sample_count`` as a float (> 0, finite).
        kind: ``"delta"`` or ``"full"`` (from ``update_format``).
        round: the ``round`` field if the client sent one, else ``None``.
        metadata: every other top-level field, as JSON values.
    """

    blob: bytes
    weight: float
    kind: str
    round: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_weight(value: str | None, *, max_weight: float | None = None) -> float:
    """The ``X-PTTH-Weight`` header (or ``sample_count``) as a positive finite float.

    Args:
        value: the header's text; ``None`` when absent.
        max_weight: optional cap; a larger weight is rejected (never clamped).

    Raises:
        BadRequest: ``missing_weight``, ``bad_weight`` or ``weight_too_large``.

    >>> parse_weight("120")
    120.0
    """
    if value is None:
        raise BadRequest("missing_weight", "X-PTTH-Weight is required (the sample count)")
    text = value.strip()
    if not text or len(text) > 64:
        raise BadRequest("bad_weight", "X-PTTH-Weight must be a positive number")
    try:
        weight = float(text)
    except ValueError:
        raise BadRequest("bad_weight", "X-PTTH-Weight must be a positive number") from None
    return _check_weight(weight, max_weight)


def _check_weight(weight: float, max_weight: float | None) -> float:
    if not (math.isfinite(weight) and weight > 0):
        raise BadRequest("bad_weight", "the weight must be a positive finite number")
    if max_weight is not None and weight > max_weight:
        raise BadRequest("weight_too_large", f"the weight exceeds the server's cap {max_weight:g}")
    return weight


def parse_kind(value: str | None, *, default: str | None = None) -> str:
    """The ``X-PTTH-Kind`` header: ``"delta"`` or ``"full"``.

    Args:
        value: the header's text; ``None`` when absent.
        default: what an absent header means, if the server was told
            (``--default-kind``); ``None`` makes the header required.

    Raises:
        BadRequest: ``missing_kind`` or ``bad_kind``.

    >>> parse_kind("full")
    'full'
    """
    if value is None:
        if default is None:
            raise BadRequest("missing_kind", "X-PTTH-Kind is required: delta or full")
        return default
    kind = value.strip().lower()
    if kind not in ("delta", "full"):
        raise BadRequest("bad_kind", "X-PTTH-Kind must be delta or full")
    return kind


def parse_byteorder(value: str | None, *, default: str) -> str:
    """The ``X-PTTH-Byteorder`` header (``<``, ``>`` or ``auto``), else the server's default.

    ``little``/``big`` are accepted as spellings of ``<``/``>``.

    Raises:
        BadRequest: ``bad_byteorder``.

    >>> parse_byteorder("big", default="<")
    '>'
    """
    if value is None:
        return default
    order = {"<": "<", ">": ">", "auto": "auto", "little": "<", "big": ">"}.get(
        value.strip().lower()
    )
    if order is None:
        raise BadRequest("bad_byteorder", "X-PTTH-Byteorder must be <, >, auto, little or big")
    return order


def parse_round(value: str | None) -> int | None:
    """The optional ``X-PTTH-Round`` header: the round an update was computed for.

    Raises:
        BadRequest: ``bad_round`` (not a non-negative decimal integer).

    >>> parse_round("3")
    3
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest("bad_round", "X-PTTH-Round must be a non-negative integer")
    return int(text)


def parse_idempotency_key(value: str | None) -> str:
    """The ``Idempotency-Key`` header: 1 to 200 visible ASCII characters.

    Raises:
        BadRequest: ``missing_idempotency_key`` or ``bad_idempotency_key``.

    >>> parse_idempotency_key("client-7/round-3")
    'client-7/round-3'
    """
    if value is None:
        raise BadRequest("missing_idempotency_key", "Idempotency-Key is required")
    key = value.strip()
    if not key or len(key) > _MAX_KEY or not _KEY_RE.fullmatch(key):
        raise BadRequest(
            "bad_idempotency_key",
            f"Idempotency-Key must be 1 to {_MAX_KEY} visible ASCII characters",
        )
    return key


def parse_bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``.

    Never raises: a missing or malformed header is simply no token (401).

    >>> parse_bearer("Bearer abc")
    'abc'
    """
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def parse_content_length(value: str | None, *, limit: int) -> int | None:
    """The ``Content-Length`` header checked against the body limit.

    Returns ``None`` when absent (a chunked body, bounded while it streams).

    Raises:
        BadRequest: ``bad_content_length`` (400) or ``body_too_large`` (413).

    >>> parse_content_length("10", limit=100)
    10
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadRequest("bad_content_length", "Content-Length must be a decimal integer")
    n = int(text)
    if n > limit:
        raise BadRequest("body_too_large", f"the body exceeds the limit of {limit} bytes", 413)
    return n


# ---- the iOS JSON body -------------------------------------------------------


def parse_json_update(
    body: bytes | bytearray | memoryview,
    *,
    max_weight: float | None = None,
    length: int | None = None,
) -> JsonUpdate:
    """Decode the iOS SDK's JSON upload without copying the whole blob twice.

    The top-level object is scanned for ``weights_data``; its base64 is decoded
    straight from a memoryview of the body (strict: only the standard alphabet
    with padding). The rest of the object, with that one value blanked, goes
    through :func:`json.loads`, so every other field is checked by the standard
    parser. ``\\/`` escapes (Apple's ``JSONSerialization`` writes them) cost one
    copy of the field; other escapes inside base64 are rejected.

    Args:
        body: the request body (UTF-8 JSON object); a memoryview is copied
            once, bytes and bytearray are read in place.
        max_weight: optional cap on ``sample_count``.
        length: only the first ``length`` bytes of ``body`` are the body (a
            reused buffer larger than the request); default: all of it.

    Returns:
        a :class:`JsonUpdate`; fields other than ``weights_data``,
        ``sample_count``, ``update_format`` and ``round`` land in ``metadata``.

    Raises:
        BadRequest: ``bad_json``, ``missing_field``, ``bad_base64``,
        ``bad_weight``, ``weight_too_large``, ``bad_update_format``, ``bad_round``.

    >>> u = parse_json_update(b'{"weights_data": "UFRUSA==", "sample_count": 3, '
    ...                       b'"update_format": "delta", "loss": 0.5}')
    >>> u.blob, u.weight, u.kind, u.metadata
    (b'PTTH', 3.0, 'delta', {'loss': 0.5})
    """
    data = body if isinstance(body, (bytes, bytearray)) else memoryview(body).cast("B").tobytes()
    n = len(data) if length is None else length
    if not 0 <= n <= len(data):
        raise ValueError(f"length must be between 0 and {len(data)}, not {length}")
    span = _find_top_level_string(data, n, b"weights_data")
    if span is None:
        raise BadRequest("missing_field", "the JSON body has no weights_data")
    start, end = span  # the value's characters, without the quotes
    # Everything but the blob through the standard parser: a small copy.
    rest = bytes(memoryview(data)[:start]) + bytes(memoryview(data)[end:n])
    try:
        obj = json.loads(rest)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("bad_json", f"the body is not valid JSON: {_short(exc)}") from None
    if not isinstance(obj, dict) or obj.get("weights_data") != "":
        # The scanner and json.loads must agree on where the field is.
        raise BadRequest("bad_json", "weights_data must be a top-level string")
    blob = _b64decode(data, start, end)

    if "sample_count" not in obj:
        raise BadRequest("missing_field", "the JSON body has no sample_count")
    count = obj["sample_count"]
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        raise BadRequest("bad_weight", "sample_count must be a positive number")
    try:
        weight = float(count)
    except OverflowError:
        raise BadRequest("bad_weight", "sample_count must be a finite number") from None
    weight = _check_weight(weight, max_weight)

    fmt = obj.get("update_format")
    if fmt is None:
        raise BadRequest("missing_field", "the JSON body has no update_format")
    if not isinstance(fmt, str) or fmt not in KINDS:
        raise BadRequest("bad_update_format", "update_format must be delta, weights or state_dict")

    rnd = obj.get("round")
    if rnd is not None and (isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0):
        raise BadRequest("bad_round", "round must be a non-negative integer")
    metadata = {
        k: v
        for k, v in obj.items()
        if k not in ("weights_data", "sample_count", "update_format", "round")
    }
    return JsonUpdate(blob=blob, weight=weight, kind=KINDS[fmt], round=rnd, metadata=metadata)


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def _b64decode(data: bytes | bytearray, start: int, end: int) -> bytes:
    field: Any = memoryview(data)[start:end]
    if data.find(b"\\", start, end) >= 0:
        raw = bytes(field).replace(b"\\/", b"/")
        if b"\\" in raw:
            raise BadRequest("bad_base64", "weights_data holds JSON escapes other than \\/")
        field = raw
    if len(field) % 4:
        raise BadRequest("bad_base64", "weights_data is not padded base64 (length % 4 != 0)")
    try:
        # SIMD base64 (5x binascii here), strict: only the standard alphabet, padded.
        return pybase64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("bad_base64", f"weights_data is not valid base64: {exc}") from None


_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_STRUCT_CHARS = re.compile(rb'["\[\]{}]')
_WS_RUN = re.compile(rb"[ \t\r\n]*")
_LITERAL = re.compile(rb"[^,}\] \t\r\n]*")


def _find_top_level_string(data: bytes | bytearray, n: int, key: bytes) -> tuple[int, int] | None:
    """The span of the string value of top-level ``key``, or ``None``.

    A scanner for the object's outline only; it rejects duplicate keys and
    anything that is not an object. Values other than the one looked for are
    skipped with C-speed regular expressions (no per-character Python loop).
    """
    i = _skip_ws(data, 0, n)
    if data[i : min(i + 3, n)] == b"\xef\xbb\xbf":
        raise BadRequest("bad_json", "the JSON body must not start with a byte order mark")
    if i >= n or data[i] != 0x7B:  # '{'
        raise BadRequest("bad_json", "the body must be a JSON object")
    i = _skip_ws(data, i + 1, n)
    found: tuple[int, int] | None = None
    if i < n and data[i] == 0x7D:  # '}'
        return None
    while True:
        if i >= n or data[i] != 0x22:  # '"'
            raise BadRequest("bad_json", f"expected a member name at byte {i}")
        k_start = i + 1
        k_end = _string_end(data, k_start, n)
        name = data[k_start:k_end]
        i = _skip_ws(data, k_end + 1, n)
        if i >= n or data[i] != 0x3A:  # ':'
            raise BadRequest("bad_json", f"expected ':' at byte {i}")
        i = _skip_ws(data, i + 1, n)
        if name == key:
            if found is not None:
                raise BadRequest("bad_json", "weights_data occurs twice")
            if i >= n or data[i] != 0x22:
                raise BadRequest("bad_json", "weights_data must be a string")
            v_end = _string_end(data, i + 1, n)
            found = (i + 1, v_end)
            i = v_end + 1
        elif b"\\" in name and name != key:
            # An escaped spelling could decode to the key: let json decide.
            try:
                decoded = json.loads(b'"' + bytes(name) + b'"')
            except ValueError:
                raise BadRequest("bad_json", f"bad member name at byte {k_start}") from None
            if decoded == key.decode():
                raise BadRequest("bad_json", "weights_data must be spelled without escapes")
            i = _skip_value(data, i, n)
        else:
            i = _skip_value(data, i, n)
        i = _skip_ws(data, i, n)
        if i < n and data[i] == 0x2C:  # ','
            i = _skip_ws(data, i + 1, n)
            continue
        if i < n and data[i] == 0x7D:
            return found
        raise BadRequest("bad_json", f"expected ',' or '}}' at byte {i}")


def _skip_ws(data, i: int, n: int) -> int:
    return _WS_RUN.match(data, i, n).end()  # type: ignore[union-attr]


def _string_end(data, i: int, n: int) -> int:
    """The index of the closing quote of a string whose first character is at ``i``."""
    # memchr-speed search for the quote; a regular expression only when escaped
    # quotes get in the way (rare; linear either way).
    pos = i
    for _ in range(16):
        j = data.find(b'"', pos, n)
        if j < 0:
            break
        k = j
        while k > i and data[k - 1] == 0x5C:  # backslashes before the quote
            k -= 1
        if (j - k) % 2 == 0:
            return j
        pos = j + 1
    m = _STRING_BODY.match(data, i, n)
    end = m.end() if m else i
    if end >= n or data[end] != 0x22:
        raise BadRequest("bad_json", f"unterminated string starting at byte {i - 1}")
    return end


def _skip_value(data, i: int, n: int) -> int:
    """The index just past the JSON value starting at ``i`` (outline only)."""
    if i >= n:
        raise BadRequest("bad_json", "the body ends inside a value")
    c = data[i]
    if c == 0x22:
        return _string_end(data, i + 1, n) + 1
    if c in (0x7B, 0x5B):  # '{' '['
        depth = 0
        pos = i
        while True:
            m = _STRUCT_CHARS.search(data, pos, n)
            if m is None:
                raise BadRequest("bad_json", f"unterminated value starting at byte {i}")
            ch = data[m.start()]
            if ch == 0x22:
                pos = _string_end(data, m.start() + 1, n) + 1
                continue
            if ch in (0x7B, 0x5B):
                depth += 1
                if depth > 512:
                    raise BadRequest("bad_json", "the JSON body nests too deeply")
            else:
                depth -= 1
            pos = m.start() + 1
            if depth == 0:
                return pos
    # A number or literal: up to the next delimiter.
    j = _LITERAL.match(data, i, n).end()  # type: ignore[union-attr]
    if j == i:
        raise BadRequest("bad_json", f"expected a value at byte {i}")
    return j
