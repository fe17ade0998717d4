"""ptth serve as a real process on 127.0.0.1, driven by a real httpx client.

Helpers here (ServerProcess, the uploads, the NumPy FedAvg reference) are
imported by the other tests/test_server_*.py files.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ptth

# The server extra (ptth[server]); the test extra installs it. A bare environment
# (e.g. .ci/asan.sh's) skips these tests instead of failing to collect.
httpx = pytest.importorskip("httpx")
pytest.importorskip("ptth.server")

SHAPES = {"embed.weight": (64, 48), "head.weight": (48, 16), "head.bias": (16,)}
CLIENT_TOKENS = ["client-token-alpha-7f3e9c", "client-token-beta-1b2d44"]
ADMIN_TOKEN = "admin-token-gamma-99aa01"
BOOT_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_template(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in SHAPES.items()}


class ServerProcess:
    """``ptth serve`` in a subprocess; its stdout+stderr go to ``log_path``."""

    def __init__(self, tmp: Path, model: Path, *extra: str, state: Path | None = None):
        self.tmp = tmp
        self.model = model
        self.state = state or tmp / "state"
        self.extra = list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        tokens = tmp / "tokens.txt"
        tokens.write_text("# clients\n" + "\n".join(CLIENT_TOKENS) + "\n")
        admin = tmp / "admin.txt"
        admin.write_text(ADMIN_TOKEN + "\n")
        self.args = ["--tokens", str(tokens), "--admin-token-file", str(admin)]
        self.log_path = tmp / "server.log"
        self.starts = 0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ptth.cli",
            "serve",
            str(self.model),
            "--state",
            str(self.state),
            "--port",
            str(self.port),
            *self.args,
            *self.extra,
        ]

    def start(self, wait: bool = True) -> ServerProcess:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/v1/status", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not come up:\n{self.log()}")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def run_to_exit(self, timeout: float = 60) -> tuple[int, str]:
        """Start and wait for the process to end by itself (a refused start)."""
        self.start(wait=False)
        code = self.proc.wait(timeout)
        return code, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict:
        return httpx.get(self.url + "/v1/status", timeout=10).json()

    def close_round(self, **params) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/rounds/close",
            params=params,
            timeout=60,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )

    def model_now(self) -> tuple[int, dict]:
        r = httpx.get(
            self.url + "/v1/model",
            params={"dtype": "original", "compress": "none"},
            headers=auth(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return int(r.headers["x-ptth-round"]), ptth.loads(r.content, copy=True)


def auth(token: str = CLIENT_TOKENS[0]) -> dict:
    return {"Authorization": f"Bearer {token}"}


# ---- uploads ------------------------------------------------------------------


class Upload:
    """One client's update: what it sends, and what the reference folds."""

    def __init__(self, key: str, values: dict, weight: float, kind: str, encoding: str):
        self.key, self.values, self.weight, self.kind, self.encoding = (
            key,
            values,
            weight,
            kind,
            encoding,
        )

    def request(self) -> dict:
        """httpx.post keyword arguments for this upload."""
        h = {**auth(), "Idempotency-Key": self.key}
        if self.encoding == "ios-json":
            blob = ptth.dumps(self.values)  # the iOS SDK: uncompressed float32
            body = {
                "weights_data": base64.b64encode(blob).decode(),
                "sample_count": self.weight,
                "update_format": "delta" if self.kind == "delta" else "weights",
                "device": "iPhone15,2",
                "train_loss": 0.25,
            }
            # Apple's JSONSerialization escapes every '/' of the base64.
            text = json.dumps(body).replace("/", "\\/")
            return {"content": text.encode(), "headers": {**h, "Content-Type": "application/json"}}
        h.update(
            {
                "X-PTTH-Weight": repr(self.weight),
                "X-PTTH-Kind": self.kind,
                "Content-Type": "application/octet-stream",
            }
        )
        if self.encoding == "android":
            h["X-PTTH-Byteorder"] = ">"
            return {"content": big_endian_blob(self.values), "headers": h}
        if self.encoding == "f16-zlib":
            return {"content": ptth.dumps(self.values, compress=6), "headers": h}
        return {"content": ptth.dumps(self.values), "headers": h}


