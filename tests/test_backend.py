"""PTTH_BACKEND selection, the re-exported API and build_info()."""

import json
import os
import subprocess
import sys

import pytest

import ptth
from blobs import API

SHOW = ("import json, ptth; print(json.dumps({'backend': ptth.backend, "
        "'info': ptth.build_info(), 'loads': ptth.loads.__module__, "
        "'max': ptth.DEFAULT_MAX_SIZE}))")


def run_python(code, backend_env):
    env = dict(os.environ)
    env.pop("PTTH_BACKEND", None)
    if backend_env is not None:
        env["PTTH_BACKEND"] = backend_env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("env, want", [("native", "native"), ("python", "python"),
                                       (None, "native"), ("auto", "native"),
                                       ("", "native"), (" Python ", "python")])
def test_backend_env(env, want):
    out = run_python(SHOW, env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["backend"] == want
    assert got["info"]["backend"] == want
    assert got["loads"].startswith({"native": "ptth._native_api", "python": "ptth._pure"}[want])
    assert got["max"] == 512 * 1024 * 1024


@pytest.mark.parametrize("env", ["fast", "c", "pure", "native,python"])
def test_invalid_backend_fails_to_import(env):
    out = run_python("import ptth", env)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "PTTH_BACKEND" in out.stderr


def test_package_reexports_the_active_backend():
    mod = {"native": "ptth._native_api", "python": "ptth._pure"}[ptth.backend]
    impl = sys.modules[mod]
    for name in API:
        if name != "name":
            assert getattr(ptth, name) is getattr(impl, name), name
    assert ptth.backend == impl.name


def test_build_info():
    info = ptth.build_info()
    assert {"compiler", "simd", "zlib_ng", "backend"} <= info.keys()
    assert info["zlib_ng"] == "2.3.3"
    assert info["backend"] == ptth.backend
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert info["simd"] in info["simd_available"]


def test_build_info_under_python_backend_still_reports_the_core():
    out = run_python(SHOW, "python")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["info"]
    assert info["backend"] == "python" and info["zlib_ng"] == "2.3.3"


def test_backend_module_names(backend):
    assert backend.name in ("native", "python")
    assert backend.DEFAULT_MAX_SIZE == 512 * 1024 * 1024
