#!/usr/bin/env python3
"""Write the seed corpus of the libFuzzer targets in csrc/fuzz.

usage: make_corpus.py OUTDIR

Writes OUTDIR/<target>/ for fuzz_loads, fuzz_stream, fuzz_inflate,
fuzz_aggregate and fuzz_restore, one file per seed, each in the input layout of its target
(see the comment at the top of each fuzz_*.cpp). Seeds: the golden vectors
(tests/golden/*.ptth), blobs built here from docs/format.md (every dtype, float16,
big-endian payloads, empty and awkward shapes, UTF-8 names), each rule broken
once, truncations, each blob compressed per wrapper (zlib, gzip, raw DEFLATE;
several levels), and the input of every crash the fuzzers found (REGRESSIONS).

Standard library only, so a fresh clone needs nothing but Python 3; the
compressed seeds come from the stdlib's zlib (any valid stream will do).
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent.parent / "tests" / "golden"

F32, F64, I32, F16 = 0, 1, 2, 3
FMT = {F32: "f", F64: "d", I32: "i", F16: "e"}

# Inputs that once broke a target: (target, hex). Each is a regression seed,
# run by .ci/fuzz.sh before fuzzing starts; "*" means every target.
REGRESSIONS: list[tuple[str, str]] = [
    # decompress(max_size=40) said bad_checksum at 41, past the limit (test_fuzz_regressions.cpp)
    ("fuzz_inflate", "70789c0b0809f16060606084e17228838901027818181aec81f4010043250349"),
]


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def record(
    name, dims, code, values=(), *, order="<", name_len=None, ndim=None, data_len=None, payload=None
) -> bytes:
    """One record; keyword overrides write dishonest fields."""
    raw = name.encode("utf-8") if isinstance(name, str) else name
    if payload is None:
        payload = struct.pack(order + FMT[code] * len(values), *values)
    return (
        u32(len(raw) if name_len is None else name_len)
        + raw
        + u32(len(dims) if ndim is None else ndim)
        + b"".join(u32(d) for d in dims)
        + u32(code)
        + u32(len(payload) if data_len is None else data_len)
        + payload
    )


def blob(*records: bytes, count=None, version=1, magic=b"PTTH") -> bytes:
    return magic + u32(version) + u32(len(records) if count is None else count) + b"".join(records)


def deflate(data: bytes, wbits: int, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)  # gzip: mtime 0, no name
    return c.compress(data) + c.flush()


WRAPPERS = {"zlib": 15, "gzip": 31, "deflate": -15}

# ---- plain blobs ---------------------------------------------------------------


def valid_blobs() -> dict[str, bytes]:
    ramp = [i * 0.25 - 3 for i in range(24)]
    special = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3.4e38, -1.5]
    out = {
        "empty": blob(),
        "f32": blob(record("w", [2], F32, [1.0, -2.0])),
        "f32-be": blob(record("w", [2], F32, [1.0, -2.0], order=">")),
        "f32-be-ramp": blob(record("w", [4, 6], F32, ramp, order=">")),
        "f16": blob(record("fc.weight", [2, 3], F16, [0.5, -1, 2, 0, 65504, -0.25])),
        "f64-scalar": blob(record("fc.bias", [], F64, [3.5])),
        "i32-empty": blob(record("steps", [0], I32)),
        "zero-dims": blob(record("z", [0, 0xFFFFFFFF, 7], F32)),
        "special": blob(record("s", [8], F32, special)),
        "mixed": blob(
            record("a", [3], F32, [1, 2, 3]),
            record("b", [2, 2], F64, [1, 2, 3, 4]),
            record("c", [2], I32, [-1, 7]),
            record("d", [5], F16, [1, 2, 3, 4, 5]),
            record("", [], I32, [42]),
        ),
        "utf8-names": blob(record("héllo 🎉", [1], F32, [1.0]), record("ü", [1], F16, [2.0])),
        # iOS: float32 bytes under codes 1 and 2 (relabel_float32)
        "ios-relabel": blob(
            record("d", [3], F64, payload=struct.pack("<3f", 1, 2, 3)),
            record("i", [2], I32, payload=struct.pack("<2f", 4, 5)),
        ),
        "many-dims": blob(record("m", [1] * 64, F32, [1.0])),
        "many-records": blob(*[record(f"p{i}", [1], F16, [float(i)]) for i in range(40)]),
        "large-f32": blob(record("big", [1000], F32, [float(i % 13) for i in range(1000)])),
    }
    return out


def broken_blobs(valid: bytes) -> dict[str, bytes]:
    """Each rule broken once (the format's list), on top of a valid one-record blob."""
    r = lambda **kw: blob(record("w", [2], F32, [1.0, -2.0], **kw))  # noqa: E731
    out = {
        "bad-magic": b"PTTX" + valid[4:],
        "bad-version": blob(record("w", [2], F32, [1.0, -2.0]), version=2),
        "bad-utf8": blob(record(b"\xc0\x80", [1], F32, [1.0])),
        "surrogate": blob(record(b"\xed\xa0\x80", [1], F32, [1.0])),
        "duplicate": blob(record("w", [1], F32, [1.0]), record("w", [1], F32, [2.0])),
        "ndim-65": r(ndim=65),
        "ndim-huge": r(ndim=0xFFFFFFFF),
        "bad-dtype": blob(record("w", [1], 4, payload=b"\0" * 4)),
        "overflow": blob(record("o", [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF], F32, data_len=0)),
        "numpy-limit": blob(record("o", [0, 0xFFFFFFFF, 0xFFFFFFFF], F64, data_len=0)),
        "length-mismatch": r(data_len=12),
        "data-len-huge": r(data_len=0xFFFFFFFF),
        "name-len-huge": r(name_len=0xFFFFFFFF),
        "trailing": valid + b"\0",
        "count-huge": blob(count=4_000_000_000),
        "count-short": blob(record("w", [1], F32, [1.0]), count=2),
    }
    return out


def truncations(data: bytes) -> dict[str, bytes]:
    cuts = sorted({0, 1, 3, 4, 11, 12, 15, len(data) // 2, len(data) - 1})
    return {f"cut{n}": data[:n] for n in cuts if n < len(data)}


# ---- the aggregate target's template (fuzz_aggregate.cpp) -----------------------


def template_updates() -> dict[str, bytes]:
    w = record("w", [2], F32, [0.5, -0.25])
    fcw = record("fc.weight", [2, 3], F16, [0.5, -1, 2, 0, 1, -0.25])
    fcb = record("fc.bias", [], F64, [3.5])
    steps = record("steps", [0], I32)
    emb = record("emb", [64, 80], F16, [((i % 31) - 15) / 64 for i in range(64 * 80)])
    count = record("count", [3], I32, [1, -2, 3])
    full = blob(w, fcw, fcb, steps, emb, count)
    return {
        "all": full,
        "all-zlib": deflate(full, 15),
        "all-gzip": deflate(full, 31, 9),
        "all-deflate": deflate(full, -15, 1),
        "partial": blob(fcb, w),
        "emb-only-zlib": deflate(blob(emb), 15),
        "relabel": blob(
            record("fc.bias", [], F64, payload=struct.pack("<f", 2.5)),
            record("count", [3], I32, payload=struct.pack("<3f", 1, 2, 3)),
        ),
        "be": blob(record("w", [2], F32, [1.0, -2.0], order=">"), fcb),
        # Android: every payload big-endian; the first one ties under "auto" (both
        # readings plausible), the second decides, so the first must be swapped too
        "android": blob(
            record("w", [2], F32, payload=bytes.fromhex("3e999941bf999941")),
            record("fc.weight", [2, 3], F32, [0.5, -1, 2, 0, 1, -0.25], order=">"),
            record("emb", [64, 80], F32, [((i % 29) - 14) / 64 for i in range(64 * 80)], order=">"),
        ),
        # one payload whose two readings are both plausible: ambiguous_byteorder under "auto"
        "ambiguous": blob(record("w", [2], F32, payload=bytes.fromhex("3e9999413e999941"))),
        "f64-for-f32": blob(record("w", [2], F64, [1.0, 2.0])),
        "unknown": blob(w, record("nope", [1], F32, [1.0])),
        "shape": blob(record("w", [3], F32, [1, 2, 3])),
        "nan": blob(w, record("fc.bias", [], F64, [float("nan")])),
        "inf-f16": blob(record("fc.weight", [2, 3], F16, [0, 0, float("inf"), 0, 0, 0])),
        "truncated": full[: len(full) - 7],
    }


# ---- per-target layouts ------------------------------------------------------------


def stream_inputs(data: bytes) -> dict[str, bytes]:
    """BLOB || SPLITS || CONTROL (fuzz_stream.cpp)."""
    return {
        "whole": data + b"\x00",
        "bytes": data + b"\x01\x01",
        "mixed": data + bytes([7, 0, 3, 200]) + b"\x04",
        "big": data + bytes([5]) + bytes([0x11]),
        "auto-relabel": data + bytes([2, 9]) + bytes([0x62]),
        "auto-relabel-auto": data + bytes([3]) + bytes([0x29]),
        "small-max": data + bytes([13]) + bytes([0x81]),
    }


def sync_flushed(data: bytes) -> bytes:
    """zlib stream of 3 pieces, each ended by a sync flush, as ptth's blocks are joined."""
    c = zlib.compressobj(6, zlib.DEFLATED, 15)
    step = max(1, len(data) // 3)
    parts = [
        c.compress(data[i : i + step]) + c.flush(zlib.Z_SYNC_FLUSH)
        for i in range(0, len(data), step)
    ]
    return b"".join(parts) + c.flush()


def with_fhcrc(g: bytes) -> bytes:
    """A gzip member with FHCRC set and the header's CRC-16 in place."""
    head = bytes([g[0], g[1], g[2], g[3] | 2]) + g[4:10]
    return head + (zlib.crc32(head) & 0xFFFF).to_bytes(2, "little") + g[10:]


def inflate_inputs(data: bytes) -> dict[str, bytes]:
    """CONTROL || DATA (fuzz_inflate.cpp): max_size index in the high nibble."""
    return {
        "auto-1m": b"\xf0" + data,
        "auto-113": b"\x90" + data,
        "auto-40": b"\x70" + data,
        "zlib-4096": b"\xc1" + data,
        "gzip-1000": b"\xb2" + data,
        "deflate-65536-relabel-auto": b"\xef" + data,
        "auto-12": b"\x50" + data,
    }


def restore_inputs() -> dict[str, bytes]:
    """CONTROL || DATA (fuzz_restore.cpp)."""
    f64 = struct.pack("<5d", 1.5, -2.0, 0.0, 3.25, 1e300)
    f32 = struct.pack("<4f", 1.5, -2.0, 0.0, 3.25)
    sums = struct.pack("<5d", 2.0, 0.0, 1.0, 0.0, 4.0)
    totals = struct.pack("<QdQ", 3, 7.0, 1)
    return {
        "restore-f64": b"\x00" + f64 * 3 + sums + totals,
        "merge-f64-after-add": b"\x41" + f64 * 3 + sums + totals,
        "restore-f32": b"\x02" + f32 * 3 + sums + totals,
        "fewer-accumulators": b"\x04" + f64,
        "more-accumulators": b"\x08" + f64,
        "no-sums": b"\x30" + f64,
        "nan": b"\x00" + struct.pack("<d", float("nan")) * 16,
        "negative-weight": b"\x01" + struct.pack("<d", -1.0) * 24,
        "merge-overflow": b"\x41" + struct.pack("<d", 1.7e308) * 32,
        "empty": b"\x00",
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[1])
    plain = {p.stem: p.read_bytes() for p in sorted(GOLDEN.glob("*.ptth"))}
    plain.update(valid_blobs())
    plain.update(broken_blobs(plain["f32"]))
    plain.update({f"mixed-{k}": v for k, v in truncations(plain["mixed"]).items()})

    compressed = {}
    for name in (
        "vector1_float32",
        "vector3_mixed",
        "f16",
        "mixed",
        "utf8-names",
        "large-f32",
        "empty",
        "trailing",
        "length-mismatch",
        "count-short",
        "many-records",
    ):
        if name not in plain:
            continue
        for wrapper, wbits in WRAPPERS.items():
            for level in (0, 1, 6, 9) if name in ("mixed", "large-f32") else (6,):
                compressed[f"{name}-{wrapper}{level}"] = deflate(plain[name], wbits, level)
    z = compressed["mixed-zlib6"]
    g = compressed["mixed-gzip6"]
    compressed.update(
        {
            "zlib-cut": z[: len(z) // 2],
            "zlib-bad-adler": z[:-1] + bytes([z[-1] ^ 1]),
            "gzip-bad-crc": g[:-8] + bytes([g[-8] ^ 1]) + g[-7:],
            "gzip-bad-isize": g[:-1] + bytes([g[-1] ^ 1]),
            "gzip-two-members": g + g,
            "zlib-trailing": z + b"\0",
            "zlib-preset-dict": b"\x78\xbb" + z[2:],
            # the whole-buffer path: a pigz-like layout (blocks joined by sync flushes),
            # and headers it leaves to zlib-ng (a 512-byte window, a gzip header CRC)
            "zlib-sync-flushed": sync_flushed(plain["mixed"]),
            "zlib-window-512": deflate(plain["mixed"], 9, 6),
            "gzip-fhcrc": with_fhcrc(g),
            # a small deflate bomb: 1 MiB of zeros claimed by a header in front of it
            "bomb": deflate(blob(record("z", [1 << 18], F32, payload=b"\0" * (1 << 20))), 15, 9),
        }
    )

    seeds = {
        "fuzz_loads": {**plain, **compressed},
        "fuzz_stream": {},
        "fuzz_inflate": {},
        "fuzz_aggregate": {
            **template_updates(),
            **{k: v for k, v in plain.items() if k.startswith("vector")},
        },
        "fuzz_restore": restore_inputs(),
    }
    for name, data in {**plain, **compressed}.items():
        if len(data) > 8192:
            continue
        for variant, payload in stream_inputs(data).items():
            seeds["fuzz_stream"][f"{name}-{variant}"] = payload
    for name, data in compressed.items():
        for variant, payload in inflate_inputs(data).items():
            seeds["fuzz_inflate"][f"{name}-{variant}"] = payload
    for name in ("vector1_float32", "mixed", "empty"):
        seeds["fuzz_inflate"][f"{name}-plain"] = b"\xf0" + plain[name]
    for target, hexdata in REGRESSIONS:
        data = bytes.fromhex(hexdata)
        for t in seeds if target == "*" else (target,):
            seeds[t]["regression-" + hashlib.sha1(data).hexdigest()[:12]] = data

    for target, files in seeds.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
        print(f"{d}: {len(files)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
