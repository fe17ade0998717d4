"""The ASGI app of ``ptth serve``: HTTP in front of a durable ``ptth.Aggregator``.

Request path of an upload: token check, concurrency and byte budget, headers
parsed, body read into one buffer sized from Content-Length (bounded in size
and time), iOS JSON decoded off the event loop, then queued for the
committer. The committer takes every waiting upload as one batch, folds it
into the aggregator on a worker thread (``add_batch``), appends the accepted
ones to the log with one fsync, and only then answers them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import ptth

from . import _model_io, parsing
from .page import STATUS_PAGE
from .parsing import BadRequest
from .state import Entry, State

__all__ = ["ServerConfig", "add_batch", "create_app", "default_max_body", "max_decoded_size"]

log = logging.getLogger("ptth.server")

_JSON_TYPES = ("application/json", "text/json")


@dataclass
class ServerConfig:
    """Everything ``ptth serve`` is told on its command line.

    Attributes:
        model: the MODEL file the first round starts from.
        state: the ``--state`` directory.
        client_tokens: tokens clients present as ``Authorization: Bearer``.
        admin_token: the token of ``POST /v1/rounds/close``.
        byteorder: default decode byte order (``"<"``, ``">"``, ``"auto"``);
            ``X-PTTH-Byteorder`` overrides it per request.
        default_kind: what a raw upload without ``X-PTTH-Kind`` is; ``None``
            makes the header required.
        max_body: body size limit in bytes (413 past it); ``None``: from the model.
        max_concurrent: uploads in progress at once (503 past it).
        max_inflight_bytes: bytes of upload bodies held at once (503 past it).
        request_timeout: seconds a request may take to deliver its body (408).
        max_batch: uploads folded per commit at most.
        fsync: fsync the log before answering (off: survives ``kill -9`` but
            not a machine crash).
        checkpoint_bytes: log bytes after which a checkpoint is written.
        keep_key_rounds: closed rounds whose idempotency keys are remembered.
        lr: server learning rate of ``Aggregator.apply`` at round close.
        max_weight: cap on a client's weight (400 past it); ``None``: no cap.
        model_level: zlib level of ``GET /v1/model``'s default encoding.
        buffer_pool_bytes: idle body buffers kept for reuse (page faults cost
            more than the copy into them).
    """

    model: Path
    state: Path
    client_tokens: Sequence[str]
    admin_token: str
    byteorder: str = "<"
    default_kind: str | None = None
    max_body: int | None = None
    max_concurrent: int = 32
    max_inflight_bytes: int = 4 << 30
    request_timeout: float = 60.0
    max_batch: int = 16
    fsync: bool = True
    checkpoint_bytes: int = 1 << 30
    keep_key_rounds: int = 4
    lr: float = 1.0
    max_weight: float | None = None
    model_level: int = 6
    buffer_pool_bytes: int = 1 << 30


def max_decoded_size(template: dict) -> int:
    """The largest decoded blob an update of this model can be: every record float64."""
    total = 12
    for name, arr in template.items():
        total += 4 + len(name.encode()) + 4 + 4 * arr.ndim + 8 + 8 * arr.size
    return total


def default_max_body(template: dict) -> int:
    """Body limit when none is given: base64 of the largest blob, plus 1 MiB of JSON."""
    return (max_decoded_size(template) + 2) // 3 * 4 + (1 << 20)


def add_batch(aggregator: Any, entries: Sequence[Entry], *, max_size: int | None = None) -> list:
    """Fold entries into the aggregator: an ``AddResult`` per accepted one, its ``PTTHError``
    if not.

    The one place updates reach the aggregator (the committer and replay both
    call it). Entries are grouped by their ``add`` options and each group is
    one ``Aggregator.add_many`` call: one pass over the accumulators per group,
    each update still all-or-nothing.

    Args:
        aggregator: a ``ptth.Aggregator``.
        entries: :class:`ptth.server.state.Entry` objects (body, weight, kind, options).
        max_size: ``max_size`` of every decode (default: ptth's).

    Example::

        [result] = add_batch(agg, [Entry("k1", 1, 120.0, "delta", "<", False, blob)])
        assert result.counted and agg.count == 1
    """
    out: list = [None] * len(entries)
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, e in enumerate(entries):
        groups[(e.kind, e.byteorder, e.relabel_float32)].append(i)
    for (kind, byteorder, relabel), idx in groups.items():
        kw = {
            "kind": kind,
            "byteorder": byteorder,
            "relabel_float32": relabel,
            "max_size": max_size,
        }
        results = aggregator.add_many(
            [entries[i].body for i in idx], [entries[i].weight for i in idx], **kw
        )
        for i, r in zip(idx, results):
            out[i] = r
    return out


class _BufferPool:
    """Reused body buffers: a fresh 100 MB buffer costs ~90 ms of page faults here.

    A buffer serves any body of at least 3/4 of its size; at most ``cap``
    bytes are kept idle. Taking and giving back run on the event loop only.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self.idle: list[bytearray] = []
        self.idle_bytes = 0

    def take(self, n: int) -> bytearray:
        best = None
        for i, b in enumerate(self.idle):
            if (
                n <= len(b)
                and 4 * n >= 3 * len(b)
                and (best is None or len(b) < len(self.idle[best]))
            ):
                best = i
        if best is None:
            return bytearray(n)
        buf = self.idle.pop(best)
        self.idle_bytes -= len(buf)
        return buf

    def give(self, buf: bytearray) -> None:
        if len(buf) > self.cap:
            return
        while self.idle and self.idle_bytes + len(buf) > self.cap:
            self.idle_bytes -= len(self.idle.pop(0))  # the oldest goes first
        self.idle.append(buf)
        self.idle_bytes += len(buf)


class _Tokens:
    """Bearer tokens, compared in constant time against every known token."""

    def __init__(self, tokens: Sequence[str]):
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]
        if not self._digests:
            raise ValueError("at least one token is required")

    def check(self, token: str | None) -> bool:
        if token is None:
            return False
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for d in self._digests:  # no early exit: the time does not say which one matched
            ok |= hmac.compare_digest(given, d)
        return ok


