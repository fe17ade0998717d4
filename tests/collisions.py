"""Names whose libstdc++ ``std::hash<std::string>`` is one and the same 64-bit value.

libstdc++ hashes a string with ``_Hash_bytes(data, len, 0xc70f6907)``, MurmurHash64A.
For a 24-byte name the state after its third 8-byte block is
``h3 = (h2 ^ f(b3)) * M`` with ``f(x) = mix(x * M) * M`` and ``mix(v) = v ^ (v >> 47)``;
every step is invertible (M is odd, ``mix`` undoes itself), so for any first 16 bytes
the last block that lands on a chosen ``h3`` is ``f^-1(h2 ^ h3 * M^-1)``. The final
mixing depends on ``h3`` alone: every such name has the same hash. About one solved
block in 270 is ASCII without NUL bytes; those are kept, so the names are valid UTF-8.

An unkeyed hash set of such names degenerates into one chain (quadratic time): the
core reader and the aggregator's name index use a keyed hash instead
(``csrc/core/keyed_hash.hpp``). ``csrc/tests/test_keyed_hash.cpp`` builds names the
same way in C++ and checks them against the real ``std::hash``.
"""

from __future__ import annotations

import numpy as np

M = np.uint64((0xC6A4A793 << 32) + 0x5BD1E995)
M_INV = np.uint64(pow(int(M), -1, 2**64))
SEED = np.uint64(0xC70F6907)
LENGTH = 24
_S47 = np.uint64(47)
_HIGH = np.uint64(0x8080808080808080)
_ONES = np.uint64(0x0101010101010101)
_BATCH = 1 << 21


def _mix(v: np.ndarray) -> np.ndarray:
    return v ^ (v >> _S47)


def hash_bytes(data: bytes) -> int:
    """libstdc++'s ``_Hash_bytes(data, len, 0xc70f6907)`` (64-bit), for checking."""
    with np.errstate(over="ignore"):
        n = len(data)
        h = SEED ^ (np.uint64(n) * M)
        full = n - n % 8
        for i in range(0, full, 8):
            block = np.frombuffer(data[i : i + 8], "<u8")[0]
            h = (h ^ (_mix(block * M) * M)) * M
        if n % 8:
            tail = int.from_bytes(data[full:], "little")
            h = (h ^ np.uint64(tail)) * M
        h = _mix(_mix(h) * M)
    return int(h)


def colliding_names(count: int, *, seed: int = 0, prefix: bytes = b"layer.w_") -> list[str]:
    """``count`` distinct 24-byte ASCII names with one libstdc++ hash."""
    assert len(prefix) == 8
    rng = np.random.default_rng(seed)
    found, have = [], 0
    with np.errstate(over="ignore"):
        target = np.uint64(0x0123456789ABCDEF) * M_INV  # the state h3 = 0x0123456789abcdef
        h = SEED ^ (np.uint64(LENGTH) * M)
        h = (h ^ (_mix(np.frombuffer(prefix, "<u8")[0] * M) * M)) * M
        while have < count:
            # the middle block: printable ASCII '0'..'o'
            mid = rng.integers(0, 2**63, size=_BATCH, dtype=np.uint64)
            mid &= np.uint64(0x3F3F3F3F3F3F3F3F)
            mid += np.uint64(0x3030303030303030)
            y = _mix(mid * M) * M
            y ^= h
            y *= M
            y ^= target
            last = _mix(y * M_INV) * M_INV  # f^-1
            ascii_ = (last & _HIGH) == 0
            no_nul = ((last - _ONES) & ~last & _HIGH) == 0
            keep = ascii_ & no_nul
            found.append(np.stack([mid[keep], last[keep]], axis=1))
            have += int(keep.sum())
    blocks = np.unique(np.concatenate(found), axis=0)[:count]
    assert len(blocks) == count  # 2**48 middle blocks: repeats are vanishingly rare
    raw = blocks.astype("<u8").tobytes()
    return [(prefix + raw[16 * i : 16 * i + 16]).decode("ascii") for i in range(count)]


def random_names(count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct random 24-byte ASCII names, the baseline."""
    rng = np.random.default_rng(seed)
    letters = rng.integers(0x30, 0x70, size=(count, LENGTH), dtype=np.uint8)
    letters[:, :8] = np.frombuffer(b"layer.w_", np.uint8)
    names = list(dict.fromkeys(bytes(row).decode("ascii") for row in letters))
    assert len(names) == count
    return names
