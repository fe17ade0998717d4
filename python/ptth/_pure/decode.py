"""decode() and Decoder: wrapper detection and inflate around the one Reader.

The policy is the core's (``csrc/core/decode.hpp``): uncompressed one-shot
input is bounded by itself and its payloads are views unless ``copy``;
compressed input is inflated into owned arrays under ``max_size``; a
streaming decoder is open until ``close()`` succeeds or any call fails.
"""

from __future__ import annotations

import threading

from ..errors import PTTHError
from .format import WBITS, Wrapper, describe_start, detect_wrapper
from .inflate import OUT_CHUNK, InflateError, Inflater
from .reader import Reader


class Pipeline:
    """Decoded bytes of one blob, inflated if need be, pushed into a Reader."""

    def __init__(self, reader: Reader, wrapper: Wrapper, head: bytes, data=None):
        self.reader = reader
        self.wrapper = wrapper
        self.head = head  # the input's first bytes, for messages
        self.inflater = None if wrapper == Wrapper.none else Inflater(WBITS[wrapper], data)

    def _error(self, reason: str) -> PTTHError:
        return PTTHError(
            reason, offset=self.reader.offset, record=self.reader.index, name=self.reader._name
        )

    def guarded(self, records):
        """Input taken for raw DEFLATE that fails before yielding the magic was not a
        stream of a PTTH blob at all: ``not_ptth``, with its first bytes."""
        if self.wrapper != Wrapper.deflate:
            yield from records
            return
        try:
            yield from records
        except PTTHError:
            if self.reader.offset >= 4:
                raise
            raise PTTHError(
                "not_ptth",
                f"the input starts with {describe_start(self.head)}: "
                "it is neither a PTTH blob nor a zlib, gzip or raw DEFLATE stream "
                "of one",
                offset=0,
            ) from None

    def push(self, view: memoryview):
        """Take more input (copied as needed); yield the records it completes."""
        if self.inflater is None:
            yield from self.reader.feed(view)
            return
        yield from self.guarded(self._inflate(view))

    def _inflate(self, view: memoryview):
        assert self.inflater is not None  # push() sends only compressed input here
        if self.inflater.eof:
            # the stream is over: the blob must be complete before anything else
            self.reader.close()
            if len(view):
                raise self._error("stream_trailing")
            return
        self.inflater.feed(view)
        yield from self.drain()

    def drain(self):
        """Inflate all the input there is, in stream order; yield completed records."""
        while True:
            try:
                out = self.inflater.read(OUT_CHUNK)
            except InflateError as exc:
                # a PTTH rule broken in what inflate produced before the error wins
                yield from self.reader.feed(memoryview(exc.prefix))
                raise self._error(exc.reason) from None
            if out:
                yield from self.reader.feed(memoryview(out))
                continue
            if self.inflater.eof:
                self.reader.close()
                if self.inflater.trailing:
                    raise self._error("stream_trailing")
            return

    def finish(self) -> None:
        """The input ended."""
        list(self.guarded(self._finish()))

    def _finish(self):
        if self.inflater is None:
            self.reader.close()
        elif not self.inflater.eof:
            raise self._error("stream_truncated")
        else:
            self.reader.close()
        return
        yield  # a generator, for guarded()


def decode_view(
    view: memoryview,
    copy: bool,
    byteorder,
    relabel,
    max_size: int,
    on_header=None,
    on_record=None,
    on_finish=None,
) -> list:
    """One-shot decode of a whole blob; the list of (name, array) in blob order.

    ``on_header`` and ``on_record`` are the Reader's hooks (the aggregator's matcher);
    ``on_finish(reader)`` runs once the blob is complete.
    """
    wrapper = detect_wrapper(view[:4])
    head = bytes(view[:4])
    if wrapper == Wrapper.none:
        # bounded by the input itself: max_size does not apply
        reader = Reader(
            byteorder=byteorder,
            relabel=relabel,
            views=not copy,
            on_header=on_header,
            on_record=on_record,
        )
        pipeline = Pipeline(reader, wrapper, head)
        records = list(pipeline.push(view))
    else:
        reader = Reader(
            byteorder=byteorder,
            relabel=relabel,
            max_size=max_size,
            on_header=on_header,
            on_record=on_record,
        )
        pipeline = Pipeline(reader, wrapper, head, view)
        records = list(pipeline.guarded(pipeline.drain()))
    pipeline.finish()
    if on_finish is not None:
        on_finish(reader)
    return records


