"""``ptth convert``, ``ptth aggregate`` and ``ptth diff``, and ``inspect`` of safetensors/.npz.

Each command prints one line to stderr and exits non-zero on bad input;
``add_commands(sub)`` registers them on the ``ptth`` parser.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import sys
import threading
import time

import numpy as np

import ptth

from . import convert as pc
from ._cli_util import (
    escape_name,
    human_size,
    parse_size,
    print_tensor_table,
    relabel_arg,
    shape_text,
)
from .errors import PTTHError

_FORMATS = list(pc.FORMATS)


class UsageError(Exception):
    """A bad command line or companion file: one line on stderr, exit status 2."""


def _guarded(command: str, fn, bad_status: int = 1):
    """`fn(args)` with bad input reported as one line on stderr and a non-zero status."""

    def run(args) -> int:
        try:
            return fn(args)
        except PTTHError as exc:
            where = getattr(exc, "ptth_source", None)
            print(f"ptth {command}: {where + ': ' if where else ''}{exc}", file=sys.stderr)
        except UsageError as exc:
            print(f"ptth {command}: {exc}", file=sys.stderr)
        except OSError as exc:
            name = f"{exc.filename}: " if exc.filename else ""
            print(f"ptth {command}: {name}{exc.strerror or exc}", file=sys.stderr)
        except ValueError as exc:  # an option's value the API refused, e.g. --compress 12
            print(f"ptth {command}: {exc}", file=sys.stderr)
        return bad_status

    return run


def _at(path):
    """A context that tags a PTTHError raised inside with the file it came from."""
    return _Source(str(path))


class _Source:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, PTTHError) and not hasattr(exc, "ptth_source"):
            exc.ptth_source = self.path
        return False


def _policy_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dtype policy (what the target format cannot hold)")
    g.add_argument(
        "--no-widen-bfloat16",
        dest="widen_bfloat16",
        action="store_false",
        help="treat bfloat16 as unsupported instead of widening it to float32 (exact)",
    )
    g.add_argument(
        "--no-narrow-int64",
        dest="narrow_int64",
        action="store_false",
        help="treat int64/uint32/uint64 as unsupported instead of narrowing them to "
        "int32 when every value fits",
    )
    g.add_argument(
        "--skip-unsupported",
        dest="unsupported",
        action="store_const",
        const="skip",
        default="error",
        help="leave out (and report) tensors the target cannot hold, instead of failing",
    )


def _policy(args) -> dict:
    return {
        "widen_bfloat16": args.widen_bfloat16,
        "narrow_int64": args.narrow_int64,
        "unsupported": args.unsupported,
    }


# ---- inspect (safetensors, .npz) --------------------------------------------------


def inspect_foreign(path, fmt: str) -> int:
    """Print a safetensors or .npz file's tensors as ``ptth inspect`` prints a PTTH file."""
    tensors, metadata, fmt = pc.read_tensors(path, format=fmt)
    rows = [
        (escape_name(name), shape_text(t.shape), t.dtype, t.nbytes) for name, t in tensors.items()
    ]
    print(f"format: {fmt}")
    for key, value in metadata.items():
        print(f"metadata: {key} = {value}")
    print_tensor_table(rows, sum(t.numel for t in tensors.values()))
    return 0


# ---- convert --------------------------------------------------------------------


