"""Argument types and output helpers shared by the ptth commands."""

from __future__ import annotations

import argparse
import re

import ptth

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """A byte count such as 1000, 512MiB, 2GB or 'unlimited' (argparse type)."""
    if text.strip().lower() in ("unlimited", "none", "inf"):
        return ptth.UNLIMITED
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1000, 512MiB, 2GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def escape_name(name: str) -> str:
    """A parameter name as a terminal can show it safely: control characters, line breaks
    and other invisible code points escaped, so an upload cannot forge output lines."""
    out = []
    for ch in name:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def relabel_arg(value: str):
    """on, off or auto (argparse type for --relabel-float32)."""
    if value in ("auto",):
        return value
    if value in ("on", "true", "yes"):
        return True
    if value in ("off", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on, off or auto, not {value!r}")


def human_size(n: float) -> str:
    """A byte count in B, KiB, MiB or GiB, for the commands' output."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as ``ptth inspect`` prints it: 3x4, or scalar."""
    return "x".join(map(str, shape)) or "scalar"


def print_tensor_table(rows: list[tuple[str, str, str, int]], numel: int) -> None:
    """``ptth inspect``'s table: (name, shape, dtype, bytes) per tensor, then the totals."""
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'shape':<16} {'dtype':<8} {'bytes':>12}")
    for name, shape, dtype, nbytes in rows:
        print(f"{name:<{width}}  {shape:<16} {dtype:<8} {nbytes:>12}")
    total = sum(r[3] for r in rows)
    print(f"{len(rows)} parameters, {numel} elements, {total} payload bytes ({human_size(total)})")
