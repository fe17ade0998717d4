"""Load benchmark of ``ptth serve`` on loopback, beside its two baselines.

Bounded: a fixed number of uploads per mode and a time limit per mode. For raw
and iOS JSON uploads of one model (default 25M parameters, float32 deltas =
100 MB raw, 133 MB as JSON) it reports uploads/s, MB/s, p50/p99 latency and
the server's peak RSS for:

- ``aggregator``: ``Aggregator.add`` alone on the same blobs (the ceiling);
- ``ingest-buffer`` / ``ingest-decoder``: the body in 256 KiB chunks copied
  into one reused buffer then added, against fed to a ``ptth.Decoder`` and
  the decoded mapping added (no HTTP);
- ``ptth-raw`` / ``ptth-json``: ``ptth serve`` (fsync on, as deployed);
- ``ptth-raw-nofsync``: the same with ``--no-fsync`` (survives kill -9, not a
  machine crash), to separate the disk from the HTTP path;
- ``wal-alone``: writing and fdatasync-ing the same bytes to a file in the
  state directory, the durability floor of any write-ahead design;
- ``plain-raw`` / ``plain-json``: benchmarks/plain_server.py, FastAPI + NumPy
  as a user would write it without ptth (no log, no idempotency).

Beside wall-clock rates it reports CPU ms per upload (the server process's
user + system time for HTTP modes, this process's for in-process ones),
which moves much less than wall time when others load the machine.

    python benchmarks/server_load.py [--params 25000000] [--count 12] [--json FILE]

Numbers are taken on a shared machine: they move with its load, so compare
rows of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ptth

HERE = Path(__file__).resolve().parent
TOKEN, ADMIN = "bench-client-token", "bench-admin-token"


def make_model(params: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    width = 1024
    rows = params // width
    shares = {
        "embed.weight": 0.4,
        "layer.0.weight": 0.25,
        "layer.1.weight": 0.25,
        "head.weight": 0.1,
    }
    tmpl = {}
    for name, share in shares.items():
        tmpl[name] = rng.standard_normal(
            (max(1, int(rows * share)), width), dtype=np.float32
        ) * np.float32(0.05)
    return tmpl


def make_uploads(template: dict, k: int, seed: int = 1) -> list[dict]:
    """k distinct float32 delta uploads: the raw blob, its iOS JSON body, a weight."""
    out = []
    for i in range(k):
        rng = np.random.default_rng([seed, i])
        delta = {
            n: rng.standard_normal(v.shape, dtype=np.float32) * np.float32(1e-3)
            for n, v in template.items()
        }
        blob = ptth.dumps(delta)
        body = json.dumps(
            {
                "weights_data": base64.b64encode(blob).decode(),
                "sample_count": 10 + i,
                "update_format": "delta",
                "device": "bench",
            }
        ).encode()
        out.append({"raw": blob, "json": body, "weight": float(10 + i)})
    return out


def bench_aggregator(template: dict, uploads: list[dict], count: int) -> dict:
    agg = ptth.Aggregator(template)
    times = []
    t0 = time.perf_counter()
    for i in range(count):
        u = uploads[i % len(uploads)]
        s = time.perf_counter()
        agg.add(u["raw"], u["weight"])
        times.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    nbytes = sum(len(uploads[i % len(uploads)]["raw"]) for i in range(count))
    return _summary(count, wall, nbytes, times, rss=None)


def bench_ingest(template: dict, uploads: list[dict], count: int, how: str) -> dict:
    """The two ways to get a body into the aggregator, without HTTP: 256 KiB chunks.

    ``buffer``: copy the chunks into one reused buffer, then ``add`` the blob (what
    ptth serve does). ``decoder``: feed the chunks to a ``ptth.Decoder`` as they
    come and ``add`` the decoded mapping.
    """
    agg = ptth.Aggregator(template)
    step = 256 << 10
    pool = bytearray(max(len(u["raw"]) for u in uploads))
    times = []
    t0 = time.perf_counter()
    for i in range(count):
        u = uploads[i % len(uploads)]
        chunks = [memoryview(u["raw"])[j : j + step] for j in range(0, len(u["raw"]), step)]
        s = time.perf_counter()
        if how == "buffer":
            view = memoryview(pool)
            pos = 0
            for c in chunks:
                view[pos : pos + len(c)] = c
                pos += len(c)
            agg.add(view[:pos], u["weight"])
        else:
            dec = ptth.Decoder()
            tensors = {}
            for c in chunks:
                tensors.update(dec.feed(c))
            dec.close()
            agg.add(tensors, u["weight"])
        times.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    nbytes = sum(len(uploads[i % len(uploads)]["raw"]) for i in range(count))
    return _summary(count, wall, nbytes, times, rss=None)


def bench_wal(directory: Path, uploads: list[dict], count: int) -> dict:
    path = directory / "wal-probe.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    t0 = time.perf_counter()
    try:
        for i in range(count):
            s = time.perf_counter()
            os.write(fd, uploads[i % len(uploads)]["raw"])
            os.fdatasync(fd)
            times.append(time.perf_counter() - s)
    finally:
        os.close(fd)
        path.unlink()
    wall = time.perf_counter() - t0
    nbytes = sum(len(uploads[i % len(uploads)]["raw"]) for i in range(count))
    return _summary(count, wall, nbytes, times, rss=None)


def _summary(count, wall, nbytes, times, rss):
    times = sorted(times)
    return {
        "uploads": count,
        "seconds": wall,
        "uploads_per_s": count / wall,
        "MB_per_s": nbytes / wall / 1e6,
        "p50_ms": 1e3 * statistics.median(times) if times else None,
        "p99_ms": 1e3 * times[min(len(times) - 1, int(0.99 * len(times)))] if times else None,
        "server_peak_rss_MB": rss,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process: steadier than wall time on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _Proc:
    def __init__(self, cmd, url, env=None, cwd=None, log=None):
        self.url = url
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[:4]} exited with {self.proc.returncode}")
            try:
                httpx.get(url + "/v1/status", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def _drive(
    url: str,
    uploads: list[dict],
    transport: str,
    count: int,
    concurrency: int,
    time_limit: float,
    tag: str,
):
    import httpx

    latencies, sent, failures = [], 0, 0
    deadline = time.monotonic() + time_limit
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one(i: int):
            nonlocal sent, failures
            async with sem:
                if time.monotonic() > deadline:
                    return
                u = uploads[i % len(uploads)]
                h = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": f"{tag}-{i}"}
                if transport == "json":
                    h["Content-Type"] = "application/json"
                    body = u["json"]
                else:
                    h.update(
                        {
                            "Content-Type": "application/octet-stream",
                            "X-PTTH-Weight": str(u["weight"]),
                            "X-PTTH-Kind": "delta",
                        }
                    )
                    body = u["raw"]
                s = time.perf_counter()
                r = await client.post("/v1/updates", content=body, headers=h)
                latencies.append(time.perf_counter() - s)
                if r.status_code == 200:
                    sent += len(body)
                else:
                    failures += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - t0
    return latencies, sent, failures, wall


def bench_http(
    kind: str,
    transport: str,
    model_path: Path,
    work: Path,
    uploads,
    count: int,
    concurrency: int,
    time_limit: float,
    extra=(),
) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(work / f"{kind}-{transport}.log", "wb") as log:
        return _bench_http(
            kind,
            transport,
            model_path,
            work,
            uploads,
            count,
            concurrency,
            time_limit,
            extra,
            url,
            port,
            log,
        )


def _bench_http(
    kind,
    transport,
    model_path,
    work,
    uploads,
    count,
    concurrency,
    time_limit,
    extra,
    url,
    port,
    log,
) -> dict:
    if kind == "ptth":
        state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
        (work / "tokens").write_text(TOKEN + "\n")
        (work / "admin").write_text(ADMIN + "\n")
        cmd = [
            sys.executable,
            "-m",
            "ptth.cli",
            "serve",
            str(model_path),
            "--state",
            str(state),
            "--port",
            str(port),
            "--tokens",
            str(work / "tokens"),
            "--admin-token-file",
            str(work / "admin"),
            "--no-access-log",
            *extra,
        ]
        proc = _Proc(cmd, url, log=log)
    else:
        env = dict(os.environ, PLAIN_MODEL=str(model_path))
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "plain_server:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        proc = _Proc(cmd, url, env=env, cwd=HERE, log=log)
    cpu0 = _cpu_seconds(proc.proc.pid)
    try:
        lat, sent, failures, wall = asyncio.run(
            _drive(url, uploads, transport, count, concurrency, time_limit, f"{kind}{transport}")
        )
        import httpx

        accepted = httpx.get(url + "/v1/status", timeout=30).json()["accepted"]
        rss = _peak_rss_mb(proc.proc.pid)
        cpu1 = _cpu_seconds(proc.proc.pid)
    finally:
        proc.stop()
    res = _summary(len(lat), wall, sent, lat, rss)
    res.update(failures=failures, accepted_by_server=accepted)
    if cpu0 is not None and cpu1 is not None and lat:
        res["server_cpu_ms_per_upload"] = 1e3 * (cpu1 - cpu0) / len(lat)
    return res


def run(
    params: int, count: int, concurrency: int, time_limit: float, distinct: int, modes: list[str]
) -> dict:
    template = make_model(params)
    n = sum(v.size for v in template.values())
    uploads = make_uploads(template, distinct)
    results = {
        "params": n,
        "raw_MB": len(uploads[0]["raw"]) / 1e6,
        "json_MB": len(uploads[0]["json"]) / 1e6,
        "count": count,
        "concurrency": concurrency,
        "load_before": os.getloadavg()[0],
        "backend": ptth.backend,
        "modes": {},
    }
    with tempfile.TemporaryDirectory(
        prefix="ptth-load-", dir=os.environ.get("PTTH_BENCH_DIR")
    ) as tmp:
        work = Path(tmp)
        model_path = work / "model.ptth"
        ptth.dump(template, model_path)
        table = {
            "aggregator": lambda: bench_aggregator(template, uploads, count),
            "wal-alone": lambda: bench_wal(work, uploads, count),
            "ingest-buffer": lambda: bench_ingest(template, uploads, count, "buffer"),
            "ingest-decoder": lambda: bench_ingest(template, uploads, count, "decoder"),
            "ptth-raw": lambda: bench_http(
                "ptth", "raw", model_path, work, uploads, count, concurrency, time_limit
            ),
            "ptth-raw-nofsync": lambda: bench_http(
                "ptth",
                "raw",
                model_path,
                work,
                uploads,
                count,
                concurrency,
                time_limit,
                ("--no-fsync",),
            ),
            "ptth-json": lambda: bench_http(
                "ptth", "json", model_path, work, uploads, count, concurrency, time_limit
            ),
            "plain-raw": lambda: bench_http(
                "plain", "raw", model_path, work, uploads, count, concurrency, time_limit
            ),
            "plain-json": lambda: bench_http(
                "plain", "json", model_path, work, uploads, count, concurrency, time_limit
            ),
        }
        for mode in modes:
            c0 = time.process_time()
            res = table[mode]()
            if "server_cpu_ms_per_upload" not in res and res["uploads"]:
                # In-process modes: this process's CPU (all threads) per upload.
                res["server_cpu_ms_per_upload"] = 1e3 * (time.process_time() - c0) / res["uploads"]
            results["modes"][mode] = res
    results["load_after"] = os.getloadavg()[0]
    m = results["modes"]

    def ratio(a, b):
        if a in m and b in m and m[b]["uploads_per_s"]:
            return m[a]["uploads_per_s"] / m[b]["uploads_per_s"]
        return None

    results["ratios"] = {
        "ptth-raw / aggregator (target >= 0.8)": ratio("ptth-raw", "aggregator"),
        "ptth-raw-nofsync / aggregator": ratio("ptth-raw-nofsync", "aggregator"),
        "ptth-raw / plain-raw (target >= 3)": ratio("ptth-raw", "plain-raw"),
        "ptth-json / plain-json (target >= 3)": ratio("ptth-json", "plain-json"),
        "ptth-json / aggregator": ratio("ptth-json", "aggregator"),
        "ingest-buffer / ingest-decoder": ratio("ingest-buffer", "ingest-decoder"),
    }
    return results


def report(results: dict) -> str:
    lines = [
        (
            f"ptth serve load benchmark: {results['params']:,} parameters, raw "
            f"{results['raw_MB']:.0f} MB / JSON {results['json_MB']:.0f} MB per upload, "
            f"{results['count']} uploads per mode, {results['concurrency']} concurrent, "
            f"load {results['load_before']:.2f} -> {results['load_after']:.2f}"
        ),
        (
            f"{'mode':<18}{'uploads/s':>10}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'peak RSS MB':>13}{'CPU ms/upload':>15}"
        ),
    ]
    for mode, r in results["modes"].items():
        rss = f"{r['server_peak_rss_MB']:.0f}" if r.get("server_peak_rss_MB") else "-"
        cpu = r.get("server_cpu_ms_per_upload")
        cpu_s = f"{cpu:.0f}" if cpu is not None else "-"
        lines.append(
            f"{mode:<18}{r['uploads_per_s']:>10.2f}{r['MB_per_s']:>9.0f}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{rss:>13}{cpu_s:>15}"
            + (f"  ({r['failures']} failed)" if r.get("failures") else "")
        )
    for name, v in results["ratios"].items():
        if v is not None:
            lines.append(f"  {name}: {v:.2f}x")
    return "\n".join(lines)


ALL_MODES = [
    "aggregator",
    "ingest-buffer",
    "ingest-decoder",
    "wal-alone",
    "ptth-raw",
    "ptth-raw-nofsync",
    "ptth-json",
    "plain-raw",
    "plain-json",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=int, default=25_000_000)
    p.add_argument("--count", type=int, default=12, help="uploads per mode")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--distinct", type=int, default=3, help="distinct uploads, reused")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per mode")
    p.add_argument("--modes", default=",".join(ALL_MODES))
    p.add_argument("--json", help="save the results here")
    args = p.parse_args(argv)
    res = run(
        args.params,
        args.count,
        args.concurrency,
        args.time_limit,
        args.distinct,
        args.modes.split(","),
    )
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
