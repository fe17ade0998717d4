"""The ``ptth`` command: inspect PTTH files and generate example uploads."""

from __future__ import annotations

import argparse
import sys

import numpy as np

import ptth

from ._source import open_source
from .errors import PTTHError


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _inspect(args) -> int:
    with open_source(args.file) as f:
        head = f.read(4)
        wrapper = ptth.detect_wrapper(head)
        if hasattr(f, "seek"):
            f.seek(0)
        kw = dict(byteorder=args.byteorder, relabel_float32=args.relabel_float32,
                  max_size=args.max_size)
        rows, total, numel = [], 0, 0
        for name, arr in ptth.iter_load(f, **kw):
            rows.append((name, "x".join(map(str, arr.shape)) or "scalar", arr.dtype.name, arr.nbytes))
            total += arr.nbytes
            numel += arr.size
    width = max([len(r[0]) for r in rows] + [4])
    print(f"wrapper: {wrapper}")
    print(f"{'name':<{width}}  {'shape':<16} {'dtype':<8} {'bytes':>12}")
    for name, shape, dtype, nbytes in rows:
        print(f"{name:<{width}}  {shape:<16} {dtype:<8} {nbytes:>12}")
    print(f"{len(rows)} parameters, {numel} elements, {total} payload bytes ({_human(total)})")
    return 0


def _example(args) -> int:
    """A small model-shaped update: conv, dense and norm layers plus a counter."""
    rng = np.random.default_rng(args.seed)
    width = args.width
    tensors = {
        "conv1.weight": rng.standard_normal((width // 4, 3, 3, 3), dtype=np.float32) * 0.1,
        "conv1.bias": np.zeros(width // 4, dtype=np.float32),
        "fc1.weight": rng.standard_normal((width, width // 4 * 9), dtype=np.float32) * 0.05,
        "fc1.bias": rng.standard_normal(width, dtype=np.float32) * 0.01,
        "norm.scale": np.ones(width, dtype=np.float32),
        "head.weight": rng.standard_normal((10, width), dtype=np.float32) * 0.05,
        "head.bias": np.zeros(10, dtype=np.float32),
        "steps": np.array(args.steps, dtype=np.int32),
    }
    ptth.dump(tensors, args.file, dtype=args.dtype, compress=args.compress, wrapper=args.wrapper)
    print(f"wrote {args.file}: {len(tensors)} parameters")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ptth", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", help="list the parameters of a PTTH file (any wrapper)")
    ins.add_argument("file")
    ins.add_argument("--byteorder", default="<", choices=["<", ">", "auto"])
    ins.add_argument("--relabel-float32", action="store_true")
    ins.add_argument("--max-size", type=int, default=None, help="limit on decoded bytes")
    ins.set_defaults(run=_inspect)

    ex = sub.add_parser("example", help="write a generated example upload")
    ex.add_argument("file")
    ex.add_argument("--width", type=int, default=256)
    ex.add_argument("--steps", type=int, default=100)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--dtype", default=None, choices=["float16", "float32"])
    ex.add_argument("--compress", type=int, default=None, metavar="LEVEL")
    ex.add_argument("--wrapper", default="zlib", choices=["zlib", "gzip", "deflate"])
    ex.set_defaults(run=_example)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except PTTHError as exc:
        print(f"ptth: {args.file}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ptth: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
