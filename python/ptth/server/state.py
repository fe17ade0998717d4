"""Durable state of ``ptth serve``: a write-ahead log plus checkpoints.

Layout of the ``--state`` directory::

    wal-00000007.log          accepted updates since the checkpoint, append-only
    checkpoint-00000007.ckpt  the aggregate before segment 7 (pickle protocol 5)
    models/round-000003.ptth  the model each closed round published
    rounds/round-000003.json  each closed round's summary and its updates' metadata

An update is acknowledged only after its log entry (the decoded blob, weight,
kind, decode options, idempotency key and metadata, checksummed) was written
and fsynced; several waiting updates share one fsync (group commit).
Checkpoints and model files are written to a temporary name, fsynced, renamed
into place and the directory fsynced, so a file under its final name is
complete; each section carries a CRC-32. On start the newest checkpoint is
loaded and the log after it replayed. A torn tail of the newest log segment
(an entry cut short, or a bad checksum on the last entry) was never
acknowledged: it is truncated with a warning. Any other damage raises
:class:`StateError` and the server refuses to start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import pickle
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from zlib_ng.zlib_ng import crc32

import ptth
from ptth import PTTHError

from . import _model_io

__all__ = ["Entry", "State", "StateError"]

log = logging.getLogger("ptth.server")

_WAL_MAGIC = b"PWAL"
_WAL_HEAD = struct.Struct(">4sIQI")  # magic, meta_len, body_len, crc32(head[:16] + meta + body)
_CKPT_MAGIC = b"PTTHCKP1"
_CKPT_HEAD = struct.Struct(">8sI")  # magic, number of sections
_CKPT_SECTION = struct.Struct(">QI")  # length, crc32
_MAX_META = 1 << 20
_FORMAT = 1
_SEGMENT_RE = re.compile(r"wal-(\d{8})\.log")
_CKPT_RE = re.compile(r"checkpoint-(\d{8})\.ckpt")


class StateError(RuntimeError):
    """The state directory is damaged or does not belong to this model; nothing was loaded."""


@dataclass
class Entry:
    """One accepted update as the log keeps it.

    Attributes:
        key: the client's Idempotency-Key.
        round: the round it was accepted into.
        weight: the weight passed to ``Aggregator.add``.
        kind: ``"delta"`` or ``"full"``.
        byteorder, relabel_float32: the decode options used.
        body: the PTTH blob (any wrapper), as received or base64-decoded.
        metadata: the JSON fields other than the update (iOS), or ``{}``.
        transport: ``"raw"`` or ``"json"``.
    """

    key: str
    round: int
    weight: float
    kind: str
    byteorder: str
    relabel_float32: bool
    body: Any
    metadata: dict = field(default_factory=dict)
    transport: str = "raw"

    def meta(self) -> dict:
        return {
            "key": self.key,
            "round": self.round,
            "weight": self.weight,
            "kind": self.kind,
            "byteorder": self.byteorder,
            "relabel_float32": self.relabel_float32,
            "metadata": self.metadata,
            "transport": self.transport,
            "bytes": len(memoryview(self.body).cast("B")),
        }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """write(file) into a temporary sibling, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _encode_entry(entry: Entry) -> list:
    meta = json.dumps(entry.meta(), separators=(",", ":")).encode()
    body = memoryview(entry.body).cast("B")
    head = _WAL_HEAD.pack(_WAL_MAGIC, len(meta), body.nbytes, 0)[:16]
    crc = crc32(body, crc32(meta, crc32(head)))
    return [head + struct.pack(">I", crc), meta, body]


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    size: int


@dataclass
class Snapshot:
    """What a checkpoint holds: taken between two commits, written later."""

    segment: int  # the first log segment the checkpoint does not cover
    meta: dict
    pickled: bytes
    buffers: list


AddBatch = Callable[[Any, Sequence[Entry]], list]


