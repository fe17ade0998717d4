"""The operator's status page, rendered by headless Chromium from Debian's packages."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import pytest

import ptth
from test_server import ServerProcess, httpx, make_template, make_uploads, post_all


def _chromium() -> str:
    """The chromium binary; installed with apt when missing (CI must run this test)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            env=env,
            timeout=1200,
            stdout=subprocess.DEVNULL,
        )
        path = shutil.which("chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing and could not be installed with apt-get")
        pytest.skip("chromium is not installed and this is not root on Debian (CI installs it)")
    return path


def _render(chromium: str, url: str) -> str:
    out = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def _cell(dom: str, ident: str) -> str:
    m = re.search(rf'<td id="{ident}"[^>]*>([^<]*)</td>', dom)
    assert m, f"no cell {ident} in:\n{dom}"
    return m.group(1)


def test_status_page_shows_round_and_counts_from_the_server(tmp_path):
    chromium = _chromium()
    template = make_template()
    model = tmp_path / "model.ptth"
    ptth.dump(template, model)
    srv = ServerProcess(tmp_path, model).start()
    try:
        asyncio.run(post_all(srv.url, make_uploads(template, 5, prefix="a")))
        assert srv.close_round().status_code == 200
        uploads = make_uploads(template, 7, seed=3, prefix="b")
        asyncio.run(post_all(srv.url, uploads))
        bad = make_uploads(template, 1, seed=4, prefix="c")[0].request()
        bad["content"] = bad["content"][:-9]
        assert httpx.post(srv.url + "/v1/updates", **bad).status_code == 400
        status = srv.status()
        dom = _render(chromium, srv.url + "/")
        assert _cell(dom, "round") == str(status["round"]) == "2"
        assert _cell(dom, "accepted") == str(status["accepted"]) == "7"
        assert _cell(dom, "rounds_closed") == "1"
        assert _cell(dom, "rejected") == "1 (truncated: 1)"
        assert float(_cell(dom, "total_weight")) == status["total_weight"]
        assert _cell(dom, "failed") == "ok"
        assert _cell(dom, "updated") != "never"
    finally:
        srv.stop()
