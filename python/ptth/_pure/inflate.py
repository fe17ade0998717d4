"""Incremental inflate (zlib-ng) for zlib, gzip and raw DEFLATE input, and decompress().

The native core sees every byte inflate wrote before an error; Python's
``Decompress.decompress`` drops them when it raises. ``Inflater`` gets them
back by replaying the failing step on a copy of an earlier state:
``decompress(input, 1)`` stops after one byte with the rest of the input kept
in ``unconsumed_tail``, and ``flush()`` then inflates that tail up to the
error and returns what it produced without raising.

What is kept for that replay is bounded: a gzip header is parsed here (zlib-ng
gets a minimal one), so its fields are never kept, and after ``IN_CHUNK`` bytes
of input without output the replay point moves to the current state (a
*mid-stream* anchor). A replay from there that raises at its first call hides
at most one byte: ``hidden_byte`` finds it.
"""

from __future__ import annotations

import zlib
from typing import Any

from zlib_ng import zlib_ng

from ..errors import PTTHError
from .deflate import WBITS
from .format import detect_wrapper

# zlib_ng's stub declares `error` as a variable, not a class
_ZError: Any = zlib_ng.error

#: decompressed bytes asked for per step
OUT_CHUNK = 256 * 1024
#: compressed bytes given per step (bounds the copy Python makes of unconsumed input)
IN_CHUNK = 64 * 1024
#: a gzip header without optional fields, given to zlib-ng in place of the real one
BARE_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class InflateError(Exception):
    """An inflate error, with the output produced before it in that step."""

    def __init__(self, reason: str, prefix: bytes):
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix


def error_reason(exc: Exception) -> str:
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
        self._inflate: Any = zlib_ng.decompressobj(wbits)  # the stub lacks copy()
        self._input = bytearray() if data is None else data
        self._pos = 0  # input consumed by inflate (or the gzip header parser)
        self.eof = False
        # the gzip header is parsed here; the replay from the start sees raw DEFLATE
        self._header: Any = GzipHeader() if wbits == 31 else None
        self._wbits = -15 if wbits == 31 else wbits
        # Replay point for errors: the state before the last step that produced
        # output, where that step's input starts, and how much it produced; or the
        # start of the stream; or (mid) a state after IN_CHUNK bytes without output.
        self._anchor = self._inflate.copy()  # type: ignore[attr-defined]  # the stub lacks copy()
        self._anchor_pos = 0
        self._anchor_out = 0
        self._anchor_mid = False

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
            if self._header is not None:
                if not self._parse_header(step):
                    return b""
                continue
            before = self._inflate.copy()
            try:
                out = self._inflate.decompress(step, n)
            except _ZError as exc:
                raise InflateError(error_reason(exc), self._replay(start + len(step))) from None
            if self._inflate.eof:
                self.eof = True
                left = len(self._inflate.unused_data)
            else:
                left = len(self._inflate.unconsumed_tail)
            self._pos = start + len(step) - left
            if out:
                self._anchor, self._anchor_pos, self._anchor_out = before, start, len(out)
                self._anchor_mid = False
                return out
            if self._pos - self._anchor_pos > IN_CHUNK:
                # no output for a while: replay from here (feed() drops what is before)
                self._anchor, self._anchor_pos = self._inflate.copy(), self._pos
                self._anchor_out, self._anchor_mid = 0, True
            if self._pos == len(self._input):
                return b""
        return b""

    def _parse_header(self, step) -> bool:
        """Parse gzip header bytes from step; False when it needs more input."""
        if not len(step):
            return False
        self._pos += self._header.parse(bytes(step))
        self._anchor_pos = self._pos  # nothing in a header is replayed
        if self._header.done:
            self._header = None
            self._inflate.decompress(BARE_GZIP_HEADER)
            self._anchor = self._inflate.copy()
        return True

    def _replay(self, end: int) -> bytes:
        """What the failing step (input up to ``end``) produced before its error."""
        replay = self._anchor.copy()
        stream = self._input[self._anchor_pos : end]
        try:
            first = replay.decompress(stream, 1)
        except _ZError:
            # At most one byte came out since the anchor before the error.
            if self._anchor_out:
                return b""  # that byte is the anchor step's
            if self._anchor_mid:
                return self._hidden_byte(stream)
            return lone_first_byte(self._wbits, stream)
        return (first + replay.flush())[self._anchor_out :]

    def _hidden_byte(self, stream) -> bytes:
        """The output (0 or 1 byte) before the error of a replay from a mid-stream
        anchor that raises at once.

        The longest prefix of stream whose replay does not raise (bisected: a longer
        one holds every bit a shorter one does) yields that byte if earlier input
        bytes made it; if not, it could only come from the first byte of the rest,
        the one that also holds the error: ``byte_before_error``.
        """
        lo, hi = 0, len(stream)  # the replay of stream[:lo] does not raise, [:hi] does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                self._anchor.copy().decompress(stream[:mid], 1)
                lo = mid
            except _ZError:
                hi = mid
        state = self._anchor.copy()
        out = state.decompress(stream[:lo], 1)
        if out:
            return out
        return byte_before_error(state, stream[lo])


