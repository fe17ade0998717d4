"""The ptth command: inspect PTTH files, write example uploads, run a demo round, benchmark."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import ptth

from . import _cli_model, _front
from ._cli_util import escape_name, parse_size, print_tensor_table, relabel_arg, shape_text
from .errors import PTTHError


def _inspect(args) -> int:
    """Stream a file (or standard input with '-') and list its parameters."""
    fmt = "ptth" if args.file == "-" else _cli_model.inspect_format(args.file)
    if fmt != "ptth":
        return _cli_model.inspect_foreign(args.file, fmt)
    rows, numel = [], 0
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    try:
        size = _front._file_size(source)
        chunk = source.read(1 << 20)
        # Without --max-size a regular file bounds its own decode, as iter_load's does;
        # a pipe keeps the default.
        cap = args.max_size
        if cap is None:
            cap = _front._cap_for(size, memoryview(chunk[:4]))
        dec = ptth.Decoder(
            byteorder=args.byteorder, relabel_float32=args.relabel_float32, max_size=cap
        )
        while chunk:
            for name, arr in dec.feed(chunk):
                rows.append((escape_name(name), shape_text(arr.shape), arr.dtype.name, arr.nbytes))
                numel += arr.size
            chunk = source.read(1 << 20)
        dec.close()
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    order = {"<": "little-endian", ">": "big-endian", None: "undecided (no telling payload)"}
    how = " (decided from the bit patterns)" if args.byteorder == "auto" else ""
    print(f"wrapper: {dec.wrapper}")
    print(f"payload byte order: {order[dec.byteorder]}{how}")
    print_tensor_table(rows, numel)
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


def _demo_template(params: int, rng) -> dict:
    """A model of a few layers with about `params` parameters."""
    width = 256
    layers = [
        ("embed.weight", 0.40),
        ("encoder.0.weight", 0.25),
        ("encoder.1.weight", 0.25),
        ("head.weight", 0.10),
    ]
    tmpl = {}
    for name, share in layers:
        rows = max(1, int(params * share) // width)
        tmpl[name] = rng.standard_normal((rows, width), dtype=np.float32) * np.float32(0.05)
        tmpl[name.replace("weight", "bias")] = np.zeros(rows, np.float32)
    tmpl["norm.scale"] = np.ones(width, np.float32)
    tmpl["steps"] = np.array(0, np.int32)
    return tmpl


def _demo(args) -> int:
    """One federated round: N clients upload float16 zlib deltas; the server averages them."""
    import concurrent.futures as cf
    import time

    rng = np.random.default_rng(args.seed)
    tmpl = _demo_template(args.params, rng)
    floats = [k for k, v in tmpl.items() if v.dtype.kind == "f"]
    n_params = sum(v.size for v in tmpl.values())
    raw_size = sum(v.nbytes for v in tmpl.values())
    weights = rng.integers(10, 500, args.clients).astype(np.float64)
    workers = args.threads or os.cpu_count() or 1
    print(
        f"ptth demo: {n_params:,} parameters ({raw_size / 1e6:.1f} MB as float32), "
        f"{args.clients} clients, {workers} threads, backend {ptth.backend}, "
        f"SIMD {ptth.build_info().get('simd')}"
    )

    def client(i):
        # A client's local training, simulated: a small update of every float layer.
        crng = np.random.default_rng([args.seed, i])
        delta = {
            k: crng.standard_normal(tmpl[k].shape, dtype=np.float32) * np.float32(1e-3)
            for k in floats
        }
        delta["steps"] = np.array(int(crng.integers(1, 20)), np.int32)
        return ptth.dumps(delta, dtype="float16", compress=args.level)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        uploads = list(pool.map(client, range(args.clients)))
    t_clients = time.perf_counter() - t0
    wire = sum(len(u) for u in uploads)

    agg = ptth.Aggregator(tmpl)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda uw: agg.add(uw[0], float(uw[1])), zip(uploads, weights)))
    t_agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean = agg.mean(dtype="float64")
    model = agg.apply(lr=1.0)
    t_mean = time.perf_counter() - t0

    # The same round in plain NumPy, one client at a time: decode, widen, weight, sum.
    t0 = time.perf_counter()
    ref = {k: np.zeros(v.shape, np.float64) for k, v in tmpl.items()}
    for blob, w in zip(uploads, weights):
        for k, v in ptth.loads(blob).items():
            ref[k] += w * v.astype(np.float64)
    total = weights.sum()
    t_ref = time.perf_counter() - t0
    err = max(float(np.max(np.abs(mean[k] - ref[k] / total), initial=0.0)) for k in tmpl)
    ok = err <= 1e-12 and agg.count == args.clients

    print(
        f"  uploads    {wire / 1e6:9.1f} MB on the wire ({wire / args.clients / 1e6:.2f} MB "
        f"per client, {wire / args.clients / raw_size:.0%} of float32)"
    )
    print(
        f"  clients    {t_clients:9.2f} s   simulate + quantize to float16 + zlib "
        f"level {args.level}"
    )
    print(
        f"  aggregate  {t_agg:9.2f} s   {args.clients / t_agg:.1f} uploads/s, "
        f"{wire / t_agg / 1e6:.0f} MB/s compressed in"
    )
    print(f"  mean+apply {t_mean:9.2f} s")
    print(f"  numpy ref  {t_ref:9.2f} s   plain NumPy FedAvg of the same uploads")
    print(
        f"  check      max |ptth - numpy| = {err:.3g}: {'OK' if ok else 'MISMATCH'}; "
        f"steps {int(tmpl['steps'])} -> {int(model['steps'])}"
    )
    return 0 if ok else 1


_EPILOGS = {
    "inspect": "example:\n  ptth inspect upload.ptth\n"
    "  cat upload.ptth | ptth inspect - --byteorder auto",
    "example": "example:\n  ptth example update.ptth --dtype float16 --compress 6",
    "demo": "example:\n  ptth demo --params 1000000 --clients 8",
    "bench": "example:\n  ptth bench --quick\n  ptth bench --quick --sections core,memory_path",
    "serve": "example:\n  ptth serve model.ptth --state state/ --tokens tokens.txt "
    "--admin-token-file admin.txt\n  ptth serve --demo",
}


def _sub(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_EPILOGS[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptth", description=__doc__, epilog="run 'ptth COMMAND --help' for a command's options"
    )
    p.add_argument("--version", action="version", version=f"ptth {ptth.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ins = _sub(
        sub, "inspect", "list the parameters of a PTTH (any wrapper), safetensors or .npz file"
    )
    ins.add_argument("file", help="the file to read, or - for standard input")
    ins.add_argument(
        "--byteorder",
        default="<",
        choices=["<", ">", "auto"],
        help="payload byte order: < (the format's), > (Android), auto (decide)",
    )
    ins.add_argument(
        "--relabel-float32",
        nargs="?",
        const=True,
        default=False,
        type=relabel_arg,
        metavar="{on,off,auto}",
        help="read float32 payloads written under codes 1 and 2 (the iOS SDK)",
    )
    ins.add_argument(
        "--max-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="bound on the decoded size, e.g. 2GiB or unlimited (default: what the file's "
        "size allows; 512MiB for a pipe)",
    )
    ins.set_defaults(run=_inspect)

    ex = _sub(sub, "example", "write a generated example upload")
    ex.add_argument("file", help="where to write it")
    ex.add_argument("--width", type=int, default=256, help="layer width (default 256)")
    ex.add_argument("--steps", type=int, default=100, help="the int32 counter's value")
    ex.add_argument("--seed", type=int, default=0, help="random seed")
    ex.add_argument(
        "--dtype",
        default=None,
        choices=["float16", "float32"],
        help="quantize float tensors to this dtype",
    )
    ex.add_argument(
        "--compress",
        type=int,
        default=None,
        metavar="LEVEL",
        help="wrap in a DEFLATE stream at this level (0..9)",
    )
    ex.add_argument(
        "--wrapper",
        default=None,
        choices=["zlib", "gzip", "deflate"],
        help="the stream's wrapper with --compress (default zlib)",
    )
    ex.set_defaults(run=_example)

    demo = _sub(sub, "demo", "simulate one aggregation round on built-in data")
    demo.add_argument("--params", type=int, default=25_000_000, help="model size (parameters)")
    demo.add_argument("--clients", type=int, default=32, help="uploads in the round")
    demo.add_argument("--threads", type=int, default=0, help="threads (0: one per core)")
    demo.add_argument("--level", type=int, default=6, help="zlib level of the uploads")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(run=_demo, file="demo")

    from . import bench

    bn = _sub(sub, "bench", "time the design targets on this machine (--sections to choose)")
    bench.add_arguments(bn)
    bn.set_defaults(run=bench.run, file="bench")

    _cli_model.add_commands(sub)
    sv = _sub(sub, "serve", "run the aggregation server (needs ptth[server])")
    _serve_arguments(sv)
    return p


def _serve_arguments(sv) -> None:
    try:
        from .server.serve import add_arguments
    except ImportError as exc:  # the extra is not installed: say so when serve is asked for
        missing = str(exc)

        def unavailable(args) -> int:
            print(
                f"ptth serve needs the server extra: pip install 'ptth[server]' ({missing})",
                file=sys.stderr,
            )
            return 2

        sv.add_argument("rest", nargs=argparse.REMAINDER)
        sv.set_defaults(run=unavailable, file="serve")
        return
    add_arguments(sv)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except PTTHError as exc:
        hint = ""
        if exc.reason == "too_large" and args.command == "inspect":
            hint = " (ptth inspect: --max-size 2GiB or --max-size unlimited)"
        print(f"ptth: {args.file}: {exc}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ptth: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