def decode(data, copy: bool, byteorder, relabel, max_size: int) -> list:
    """The engine primitive: see decode_view."""
    return decode_view(memoryview(data), bool(copy), byteorder, relabel, int(max_size))


class Decoder:
    """Streaming decoder: feed() chunks, get the records they complete; close() at the end.

    An error ends the decoder: every later feed() or close() raises ``closed``,
    as does feed() after close(). close() after a successful close() does nothing.
    """

    def __init__(self, byteorder, relabel, max_size: int, size_hint: int = 0):
        # size_hint: the native engine's allocation policy for sources of known size;
        # NumPy's allocator needs none (results do not depend on it)
        self._reader_args = (byteorder, relabel, int(max_size))
        if max_size < 4:  # not even the magic fits: as the core's reader says at once
            raise PTTHError(
                "too_large",
                f"the blob would exceed max_size ({max_size} bytes): pass a larger max_size, "
                "or max_size=ptth.UNLIMITED for no limit",
                offset=0,
            )
        self._head = bytearray()  # the first bytes, until the wrapper is known
        self._pipeline: Pipeline | None = None
        self._state = "open"  # "open", "closed" or "failed"
        self._lock = threading.Lock()

    @property
    def byteorder(self):
        """The ByteOrder once the payload byte order is known, else None."""
        from .format import ByteOrder

        order = (
            self._pipeline.reader.byteorder
            if self._pipeline is not None
            else {ByteOrder.little: "<", ByteOrder.big: ">", ByteOrder.auto: None}[
                ByteOrder(self._reader_args[0])
            ]
        )
        return None if order is None else (ByteOrder.big if order == ">" else ByteOrder.little)

    @property
    def wrapper(self):
        """The Wrapper once detected, else None."""
        return None if self._pipeline is None else self._pipeline.wrapper

    @property
    def state(self) -> str:
        return self._state

    def feed(self, chunk) -> list:
        view = memoryview(chunk)
        with self._lock:
            self._check_open()
            try:
                return list(self._push(view))
            except PTTHError:
                self._state = "failed"
                raise

    def close(self) -> None:
        with self._lock:
            if self._state == "closed":
                return
            self._check_open()
            try:
                if self._pipeline is None:
                    # decide on what there is; fewer than 4 bytes hold no record
                    for _ in self._start():
                        pass
                assert self._pipeline is not None  # _start() made it
                self._pipeline.finish()
            except PTTHError:
                self._state = "failed"
                raise
            self._state = "closed"

    def _check_open(self) -> None:
        if self._state == "closed":
            raise PTTHError("closed", "the decoder is closed")
        if self._state == "failed":
            raise PTTHError("closed", "the decoder stopped at an earlier error")

    def _push(self, view: memoryview):
        if self._pipeline is None:
            take = min(4 - len(self._head), len(view))
            self._head += view[:take]
            view = view[take:]
            if len(self._head) < 4:
                return
            yield from self._start()
        assert self._pipeline is not None  # _start() made it
        yield from self._pipeline.push(view)

    def _start(self):
        head, self._head = bytes(self._head), None
        byteorder, relabel, max_size = self._reader_args
        reader = Reader(byteorder=byteorder, relabel=relabel, max_size=max_size)
        self._pipeline = Pipeline(reader, detect_wrapper(head), head)
        yield from self._pipeline.push(memoryview(head))