@dataclass
class _Pending:
    entry: Entry
    explicit_round: bool
    future: asyncio.Future


@dataclass
class _Close:
    allow_empty: bool
    future: asyncio.Future


@dataclass
class _Counters:
    accepted: int = 0
    duplicates: int = 0
    bytes: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    round_rejected: collections.Counter = field(default_factory=collections.Counter)
    batches: int = 0
    batched_updates: int = 0
    accept_times: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=100_000)
    )


class Server:
    """The server's state and handlers; :func:`create_app` wraps it in Starlette."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.clients = _Tokens(config.client_tokens)
        self.admin = _Tokens([config.admin_token])
        # Decodes need no limit of their own: the aggregator caps an upload at the most
        # a valid update of its template can be (max_decoded_size), as the body limit does.
        template = _model_io.load_model(config.model)
        self.max_body = config.max_body or default_max_body(template)
        del template
        self.state = State(
            config.state,
            config.model,
            add_batch=add_batch,
            fsync=config.fsync,
            keep_key_rounds=config.keep_key_rounds,
        )
        self.counters = _Counters()
        self.inflight = 0
        self.inflight_bytes = 0
        self.failed: str | None = None
        self.started = time.time()
        self.queue: asyncio.Queue | None = None
        self._committer_task: asyncio.Task | None = None
        self._checkpoint: asyncio.Future | None = None
        self._commit_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="ptth-commit")
        self._parse_pool = cf.ThreadPoolExecutor(2, thread_name_prefix="ptth-parse")
        self._ckpt_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="ptth-checkpoint")
        self._model_cache: dict[tuple, tuple[bytes, str]] = {}
        self.buffers = _BufferPool(config.buffer_pool_bytes)

    # ---- lifecycle -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.queue = asyncio.Queue()
        self._committer_task = asyncio.create_task(self._committer())
        log.info(
            "ptth serve: round %d open, %d updates accepted so far, body limit %d bytes",
            self.state.round,
            len(self.state.records),
            self.max_body,
        )
        try:
            yield
        finally:
            self._committer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer_task
            if self._checkpoint is not None:
                with contextlib.suppress(Exception):
                    await self._checkpoint
            for pool in (self._commit_pool, self._parse_pool, self._ckpt_pool):
                pool.shutdown(wait=True)
            self.state.close()

    # ---- the committer ---------------------------------------------------------

    async def _committer(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.queue is not None  # lifespan() makes the queue before this task
        held: Any = None
        while True:
            item = held if held is not None else await self.queue.get()
            held = None
            if isinstance(item, _Close):
                await self._run_close(item)
                continue
            batch = [item]
            while len(batch) < self.config.max_batch and not self.queue.empty():
                nxt = self.queue.get_nowait()
                if isinstance(nxt, _Close):
                    held = nxt  # commit what came before the close, then close
                    break
                batch.append(nxt)
            try:
                results, deferred = await loop.run_in_executor(
                    self._commit_pool, self._commit, batch
                )
            except Exception as exc:
                self._fail(f"commit failed: {exc}")
                results, deferred = [("failed", None)] * len(batch), []
            for it, res in zip(batch, results):
                if res is not None and not it.future.done():
                    it.future.set_result(res)
            for it in deferred:
                self.queue.put_nowait(it)
            try:
                await self._maybe_checkpoint(loop)
            except Exception as exc:
                self._fail(f"starting a checkpoint failed: {exc}")

    def _commit(self, batch: list[_Pending]):
        """On the commit thread: dedupe, check rounds, add, log, fsync. One result per item."""
        st = self.state
        if self.failed:  # the log may lack updates the aggregator holds: acknowledge nothing
            return [("failed", None)] * len(batch), []
        results: list = [None] * len(batch)
        todo, seen, deferred = [], set(), []
        for i, it in enumerate(batch):
            e = it.entry
            if e.key in st.keys:
                results[i] = ("duplicate", st.keys[e.key])
            elif e.key in seen:
                deferred.append(it)  # same key twice in one batch: decided after the first
            elif e.round != st.round:
                results[i] = ("closed", e.round)
            else:
                todo.append(i)
                seen.add(e.key)
        added = add_batch(st.aggregator, [batch[i].entry for i in todo])
        ok, norms = [], {}
        for i, r in zip(todo, added):
            if isinstance(r, ptth.PTTHError):
                results[i] = ("invalid", r)
            else:
                ok.append(i)
                norms[i] = r
        try:
            st.append([batch[i].entry for i in ok])
        except OSError as exc:
            # The aggregator holds updates the log lacks: nothing more may be acknowledged.
            self._fail(f"the log could not be written: {exc}")
            for i in ok:
                results[i] = ("failed", None)
            return results, []
        for i in ok:
            results[i] = ("accepted", (st.round, norms[i]))
        if todo:
            self.counters.batches += 1
            self.counters.batched_updates += len(todo)
        return results, deferred

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            log.error("ptth serve: %s; refusing updates until restarted", why)

    async def _maybe_checkpoint(self, loop) -> None:
        if self._checkpoint is not None and self._checkpoint.done():
            exc = self._checkpoint.exception()
            self._checkpoint = None
            if exc is not None:
                log.error("checkpoint failed (the log still holds every update): %s", exc)
        if self._checkpoint is None and self.state.wal_bytes >= self.config.checkpoint_bytes:
            snap = await loop.run_in_executor(self._commit_pool, self.state.roll)
            self._checkpoint = loop.run_in_executor(
                self._ckpt_pool, self.state.write_checkpoint, snap
            )

    async def _run_close(self, item: _Close) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
            self._checkpoint = None
        if self.failed:
            item.future.set_result(("failed", None))
            return
        if self.state.aggregator.count == 0 and not item.allow_empty:
            item.future.set_result(("empty", None))
            return
        rejected = dict(self.counters.round_rejected)
        try:
            summary = await loop.run_in_executor(
                self._commit_pool,
                functools.partial(self.state.close_round, lr=self.config.lr, rejected=rejected),
            )
        except Exception as exc:
            log.error("closing round %d failed: %s", self.state.round, exc)
            item.future.set_result(("error", str(exc)))
            return
        self.counters.round_rejected.clear()
        self._model_cache.clear()
        log.info(
            "round %d closed: %d updates, total weight %g; round %d open",
            summary["round"],
            summary["accepted"],
            summary["total_weight"],
            self.state.round,
        )
        item.future.set_result(("closed", summary))

    # ---- helpers ---------------------------------------------------------------

    def _reject(
        self, status: int, reason: str, message: str, *, unread: bool = False, **extra
    ) -> JSONResponse:
        self.counters.rejected[reason] += 1
        self.counters.round_rejected[reason] += 1
        body = {"accepted": False, "reason": reason, "message": message, **extra}
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if status in (503, 429):
            headers["Retry-After"] = "1"
        if status in (408, 413) or unread:
            headers["Connection"] = "close"  # the rest of the body is not read
        return JSONResponse(body, status_code=status, headers=headers)

    async def _read_body(self, request: Request, length: int | None, hold: list):
        """The body into one buffer: from the pool, sized by Content-Length, else grown.

        Returns a memoryview of exactly the body; the buffer goes into ``hold``
        so that the caller gives it back to the pool once the update is decided.
        """
        limit = self.max_body
        if length is not None:
            buf = self.buffers.take(length)
            hold.append(buf)
            view = memoryview(buf)
            pos = 0
            async for chunk in request.stream():
                end = pos + len(chunk)
                if end > length:
                    raise BadRequest("bad_content_length", "the body is longer than Content-Length")
                view[pos:end] = chunk
                pos = end
            if pos != length:
                raise BadRequest("bad_content_length", "the body is shorter than Content-Length")
            return view[:length]
        buf = bytearray()
        async for chunk in request.stream():
            if len(buf) + len(chunk) > limit:
                raise BadRequest("body_too_large", f"the body exceeds {limit} bytes", 413)
            buf += chunk
        return memoryview(buf)

    # ---- endpoints -------------------------------------------------------------

    async def post_update(self, request: Request) -> Response:
        h = request.headers
        arrival_round = self.state.round  # an update without a round is for the one open now
        if not self.clients.check(parsing.parse_bearer(h.get("authorization"))):
            return self._reject(
                401, "unauthorized", "a valid client token is required", unread=True
            )
        if self.failed:
            return self._reject(
                503, "state_failed", "the server's log failed; it needs a restart", unread=True
            )
        if self.inflight >= self.config.max_concurrent:
            return self._reject(
                503, "overloaded", "the server is at its concurrency limit", unread=True
            )
        try:
            key = parsing.parse_idempotency_key(h.get("idempotency-key"))
            length = parsing.parse_content_length(h.get("content-length"), limit=self.max_body)
            ctype = h.get("content-type", "application/octet-stream").split(";")[0].strip()
            is_json = ctype.lower() in _JSON_TYPES
            byteorder = parsing.parse_byteorder(
                h.get("x-ptth-byteorder"), default=self.config.byteorder
            )
            relabel = _flag(h.get("x-ptth-relabel-float32"), default=is_json)
            rnd = parsing.parse_round(h.get("x-ptth-round"))
            if not is_json:
                weight = parsing.parse_weight(
                    h.get("x-ptth-weight"), max_weight=self.config.max_weight
                )
                kind = parsing.parse_kind(h.get("x-ptth-kind"), default=self.config.default_kind)
        except BadRequest as exc:
            return self._reject(exc.status, exc.reason, exc.message, unread=True)
        if rnd is not None and rnd != self.state.round:
            return self._round_mismatch(rnd, unread=True)
        reserve = length if length is not None else self.max_body
        if self.inflight_bytes + reserve > self.config.max_inflight_bytes:
            return self._reject(
                503, "overloaded", "the server holds too many upload bytes", unread=True
            )
        self.inflight += 1
        self.inflight_bytes += reserve
        hold: list = []
        queued = False
        try:
            try:
                with anyio.fail_after(self.config.request_timeout):
                    body = await self._read_body(request, length, hold)
            except TimeoutError:
                return self._reject(408, "timeout", "the body did not arrive in time")
            except ClientDisconnect:
                self.counters.rejected["client_disconnected"] += 1
                return Response(status_code=400)
            except BadRequest as exc:
                return self._reject(exc.status, exc.reason, exc.message)
            self.counters.bytes += body.nbytes
            metadata: dict = {}
            blob: Any = body
            if is_json:
                try:
                    upd = await asyncio.get_running_loop().run_in_executor(
                        self._parse_pool,
                        functools.partial(
                            parsing.parse_json_update,
                            body.obj,
                            length=body.nbytes,
                            max_weight=self.config.max_weight,
                        ),
                    )
                except BadRequest as exc:
                    return self._reject(exc.status, exc.reason, exc.message)
                del body
                blob, weight, kind, metadata = upd.blob, upd.weight, upd.kind, upd.metadata
                if upd.round is not None:
                    if rnd is not None and upd.round != rnd:
                        return self._reject(400, "bad_round", "round differs from X-PTTH-Round")
                    rnd = upd.round
                    if rnd != self.state.round:
                        return self._round_mismatch(rnd)
            entry = Entry(
                key=key,
                round=arrival_round if rnd is None else rnd,
                weight=weight,
                kind=kind,
                byteorder=byteorder,
                relabel_float32=relabel,
                body=blob,
                metadata=metadata,
                transport="json" if is_json else "raw",
            )
            fut = asyncio.get_running_loop().create_future()
            assert self.queue is not None  # requests are served inside lifespan()
            self.queue.put_nowait(_Pending(entry, rnd is not None, fut))
            queued = not is_json  # a raw entry reads the buffer until it is decided
            outcome, detail = await fut
            queued = False
        finally:
            self.inflight -= 1
            self.inflight_bytes -= reserve
            # Decided, or never queued: nothing refers to the buffer any more. If this
            # task was cancelled while queued, the committer may still read it: drop it.
            if not queued:
                for buf in hold:
                    self.buffers.give(buf)
        return self._answer(entry, outcome, detail)

    def _round_mismatch(self, rnd: int, *, unread: bool = False) -> JSONResponse:
        if rnd < self.state.round:
            return self._reject(
                409,
                "round_closed",
                f"round {rnd} is closed; round {self.state.round} is open",
                unread=unread,
                round=self.state.round,
            )
        return self._reject(
            409,
            "round_not_open",
            f"round {rnd} is not open; round {self.state.round} is",
            unread=unread,
            round=self.state.round,
        )

    def _answer(self, entry: Entry, outcome: str, detail: Any) -> JSONResponse:
        if outcome == "accepted":
            self.counters.accepted += 1
            self.counters.accept_times.append(time.monotonic())
            rnd, added = detail
            return JSONResponse(
                {
                    "round": rnd,
                    "accepted": True,
                    "duplicate": False,
                    "key": entry.key,
                    "norm": added.norm,
                    "max_abs": added.max_abs,
                    "parameters": added.parameters,
                    "byteorder": added.byteorder,
                    "counted": added.counted,
                }
            )
        if outcome == "duplicate":
            self.counters.duplicates += 1
            return JSONResponse(
                {"round": detail, "accepted": True, "duplicate": True, "key": entry.key}
            )
        if outcome == "closed":
            return self._round_mismatch(detail)
        if outcome == "invalid":
            err: ptth.PTTHError = detail
            return self._reject(400, err.reason, err.message, offset=err.offset, record=err.record)
        return self._reject(503, "state_failed", "the server's log failed; it needs a restart")

    async def close_round(self, request: Request) -> Response:
        if not self.admin.check(parsing.parse_bearer(request.headers.get("authorization"))):
            return self._reject(401, "unauthorized", "the admin token is required")
        try:
            allow_empty = _flag(request.query_params.get("allow_empty"), default=False)
        except BadRequest as exc:
            return self._reject(exc.status, exc.reason, exc.message)
        fut = asyncio.get_running_loop().create_future()
        assert self.queue is not None  # requests are served inside lifespan()
        self.queue.put_nowait(_Close(allow_empty, fut))
        outcome, detail = await fut
        if outcome == "closed":
            return JSONResponse(detail)
        if outcome == "empty":
            return JSONResponse(
                {
                    "reason": "empty_round",
                    "round": self.state.round,
                    "message": "no update was accepted in this round; "
                    "pass ?allow_empty=1 to publish the model unchanged",
                },
                status_code=409,
            )
        if outcome == "failed":
            return self._reject(503, "state_failed", "the server's log failed")
        return JSONResponse({"reason": "close_failed", "message": detail}, status_code=500)

    async def get_model(self, request: Request) -> Response:
        token = parsing.parse_bearer(request.headers.get("authorization"))
        if not (self.clients.check(token) or self.admin.check(token)):
            return self._reject(401, "unauthorized", "a valid client token is required")
        q = request.query_params
        dtype = q.get("dtype", "float16")
        if dtype not in ("float16", "float32", "original"):
            return JSONResponse(
                {"reason": "bad_argument", "message": "dtype must be float16, float32 or original"},
                400,
            )
        comp = q.get("compress", str(self.config.model_level))
        if comp == "none":
            level = None
        elif comp.isdigit() and 0 <= int(comp) <= 9:
            level = int(comp)
        else:
            return JSONResponse(
                {"reason": "bad_argument", "message": "compress must be 0..9 or none"}, 400
            )
        rnd = self.state.round
        ck = (rnd, dtype, level)
        if ck not in self._model_cache:
            model = self.state.current_model()
            blob = await asyncio.get_running_loop().run_in_executor(
                self._parse_pool,
                functools.partial(
                    ptth.dumps, model, dtype=None if dtype == "original" else dtype, compress=level
                ),
            )
            etag = f'"r{rnd}-{hashlib.sha256(blob).hexdigest()[:24]}"'
            if len(self._model_cache) > 8:
                self._model_cache.clear()
            self._model_cache[ck] = (blob, etag)
        blob, etag = self._model_cache[ck]
        headers = {"ETag": etag, "X-PTTH-Round": str(rnd), "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(blob, media_type="application/octet-stream", headers=headers)

    def status(self) -> dict:
        st = self.state
        now = time.monotonic()
        window = 60.0
        recent = sum(1 for t in self.counters.accept_times if now - t <= window)
        span = min(window, max(time.time() - self.started, 1e-9))
        return {
            "round": st.round,
            "accepted": st.aggregator.count,
            "total_weight": st.aggregator.total_weight,
            "rejected": dict(self.counters.round_rejected),
            "rejected_since_start": dict(self.counters.rejected),
            "duplicates_since_start": self.counters.duplicates,
            "bytes": sum(r["bytes"] for r in st.records),
            "bytes_received_since_start": self.counters.bytes,
            "uploads_per_s": recent / span,
            "in_flight": self.inflight,
            "queued": self.queue.qsize() if self.queue is not None else 0,
            "rounds_closed": len(st.history),
            "last_round": st.history[-1] if st.history else None,
            "round_started": st.round_started,
            "uptime_s": time.time() - self.started,
            "log_bytes_since_checkpoint": st.wal_bytes,
            "last_checkpoint": st.last_checkpoint,
            "replayed_at_start": st.replayed,
            "fsync": self.config.fsync,
            "mean_fsync_ms": 1e3 * st.fsync_seconds / st.fsync_count if st.fsync_count else None,
            "mean_batch": (
                self.counters.batched_updates / self.counters.batches
                if self.counters.batches
                else None
            ),
            "failed": self.failed is not None,
            "backend": ptth.backend,
        }

    async def get_status(self, request: Request) -> Response:
        return JSONResponse(self.status())

    async def metrics(self, request: Request) -> Response:
        s = self.status()
        st = self.state
        lines = [
            "# HELP ptth_round The open round.",
            "# TYPE ptth_round gauge",
            f"ptth_round {s['round']}",
            "# HELP ptth_round_accepted Updates accepted into the open round.",
            "# TYPE ptth_round_accepted gauge",
            f"ptth_round_accepted {s['accepted']}",
            "# HELP ptth_round_total_weight Sum of the open round's weights.",
            "# TYPE ptth_round_total_weight gauge",
            f"ptth_round_total_weight {_num(s['total_weight'])}",
            "# HELP ptth_uploads_accepted_total Updates accepted since start.",
            "# TYPE ptth_uploads_accepted_total counter",
            f"ptth_uploads_accepted_total {self.counters.accepted}",
            "# HELP ptth_uploads_duplicate_total Retries answered duplicate since start.",
            "# TYPE ptth_uploads_duplicate_total counter",
            f"ptth_uploads_duplicate_total {self.counters.duplicates}",
            "# HELP ptth_uploads_rejected_total Rejected requests since start, by reason.",
            "# TYPE ptth_uploads_rejected_total counter",
        ]
        for reason, n in sorted(self.counters.rejected.items()):
            lines.append(f'ptth_uploads_rejected_total{{reason="{reason}"}} {n}')
        lines += [
            "# HELP ptth_received_bytes_total Upload body bytes received since start.",
            "# TYPE ptth_received_bytes_total counter",
            f"ptth_received_bytes_total {self.counters.bytes}",
            "# HELP ptth_uploads_in_flight Uploads being received or committed.",
            "# TYPE ptth_uploads_in_flight gauge",
            f"ptth_uploads_in_flight {self.inflight}",
            "# HELP ptth_log_bytes Log bytes since the last checkpoint.",
            "# TYPE ptth_log_bytes gauge",
            f"ptth_log_bytes {st.wal_bytes}",
            "# HELP ptth_fsync_seconds Time in log fsyncs.",
            "# TYPE ptth_fsync_seconds summary",
            f"ptth_fsync_seconds_sum {st.fsync_seconds:.6f}",
            f"ptth_fsync_seconds_count {st.fsync_count}",
            "# HELP ptth_commit_batches_total Commits (one fsync each).",
            "# TYPE ptth_commit_batches_total counter",
            f"ptth_commit_batches_total {self.counters.batches}",
            "# HELP ptth_rounds_closed_total Rounds closed.",
            "# TYPE ptth_rounds_closed_total counter",
            f"ptth_rounds_closed_total {len(st.history)}",
            "# HELP ptth_failed 1 when the log failed and updates are refused.",
            "# TYPE ptth_failed gauge",
            f"ptth_failed {int(self.failed is not None)}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def page(self, request: Request) -> Response:
        return HTMLResponse(STATUS_PAGE)


def _num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else "NaN"


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise BadRequest("bad_flag", "a flag must be 1/0, true/false, yes/no or on/off")


def create_app(config: ServerConfig) -> Starlette:
    """The Starlette app of ``ptth serve`` over a durable state directory.

    Opening it loads the newest checkpoint of ``config.state`` and replays the
    log after it (or starts round 1 from ``config.model``); a damaged state
    raises :class:`ptth.server.StateError` here, before anything is served.

    Args:
        config: a :class:`ServerConfig`.

    Raises:
        StateError: the state directory is damaged or belongs to another model.
        ValueError: the model file's extension is not supported, or no tokens.
        ptth.PTTHError: the model file is not a valid model.

    Example::

        app = create_app(ServerConfig(Path("model.ptth"), Path("state"),
                                      client_tokens=["c1"], admin_token="a1"))
        uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    server = Server(config)

    async def post_update(request: Request) -> Response:
        try:
            return await server.post_update(request)
        except BadRequest as exc:
            return server._reject(exc.status, exc.reason, exc.message)

    routes = [
        Route("/", server.page, methods=["GET"]),
        Route("/v1/updates", post_update, methods=["POST"]),
        Route("/v1/model", server.get_model, methods=["GET"]),
        Route("/v1/rounds/close", server.close_round, methods=["POST"]),
        Route("/v1/status", server.get_status, methods=["GET"]),
        Route("/metrics", server.metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=server.lifespan)
    app.state.server = server
    return app
