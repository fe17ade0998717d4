"""Incremental inflate (zlib-ng) for zlib, gzip and raw DEFLATE input, and decompress().

The native core sees every byte inflate wrote before an error; Python's
``Decompress.decompress`` drops them when it raises. ``Inflater`` gets them
back by replaying the failing step on a copy of an earlier state:
``decompress(input, 1)`` stops after one byte with the rest of the input kept
in ``unconsumed_tail``, and ``flush()`` then inflates that tail up to the
error and returns what it produced without raising.
"""

from __future__ import annotations

from zlib_ng import zlib_ng

from ..errors import PTTHError
from .deflate import WBITS
from .format import detect_wrapper

#: decompressed bytes asked for per step
OUT_CHUNK = 256 * 1024
#: compressed bytes given per step (bounds the copy Python makes of unconsumed input)
IN_CHUNK = 64 * 1024


class InflateError(Exception):
    """An inflate error, with the output produced before it in that step."""

    def __init__(self, reason: str, prefix: bytes):
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix


def error_reason(exc: zlib_ng.error) -> str:
    message = str(exc)
    if "incorrect data check" in message or "incorrect length check" in message:
        return "bad_checksum"
    return "stream_corrupt"


class Inflater:
    """Inflates compressed input on demand.

    ``data`` given: all the input, borrowed (one-shot). Otherwise ``feed()``
    appends input, which is copied. ``read(n)`` returns up to n bytes, or b""
    when it needs more input or the stream ended (``eof``).
    """

    def __init__(self, wbits: int, data=None):
        self._wbits = wbits
        self._inflate = zlib_ng.decompressobj(wbits)
        self._input = bytearray() if data is None else data
        self._pos = 0  # input consumed by inflate
        self.eof = False
        # Replay point for errors: the state before the last step that produced
        # output, where that step's input starts, and how much it produced.
        self._anchor = self._inflate.copy()
        self._anchor_pos = 0
        self._anchor_out = 0

    @property
    def trailing(self) -> bool:
        """Input bytes follow the end of the compressed stream."""
        return self.eof and self._pos < len(self._input)

    def feed(self, data) -> None:
        if self._anchor_pos:
            del self._input[: self._anchor_pos]
            self._pos -= self._anchor_pos
            self._anchor_pos = 0
        self._input += data

    def read(self, n: int) -> bytes:
        while not self.eof:
            start = self._pos
            step = self._input[start : start + IN_CHUNK]
            before = self._inflate.copy()
            try:
                out = self._inflate.decompress(step, n)
            except zlib_ng.error as exc:
                raise InflateError(error_reason(exc), self._replay(start + len(step))) from None
            if self._inflate.eof:
                self.eof = True
                left = len(self._inflate.unused_data)
            else:
                left = len(self._inflate.unconsumed_tail)
            self._pos = start + len(step) - left
            if out:
                self._anchor, self._anchor_pos, self._anchor_out = before, start, len(out)
                return out
            if self._pos == len(self._input):
                return b""
        return b""

    def _replay(self, end: int) -> bytes:
        """What the failing step (input up to ``end``) produced before its error."""
        replay = self._anchor.copy()
        stream = self._input[self._anchor_pos : end]
        try:
            first = replay.decompress(stream, 1)
        except zlib_ng.error:
            # At most one byte came out since the anchor before the error.
            if self._anchor_out:
                return b""  # that byte is the anchor step's
            return lone_first_byte(self._wbits, stream)
        return (first + replay.flush())[self._anchor_out :]


def lone_first_byte(wbits: int, stream) -> bytes:
    """The output (0 or 1 byte) of a stream that fails at its start.

    Nothing came out before to stop on, so replay the DEFLATE body behind a
    one-byte stored block. That extra byte of history only changes a match at
    the very start (too far back without it): two filler values tell it apart.
    """
    body = deflate_body(wbits, stream)
    if body is None:
        return b""
    seen = set()
    for filler in (0x00, 0xFF):
        replay = zlib_ng.decompressobj(-15)
        try:
            replay.decompress(bytes([0x00, 0x01, 0x00, 0xFE, 0xFF, filler]) + bytes(body), 1)
        except zlib_ng.error:
            seen.add(b"")
            continue
        seen.add(replay.flush()[:1])
    return seen.pop() if len(seen) == 1 else b""


def deflate_body(wbits: int, stream):
    """The raw DEFLATE data after a valid wrapper header, or None if there is none."""
    if wbits < 0:
        return stream
    if wbits == 15:
        if len(stream) >= 2 and stream[1] & 0x20:
            return None  # FDICT: zlib-ng stops for the preset dictionary
        header = 2
    else:
        header = gzip_header_length(stream)
    if header is None or len(stream) < header:
        return None
    try:
        zlib_ng.decompressobj(wbits).decompress(stream[:header])
    except zlib_ng.error:
        return None
    return stream[header:]


def gzip_header_length(stream):
    """Length of the gzip header at the start of stream (RFC 1952), None if incomplete."""
    head = bytes(stream[:10])
    if len(head) < 10:
        return None
    flags, pos = head[3], 10
    if flags & 4:  # FEXTRA
        extra = bytes(stream[pos : pos + 2])
        if len(extra) < 2:
            return None
        pos += 2 + int.from_bytes(extra, "little")
    for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            end = bytes(stream[pos:]).find(b"\0")
            if end < 0:
                return None
            pos += end + 1
    if flags & 2:  # FHCRC
        pos += 2
    return pos


def decompress(data, *, wrapper="auto", max_size=None) -> bytes:
    limit = max_size  # arguments are checked by the front
    view = memoryview(data)
    if wrapper == "auto":
        wrapper = detect_wrapper(view).name
    if wrapper == "none":
        if len(view) > limit:
            raise PTTHError("too_large", offset=limit)
        return bytes(view)
    inflater = Inflater(WBITS[wrapper], view)
    parts, total = [], 0
    while True:
        try:
            out = inflater.read(min(OUT_CHUNK, limit - total + 1))
        except InflateError as exc:
            total += len(exc.prefix)
            if total > limit:
                raise PTTHError("too_large", offset=limit) from None
            raise PTTHError(exc.reason, offset=total) from None
        total += len(out)
        if total > limit:
            raise PTTHError("too_large", offset=limit)
        if out:
            parts.append(out)
        elif inflater.eof:
            if inflater.trailing:
                raise PTTHError("stream_trailing", offset=total)
            return b"".join(parts)
        else:
            raise PTTHError("stream_truncated", offset=total)
