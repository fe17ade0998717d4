"""loads, load, iter_load and Decoder: wrapper detection and inflate around the one Reader."""

from __future__ import annotations

import contextlib
import threading

from .._source import iter_chunks, open_source, read_all
from ..errors import PTTHError
from .format import WBITS, LoadOptions, byte_view, detect_wrapper
from .inflate import OUT_CHUNK, InflateError, Inflater
from .reader import Reader


class Pipeline:
    """Decoded bytes of one blob, inflated if need be, pushed into a bounded Reader."""

    def __init__(self, options: LoadOptions, wrapper: str, data=None):
        self.reader = Reader(byteorder=options.byteorder,
                             relabel_float32=options.relabel_float32,
                             max_size=options.max_size)
        self.wrapper = wrapper
        self.inflater = None if wrapper == "none" else Inflater(WBITS[wrapper], data)

    def _error(self, reason: str) -> PTTHError:
        return PTTHError(reason, offset=self.reader.offset, record=self.reader.index)

    def push(self, view: memoryview):
        """Take more input (copied as needed); yield the records it completes."""
        if self.inflater is None:
            yield from self.reader.feed(view)
        elif self.inflater.eof:
            if len(view):
                raise self._error("stream_trailing")
        else:
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
        if self.inflater is None:
            self.reader.close()
        elif not self.inflater.eof:
            raise self._error("stream_truncated")


def _loads_view(view: memoryview, options: LoadOptions) -> dict:
    wrapper = detect_wrapper(view)
    if wrapper == "none":
        # bounded by the input itself: max_size does not apply
        reader = Reader(byteorder=options.byteorder, relabel_float32=options.relabel_float32,
                        views=not options.copy)
        records = list(reader.feed(view))
        reader.close()
    else:
        pipeline = Pipeline(options, wrapper, view)
        records = list(pipeline.drain())
        pipeline.finish()
    return dict(records)


def loads(data, *, copy=False, byteorder="<", relabel_float32=False, max_size=None) -> dict:
    view = byte_view(data)
    return _loads_view(view, LoadOptions(copy, byteorder, relabel_float32, max_size))


def load(source, **loads_kw) -> dict:
    options = LoadOptions(**loads_kw)
    return _loads_view(byte_view(read_all(source)), options)


class Decoder:
    """Streaming decoder: feed() chunks, get the records they complete; close() at the end.

    An error ends the decoder: every later feed() or close() raises ``closed``,
    as does feed() after close(). close() after a successful close() does nothing.
    """

    def __init__(self, *, copy=False, byteorder="<", relabel_float32=False, max_size=None):
        self._options = LoadOptions(copy, byteorder, relabel_float32, max_size)
        if self._options.max_size < 4:  # not even the magic fits: as the native reader says at once
            raise PTTHError("too_large", f"max_size {self._options.max_size} leaves no room for "
                            "the 4-byte magic", offset=0)
        self._head = bytearray()     # the first bytes, until the wrapper is known
        self._pipeline = None
        self._state = "open"         # "open", "closed" or "failed"
        self._lock = threading.Lock()

    @property
    def byteorder(self):
        """"<" or ">" once the payload byte order is known, else None."""
        if self._pipeline is not None:
            return self._pipeline.reader.byteorder
        return None if self._options.byteorder == "auto" else self._options.byteorder

    @property
    def wrapper(self):
        """"none", "zlib", "gzip" or "deflate" once detected, else None."""
        return None if self._pipeline is None else self._pipeline.wrapper

    def feed(self, chunk) -> list:
        with self._lock:
            return list(self._records(chunk))

    def close(self) -> None:
        with self._lock:
            if self._state == "closed":
                return
            self._check_open()
            self._state = "closed"
            with self._failing():
                if self._pipeline is None:
                    # decide on what there is; fewer than 4 bytes hold no record
                    for _ in self._start():
                        pass
                self._pipeline.finish()

    def _check_open(self) -> None:
        if self._state != "open":
            raise PTTHError("closed", "the decoder was closed or failed")

    @contextlib.contextmanager
    def _failing(self):
        try:
            yield
        except PTTHError:
            self._state = "failed"
            raise

    def _records(self, chunk):
        """A generator of the records chunk completes (argument checks run at once)."""
        view = byte_view(chunk)
        self._check_open()
        return self._guarded(self._push(view))

    def _guarded(self, records):
        with self._failing():
            yield from records

    def _push(self, view: memoryview):
        if self._pipeline is None:
            take = min(4 - len(self._head), len(view))
            self._head += view[:take]
            view = view[take:]
            if len(self._head) < 4:
                return
            yield from self._start()
        yield from self._pipeline.push(view)

    def _start(self):
        head, self._head = bytes(self._head), None
        self._pipeline = Pipeline(self._options, detect_wrapper(head))
        yield from self._pipeline.push(memoryview(head))


def iter_load(source, **loads_kw):
    """Yield (name, array) as records complete, reading source a chunk at a time."""
    decoder = Decoder(**loads_kw)
    with open_source(source) as f:
        for chunk in iter_chunks(f):
            yield from decoder._records(chunk)
    decoder.close()