class State:
    """The aggregate of the open round, its log and its checkpoints.

    Not thread-safe: the server calls every method from one committer at a
    time, except :meth:`write_checkpoint`, which may run beside commits.

    Args:
        directory: the ``--state`` directory (created if missing).
        model_path: the MODEL the state was started from; a state directory
            started from another model file is refused.
        add_batch: ``add_batch(aggregator, entries) -> [AddResult | PTTHError]``,
            the server's one function that folds updates (replay uses it too).
        fsync: fsync log appends (``False`` survives ``kill -9`` of the
            server but not a crash of the machine).
        keep_key_rounds: idempotency keys of this many closed rounds are kept
            beside the open round's.

    Raises:
        StateError: the directory is damaged, incomplete or from another model.

    Example::

        st = State("state", "model.ptth", add_batch=add_batch)
        results = add_batch(st.aggregator, entries)
        st.append([e for e, r in zip(entries, results) if not isinstance(r, PTTHError)])
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        model_path: str | os.PathLike,
        *,
        add_batch: AddBatch,
        fsync: bool = True,
        keep_key_rounds: int = 4,
    ):
        self.dir = Path(directory)
        self.add_batch = add_batch
        self.fsync = fsync
        self.keep_key_rounds = keep_key_rounds
        # Updates, keys and models are the clients' data: the owner's alone.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.dir / "models").mkdir(parents=True, exist_ok=True)
        (self.dir / "rounds").mkdir(exist_ok=True)
        self._ckpt_lock = threading.Lock()
        self.fsync_seconds = 0.0
        self.fsync_count = 0
        self.wal_bytes = 0  # bytes in log segments since the last checkpoint
        self.last_checkpoint: float | None = None
        self.replayed = 0
        self.truncated_tail = 0
        model_path = Path(model_path)
        sha = _sha256_file(model_path)
        checkpoints = self._numbered(_CKPT_RE)
        for tmp in self.dir.glob(".*.tmp*"):  # an interrupted atomic write, never in place
            tmp.unlink()
        if not checkpoints:
            if self._numbered(_SEGMENT_RE):
                raise StateError(
                    f"{self.dir}: log segments without a checkpoint; the state is incomplete"
                )
            self._initialize(model_path, sha)
        else:
            self._recover(checkpoints[-1], sha)

    # ---- start ---------------------------------------------------------------

    def _numbered(self, pattern: re.Pattern) -> list[int]:
        found = []
        for p in self.dir.iterdir():
            m = pattern.fullmatch(p.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def _seg_path(self, n: int) -> Path:
        return self.dir / f"wal-{n:08d}.log"

    def _ckpt_path(self, n: int) -> Path:
        return self.dir / f"checkpoint-{n:08d}.ckpt"

    def _initialize(self, model_path: Path, sha: str) -> None:
        template = _model_io.load_model(model_path)
        self.model_sha256 = sha
        self.round = 1
        self.aggregator = ptth.Aggregator(template)
        self.template = template
        self.records: list[dict] = []
        self.keys: dict[str, int] = {}
        self.history: list[dict] = []
        self.round_started = time.time()
        self._open_segment(0)
        self.write_checkpoint(self.snapshot(0))
        log.info("state %s: new, round 1 from %s", self.dir, model_path)

    def _recover(self, number: int, sha: str) -> None:
        path = self._ckpt_path(number)
        meta, agg = self._read_checkpoint(path)
        if meta.get("model_sha256") != sha:
            raise StateError(
                f"{self.dir} was started from another model file (sha256 "
                f"{meta.get('model_sha256')}, this one {sha}); use a new --state"
            )
        self.model_sha256 = sha
        self.round = int(meta["round"])
        self.aggregator = agg
        self.template = agg.template
        self.records = list(meta["records"])
        self.keys = dict(meta["keys"])
        self.history = list(meta["history"])
        self.round_started = float(meta["round_started"])
        segments = [n for n in self._numbered(_SEGMENT_RE) if n >= number]
        for old in self._numbered(_SEGMENT_RE):
            if old < number:  # covered by the checkpoint; a crash left it behind
                self._seg_path(old).unlink()
        if segments and segments[0] != number:
            raise StateError(f"{self.dir}: log segment {number} is missing")
        for a, b in zip(segments, segments[1:]):
            if b != a + 1:
                raise StateError(f"{self.dir}: log segment {a + 1} is missing")
        for i, n in enumerate(segments):
            self._replay(n, last=i == len(segments) - 1)
        self._open_segment(segments[-1] if segments else number, append=True)
        for old in self._numbered(_CKPT_RE):
            if old < number:
                self._ckpt_path(old).unlink()
        log.info(
            "state %s: resumed round %d from %s, %d updates replayed from the log "
            "(%d accepted this round)",
            self.dir,
            self.round,
            path.name,
            self.replayed,
            len(self.records),
        )

    def _read_checkpoint(self, path: Path):
        try:
            with open(path, "rb") as f:
                head = f.read(_CKPT_HEAD.size)
                if len(head) != _CKPT_HEAD.size:
                    raise StateError(f"{path}: truncated header")
                magic, n = _CKPT_HEAD.unpack(head)
                if magic != _CKPT_MAGIC or not 2 <= n <= 1 << 20:
                    raise StateError(f"{path}: not a ptth checkpoint")
                table = f.read(_CKPT_SECTION.size * n + 4)
                if len(table) != _CKPT_SECTION.size * n + 4:
                    raise StateError(f"{path}: truncated section table")
                (tcrc,) = struct.unpack(">I", table[-4:])
                if crc32(table[:-4], crc32(head)) != tcrc:
                    raise StateError(f"{path}: section table checksum mismatch")
                size = os.fstat(f.fileno()).st_size
                sections = [
                    _CKPT_SECTION.unpack_from(table, i * _CKPT_SECTION.size) for i in range(n)
                ]
                if _CKPT_HEAD.size + len(table) + sum(s[0] for s in sections) != size:
                    raise StateError(f"{path}: size does not match its sections")
                data = []
                for i, (length, crc) in enumerate(sections):
                    buf = np.empty(length, np.uint8)  # aligned, for the arrays built on it
                    # NumPy arrays support the buffer protocol; the stubs do not say so.
                    if f.readinto(memoryview(buf)) != length:  # type: ignore[arg-type]
                        raise StateError(f"{path}: section {i} truncated")
                    if crc32(memoryview(buf)) != crc:  # type: ignore[arg-type]
                        raise StateError(f"{path}: section {i} checksum mismatch")
                    data.append(buf)
        except OSError as exc:
            raise StateError(f"{path}: cannot be read: {exc}") from exc
        try:
            meta = json.loads(bytes(data[0]))
            if meta.get("format") != _FORMAT:
                raise StateError(f"{path}: format {meta.get('format')} is not {_FORMAT}")
            # NumPy arrays support the buffer protocol; the stubs do not say so.
            agg = pickle.loads(memoryview(data[1]), buffers=[memoryview(b) for b in data[2:]])  # type: ignore[arg-type]
        except StateError:
            raise
        except Exception as exc:  # checksummed, so this is a bug or a foreign file
            raise StateError(f"{path}: cannot be decoded: {exc}") from exc
        if not isinstance(agg, ptth.Aggregator):
            raise StateError(f"{path}: holds no ptth.Aggregator")
        return meta, agg

    def _replay(self, number: int, *, last: bool) -> None:
        path = self._seg_path(number)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # Mapped, not read: a segment may hold up to --checkpoint-bytes of updates.
            data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        pos, entries, torn_at = 0, [], None
        view = memoryview(data)
        while pos < size:
            problem, end, entry = self._parse_entry(view, pos)
            if problem is None:
                entries.append(entry)
                pos = end
                continue
            # A torn tail is the last write, cut short: never acknowledged.
            if not (last and (end is None or end >= size)):
                raise StateError(
                    f"{path}: {problem} at byte {pos} with data after it; the log is "
                    f"corrupted (not a torn tail); refusing to start"
                )
            torn_at = (pos, problem)
            break
        for start in range(0, len(entries), 16):
            chunk = entries[start : start + 16]
            for entry, r in zip(chunk, self.add_batch(self.aggregator, chunk)):
                if isinstance(r, PTTHError):
                    raise StateError(f"{path}: logged update {entry.key!r} no longer adds: {r}")
                self._remember(entry)
        for entry in entries:  # the records hold no body: the map can go
            entry.body.release()
        view.release()
        if size:
            data.close()
        if torn_at is not None:  # truncated only once nothing maps the file
            log.warning(
                "state %s: torn tail of %s at byte %d (%s): %d bytes never acknowledged, truncated",
                self.dir,
                path.name,
                pos,
                torn_at[1],
                size - pos,
            )
            self.truncated_tail += size - pos
            with open(path, "r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
        self.replayed += len(entries)
        self.wal_bytes += pos

    def _parse_entry(self, view: memoryview, pos: int):
        """(problem, end, entry): problem is None for a good entry; end None if cut short."""
        if len(view) - pos < _WAL_HEAD.size:
            return "entry header cut short", None, None
        magic, meta_len, body_len, crc = _WAL_HEAD.unpack_from(view, pos)
        if magic != _WAL_MAGIC or meta_len > _MAX_META:
            return "bad entry header", pos + _WAL_HEAD.size, None
        m0 = pos + _WAL_HEAD.size
        b0 = m0 + meta_len
        end = b0 + body_len
        if end > len(view):
            return "entry cut short", None, None
        got = crc32(view[b0:end], crc32(view[m0:b0], crc32(view[pos : pos + 16])))
        if got != crc:
            return "entry checksum mismatch", end, None
        try:
            meta = json.loads(bytes(view[m0:b0]))
            entry = Entry(
                key=meta["key"],
                round=int(meta["round"]),
                weight=float(meta["weight"]),
                kind=meta["kind"],
                byteorder=meta["byteorder"],
                relabel_float32=bool(meta["relabel_float32"]),
                body=view[b0:end],
                metadata=meta["metadata"],
                transport=meta["transport"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            return f"entry metadata unreadable ({exc})", end, None
        if entry.round != self.round:
            return f"entry of round {entry.round} in round {self.round}'s log", end, None
        return None, end, entry

    # ---- the log ---------------------------------------------------------------

    def _open_segment(self, number: int, *, append: bool = False) -> None:
        path = self._seg_path(number)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
        self.segment = _Segment(number, path, fd, os.fstat(fd).st_size)
        if not append:
            _fsync_dir(self.dir)

    def _remember(self, entry: Entry) -> None:
        meta = entry.meta()
        self.records.append(
            {k: meta[k] for k in ("key", "weight", "kind", "bytes", "transport", "metadata")}
        )
        self.keys[entry.key] = entry.round

    def append(self, entries: Sequence[Entry]) -> None:
        """Log entries already folded into the aggregator; returns once they are durable.

        Raises ``OSError`` if the disk refuses; the server then stops accepting,
        since the aggregator holds updates the log lacks.
        """
        if not entries:
            return
        iov: list = []
        for e in entries:
            iov.extend(_encode_entry(e))
        total = sum(memoryview(b).nbytes for b in iov)
        _write_all(self.segment.fd, iov)
        if self.fsync:
            t0 = time.perf_counter()
            os.fdatasync(self.segment.fd)
            self.fsync_seconds += time.perf_counter() - t0
            self.fsync_count += 1
        self.segment.size += total
        self.wal_bytes += total
        for e in entries:
            self._remember(e)

    # ---- checkpoints -----------------------------------------------------------

    def roll(self) -> Snapshot:
        """Seal the current segment, open the next, and snapshot the aggregate before it."""
        os.fsync(self.segment.fd)
        os.close(self.segment.fd)
        nxt = self.segment.number + 1
        self._open_segment(nxt)
        self.wal_bytes = 0
        return self.snapshot(nxt)

    def snapshot(self, segment: int) -> Snapshot:
        buffers: list = []
        pickled = pickle.dumps(self.aggregator, protocol=5, buffer_callback=buffers.append)
        self._prune_keys()
        meta = {
            "format": _FORMAT,
            "round": self.round,
            "segment": segment,
            "model_sha256": self.model_sha256,
            "records": list(self.records),
            "keys": dict(self.keys),
            "history": list(self.history),
            "round_started": self.round_started,
            "written": time.time(),
        }
        return Snapshot(segment, meta, pickled, [b.raw() for b in buffers])

    def write_checkpoint(self, snap: Snapshot) -> None:
        """Write a snapshot atomically, then drop the segments and checkpoints it replaces."""
        with self._ckpt_lock:
            sections = [json.dumps(snap.meta).encode(), snap.pickled, *snap.buffers]
            table = b"".join(_CKPT_SECTION.pack(memoryview(s).nbytes, crc32(s)) for s in sections)
            head = _CKPT_HEAD.pack(_CKPT_MAGIC, len(sections))
            tcrc = struct.pack(">I", crc32(table, crc32(head)))
            path = self._ckpt_path(snap.segment)

            def write(f):
                f.write(head + table + tcrc)
                for s in sections:
                    f.write(s)

            _atomic_write(path, write)
            for n in self._numbered(_CKPT_RE):
                if n < snap.segment:
                    self._ckpt_path(n).unlink()
            for n in self._numbered(_SEGMENT_RE):
                if n < snap.segment:
                    self._seg_path(n).unlink()
            self.last_checkpoint = time.time()

    def _prune_keys(self) -> None:
        oldest = self.round - self.keep_key_rounds
        if any(r < oldest for r in self.keys.values()):
            self.keys = {k: r for k, r in self.keys.items() if r >= oldest}

    # ---- rounds ----------------------------------------------------------------

    def close_round(self, *, lr: float, rejected: dict) -> dict:
        """Fold the round, publish its model durably, open the next round; the summary."""
        agg = self.aggregator
        t0 = time.time()
        # the caller refused an empty round unless it was asked for: then the template
        model = agg.apply(lr=lr, allow_empty=True)
        name = f"round-{self.round:06d}.ptth"
        path = self.dir / "models" / name
        tmp_target = path.with_name(f".{path.name}.{os.getpid()}.tmp.ptth")
        try:
            _model_io.save_model(model, tmp_target)
            with open(tmp_target, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_target, path)
        finally:
            if tmp_target.exists():
                tmp_target.unlink()
        _fsync_dir(path.parent)
        summary = {
            "round": self.round,
            "accepted": agg.count,
            "total_weight": agg.total_weight,
            "rejected": dict(rejected),
            "bytes": sum(r["bytes"] for r in self.records),
            "opened": self.round_started,
            "closed": t0,
            "model": f"models/{name}",
            "model_sha256": _sha256_file(path),
            "next_round": self.round + 1,
        }
        detail = dict(summary, updates=self.records)
        _atomic_write(
            self.dir / "rounds" / f"round-{self.round:06d}.json",
            lambda f: f.write(json.dumps(detail, indent=1).encode()),
        )
        self.history.append(summary)
        self.round += 1
        self.aggregator = ptth.Aggregator(model)
        self.template = model
        self.records = []
        self.round_started = time.time()
        # The new round starts with a checkpoint, so its log holds only its own updates.
        self.write_checkpoint(self.roll())
        return summary

    def current_model(self) -> dict[str, np.ndarray]:
        """The global model clients train on in the open round."""
        return self.template

    def close(self) -> None:
        try:
            os.close(self.segment.fd)
        except OSError:
            pass


def _write_all(fd: int, iov: list) -> None:
    views = [memoryview(b).cast("B") for b in iov]
    while views:
        n = os.writev(fd, views[:512])
        while n and views:
            if n >= views[0].nbytes:
                n -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0
