"""compress(): zlib-ng with the settings the native core uses, so both write the same bytes."""

from __future__ import annotations

from zlib_ng import zlib_ng

from .format import WBITS, byte_view, check_choice, check_int

MEM_LEVEL = 8


def check_compress_args(level, wrapper) -> tuple[int, str]:
    return (check_int(level, "level", 0, 9),
            check_choice(wrapper, "wrapper", tuple(WBITS)))


def compress(data, level=6, wrapper="zlib") -> bytes:
    view = byte_view(data)
    level, wrapper = check_compress_args(level, wrapper)
    deflate = zlib_ng.compressobj(level, zlib_ng.DEFLATED, WBITS[wrapper], MEM_LEVEL,
                                  zlib_ng.Z_DEFAULT_STRATEGY)
    return deflate.compress(view) + deflate.flush()
