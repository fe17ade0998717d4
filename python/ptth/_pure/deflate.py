"""compress(): zlib-ng with the settings the native core uses, so both write the same bytes."""

from __future__ import annotations

from zlib_ng import zlib_ng

#: windowBits per wrapper name
WBITS = {"zlib": 15, "gzip": 31, "deflate": -15}


def compress(view: memoryview, level: int, wrapper: str) -> bytes:
    """One standard stream of ``view`` (level and wrapper are checked by the front)."""
    # One-shot, not compressobj: zlib-ng's stored and quick strategies cut
    # blocks where input and output space run out, so only the same call
    # pattern gives the same bytes (the native core mirrors this one).
    return zlib_ng.compress(view, level, WBITS[wrapper])
