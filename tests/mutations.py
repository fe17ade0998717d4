"""Hypothesis strategies for damaged PTTH input: structured mutations of valid blobs.

A mutation knows the blob's layout (``blobs.items``), so it can lie in one
length field, make the dims overflow, cut at an item boundary, break a name's
UTF-8, or damage a compression wrapper's header, checksum or end, instead of
flipping random bytes that mostly hit payloads. Blobs are built by hand from
docs/format.md (``blobs.record``), never by the library under test.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import strategies as st
from zlib_ng import zlib_ng

from blobs import CODES, WBITS, WRAPPERS, blob, field_offsets, items, record
from strategies import arrays, names

U32 = 0xFFFFFFFF
INTERESTING_U32 = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    12,
    63,
    64,
    65,
    255,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    U32,
]


def encode(tensors: dict) -> bytes:
    """the format's layout: header big-endian, payload little-endian C order."""
    recs = []
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        payload = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        recs.append(record(name, list(arr.shape), CODES[arr.dtype.name], payload))
    return blob(*recs)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: dumps' bad_name, not a blob
        return False
    return True


small_tensors = st.dictionaries(names.filter(_utf8), arrays(), min_size=1, max_size=4)


def layout(data: bytes) -> list:
    """Per record of a valid plain blob: its fields' offsets (blobs.field_offsets),
    plus "start", "end" and "dim_list" (the offset of each dim)."""
    (count,) = struct.unpack_from(">I", data, 8)
    pos, recs = 12, []
    for _ in range(count):
        (n,) = struct.unpack_from(">I", data, pos)
        (ndim,) = struct.unpack_from(">I", data, pos + 4 + n)
        off = field_offsets(pos, n, ndim)
        (data_len,) = struct.unpack_from(">I", data, off["data_len"])
        off.update(
            start=pos,
            end=off["payload"] + data_len,
            dim_list=[off["dims"] + 4 * k for k in range(ndim)],
        )
        recs.append(off)
        pos = off["end"]
    return recs


def fields(data: bytes) -> list:
    """Offsets of every u32 field: per record name_len, ndim, each dim, dtype and
    data_len, then count and version (hypothesis draws the first ones most)."""
    out = []
    for r in layout(data):
        out += [r["data_len"], r["name_len"], r["ndim"], *r["dim_list"], r["dtype"]]
    return out + [8, 4]


def boundaries(data: bytes):
    return sorted({s for s, _, _ in items(data)} | {len(data)})


@st.composite
def u32_near(draw, old: int) -> int:
    return draw(
        st.one_of(
            st.sampled_from(INTERESTING_U32),
            st.integers(-8, 8).map(lambda d: (old + d) & U32),
            st.sampled_from([(old * 2) & U32, (old * 4) & U32, old >> 1, old ^ 0x80000000]),
            st.integers(0, U32),
        )
    )