def byte_before_error(state, byte: int) -> bytes:
    """The output (0 or 1 byte) of inflating ``byte`` from ``state``, which raises.

    DEFLATE reads bits from the low end. A byte that comes out while the low k bits
    are read comes out whatever the other bits are, and some of those continuations
    do not raise (another code begun): so find the smallest k for which every
    continuation of byte's low k bits that does not raise yields the same one byte.
    If there is none, nothing came out before the error.
    """
    for k in range(1, 8):
        low = byte & ((1 << k) - 1)
        outs = set()
        for high in range(1 << (8 - k)):
            try:
                outs.add(state.copy().decompress(bytes([low | high << k]), 1))
            except _ZError:
                pass
        if len(outs) == 1 and b"" not in outs:
            return outs.pop()
    return b""


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
        except _ZError:
            seen.add(b"")
            continue
        seen.add(replay.flush()[:1])
    return seen.pop() if len(seen) == 1 else b""


def deflate_body(wbits: int, stream):
    """The raw DEFLATE data after a valid wrapper header, or None if there is none.

    A gzip header never reaches here: it is parsed before, and wbits is then -15.
    """
    if wbits < 0:
        return stream
    if len(stream) >= 2 and stream[1] & 0x20:
        return None  # FDICT: zlib-ng stops for the preset dictionary
    if len(stream) < 2:
        return None
    try:
        zlib_ng.decompressobj(wbits).decompress(stream[:2])
    except _ZError:
        return None
    return stream[2:]


class GzipHeader:
    """Incremental parse of a gzip header (RFC 1952), checked as zlib-ng's inflate
    checks it and in the same order; it keeps no header bytes."""

    FIXED, XLEN, EXTRA, NAME, COMMENT, HCRC = range(6)

    def __init__(self):
        self.done = False
        self._stage = self.FIXED
        self._field = bytearray()  # a fixed-size field being read (<= 10 bytes)
        self._left = 10  # bytes of the field being read (FIXED, XLEN, EXTRA, HCRC)
        self._flags = 0
        self._extra = 0  # FEXTRA's length
        self._crc = 0  # CRC-32 of the header so far, for FHCRC

    def parse(self, chunk: bytes) -> int:
        """Take header bytes from the start of chunk; how many it took. A header that
        breaks a rule raises InflateError (nothing came out)."""
        pos = 0
        while not self.done and pos < len(chunk):
            if self._stage in (self.NAME, self.COMMENT):  # zero-terminated
                end = chunk.find(b"\0", pos)
                stop = len(chunk) if end < 0 else end + 1
                self._crc = zlib.crc32(chunk[pos:stop], self._crc)
                pos = stop
                if end >= 0:
                    self._next()
                continue
            piece = chunk[pos : pos + self._left]
            pos += len(piece)
            self._left -= len(piece)
            if self._stage == self.EXTRA:
                self._crc = zlib.crc32(piece, self._crc)
                if not self._left:
                    self._next()
                continue
            if self._stage != self.HCRC:
                self._crc = zlib.crc32(piece, self._crc)
            self._field += piece
            field = self._field
            if self._stage == self.FIXED:
                if len(field) >= 2 and field[:2] != b"\x1f\x8b":
                    raise InflateError("stream_corrupt", b"")  # incorrect header check
                if len(field) >= 4 and (field[2] != 8 or field[3] & 0xE0):
                    raise InflateError("stream_corrupt", b"")  # method, reserved flags
            if self._left:
                continue
            if self._stage == self.FIXED:
                self._flags = field[3]
            elif self._stage == self.XLEN:
                self._extra = int.from_bytes(field, "little")
            elif self._stage == self.HCRC:
                if int.from_bytes(field, "little") != self._crc & 0xFFFF:
                    raise InflateError("stream_corrupt", b"")  # header crc mismatch
            self._next()
        return pos

    def _next(self) -> None:
        """Go to the next field the flags call for."""
        self._field = bytearray()
        stage = self._stage
        while True:
            stage += 1
            if stage == self.XLEN and self._flags & 4:
                self._stage, self._left = stage, 2
                return
            if stage == self.EXTRA and self._flags & 4:
                self._stage, self._left = stage, self._extra
                if self._left:
                    return
                continue
            if (stage == self.NAME and self._flags & 8) or (
                stage == self.COMMENT and self._flags & 16
            ):
                self._stage = stage
                return
            if stage == self.HCRC and self._flags & 2:
                self._stage, self._left = stage, 2
                return
            if stage > self.HCRC:
                self.done = True
                return


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
