"""compress(): zlib-ng with the settings the native core uses, so both write the same bytes."""

from __future__ import annotations

from zlib_ng import zlib_ng

from .format import WBITS, byte_view, check_choice, check_int


def check_compress_args(level, wrapper) -> tuple[int, str]:
    return (check_int(level, "level", 0, 9),
            check_choice(wrapper, "wrapper", tuple(WBITS)))


def compress(data, level=6, wrapper="zlib") -> bytes:
    view = byte_view(data)
    level, wrapper = check_compress_args(level, wrapper)
    # One-shot, not compressobj: zlib-ng's stored and quick strategies cut
    # blocks where input and output space run out, so only the same call
    # pattern gives the same bytes (the native core mirrors this one).
    return zlib_ng.compress(view, level, WBITS[wrapper])
