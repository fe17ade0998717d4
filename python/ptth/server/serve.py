"""``ptth serve``: the command line of the aggregation server."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

__all__ = ["add_arguments", "read_tokens", "run"]

log = logging.getLogger("ptth.server")

EXAMPLE = """example:
  ptth example model.ptth --dtype float32
  printf 'client-token-1\\nclient-token-2\\n' > tokens.txt; echo admin-secret > admin.txt
  ptth serve model.ptth --state state/ --tokens tokens.txt --admin-token-file admin.txt
  curl -H 'Authorization: Bearer client-token-1' -H 'Idempotency-Key: c1-r1' \\
       -H 'X-PTTH-Weight: 120' -H 'X-PTTH-Kind: delta' \\
       -H 'Content-Type: application/octet-stream' --data-binary @update.ptth \\
       http://127.0.0.1:8000/v1/updates
  curl -X POST -H 'Authorization: Bearer admin-secret' http://127.0.0.1:8000/v1/rounds/close

  ptth serve --demo          # a server and a swarm of simulated clients, one round, checked
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``ptth serve``'s options on a (sub)parser."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLE
    p.add_argument("model", nargs="?", help="the global model of round 1 (.ptth)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--state",
        default="ptth-state",
        help="directory that survives a crash "
        "(default: ./ptth-state); starting again on it resumes",
    )
    p.add_argument(
        "--tokens",
        help="file of client tokens, one per line (default: generate STATE/client-tokens)",
    )
    p.add_argument(
        "--admin-token-file",
        help="file holding the admin token (default: generate STATE/admin-token)",
    )
    p.add_argument(
        "--byteorder",
        default="<",
        choices=["<", ">", "auto"],
        help="payload byte order of uploads without X-PTTH-Byteorder (Android: >)",
    )
    p.add_argument(
        "--default-kind",
        choices=["delta", "full"],
        default=None,
        help="kind of raw uploads without X-PTTH-Kind (default: header required)",
    )
    p.add_argument(
        "--max-body",
        type=int,
        default=None,
        metavar="BYTES",
        help="413 past this (default: base64 of the model as float64 + 1 MiB)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=32,
        help="uploads in progress at once; 503 past it (default 32)",
    )
    p.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=4 << 30,
        metavar="BYTES",
        help="upload bytes held at once; 503 past it (default 4 GiB)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time for a request's body to arrive; 408 past it (default 60)",
    )
    p.add_argument("--max-batch", type=int, default=16, help="uploads per commit (default 16)")
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="do not fsync the log: acknowledged updates survive kill -9 of the "
        "server, not a crash of the machine",
    )
    p.add_argument(
        "--checkpoint-bytes",
        type=int,
        default=1 << 30,
        metavar="BYTES",
        help="checkpoint after this much log (default 1 GiB)",
    )
    p.add_argument(
        "--keep-key-rounds",
        type=int,
        default=4,
        help="closed rounds whose Idempotency-Keys are remembered (default 4)",
    )
    p.add_argument("--lr", type=float, default=1.0, help="server learning rate (default 1.0)")
    p.add_argument(
        "--max-weight",
        type=float,
        default=None,
        help="largest weight (sample count) accepted; 400 past it (default: no cap)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no line per request")
    p.add_argument(
        "--demo",
        action="store_true",
        help="run a server and a swarm of simulated clients for one round, check "
        "the result against NumPy, and exit",
    )
    p.add_argument("--params", type=int, default=2_000_000, help="--demo: model size")
    p.add_argument("--clients", type=int, default=48, help="--demo: number of clients")
    p.set_defaults(run=run, file="serve")


def read_tokens(path: str | os.PathLike) -> list[str]:
    """The tokens of a file: one per line; blank lines and lines starting with ``#`` skipped.

    Raises:
        ValueError: the file holds no token, or a token has spaces or control characters.
        OSError: the file cannot be read.

    Example::

        tokens = read_tokens("tokens.txt")   # "# clients\nabc\ndef\n" -> ["abc", "def"]
    """
    tokens = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in t):
            raise ValueError(
                f"{path}, line {n}: a token must not contain spaces or control characters"
            )
        tokens.append(t)
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tokens


def _generated(path: Path, count: int) -> Path:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(secrets.token_urlsafe(32) + "\n" for _ in range(count)))
        log.info("generated %s (mode 0600)", path)
    return path


def _raise_body_buffer() -> None:
    # uvicorn pauses a connection each time 64 KiB of body wait for the app; at
    # 4 MiB per connection (bounded by limit_concurrency) receiving 100 MB costs
    # ~25% less CPU here. A uvicorn without the knob keeps its default.
    try:
        from uvicorn.protocols.http import h11_impl, httptools_impl
    except ImportError:
        return
    for mod in (h11_impl, httptools_impl):
        if isinstance(getattr(mod, "HIGH_WATER_LIMIT", None), int):
            # checked just above; mypy does not see the name uvicorn imports from flow_control
            mod.HIGH_WATER_LIMIT = max(mod.HIGH_WATER_LIMIT, 4 << 20)  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    """Run ``ptth serve`` with parsed arguments; the process exit status."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.demo:
        from .demo import run_demo

        return run_demo(params=args.params, clients=args.clients)
    if args.model is None:
        print("ptth serve: MODEL is required (or --demo)", file=sys.stderr)
        return 2

    import uvicorn

    from .app import ServerConfig, create_app
    from .state import StateError

    state = Path(args.state)
    if not Path(args.model).is_file():
        print(f"ptth serve: {args.model}: no such model file", file=sys.stderr)
        return 2
    try:
        tokens = read_tokens(args.tokens or _generated(state / "client-tokens", 4))
        admin = read_tokens(args.admin_token_file or _generated(state / "admin-token", 1))
    except (OSError, ValueError) as exc:
        print(f"ptth serve: {exc}", file=sys.stderr)
        return 2
    if len(admin) != 1:
        print("ptth serve: the admin token file must hold exactly one token", file=sys.stderr)
        return 2
    config = ServerConfig(
        model=Path(args.model),
        state=state,
        client_tokens=tokens,
        admin_token=admin[0],
        byteorder=args.byteorder,
        default_kind=args.default_kind,
        max_body=args.max_body,
        max_concurrent=args.max_concurrent,
        max_inflight_bytes=args.max_inflight_bytes,
        request_timeout=args.request_timeout,
        max_batch=args.max_batch,
        fsync=not args.no_fsync,
        checkpoint_bytes=args.checkpoint_bytes,
        keep_key_rounds=args.keep_key_rounds,
        lr=args.lr,
        max_weight=args.max_weight,
    )
    try:
        app = create_app(config)
    except StateError as exc:
        print(f"ptth serve: refusing to start: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # includes ptth.PTTHError: the model file is not usable
        print(f"ptth serve: {args.model}: {exc}", file=sys.stderr)
        return 1
    _raise_body_buffer()
    uv = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=not args.no_access_log,
        # Connections beyond this get 503 from uvicorn itself, before any handler.
        limit_concurrency=2 * args.max_concurrent + 16,
        timeout_keep_alive=30,
    )
    uvicorn.Server(uv).run()
    return 0