def big_endian_blob(tensors: dict) -> bytes:
    """A blob as the Android extractor writes it, built with struct (not ptth)."""
    out = [b"PTTH", struct.pack(">II", 1, len(tensors))]
    for name, arr in tensors.items():
        nb = name.encode()
        out.append(struct.pack(">I", len(nb)) + nb + struct.pack(">I", arr.ndim))
        out.append(struct.pack(f">{arr.ndim}I", *arr.shape))
        payload = np.ascontiguousarray(arr, dtype=">f4").tobytes()
        out.append(struct.pack(">II", 0, len(payload)) + payload)
    return b"".join(out)


def make_uploads(template: dict, n: int, seed: int = 1, prefix: str = "u") -> list[Upload]:
    """A mix: raw float32, iOS JSON, Android big-endian, float16+zlib, partial, full weights."""
    rng = np.random.default_rng(seed)
    encodings = ["raw", "ios-json", "android", "f16-zlib", "partial", "full"]
    out = []
    for i in range(n):
        enc = encodings[i % len(encodings)]
        weight = float(rng.integers(1, 200))
        delta = {
            k: (rng.standard_normal(v.shape) * 0.01).astype(np.float32) for k, v in template.items()
        }
        kind = "delta"
        if enc == "f16-zlib":
            delta = {k: v.astype(np.float16) for k, v in delta.items()}
        elif enc == "partial":
            delta = {k: v for k, v in delta.items() if k != "embed.weight"}
            enc = "raw"
        elif enc == "full":
            delta = {k: template[k] + v for k, v in delta.items()}
            kind, enc = "full", ("ios-json" if i % 2 else "raw")
        out.append(Upload(f"{prefix}-{i}", delta, weight, kind, enc))
    return out


def fedavg(template: dict, uploads: list[Upload], lr: float = 1.0) -> dict:
    """NumPy FedAvg with per-parameter weight sums (partial updates), in float64."""
    new = {}
    for k, t in template.items():
        acc = np.zeros(t.shape, np.float64)
        wsum = 0.0
        for u in uploads:
            if k not in u.values:
                continue
            x = u.values[k].astype(np.float64)
            if u.kind == "full":
                x = x - t.astype(np.float64)
            acc += u.weight * x
            wsum += u.weight
        mean = acc / wsum if wsum else acc
        new[k] = (t.astype(np.float64) + lr * mean).astype(t.dtype)
    return new


def assert_model_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, w in want.items():
        assert got[k].dtype == w.dtype and got[k].shape == w.shape, k
        np.testing.assert_allclose(got[k], w, rtol=1e-6, atol=1e-7, err_msg=k)


async def post_all(url: str, uploads: list[Upload], concurrency: int = 16) -> dict:
    """Post every upload from concurrent tasks; key -> (status, json or None)."""
    results: dict = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(u: Upload):
            async with sem:
                try:
                    r = await client.post("/v1/updates", **u.request())
                    results[u.key] = (r.status_code, r.json())
                except httpx.HTTPError as exc:
                    results[u.key] = (None, repr(exc))

        await asyncio.gather(*(one(u) for u in uploads))
    return results


# ---- fixtures -------------------------------------------------------------------


@pytest.fixture
def template():
    return make_template()


@pytest.fixture
def model_file(tmp_path, template):
    path = tmp_path / "model.ptth"
    ptth.dump(template, path)
    return path


@pytest.fixture
def server(tmp_path, model_file):
    srv = ServerProcess(tmp_path, model_file, "--request-timeout", "2").start()
    yield srv
    srv.stop()


# ---- tests ---------------------------------------------------------------------


def test_mixed_clients_round_equals_numpy_fedavg(server, template):
    uploads = make_uploads(template, 36)
    results = asyncio.run(post_all(server.url, uploads))
    assert all(
        s == 200 and r["accepted"] and not r["duplicate"] and r["round"] == 1
        for s, r in results.values()
    ), results
    st = server.status()
    assert st["accepted"] == 36 and st["round"] == 1
    assert st["total_weight"] == pytest.approx(sum(u.weight for u in uploads))
    r = server.close_round()
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["round"] == 1 and summary["accepted"] == 36 and summary["next_round"] == 2
    rnd, model = server.model_now()
    assert rnd == 2
    assert_model_equal(model, fedavg(template, uploads))
    # The published file holds the same model, and the round's record its updates' metadata.
    assert_model_equal(ptth.load(server.state / summary["model"], copy=True), model)
    detail = json.loads((server.state / "rounds" / "round-000001.json").read_text())
    assert sorted(u["key"] for u in detail["updates"]) == sorted(u.key for u in uploads)
    ios = [u for u in detail["updates"] if u["transport"] == "json"]
    assert ios and all(u["metadata"] == {"device": "iPhone15,2", "train_loss": 0.25} for u in ios)


