"""compress(): the native core's block layout, written single-threaded with the same libraries.

The stream is cut into ``BLOCK``-byte blocks (docs/compression.md, "Compressed
output"). Block i is raw DEFLATE primed with the ``WINDOW`` bytes before it
and ends with a sync flush; the last one ends the stream. Level 0 writes
stored blocks directly; levels 1..9 run ISA-L through the ``isal`` package,
whose ISA-L (2.32.1 in isal 1.9.1) is the one the core is built from, called
as the core calls it, so both engines write the same bytes whatever the
core's thread count. One wrapper header and one checksum of the whole input
enclose the blocks.
"""

from __future__ import annotations

import struct

from isal import isal_zlib
from zlib_ng import zlib_ng

#: windowBits per wrapper name
WBITS = {"zlib": 15, "gzip": 31, "deflate": -15}

#: uncompressed bytes per block (the core's kDeflateBlock)
BLOCK = 1 << 20
#: history each block is primed with (the core's kDeflateWindow)
WINDOW = 1 << 15
_STORED_MAX = 65535


def isal_level(level: int) -> int:
    """ISA-L's level for ptth's 1..9: 1..3 -> 1, 4..6 -> 2, 7..9 -> 3."""
    return 1 if level <= 3 else 2 if level <= 6 else 3


def _header(wrapper: str, level: int) -> bytes:
    # zlib's conventions: FLEVEL (zlib) and XFL (gzip) from the level, OS 3 (Unix)
    if wrapper == "zlib":
        flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
        return bytes([0x78, (0x01, 0x5E, 0x9C, 0xDA)[flevel]])
    if wrapper == "gzip":
        xfl = 2 if level == 9 else 4 if level < 2 else 0
        return bytes([0x1F, 0x8B, 0x08, 0, 0, 0, 0, 0, xfl, 0x03])
    return b""


def _stored(view, last: bool) -> list:
    n = len(view)
    pieces = max(1, -(-n // _STORED_MAX))
    out = []
    for i in range(pieces):
        chunk = view[i * _STORED_MAX : (i + 1) * _STORED_MAX]
        k = len(chunk)
        out.append(struct.pack("<BHH", int(last and i + 1 == pieces), k, k ^ 0xFFFF))
        out.append(chunk)
    return out


def _isal_block(dictionary, block, level: int, last: bool) -> list:
    # compressobj(level, DEFLATED, -15, memLevel=8[, zdict]), compress, then a
    # sync flush (Z_FINISH for the last block): the core's exact call sequence.
    args = (isal_level(level), isal_zlib.DEFLATED, -15, 8)
    c = (
        isal_zlib.compressobj(*args, zdict=dictionary)
        if len(dictionary)
        else isal_zlib.compressobj(*args)
    )
    return [c.compress(block), c.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)]


def compress(view: memoryview, level: int, wrapper: str, threads: int = 1) -> bytes:
    """One standard stream of ``view`` in the core's block layout (arguments are checked by
    the front); the pure engine runs one thread, and the bytes do not depend on it."""
    n = len(view)
    out = [_header(wrapper, level)]
    starts = range(0, n, BLOCK) if n else range(1)
    last_start = starts[-1]
    for start in starts:
        block = view[start : start + BLOCK]
        last = start == last_start
        if level == 0:
            out += _stored(block, last)
        else:
            out += _isal_block(view[max(0, start - WINDOW) : start], block, level, last)
    if wrapper == "zlib":
        out.append(struct.pack(">I", zlib_ng.adler32(view)))
    elif wrapper == "gzip":
        out.append(struct.pack("<II", zlib_ng.crc32(view), n & 0xFFFFFFFF))
    return b"".join(out)
