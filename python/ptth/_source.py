"""Sources and targets of load/dump/iter_load, shared by both backends."""

from __future__ import annotations

import contextlib
import os

from .errors import PTTHError

#: bytes read from a file per step when streaming
READ_CHUNK = 1 << 20


@contextlib.contextmanager
def open_source(source):
    """Yield a binary file object for a path (str, bytes, os.PathLike) or a file."""
    if isinstance(source, (str, bytes, os.PathLike)):
        with open(source, "rb") as f:
            yield f
    elif hasattr(source, "read") or hasattr(source, "readinto"):
        yield source
    else:
        raise PTTHError("bad_argument",
                        f"expected a path or a binary file, got {type(source).__name__}")


@contextlib.contextmanager
def open_target(target):
    """Yield a writable binary file object for a path or a file."""
    if isinstance(target, (str, bytes, os.PathLike)):
        with open(target, "wb") as f:
            yield f
    elif hasattr(target, "write"):
        yield target
    else:
        raise PTTHError("bad_argument",
                        f"expected a path or a writable binary file, got {type(target).__name__}")


def read_all(source) -> bytes:
    with open_source(source) as f:
        data = f.read()
    if not isinstance(data, (bytes, bytearray)):
        raise PTTHError("bad_argument", "the file must be opened in binary mode")
    return data


def iter_chunks(f, size: int = READ_CHUNK):
    """Yield successive chunks of a binary file until EOF."""
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        if not isinstance(chunk, (bytes, bytearray)):
            raise PTTHError("bad_argument", "the file must be opened in binary mode")
        yield chunk
