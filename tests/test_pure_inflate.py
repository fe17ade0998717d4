"""The fallback's streaming inflater against the core where its replay is hardest: after
more than IN_CHUNK bytes without output (a mid-stream replay point) and in gzip headers
it parses itself. Output, reason and offset must be the core's for every input."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from blobs import describe, outcome, sample_tensors

LONG = 200_000  # bytes of input without output: more than IN_CHUNK (64 KiB)


def empty_stored(total: int) -> bytes:
    return b"\x00\x00\x00\xff\xff" * (total // 5)


def empty_fixed(total: int) -> bytes:
    """Empty fixed-Huffman blocks (10 bits each), four at a time to end on a byte."""
    bits = [0, 1, 0] + [0] * 7
    four = 0
    for i, bit in enumerate(bits * 4):
        four |= bit << i
    return four.to_bytes(5, "little") * (total // 5)


def wrap(raw: bytes, plain: bytes, wrapper: str, gzip_head: bytes | None = None) -> bytes:
    if wrapper == "deflate":
        return raw
    if wrapper == "zlib":
        return b"\x78\x01" + raw + struct.pack(">I", zlib.adler32(plain))
    head = gzip_head or b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    return head + raw + struct.pack("<II", zlib.crc32(plain), len(plain) & 0xFFFFFFFF)


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def same_decompress(native, pure, data, wrapper):
    a = describe(outcome(native.decompress, data, wrapper=wrapper))
    b = describe(outcome(pure.decompress, data, wrapper=wrapper))
    assert a == b, (wrapper, a if a[0] == "error" else "ok", b if b[0] == "error" else "ok")
    return a


def same_stream(native, pure, chunks):
    def run(mod):
        def go():
            dec = mod.Decoder()
            out = []
            for c in chunks:
                out += dec.feed(c)
            dec.close()
            return out

        return describe(outcome(go))

    a, b = run(native), run(pure)
    assert a == b, (a if a[0] == "error" else "ok", b if b[0] == "error" else "ok")
    return a


def mutants(data: bytes, start: int, seed: int, count: int):
    """Bit flips, byte replacements and cuts at and after ``start``."""
    rng = random.Random(seed)
    yield data
    for _ in range(count):
        b = bytearray(data)
        kind = rng.random()
        if kind < 0.6:
            i = rng.randrange(start, min(len(b), start + 48))
            b[i] ^= 1 << rng.randrange(8)
        elif kind < 0.8:
            i = rng.randrange(start, len(b))
            b[i] = rng.randrange(256)
        else:
            del b[rng.randrange(start, len(b)) :]
        yield bytes(b)


PLAINS = {
    "text": b"hello, hello, hello world " * 40,
    "one": b"A",
    "random": random.Random(1).randbytes(3000),
}


@pytest.mark.parametrize("wrapper", ["zlib", "gzip", "deflate"])
@pytest.mark.parametrize("filler", [empty_stored, empty_fixed])
@pytest.mark.parametrize("plain", sorted(PLAINS))
@pytest.mark.parametrize("before", [b"", b"xy"])
def test_errors_after_a_long_run_without_output(native, pure, wrapper, filler, plain, before):
    """Output (or not) before the run, LONG bytes of empty blocks, then a compressed tail
    with mutations at its start, where the replay from the mid-stream point raises."""
    body = PLAINS[plain]
    head = b""
    if before:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        head = c.compress(before) + c.flush(zlib.Z_SYNC_FLUSH)
    for level in (0, 1, 6):
        raw = head + filler(LONG) + raw_deflate(body, level)
        data = wrap(raw, before + body, wrapper)
        start = {"zlib": 2, "gzip": 10, "deflate": 0}[wrapper] + len(head) + LONG // 5 * 5 - 2
        for m in mutants(data, start, hash((wrapper, plain, level)) & 0xFFFF, 40):
            same_decompress(native, pure, m, wrapper)


def test_hand_made_errors_after_a_long_run(native, pure):
    """One literal then an error in the same byte, and other errors right after the run."""
    for wrapper in ("zlib", "gzip", "deflate"):
        for tail in (
            b"\x07",  # invalid block type
            b"\x01\x01\x00\x00\x00",  # stored lengths mismatch
            b"\x03\x00",  # empty final fixed block: the check follows
            raw_deflate(b"q")[:1] + b"\xff\xff",
            raw_deflate(b"abcabcabc"),
        ):
            for fill in (empty_stored, empty_fixed):
                raw = fill(LONG) + tail
                same_decompress(native, pure, wrap(raw, b"", wrapper), wrapper)
                for bit in range(8 * len(tail)):
                    m = bytearray(raw)
                    m[len(raw) - len(tail) + bit // 8] ^= 1 << bit % 8
                    same_decompress(native, pure, wrap(bytes(m), b"", wrapper), wrapper)


def gzip_header(flags: int, extra=b"", name=b"", comment=b"", hcrc=None) -> bytes:
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\x01\x02\x03\x04\x00\x03"
    if flags & 4:
        head += struct.pack("<H", len(extra)) + extra
    if flags & 8:
        head += name + b"\0"
    if flags & 16:
        head += comment + b"\0"
    if flags & 2:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF if hcrc is None else hcrc)
    return head


HEADERS = [
    gzip_header(0),
    gzip_header(1),
    gzip_header(4),
    gzip_header(4, extra=b"ab\x02\x00xy"),
    gzip_header(8, name=b"model.ptth"),
    gzip_header(16, comment=b"c" * 100),
    gzip_header(2),
    gzip_header(2, hcrc=0x1234),
    gzip_header(2 | 4 | 8 | 16, extra=b"\0" * 300, name=b"n", comment=b"\xff" * 7),
    gzip_header(2 | 4 | 8 | 16, extra=b"e", name=b"n", comment=b"c", hcrc=1),
    gzip_header(0x20),
    gzip_header(0x80 | 8, name=b"x"),
    b"\x1f\x8b\x07\x00" + bytes(6),
    b"\x1f\x8c\x08\x00" + bytes(6),
]


@pytest.fixture(scope="module")
def blob(native):
    return native.dumps(sample_tensors())


@pytest.mark.parametrize("head", HEADERS, ids=range(len(HEADERS)))
def test_gzip_headers(native, pure, blob, head):
    data = wrap(raw_deflate(blob), blob, "gzip", head)
    same_decompress(native, pure, data, "gzip")
    for cut in range(len(head) + 3):
        same_decompress(native, pure, data[:cut], "gzip")
        same_stream(native, pure, [data[:cut], data[cut:]])
    same_stream(native, pure, [data[i : i + 1] for i in range(len(data))])


@pytest.mark.parametrize("field", [4, 8, 16])
def test_long_gzip_header_field(native, pure, blob, field):
    """A header field longer than IN_CHUNK, then a body with mutations at its start."""
    long = b"z" * LONG
    head = gzip_header(field | 2, extra=long[:65535], name=long, comment=long)
    raw = raw_deflate(blob)
    data = wrap(raw, blob, "gzip", head)
    for m in mutants(data, len(head) - 3, field, 60):
        same_decompress(native, pure, m, "gzip")
    chunks = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    same_stream(native, pure, chunks)


class Bits:
    """A DEFLATE bit writer: fields from the low end, Huffman codes from their top bit."""

    def __init__(self):
        self.bits = []

    def field(self, value: int, n: int):
        self.bits += [value >> i & 1 for i in range(n)]

    def code(self, code: str):
        self.bits += [int(c) for c in code]

    def pad(self):
        self.bits += [0] * (-len(self.bits) % 8)

    def bytes(self) -> bytes:
        self.pad()
        return bytes(
            sum(b << i for i, b in enumerate(self.bits[j : j + 8]))
            for j in range(0, len(self.bits), 8)
        )


def tiny_dynamic_header(w: Bits, final: int, spare: int):
    """A dynamic block: literal 'a' = 0, end of block = 10, length 3 = 11; one distance
    code, 4 (distances 5-6, one extra bit) = 0. ``spare`` extra code-length entries
    shift what follows by 3 bits each."""
    w.field(final, 1)
    w.field(2, 2)
    w.field(258 - 257, 5)  # HLIT: symbols 0..257
    w.field(5 - 1, 5)  # HDIST: distance symbols 0..4
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    lengths = {18: 2, 0: 2, 2: 2, 1: 2}  # codes 0=00, 1=01, 2=10, 18=11
    count = 18 + spare
    w.field(count - 4, 4)
    for sym in order[:count]:
        w.field(lengths.get(sym, 0), 3)
    cl = {0: "00", 1: "01", 2: "10", 18: "11"}

    def zeros(n):
        while n:
            run = min(n, 138)
            w.code(cl[18])
            w.field(run - 11, 7)
            n -= run

    zeros(97)
    w.code(cl[1])  # 'a'
    zeros(256 - 98)
    w.code(cl[2])  # 256
    w.code(cl[2])  # 257
    w.code(cl[0]), w.code(cl[0]), w.code(cl[0]), w.code(cl[0])
    w.code(cl[1])  # distance symbol 4


ENDINGS = {
    "literal, then block type 3": ["0", "10", "111"],
    "literal, then too far back": ["0", "11", "0", "1"],
    "two literals, then too far back": ["0", "0", "11", "0", "1"],
    "block type 3": ["10", "111"],
    "too far back": ["11", "0", "0"],
    "literal, end": ["0", "10", "1", "10", "0000000"],  # then a final empty fixed block
}


@pytest.mark.parametrize("wrapper", ["zlib", "gzip", "deflate"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("run", [0, LONG])
def test_a_literal_and_an_error_in_one_byte(native, pure, wrapper, ending, run):
    """The one output byte a replay from a mid-stream point cannot see directly: a
    literal decoded from the same input byte as the error after it, at every bit
    alignment (empty fixed blocks shift by 2 bits, spare header entries by 3)."""
    for fixed in range(4):
        for spare in range(2):
            w = Bits()
            for _ in range(fixed):
                w.field(0, 1), w.field(1, 2), w.code("0000000")
            tiny_dynamic_header(w, 0, spare)
            for code in ENDINGS[ending]:
                w.code(code)
            raw = empty_stored(run) + w.bytes() + b"\xff\x00"
            for flip in range(-1, 24):
                m = bytearray(raw)
                if flip >= 0:
                    m[len(raw) - 2 - flip // 8 - 1] ^= 1 << flip % 8
                same_decompress(native, pure, wrap(bytes(m), b"a", wrapper), wrapper)
