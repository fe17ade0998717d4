"""The PTTH record parser: a push state machine, the one reader of this backend.

``Reader.feed(chunk)`` consumes every byte it is given and yields each record
it completes; ``close()`` says the input ended. Rules are checked in the order
of DEVELOPERS.md "Reader semantics". Transitions are eager: finishing an item
enters the next one at once (its max_size check runs then, and a zero-length
item completes without waiting for input).
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import PTTHError
from .format import (
    DTYPES,
    MAGIC,
    MAX_NDIM,
    NATIVE,
    VERSION,
    ByteOrder,
    Relabel,
    numel,
    numpy_can_shape,
)

# items, in stream order
MAGIC_FIELD, VERSION_FIELD, COUNT_FIELD = "magic", "version", "count"
NAME_LEN, NAME, NDIM, DIMS, DTYPE, DATA_LEN, PAYLOAD = (
    "name_len",
    "name",
    "ndim",
    "dims",
    "dtype",
    "data_len",
    "payload",
)
DONE = "done"

#: words of a float32 payload that byteorder="auto" scores
SCORE_WORDS = 1024
#: |v| below this reads as an integer when relabel_float32="auto" scores a code-2 payload
SMALL_INT = 1 << 24


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of nbytes starting on a 64-byte boundary."""
    raw = np.empty(nbytes + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip:][:nbytes]  # (raw[skip:skip] would not move the data pointer)


def plausible_ints(words: np.ndarray) -> int:
    """How many uint32 words read as int32 values of small magnitude."""
    values = words.view(np.int32)
    return int(np.count_nonzero((values > -SMALL_INT) & (values < SMALL_INT)))


def plausible_mask(words: np.ndarray) -> np.ndarray:
    """Which uint32 words look like float32 values of a sane magnitude."""
    exponent = (words >> 23) & 0xFF
    return ((words & 0x7FFFFFFF) == 0) | ((exponent >= 64) & (exponent <= 190))


def plausible_words(words: np.ndarray) -> int:
    """How many uint32 words look like float32 values of a sane magnitude."""
    return int(np.count_nonzero(plausible_mask(words)))