def test_default_model_download_is_float16_zlib_with_etag(server, template):
    r = httpx.get(server.url + "/v1/model", headers=auth())
    assert r.status_code == 200 and r.headers["x-ptth-round"] == "1"
    assert ptth.detect_wrapper(r.content) == "zlib"
    got = ptth.loads(r.content)
    for k, t in template.items():
        assert got[k].dtype == np.float16
        np.testing.assert_array_equal(got[k], t.astype(np.float16))
    etag = r.headers["etag"]
    again = httpx.get(server.url + "/v1/model", headers={**auth(), "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    assert httpx.get(server.url + "/v1/model").status_code == 401
    raw = httpx.get(
        server.url + "/v1/model", params={"dtype": "float32", "compress": "none"}, headers=auth()
    )
    assert ptth.detect_wrapper(raw.content) == "none" and raw.headers["etag"] != etag
    bad = httpx.get(server.url + "/v1/model", params={"compress": "11"}, headers=auth())
    assert bad.status_code == 400


def _expected_error(blob: bytes) -> ptth.PTTHError:
    with pytest.raises(ptth.PTTHError) as info:
        ptth.loads(blob)
    return info.value


def test_malformed_and_unauthorized_requests(server, template):
    good = ptth.dumps({k: np.zeros_like(v) for k, v in template.items()})
    h = {**auth(), "X-PTTH-Weight": "5", "X-PTTH-Kind": "delta"}
    c = httpx.Client(base_url=server.url, timeout=30)
    n = 0

    def post(body, headers, key=None):
        nonlocal n
        n += 1
        return c.post(
            "/v1/updates", content=body, headers={"Idempotency-Key": key or f"bad-{n}", **headers}
        )

    for blob in (good[:-7], b"XTTH" + good[4:], good + b"\0", ptth.compress(good)[:-3]):
        want = _expected_error(blob)
        r = post(blob, h)
        assert r.status_code == 400, r.text
        body = r.json()
        assert (body["reason"], body["offset"], body["record"]) == (
            want.reason,
            want.offset,
            want.record,
        )
        assert body["accepted"] is False
    unknown = ptth.dumps({"nope": np.zeros(3, np.float32)})
    r = post(unknown, h)
    assert r.status_code == 400 and r.json()["reason"] == "unknown_name"
    nan = ptth.dumps({"head.bias": np.full(16, np.nan, np.float32)})
    assert post(nan, h).json()["reason"] == "nonfinite"
    for headers, reason in [
        ({**auth(), "X-PTTH-Kind": "delta"}, "missing_weight"),
        ({**auth(), "X-PTTH-Weight": "-1", "X-PTTH-Kind": "delta"}, "bad_weight"),
        ({**auth(), "X-PTTH-Weight": "nan", "X-PTTH-Kind": "delta"}, "bad_weight"),
        ({**auth(), "X-PTTH-Weight": "1"}, "missing_kind"),
        ({**auth(), "X-PTTH-Weight": "1", "X-PTTH-Kind": "sideways"}, "bad_kind"),
        ({**h, "X-PTTH-Byteorder": "middle"}, "bad_byteorder"),
    ]:
        r = post(good, headers)
        assert (r.status_code, r.json()["reason"]) == (400, reason), r.text
    r = c.post("/v1/updates", content=good, headers=h)
    assert (r.status_code, r.json()["reason"]) == (400, "missing_idempotency_key")
    for body, reason in [
        (b'{"weights_data": "UFRUSA", "sample_count": 1, "update_format": "delta"}', "bad_base64"),
        (b'{"weights_data": "UFRUSA==", "sample_count": 1}', "missing_field"),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": 0, "update_format": "delta"}',
            "bad_weight",
        ),
        (
            b'{"weights_data": "UFRUSA==", "sample_count": 1, "update_format": "grads"}',
            "bad_update_format",
        ),
        (b'{"weights_data": "UFRUSA==", "sample_count": 1, "update_format": "delta",}', "bad_json"),
    ]:
        r = post(body, {**auth(), "Content-Type": "application/json"})
        assert (r.status_code, r.json()["reason"]) == (400, reason), r.text
    truncated_json = {
        "weights_data": base64.b64encode(good[:-5]).decode(),
        "sample_count": 2,
        "update_format": "delta",
    }
    r = c.post("/v1/updates", json=truncated_json, headers={**auth(), "Idempotency-Key": "tj"})
    assert r.status_code == 400 and r.json()["reason"] == "truncated"
    # Tokens: none, wrong, the admin's, a wrong scheme.
    no_auth = {"X-PTTH-Weight": "5", "X-PTTH-Kind": "delta"}
    for headers in (
        {},
        auth("client-token-alpha-7f3e9d"),
        auth(ADMIN_TOKEN),
        {"Authorization": f"Basic {CLIENT_TOKENS[0]}"},
    ):
        r = post(good, {**no_auth, **headers})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = c.post("/v1/rounds/close", headers=auth())
    assert r.status_code == 401
    st = server.status()
    assert st["accepted"] == 0 and st["round"] == 1
    assert st["rejected"]["unauthorized"] == 5 and st["rejected"]["truncated"] == 2
    # The second token works, and a rejected update changed nothing.
    ok = post(good, {**h, **auth(CLIENT_TOKENS[1])})
    assert ok.status_code == 200 and server.status()["accepted"] == 1


def test_oversized_bodies_get_413(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file, "--max-body", "4096").start()
    try:
        big = ptth.dumps(template)
        assert len(big) > 4096
        h = {**auth(), "X-PTTH-Weight": "1", "X-PTTH-Kind": "delta", "Idempotency-Key": "big"}
        r = httpx.post(srv.url + "/v1/updates", content=big, headers=h)
        assert (r.status_code, r.json()["reason"]) == (413, "body_too_large")

        def chunks():  # no Content-Length: chunked transfer, cut off while it streams
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        r = httpx.post(srv.url + "/v1/updates", content=chunks(), headers=h)
        assert (r.status_code, r.json()["reason"]) == (413, "body_too_large")
        small = ptth.dumps({"head.bias": np.ones(16, np.float32)})
        r = httpx.post(
            srv.url + "/v1/updates",
            content=iter([small[:10], small[10:]]),
            headers={**h, "Idempotency-Key": "small"},
        )
        assert r.status_code == 200, r.text
        assert srv.status()["rejected"] == {"body_too_large": 2}
    finally:
        srv.stop()


def _stalled_upload(url_port: int, sent: int = 100, length: int = 100_000) -> socket.socket:
    """Headers and the first bytes of a body, then silence."""
    s = socket.create_connection(("127.0.0.1", url_port))
    head = (
        f"POST /v1/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_TOKENS[0]}"
        f"\r\nIdempotency-Key: stall-{time.monotonic_ns()}\r\nX-PTTH-Weight: 1\r\n"
        f"X-PTTH-Kind: delta\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    s.sendall(head.encode() + b"PTTH" + b"\0" * (sent - 4))
    return s


def _read_status(s: socket.socket, timeout: float) -> int:
    s.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ")[1])


def test_stalled_uploads_time_out_and_free_their_slots(tmp_path, model_file, template):
    srv = ServerProcess(
        tmp_path, model_file, "--request-timeout", "1.5", "--max-concurrent", "2"
    ).start()
    try:
        stalled = [_stalled_upload(srv.port) for _ in range(2)]
        deadline = time.monotonic() + 10
        while srv.status()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server reads the headers of both
        assert srv.status()["in_flight"] == 2
        good = ptth.dumps({"head.bias": np.ones(16, np.float32)})
        h = {**auth(), "X-PTTH-Weight": "1", "X-PTTH-Kind": "delta", "Idempotency-Key": "g1"}
        busy = httpx.post(srv.url + "/v1/updates", content=good, headers=h)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["reason"] == "overloaded"
        t0 = time.monotonic()
        assert [_read_status(s, 10) for s in stalled] == [408, 408]
        # Without the server's 1.5 s timeout no answer would come at all.
        assert time.monotonic() - t0 < 10
        for s in stalled:
            s.close()
        ok = httpx.post(srv.url + "/v1/updates", content=good, headers=h)
        assert ok.status_code == 200 and ok.json()["duplicate"] is False
        st = srv.status()
        assert st["in_flight"] == 0 and st["accepted"] == 1
        assert st["rejected"] == {"overloaded": 1, "timeout": 2}
    finally:
        srv.stop()


def test_retries_with_one_key_count_once_also_across_restart(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    try:
        u = make_uploads(template, 1, seed=5, prefix="retry")[0]
        same = [u] * 8
        results = asyncio.run(_post_same(srv.url, same))
        assert all(s == 200 for s, _ in results)
        assert sorted(r["duplicate"] for _, r in results) == [False] + [True] * 7
        assert srv.status()["accepted"] == 1
        srv.kill9()
        srv.start()
        r = httpx.post(srv.url + "/v1/updates", **u.request())
        assert r.status_code == 200 and r.json() == {
            "round": 1,
            "accepted": True,
            "duplicate": True,
            "key": u.key,
        }
        assert srv.status()["accepted"] == 1
        assert srv.close_round().status_code == 200
        # Round 2: the key is still known (duplicate of round 1), and a round-1 update is 409.
        r = httpx.post(srv.url + "/v1/updates", **u.request())
        assert r.json()["duplicate"] is True and r.json()["round"] == 1
        late = make_uploads(template, 1, seed=6, prefix="late")[0]
        req = late.request()
        req["headers"]["X-PTTH-Round"] = "1"
        r = httpx.post(srv.url + "/v1/updates", **req)
        assert (r.status_code, r.json()["reason"], r.json()["round"]) == (409, "round_closed", 2)
        req["headers"]["X-PTTH-Round"] = "3"
        r = httpx.post(srv.url + "/v1/updates", **req)
        assert (r.status_code, r.json()["reason"]) == (409, "round_not_open")
        req["headers"]["X-PTTH-Round"] = "2"
        assert httpx.post(srv.url + "/v1/updates", **req).status_code == 200
        rnd, model = srv.model_now()
        assert rnd == 2
        assert_model_equal(model, fedavg(template, [u]))
    finally:
        srv.stop()


async def _post_same(url, uploads):
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        rs = await asyncio.gather(*(client.post("/v1/updates", **u.request()) for u in uploads))
    return [(r.status_code, r.json()) for r in rs]


def test_close_round_needs_admin_and_refuses_an_empty_round(server, template):
    r = server.close_round()
    assert r.status_code == 409 and r.json()["reason"] == "empty_round"
    r = server.close_round(allow_empty="1")
    assert r.status_code == 200 and r.json()["accepted"] == 0
    rnd, model = server.model_now()
    assert rnd == 2
    assert_model_equal(model, template)
    r = httpx.post(server.url + "/v1/rounds/close", headers=auth("admin-token-gamma-99aa02"))
    assert r.status_code == 401


def test_tokens_never_appear_in_logs_status_or_metrics(server, template):
    uploads = make_uploads(template, 6, prefix="sec")
    asyncio.run(post_all(server.url, uploads))
    wrong = "client-token-WRONG-5e5e5e"
    httpx.post(
        server.url + "/v1/updates", content=b"PTTH", headers={**auth(wrong), "Idempotency-Key": "w"}
    )
    server.close_round()
    pages = [httpx.get(server.url + p).text for p in ("/", "/v1/status", "/metrics")]
    assert "ptth_round 2" in pages[2] and '"round":2' in pages[1]
    server.stop()
    text = server.log() + "".join(pages)
    for p in server.state.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".log"):
            text += p.read_text(errors="replace")
    assert "POST /v1/updates" in server.log()  # the log was captured
    for secret in [*CLIENT_TOKENS, ADMIN_TOKEN, wrong]:
        assert secret not in text


def test_state_from_another_model_is_refused(tmp_path, model_file, template):
    srv = ServerProcess(tmp_path, model_file).start()
    srv.stop()
    other = tmp_path / "other.ptth"
    ptth.dump(make_template(seed=9), other)
    srv2 = ServerProcess(tmp_path, other, state=srv.state)
    code, log = srv2.run_to_exit()
    assert code == 1 and "another model file" in log


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_models_in_other_formats(tmp_path, template, fmt):
    """MODEL may be safetensors or .npz (ptth.convert); a round over it is the NumPy FedAvg,
    and every accepted update's answer carries its norm."""
    path = tmp_path / f"model.{fmt}"
    ptth.convert.save_model(template, path)
    srv = ServerProcess(tmp_path, path).start()
    try:
        uploads = make_uploads(template, 6)
        results = asyncio.run(post_all(srv.url, uploads))
        assert all(s == 200 and r["accepted"] for s, r in results.values()), results
        assert all(r["norm"] > 0 and r["parameters"] >= 1 for _, r in results.values())
        assert srv.close_round().status_code == 200
        _, model = srv.model_now()
        assert_model_equal(model, fedavg(template, uploads))
    finally:
        srv.stop()
    other = tmp_path / "bad"
    other.mkdir()
    bad = other / "model.txt"
    bad.write_text("not a model")
    code, log = ServerProcess(other, bad).run_to_exit()
    assert code != 0 and "not_ptth" in log and "Traceback" not in log


def test_serve_demo_runs_a_checked_round_with_a_kill():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptth.cli",
            "serve",
            "--demo",
            "--params",
            "100000",
            "--clients",
            "12",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kill -9" in out.stdout and "each client once: OK" in out.stdout
    assert "round 1: 12 updates" in out.stdout


def test_serve_help_shows_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "ptth.cli", "serve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "example:" in out.stdout and "--admin-token-file" in out.stdout


def _ios_blob(tensors: dict, float64_names: set) -> bytes:
    """The iOS SDK's blob: float32 payloads, but code 1 kept for float64 parameters."""
    out = [b"PTTH", struct.pack(">II", 1, len(tensors))]
    for name, arr in tensors.items():
        nb = name.encode()
        out.append(struct.pack(">I", len(nb)) + nb + struct.pack(">I", arr.ndim))
        out.append(struct.pack(f">{arr.ndim}I", *arr.shape))
        payload = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        out.append(struct.pack(">II", 1 if name in float64_names else 0, len(payload)) + payload)
    return b"".join(out)


def test_server_byteorder_auto_and_the_ios_float64_quirk(tmp_path):
    template = make_template()
    template["head.bias"] = template["head.bias"].astype(np.float64)
    model = tmp_path / "model.ptth"
    ptth.dump(template, model)
    srv = ServerProcess(tmp_path, model, "--byteorder", "auto").start()
    try:
        rng = np.random.default_rng(40)
        deltas = [
            {
                k: (rng.standard_normal(v.shape) * 0.01).astype(np.float32)
                for k, v in template.items()
            }
            for _ in range(3)
        ]
        h = {**auth(), "X-PTTH-Kind": "delta", "Content-Type": "application/octet-stream"}
        # Android, no byte-order header: the server's --byteorder auto reads it.
        r = httpx.post(
            srv.url + "/v1/updates",
            content=big_endian_blob(deltas[0]),
            headers={**h, "X-PTTH-Weight": "3", "Idempotency-Key": "android"},
        )
        assert r.status_code == 200, r.text
        # iOS JSON: head.bias (float64 on the phone) arrives as code 1 with float32 bytes.
        body = {
            "weights_data": base64.b64encode(_ios_blob(deltas[1], {"head.bias"})).decode(),
            "sample_count": 5,
            "update_format": "delta",
        }
        r = httpx.post(
            srv.url + "/v1/updates", json=body, headers={**auth(), "Idempotency-Key": "ios"}
        )
        assert r.status_code == 200, r.text
        # The same blob raw, without X-PTTH-Relabel-Float32, is a length mismatch.
        r = httpx.post(
            srv.url + "/v1/updates",
            content=_ios_blob(deltas[2], {"head.bias"}),
            headers={**h, "X-PTTH-Weight": "2", "Idempotency-Key": "raw-ios"},
        )
        assert (r.status_code, r.json()["reason"]) == (400, "length_mismatch")
        r = httpx.post(
            srv.url + "/v1/updates",
            content=_ios_blob(deltas[2], {"head.bias"}),
            headers={
                **h,
                "X-PTTH-Weight": "2",
                "Idempotency-Key": "raw-ios",
                "X-PTTH-Relabel-Float32": "1",
            },
        )
        assert r.status_code == 200, r.text
        assert srv.close_round().status_code == 200
        ups = [
            Upload(f"x{i}", d, w, "delta", "raw")
            for i, (d, w) in enumerate(zip(deltas, [3.0, 5.0, 2.0]))
        ]
        assert_model_equal(srv.model_now()[1], fedavg(template, ups))
    finally:
        srv.stop()