@st.composite
def mutate_plain(draw, data: bytes):
    """One structured mutation of a valid plain blob: (label, new bytes)."""
    kind = draw(
        st.sampled_from(
            [
                "field",
                "dims",
                "truncate",
                "flip",
                "splice",
                "trailing",
                "duplicate",
                "name",
                "count",
                "none",
            ]
        )
    )
    b = bytearray(data)
    if kind == "field":
        offset = draw(st.sampled_from(fields(data)))  # a broken magic is "flip"'s job
        (old,) = struct.unpack_from(">I", b, offset)
        struct.pack_into(">I", b, offset, draw(u32_near(old)))
        return f"field@{offset}", bytes(b)
    if kind == "dims":
        # dims whose product overflows 64 bits or NumPy's limit, with or without a zero
        recs = [r for r in layout(data) if r["dim_list"]]
        if recs:
            r = draw(st.sampled_from(recs))
            big = st.sampled_from([U32, 0x80000000, 0x10000, 0xFFFF, 3, 0])
            dims = draw(st.lists(big, min_size=len(r["dim_list"]), max_size=len(r["dim_list"])))
            for at, d in zip(r["dim_list"], dims):
                struct.pack_into(">I", b, at, d)
            if draw(st.booleans()):  # data_len = the product mod 2**32, as a careless writer would
                n = 4
                for d in dims:
                    n *= d
                struct.pack_into(">I", b, r["data_len"], n & U32)
            return f"dims@{r['start']}", bytes(b)
        kind = "truncate"
    if kind == "truncate":
        near = st.sampled_from(boundaries(data)).flatmap(
            lambda x: st.integers(max(0, x - 2), min(len(data) - 1, x + 2))
        )
        cut = draw(st.one_of(near, st.integers(0, len(data) - 1)))
        return f"cut@{cut}", data[:cut]
    if kind == "flip":
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return "flip", bytes(b)
    if kind == "splice":
        at = draw(st.sampled_from(boundaries(data)))
        if draw(st.booleans()):
            return f"insert@{at}", data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        return f"delete@{at}", data[:at] + data[at + draw(st.integers(1, 8)) :]
    if kind == "trailing":
        return "trailing", data + draw(st.binary(min_size=1, max_size=5))
    if kind == "duplicate":
        # repeat the last record (a duplicate name) and count it
        recs = layout(data)
        if recs:
            struct.pack_into(">I", b, 8, (len(recs) + 1) & U32)
            return "duplicate", bytes(b) + data[recs[-1]["start"] :]
        kind = "name"
    if kind == "name":
        # a name that is not UTF-8 (overlong, surrogate, lone continuation, too high)
        recs = layout(data)
        if recs:
            r = draw(st.sampled_from(recs))
            bad = draw(
                st.sampled_from(
                    [
                        b"\xc0\x80",
                        b"\xed\xa0\x80",
                        b"\x80",
                        b"\xf4\x90\x80\x80",
                        b"\xe2\x82",
                        b"a\xff",
                    ]
                )
            )
            return "bad-name", (
                data[: r["name_len"]] + struct.pack(">I", len(bad)) + bad + data[r["ndim"] :]
            )
        kind = "count"
    if kind == "count":
        (old,) = struct.unpack_from(">I", b, 8)
        struct.pack_into(">I", b, 8, draw(u32_near(old)))
        return "count", bytes(b)
    return "none", data


def deflate(data: bytes, wrapper: str, level: int) -> bytes:
    return zlib_ng.compress(data, level, WBITS[wrapper])


@st.composite
def damage_wrapper(draw, z: bytes, wrapper: str):
    """One injury to a compressed stream: header, checksum/trailer, end, extra bytes."""
    kind = draw(st.sampled_from(["none", "header", "trailer", "cut", "extra", "member", "flags"]))
    b = bytearray(z)
    if kind == "header":
        i = draw(st.integers(0, min(9, len(b) - 1)))
        b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "trailer":
        i = len(b) - 1 - draw(st.integers(0, min(7, len(b) - 1)))
        b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "cut":
        return f"{wrapper}-cut", z[: draw(st.integers(0, len(z) - 1))]
    elif kind == "extra":
        return f"{wrapper}-extra", z + draw(st.binary(min_size=1, max_size=4))
    elif kind == "member":
        return f"{wrapper}-member", z + z
    elif kind == "flags" and wrapper == "gzip":
        # FTEXT/FHCRC/FEXTRA/FNAME/FCOMMENT/reserved bits, with the fields they announce (or not)
        b[3] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            b[10:10] = draw(st.binary(max_size=12))
    elif kind == "flags" and wrapper == "zlib":
        b[1] |= 0x20  # FDICT, then fix FCHECK so the header still looks like zlib
        b[1] = (b[1] & 0xE0) | (31 - ((b[0] << 8) | (b[1] & 0xE0)) % 31) % 31
    return f"{wrapper}-{kind}", bytes(b)


@st.composite
def damaged_inputs(draw, data: bytes):
    """(label, bytes): a mutated plain blob, a valid wrapper around a mutated blob,
    or a damaged wrapper around a valid one."""
    label, plain = draw(mutate_plain(data))
    wrapper = draw(st.sampled_from((None,) + WRAPPERS))
    if wrapper is None:
        return label, plain
    if draw(st.booleans()):
        return f"{label}+{wrapper}", deflate(plain, wrapper, draw(st.sampled_from([0, 1, 6, 9])))
    hurt, z = draw(damage_wrapper(deflate(data, wrapper, 6), wrapper))
    return hurt, z


@st.composite
def cases(draw):
    """(tensors, valid blob, label, damaged bytes)."""
    tensors = draw(small_tensors)
    data = encode(tensors)
    label, bad = draw(damaged_inputs(data))
    return tensors, data, label, bad


def chunkings(n: int):
    """Cut points for n bytes: a sorted list of offsets (may repeat: empty chunks)."""
    return st.lists(st.integers(0, n), max_size=8).map(sorted)


def split(data: bytes, cuts) -> list:
    bounds = [0] + list(cuts) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]