class Reader:
    """Parses one PTTH blob pushed in chunks.

    byteorder: a ByteOrder. relabel: a Relabel. max_size: bound on the blob's
    end offset, checked before each item is waited for (None: no bound).
    views: the whole blob comes in one feed() and payloads are returned as
    read-only-if-input views into it, in wire byte order; otherwise arrays are
    owned, 64-byte aligned and in native byte order. on_header(name, dims,
    code, elem, payload_offset, index, final) is called when a record's header
    passed every check, before its payload; it may raise to refuse the record
    (``final`` is False while a code-2 record's relabel decision is pending).
    on_record(name, array, code, payload_offset, index, order) is called as each
    record completes, before the next one is read.
    """

    def __init__(
        self,
        *,
        byteorder=ByteOrder.little,
        relabel=Relabel.off,
        max_size: int | None = None,
        views: bool = False,
        on_header=None,
        on_record=None,
    ):
        self._relabel = Relabel(relabel)
        self._max_size = max_size
        self._views = views
        self._on_header = on_header
        self._on_record = on_record
        #: "<" or ">" once the payload byte order is known; None while "auto" has not decided
        self.byteorder = {ByteOrder.little: "<", ByteOrder.big: ">", ByteOrder.auto: None}[
            ByteOrder(byteorder)
        ]
        #: under "auto", before a decision: (record, payload offset, name) of the first
        #: float32 payload that scored a tie although some of its words read differently
        #: in the two orders; None if there was none
        self.ambiguity: tuple[int | None, int, str | None] | None = None
        #: bytes consumed so far: the offset of the next byte
        self.offset = 0
        #: index of the record being read; None in the header and after the last record
        self.index: int | None = None
        self._count = 0
        self._names: set[str] = set()  # Python's str hash is keyed per process
        self._name: str | None = None  # the current record's name once valid
        self._acc = bytearray()  # a field split across chunks
        self._payload: np.ndarray | None = None  # owned payload being filled
        self._enter(MAGIC_FIELD, 4)

    # -- driving ------------------------------------------------------------

    def feed(self, chunk: memoryview):
        """Consume all of chunk (a 'B' memoryview); yield each completed (name, array)."""
        pos, end = 0, len(chunk)
        while True:
            if self._item == DONE:
                if pos < end:
                    raise PTTHError("trailing_bytes", offset=self.offset)
                return
            need = self._size - self._filled
            if need and pos == end:
                return
            take = min(need, end - pos)
            piece = chunk[pos : pos + take]
            if (
                self._item == MAGIC_FIELD
                and bytes(piece) != MAGIC[self._filled : self._filled + take]
            ):
                raise PTTHError("bad_magic", offset=0)
            pos += take
            self.offset += take
            if self._item == PAYLOAD:
                record = self._take_payload(chunk, pos - take, take)
                if record is not None:
                    yield record
            elif self._filled == 0 and take == need:
                self._complete(piece)
            else:
                self._acc += piece
                self._filled += take
                if self._filled == self._size:
                    field, self._acc = self._acc, bytearray()
                    self._complete(field)

    def close(self) -> None:
        """The input ended: raise ``truncated`` unless the blob is complete."""
        if self._item != DONE:
            raise self._error("truncated", self.offset)

    # -- items --------------------------------------------------------------

    def _error(self, reason: str, offset: int) -> PTTHError:
        return PTTHError(reason, offset=offset, record=self.index, name=self._name)

    def _enter(self, item: str, size: int) -> None:
        self._item, self._start, self._size, self._filled = item, self.offset, size, 0
        if self._max_size is not None and self.offset + size > self._max_size:
            raise PTTHError(
                "too_large",
                f"the blob would exceed max_size ({self._max_size} bytes): pass a larger "
                "max_size, or max_size=ptth.UNLIMITED for no limit",
                offset=self.offset,
                record=self.index,
                name=self._name,
            )

    def _next_record(self) -> None:
        self._name = None
        assert self.index is not None  # set to -1 at the count field, then a record index
        if self.index + 1 == self._count:
            self._item, self.index = DONE, None
        else:
            self.index += 1
            self._enter(NAME_LEN, 4)

    def _complete(self, field) -> None:
        """Check a finished field (bytes-like, all of it) and move on."""
        item = self._item
        if item == MAGIC_FIELD:
            self._enter(VERSION_FIELD, 4)
        elif item == VERSION_FIELD:
            if int.from_bytes(field, "big") != VERSION:
                raise self._error("bad_version", self._start)
            self._enter(COUNT_FIELD, 4)
        elif item == COUNT_FIELD:
            self._count = int.from_bytes(field, "big")
            if self._count == 0:
                self._item = DONE
            else:
                self.index = -1
                self._next_record()
        elif item == NAME_LEN:
            self._enter(NAME, int.from_bytes(field, "big"))
        elif item == NAME:
            try:
                name = bytes(field).decode("utf-8")
            except UnicodeDecodeError:
                raise self._error("bad_name", self._start) from None
            self._name = name
            if name in self._names:
                raise self._error("duplicate_name", self._start)
            self._names.add(name)
            self._enter(NDIM, 4)
        elif item == NDIM:
            ndim = int.from_bytes(field, "big")
            if ndim > MAX_NDIM:
                raise self._error("too_many_dims", self._start)
            self._enter(DIMS, 4 * ndim)
        elif item == DIMS:
            self._dims = struct.unpack(f">{len(field) // 4}I", field)
            self._numel = numel(self._dims)
            self._enter(DTYPE, 4)
        elif item == DTYPE:
            self._code = int.from_bytes(field, "big")
            if self._code not in DTYPES:
                raise self._error("bad_dtype", self._start)
            self._enter(DATA_LEN, 4)
        elif item == DATA_LEN:
            self._check_data_len(int.from_bytes(field, "big"))
        else:  # pragma: no cover
            raise AssertionError(item)

    def _check_data_len(self, data_len: int) -> None:
        elem, itemsize = DTYPES[self._code]
        nbytes = self._numel * itemsize
        if nbytes >= 2**64:
            raise self._error("size_overflow", self._start)
        four = 4 * self._numel == data_len
        if four and (
            self._relabel == Relabel.on or (self._relabel == Relabel.auto and self._code == 1)
        ):
            elem, itemsize = "f4", 4
        elif nbytes != data_len:
            raise self._error("length_mismatch", self._start)
        # Only an empty array can get here with such dims: NumPy cannot shape it.
        if not numpy_can_shape(self._dims, itemsize):
            raise self._error("size_overflow", self._start)
        self._elem = elem
        self._enter(PAYLOAD, data_len)
        if self._on_header is not None:
            pending = self._relabel == Relabel.auto and elem == "i4"
            self._on_header(
                self._name, self._dims, self._code, elem, self.offset, self.index, not pending
            )

    # -- payloads -----------------------------------------------------------

    def _take_payload(self, chunk: memoryview, start: int, take: int):
        """Account for take payload bytes at chunk[start:]; return the record once complete."""
        if self._views:
            # The blob is in this one chunk: a partial payload only means truncation.
            self._filled += take
            if self._filled < self._size:
                return None
            if take != self._size:  # pragma: no cover
                raise AssertionError("views=True needs the whole blob in one feed")
            return self._emit(chunk, start)
        if self._payload is None:
            # allocate as bytes arrive, never from data_len alone
            self._payload = aligned_empty(self._size if take == self._size else take)
        elif self._filled + take > len(self._payload):
            grown = aligned_empty(min(self._size, max(2 * len(self._payload), self._filled + take)))
            grown[: self._filled] = self._payload[: self._filled]
            self._payload = grown
        self._payload[self._filled : self._filled + take] = np.frombuffer(
            chunk, np.uint8, take, start
        )
        self._filled += take
        if self._filled < self._size:
            return None
        payload, self._payload = self._payload, None
        return self._emit(payload, 0)

    def _emit(self, payload, start: int):
        if self._relabel == Relabel.auto and self._elem == "i4" and self._numel:
            self._decide_relabel(payload, start)
        order = self._decide(payload, start)
        if self._views:
            array = np.frombuffer(payload, order + self._elem, self._numel, start)
        else:
            array = payload.view(NATIVE + self._elem)
            if order != NATIVE:
                array.byteswap(inplace=True)
        record = (self._name, array.reshape(self._dims))
        if self._on_record is not None:
            self._on_record(self._name, record[1], self._code, self._start, self.index, order)
        self._next_record()
        return record

    def _decide_relabel(self, payload, start: int) -> None:
        """relabel_float32="auto" on a code-2 payload: floats of a sane magnitude, or small ints?"""
        order = self.byteorder or "<"
        words = np.frombuffer(payload, order + "u4", min(self._numel, SCORE_WORDS), start)
        words = words.astype(np.uint32)  # native order
        if plausible_words(words) > plausible_ints(words):
            self._elem = "f4"

    def _decide(self, payload, start: int) -> str:
        """Byte order of this payload; byteorder="auto" decides on the first telling float32 one."""
        if self.byteorder is None and self._elem == "f4" and self._numel:
            words = np.frombuffer(payload, "<u4", min(self._numel, SCORE_WORDS), start)
            le = plausible_words(words)
            be = plausible_words(words.byteswap())
            if be != le:
                self.byteorder = ">" if be > le else "<"
            elif self.ambiguity is None:
                # A tie decides nothing; it matters if some word (anywhere in the
                # payload) differs from its byte reversal and reads as a plausible
                # float in one of the two orders.
                every = np.frombuffer(payload, "<u4", self._numel, start)
                swapped = every.byteswap()
                if np.any((every != swapped) & (plausible_mask(every) | plausible_mask(swapped))):
                    self.ambiguity = (self.index, self._start, self._name)
        return self.byteorder or "<"
