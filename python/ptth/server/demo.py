"""``ptth serve --demo``: a real server process and a swarm of simulated phones, one round.

The swarm mixes the clients seen in the wild (iOS JSON with base64, Android
big-endian raw blobs, float16 + zlib deltas, partial deltas), kills the server
with SIGKILL halfway through, restarts it on the same state, retries what was
not answered, closes the round and checks the published model against a
NumPy FedAvg of the updates, each counted once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ptth

__all__ = ["run_demo"]


def _template(params: int, rng: np.random.Generator) -> dict:
    width = 256
    rows = max(1, params // (2 * width))
    return {
        "encoder.weight": (rng.standard_normal((rows, width)) * 0.05).astype(np.float32),
        "encoder.bias": np.zeros(rows, np.float32),
        "head.weight": (rng.standard_normal((rows, width)) * 0.05).astype(np.float32),
        "head.bias": np.zeros(rows, np.float32),
    }


def _big_endian(tensors: dict) -> bytes:
    # The Android extractor: big-endian header and payload (ByteBuffer's default).
    out = [b"PTTH", struct.pack(">II", 1, len(tensors))]
    for name, arr in tensors.items():
        nb = name.encode()
        out.append(struct.pack(">I", len(nb)) + nb + struct.pack(">I", arr.ndim))
        out.append(struct.pack(f">{arr.ndim}I", *arr.shape))
        payload = np.ascontiguousarray(arr, ">f4").tobytes()
        out.append(struct.pack(">II", 0, len(payload)) + payload)
    return b"".join(out)


class _Client:
    def __init__(self, i: int, template: dict, rng: np.random.Generator):
        self.key = f"phone-{i:04d}-round-1"
        self.weight = float(rng.integers(10, 500))
        self.kind = ["ios", "android", "f16", "partial"][i % 4]
        delta = {
            k: (rng.standard_normal(v.shape) * 1e-3).astype(np.float32) for k, v in template.items()
        }
        if self.kind == "f16":
            delta = {k: v.astype(np.float16) for k, v in delta.items()}
        elif self.kind == "partial":  # a layer whose shape changed on the phone is dropped
            delta = {k: v for k, v in delta.items() if not k.startswith("encoder.")}
        self.delta = delta

    def request(self, token: str) -> dict:
        h = {"Authorization": f"Bearer {token}", "Idempotency-Key": self.key}
        if self.kind == "ios":
            body = {
                "weights_data": base64.b64encode(ptth.dumps(self.delta)).decode(),
                "sample_count": int(self.weight),
                "update_format": "delta",
                "device": "iPhone",
                "loss": 0.3,
            }
            return {
                "content": json.dumps(body).replace("/", "\\/").encode(),
                "headers": {**h, "Content-Type": "application/json"},
            }
        h.update(
            {
                "X-PTTH-Weight": str(self.weight),
                "X-PTTH-Kind": "delta",
                "Content-Type": "application/octet-stream",
            }
        )
        if self.kind == "android":
            return {"content": _big_endian(self.delta), "headers": {**h, "X-PTTH-Byteorder": ">"}}
        return {
            "content": ptth.dumps(self.delta, compress=6 if self.kind == "f16" else None),
            "headers": h,
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, work: Path, model: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "ptth.cli",
            "serve",
            str(model),
            "--state",
            str(work / "state"),
            "--port",
            str(self.port),
            "--tokens",
            str(work / "tokens"),
            "--admin-token-file",
            str(work / "admin"),
            "--no-access-log",
        ]
        self.log = open(work / "server.log", "ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import httpx

        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}")
            try:
                httpx.get(self.url + "/v1/status", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start in 120 s")

    def kill9(self) -> None:
        assert self.proc is not None  # start() first
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()


async def _swarm(url: str, token: str, clients: list, concurrency: int, kill_at=None):
    """Upload concurrently; key -> response JSON for the 200s.

    ``kill_at=(n, kill)`` calls ``kill()`` once n uploads are acknowledged;
    the uploads still in flight then fail and are left for a retry.
    """
    import httpx

    acked: dict = {}
    killed: list = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:

        async def one(c):
            async with sem:
                if killed:
                    return
                for _ in range(50):  # 503: at the server's limit; back off and retry
                    try:
                        r = await http.post("/v1/updates", **c.request(token))
                    except httpx.HTTPError:
                        return
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
                if r.status_code == 200:
                    acked[c.key] = r.json()
                    if kill_at is not None and len(acked) >= kill_at[0] and not killed:
                        killed.append(True)
                        kill_at[1]()
                elif killed:
                    return
                else:
                    raise RuntimeError(f"{c.key}: HTTP {r.status_code} {r.text}")

        await asyncio.gather(*(one(c) for c in clients))
    return acked


def run_demo(*, params: int = 2_000_000, clients: int = 48, seed: int = 0) -> int:
    """Run the demo round; 0 if the published model equals the NumPy FedAvg."""
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="ptth-serve-demo-"))
    template = _template(params, rng)
    n_params = sum(v.size for v in template.values())
    model = work / "model.ptth"
    ptth.dump(template, model)
    token, admin = "demo-client-" + os.urandom(8).hex(), "demo-admin-" + os.urandom(8).hex()
    (work / "tokens").write_text(token + "\n")
    (work / "admin").write_text(admin + "\n")
    swarm = [_Client(i, template, np.random.default_rng([seed, i])) for i in range(clients)]
    wire = sum(len(c.request(token)["content"]) for c in swarm)
    print(
        f"ptth serve --demo: {n_params:,} parameters, {clients} clients (iOS JSON, Android "
        f"big-endian, float16+zlib, partial), {wire / 1e6:.1f} MB of uploads; in {work}"
    )
    srv = _Server(work, model)
    ok = False
    try:
        srv.start()
        t0 = time.perf_counter()
        half = clients // 2
        acked = asyncio.run(_swarm(srv.url, token, swarm, 8, kill_at=(half, srv.kill9)))
        t1 = time.perf_counter()
        print(
            f"  first half  {len(acked)} uploads acknowledged in {t1 - t0:.2f} s "
            f"({len(acked) / (t1 - t0):.1f} uploads/s); then kill -9 of the server with "
            f"uploads in flight"
        )
        srv.start()
        resumed = httpx.get(srv.url + "/v1/status").json()["accepted"]
        print(
            f"  restart     round {httpx.get(srv.url + '/v1/status').json()['round']} resumed "
            f"with {resumed} updates from the log"
        )
        t2 = time.perf_counter()
        todo = [c for c in swarm if c.key not in acked]
        rest = asyncio.run(_swarm(srv.url, token, todo, 8))
        t3 = time.perf_counter()
        dups = sum(r["duplicate"] for r in rest.values())
        print(
            f"  second half {len(rest) - dups} new, {dups} answered duplicate: true "
            f"(committed before the kill, unanswered), in {t3 - t2:.2f} s"
        )
        again = asyncio.run(_swarm(srv.url, token, swarm[:4], 4))
        assert all(r["duplicate"] for r in again.values())
        print(f"  retries     {len(again)} acknowledged clients post again: all duplicate: true")
        close = httpx.post(
            srv.url + "/v1/rounds/close", timeout=300, headers={"Authorization": f"Bearer {admin}"}
        )
        close.raise_for_status()
        summary = close.json()
        got = httpx.get(
            srv.url + "/v1/model",
            params={"dtype": "original", "compress": "none"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        )
        published = ptth.loads(got.content, copy=True)
        want = {}
        for k, t in template.items():  # NumPy FedAvg, per-parameter weight sums
            acc, wsum = np.zeros(t.shape, np.float64), 0.0
            for c in swarm:
                if k in c.delta:
                    acc += c.weight * c.delta[k].astype(np.float64)
                    wsum += c.weight
            want[k] = (t.astype(np.float64) + acc / wsum).astype(np.float32)
        err = max(float(np.max(np.abs(published[k] - want[k]))) for k in want)
        ok = summary["accepted"] == clients and err <= 1e-6 and got.headers["x-ptth-round"] == "2"
        print(
            f"  close       round 1: {summary['accepted']} updates, total weight "
            f"{summary['total_weight']:g}; round 2 open"
        )
        print(
            f"  check       max |published - numpy FedAvg| = {err:.3g}, each client once: "
            f"{'OK' if ok else 'MISMATCH'}"
        )
    finally:
        srv.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  kept {work} (server.log inside)")
    return 0 if ok else 1