def _convert(args) -> int:
    with _at(args.input):
        report = pc.convert(
            args.input,
            args.output,
            src_format=args.src_format,
            dst_format=args.dst_format,
            compress=args.compress,
            wrapper=args.wrapper,
            align=args.align,
            max_size=args.max_size,
            **_policy(args),
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{args.input} ({report.source_format}) -> {args.output} ({report.target_format})")
        for line in report.lines():
            print(f"  {line}")
    return 0


# ---- aggregate ------------------------------------------------------------------


def _list_uploads(paths, lists) -> list:
    """Upload paths in the order given: files, files of directories (sorted), list files."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            names = sorted(n for n in os.listdir(p) if not n.startswith("."))
            out.extend(os.path.join(p, n) for n in names if os.path.isfile(os.path.join(p, n)))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise UsageError(f"{p}: no such upload file or directory")
    for lst in lists or ():
        try:
            with open(lst, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{lst}: cannot read the list file: {exc}") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not os.path.isfile(line):
                raise UsageError(f"{lst}:{number}: {line}: no such upload file")
            out.append(line)
    if not out:
        raise UsageError("no uploads given (files, directories or --list FILE)")
    return out


def _weight(text: str, where: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a number") from None
    if not (math.isfinite(w) and w > 0):
        raise UsageError(f"{where}: weight {text} must be a positive finite number")
    return w


def read_weights(path: str, uploads: list) -> list:
    """Per-upload weights from FILE: one number per line in upload order, or `name weight`.

    In the pairs form a name matches an upload's path as given or its file
    name; every upload needs exactly one weight and every name must match.
    Blank lines and lines starting with # are ignored.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the weights file: {exc}") from None
    rows = [
        (n, line.strip())
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#")
    ]
    forms = {len(text.split()) == 1 for _, text in rows}
    if forms == {True} or not rows:
        if len(rows) != len(uploads):
            raise UsageError(f"{path}: {len(rows)} weights for {len(uploads)} uploads")
        return [_weight(text, f"{path}:{n}") for n, text in rows]
    index: dict[str, set[int]] = {}
    for i, u in enumerate(uploads):
        index.setdefault(u, set()).add(i)
        index.setdefault(os.path.basename(u), set()).add(i)
    weights: list[float | None] = [None] * len(uploads)
    for n, text in rows:
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise UsageError(f"{path}:{n}: expected 'name weight'")
        name, value = parts
        hits = index.get(name)
        if not hits:
            raise UsageError(f"{path}:{n}: {name!r} is not one of the uploads")
        if len(hits) > 1:
            raise UsageError(f"{path}:{n}: {name!r} names {len(hits)} uploads; use their paths")
        (i,) = hits
        if weights[i] is not None:
            raise UsageError(f"{path}:{n}: a second weight for {name!r}")
        weights[i] = _weight(value, f"{path}:{n}")
    missing = [u for u, w in zip(uploads, weights) if w is None]
    if missing:
        raise UsageError(
            f"{path}: no weight for {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return weights


def fold(agg, update, weight: float, add_kw: dict) -> None:
    """The one place an upload enters the aggregate (to become a batched add_many call)."""
    agg.add(update, weight, **add_kw)


class _Progress:
    """A progress line on stderr, redrawn at most 10 times a second, only on a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.done = self.rejected = 0
        self.start = self._last = time.perf_counter()
        self._lock = threading.Lock()

    def step(self, rejected: bool) -> None:
        with self._lock:
            self.done += 1
            self.rejected += rejected
            now = time.perf_counter()
            if self.enabled and (now - self._last >= 0.1 or self.done == self.total):
                self._last = now
                filled = 30 * self.done // self.total
                rate = self.done / max(now - self.start, 1e-9)
                sys.stderr.write(
                    f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/"
                    f"{self.total} uploads, {self.rejected} rejected, "
                    f"{rate:.1f}/s"
                )
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _read_upload(path: str, max_size, policy: dict):
    """An upload as aggregator input: PTTH bytes as they are, other formats as a mapping."""
    with open(path, "rb") as f:
        data = f.read()
    fmt = pc.detect_format(path) if path.endswith(tuple(pc.EXTENSIONS)) else pc.detect_format(data)
    if fmt == "ptth":
        return data, len(data)
    return pc.load_model(data, format=fmt, max_size=max_size, **policy), len(data)


def _aggregate(args) -> int:
    uploads = _list_uploads(args.uploads, args.list)
    weights = read_weights(args.weights, uploads) if args.weights else [1.0] * len(uploads)
    out_fmt = args.dst_format or pc.EXTENSIONS.get(os.path.splitext(args.output)[1].lower())
    t_report = pc.ConversionReport()
    with _at(args.template):
        template = pc.load_model(
            args.template,
            format=args.template_format,
            report=t_report,
            max_size=args.max_size,
            **_policy(args),
        )
    out_fmt = out_fmt or t_report.source_format
    agg = ptth.Aggregator(
        template,
        byteorder=args.byteorder,
        relabel_float32=args.relabel_float32,
        max_size=args.max_size,
    )
    add_kw = {"kind": args.kind, "clip_norm": args.clip_norm, "max_norm": args.max_norm}
    threads = args.threads or os.cpu_count() or 1
    progress = _Progress(len(uploads), sys.stderr.isatty() and not args.json)
    rejected, bytes_read = [], 0
    lock = threading.Lock()

    def one(i):
        nonlocal bytes_read
        path = uploads[i]
        try:
            update, size = _read_upload(path, args.max_size, _policy(args))
            with lock:
                bytes_read += size
            fold(agg, update, weights[i], add_kw)
            failure = None
        except PTTHError as exc:
            failure = {
                "upload": path,
                "reason": exc.reason,
                "offset": exc.offset,
                "record": exc.record,
                "message": exc.message,
            }
        except OSError as exc:
            failure = {
                "upload": path,
                "reason": "unreadable",
                "offset": None,
                "record": None,
                "message": exc.strerror or str(exc),
            }
        if failure:
            with lock:
                rejected.append((i, failure))
        progress.step(failure is not None)

    t0 = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(uploads))))
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    rejected = [f for _, f in sorted(rejected, key=lambda r: r[0])]
    summary = {
        "template": str(args.template),
        "template_format": t_report.source_format,
        "template_tensors": len(template),
        "template_parameters": int(sum(v.size for v in template.values())),
        "uploads": len(uploads),
        "accepted": agg.count,
        "rejected": rejected,
        "total_weight": agg.total_weight,
        "bytes_read": bytes_read,
        "seconds": seconds,
        "uploads_per_second": len(uploads) / seconds if seconds > 0 else None,
        "threads": threads,
        "kind": args.kind,
        "output": str(args.output),
        "output_format": out_fmt,
        "template_conversion": t_report.to_dict(),
    }
    if agg.count == 0:
        summary["output"] = None
        _print_summary(summary, args)
        print(
            f"ptth: aggregate: none of the {len(uploads)} uploads was accepted; "
            f"{args.output} not written",
            file=sys.stderr,
        )
        return 1
    new = agg.apply(lr=args.lr)
    metadata = t_report.metadata if out_fmt == "safetensors" and t_report.metadata else None
    with _at(args.output):
        written = pc.save_model(
            new, args.output, format=out_fmt, metadata=metadata, compress=args.compress
        )
    summary["bytes_written"] = written.bytes_written
    _print_summary(summary, args)
    return 1 if rejected and args.fail_on_reject else 0


def _print_summary(s: dict, args) -> None:
    if args.json:
        print(json.dumps(s, indent=2))
        return
    conv = s["template_conversion"]
    print(
        f"template  {s['template']} ({s['template_format']}, {s['template_tensors']} tensors, "
        f"{s['template_parameters']:,} parameters)"
    )
    for what in ("widened", "narrowed"):
        if conv[what]:
            print(f"          {what}: {', '.join(conv[what])}")
    for name, why in conv["skipped"].items():
        print(f"          skipped {name}: {why}")
    print(
        f"uploads   {s['uploads']} given, {s['accepted']} accepted, {len(s['rejected'])} "
        f"rejected; total weight {s['total_weight']:g}; kind {s['kind']}"
    )
    rate = s["uploads_per_second"]
    print(
        f"read      {s['bytes_read']:,} bytes ({human_size(s['bytes_read'])}) in "
        f"{s['seconds']:.2f} s, {rate:.1f} uploads/s, {s['threads']} threads"
        if rate
        else f"read      {s['bytes_read']:,} bytes"
    )
    for r in s["rejected"]:
        where = []
        if r["offset"] is not None:
            where.append(f"offset {r['offset']}")
        if r["record"] is not None:
            where.append(f"record {r['record']}")
        print(
            f"rejected  {r['upload']}: {r['reason']}"
            + (f" at {', '.join(where)}" if where else "")
            + f": {r['message']}"
        )
    if s["output"]:
        print(f"wrote     {s['output']} ({s['output_format']}, {s['bytes_written']:,} bytes)")


# ---- diff -----------------------------------------------------------------------


def _as_float64(t):
    """A tensor's values as float64 for comparison, or None when NumPy cannot read them."""
    if t.dtype == "bfloat16":
        from .convert._dtypes import bfloat16_to_float32

        return bfloat16_to_float32(t.array, t.shape).astype(np.float64)
    if t.dtype.startswith("complex"):
        return t.array.astype(np.complex128)
    if t.dtype in ("float32", "float64", "float16", "bool") or t.dtype.startswith(("int", "uint")):
        return t.array.astype(np.float64)
    return None


def diff_tensors(a: dict, b: dict) -> dict:
    """Per-tensor max and mean absolute differences of two read_tensors() results."""
    rows, only_a, only_b = [], [n for n in a if n not in b], [n for n in b if n not in a]
    for name in (n for n in a if n in b):
        ta, tb = a[name], b[name]
        row = {"name": name, "shape": list(ta.shape), "dtype_a": ta.dtype, "dtype_b": tb.dtype}
        if ta.shape != tb.shape:
            row.update(status="shape", shape_b=list(tb.shape))
        else:
            x, y = _as_float64(ta), _as_float64(tb)
            if x is None or y is None:
                same = (
                    x is None
                    and y is None
                    and ta.dtype == tb.dtype
                    and bytes(ta.array) == bytes(tb.array)
                )
                row.update(status="same bytes" if same else "not comparable")
            else:
                with np.errstate(all="ignore"):
                    d = np.abs(x - y)
                    d[(x == y) | (np.isnan(x) & np.isnan(y))] = 0.0  # inf == inf, nan ~ nan
                    d[np.isnan(d)] = np.inf
                row.update(
                    status="compared",
                    max_abs=float(d.max(initial=0.0)),
                    mean_abs=float(d.mean()) if d.size else 0.0,
                    differing=int(np.count_nonzero(d)),
                )
        rows.append(row)
    return {"tensors": rows, "only_a": only_a, "only_b": only_b}


def _diff(args) -> int:
    with _at(args.a):
        a, _, fa = pc.read_tensors(args.a, format=args.format_a, max_size=args.max_size)
    with _at(args.b):
        b, _, fb = pc.read_tensors(args.b, format=args.format_b, max_size=args.max_size)
    result = diff_tensors(a, b)
    tol = args.atol
    differ = bool(result["only_a"] or result["only_b"]) or any(
        r["status"] in ("shape", "not comparable")
        or (r["status"] == "compared" and r["max_abs"] > tol)
        for r in result["tensors"]
    )
    result.update(a=str(args.a), b=str(args.b), format_a=fa, format_b=fb, atol=tol, differ=differ)
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if differ else 0
    width = max([len(r["name"]) for r in result["tensors"]] + [4])
    print(f"a: {args.a} ({fa})\nb: {args.b} ({fb})")
    print(f"{'name':<{width}}  {'shape':<16} {'dtype':<17} {'max |a-b|':>12} {'mean |a-b|':>12}")
    for r in result["tensors"]:
        dtype = r["dtype_a"] if r["dtype_a"] == r["dtype_b"] else f"{r['dtype_a']}/{r['dtype_b']}"
        if r["status"] == "compared":
            cols = f"{r['max_abs']:>12.6g} {r['mean_abs']:>12.6g}"
        elif r["status"] == "shape":
            cols = f"shape differs: b is {shape_text(r['shape_b'])}"
        else:
            cols = r["status"]
        print(f"{r['name']:<{width}}  {shape_text(r['shape']):<16} {dtype:<17} {cols}")
    for name in result["only_a"]:
        print(f"only in a: {name}")
    for name in result["only_b"]:
        print(f"only in b: {name}")
    n = len(result["tensors"])
    print(f"{n} tensors compared; " + ("they differ" if differ else f"identical within {tol:g}"))
    return 1 if differ else 0


# ---- registration -----------------------------------------------------------------


def add_commands(sub) -> None:
    """Add convert, aggregate and diff to the ``ptth`` subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    cv = sub.add_parser(
        "convert",
        help="convert a model between PTTH, safetensors and .npz",
        formatter_class=fmt,
        description="Convert a model file. Formats come from the extensions (.ptth, "
        ".safetensors, .npz), from --from/--to, or (input) from the first bytes.",
        epilog="example:\n  ptth convert model.safetensors model.ptth --compress 6\n"
        "  ptth convert upload.ptth upload.npz --skip-unsupported --json",
    )
    cv.add_argument("input")
    cv.add_argument("output")
    cv.add_argument("--from", dest="src_format", choices=_FORMATS)
    cv.add_argument("--to", dest="dst_format", choices=_FORMATS)
    cv.add_argument(
        "--compress",
        type=int,
        default=None,
        metavar="LEVEL",
        help="PTTH: zlib level 0..9 (see --wrapper); npz: deflate level",
    )
    cv.add_argument("--wrapper", default="zlib", choices=["zlib", "gzip", "deflate"])
    cv.add_argument(
        "--align",
        action="store_true",
        help="safetensors: lay tensors out as the safetensors library does",
    )
    cv.add_argument("--max-size", type=int, default=None, help="limit on decoded bytes")
    cv.add_argument("--json", action="store_true", help="print the report as JSON")
    _policy_arguments(cv)
    cv.set_defaults(run=_guarded("convert", _convert), file=None)

    ag = sub.add_parser(
        "aggregate",
        help="run one FedAvg round: template + uploads -> new model",
        formatter_class=fmt,
        description="Fold every upload into the template (threads), list rejected uploads "
        "with their reason and offset, and write the new model "
        "(template + lr * weighted mean) in the template's format, or the "
        "format of -o's extension. Exit 1 when no upload was accepted.",
        epilog="weights file (--weights): one number per line in upload order, or lines\n"
        "'name weight' where name is an upload's path or file name; # comments.\n\n"
        "example:\n  ptth aggregate --template global.safetensors uploads/ "
        "--weights samples.txt -o new.safetensors",
    )
    ag.add_argument("uploads", nargs="*", help="upload files or directories of uploads")
    ag.add_argument("--template", required=True, help="the global model (any format)")
    ag.add_argument("-o", "--output", required=True, help="where to write the new model")
    ag.add_argument(
        "--list",
        action="append",
        metavar="FILE",
        help="a file listing upload paths, one per line (repeatable)",
    )
    ag.add_argument("--weights", metavar="FILE", help="per-upload weights, e.g. sample counts")
    ag.add_argument(
        "--kind",
        default="delta",
        choices=["delta", "full"],
        help="uploads are deltas (default) or full weights",
    )
    ag.add_argument("--lr", type=float, default=1.0, help="server learning rate (default 1)")
    ag.add_argument("--threads", type=int, default=0, help="0: one per core")
    ag.add_argument("--template-format", choices=_FORMATS)
    ag.add_argument("--to", dest="dst_format", choices=_FORMATS)
    ag.add_argument(
        "--compress",
        type=int,
        default=None,
        metavar="LEVEL",
        help="compress the output (PTTH zlib / npz deflate level)",
    )
    ag.add_argument(
        "--byteorder",
        default="auto",
        choices=["<", ">", "auto"],
        help="payload byte order of the uploads (default: decided per upload)",
    )
    ag.add_argument(
        "--relabel-float32",
        default="auto",
        type=relabel_arg,
        metavar="{on,off,auto}",
        help="read float32 payloads under codes 1 and 2 (default: decided per record)",
    )
    ag.add_argument(
        "--max-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="bound on an upload's decoded size (default: what the template allows)",
    )
    ag.add_argument(
        "--clip-norm",
        type=float,
        default=None,
        metavar="C",
        help="scale each update to at most this L2 norm (DP-FedAvg clipping)",
    )
    ag.add_argument(
        "--max-norm",
        type=float,
        default=None,
        metavar="B",
        help="reject updates whose L2 norm exceeds B",
    )
    ag.add_argument(
        "--fail-on-reject",
        action="store_true",
        help="exit 1 if any upload was rejected (the model is still written)",
    )
    ag.add_argument("--json", action="store_true", help="print the summary as JSON")
    _policy_arguments(ag)
    ag.set_defaults(run=_guarded("aggregate", _aggregate), file=None)

    df = sub.add_parser(
        "diff",
        help="per-tensor max/mean absolute differences of two models",
        formatter_class=fmt,
        description="Compare two model files (any formats) tensor by tensor. Exit 0 when "
        "they hold the same names and shapes and every difference is <= --atol, "
        "1 when they differ, 2 on bad input.",
        epilog="example:\n  ptth diff old.safetensors new.ptth --atol 1e-3",
    )
    df.add_argument("a")
    df.add_argument("b")
    df.add_argument(
        "--atol",
        type=float,
        default=0.0,
        help="largest absolute difference counted as equal (default 0)",
    )
    df.add_argument("--format-a", choices=_FORMATS)
    df.add_argument("--format-b", choices=_FORMATS)
    df.add_argument("--max-size", type=int, default=None, help="limit on decoded bytes")
    df.add_argument("--json", action="store_true")
    df.set_defaults(run=_guarded("diff", _diff, bad_status=2), file=None)


def inspect_format(path) -> str:
    """The format ``ptth inspect`` reads `path` as: the extension, else the first bytes."""
    if not os.path.isfile(path):
        return "ptth"  # let the PTTH path report the missing file as it always has
    return pc.detect_format(path)
