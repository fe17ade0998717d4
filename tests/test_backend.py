"""PTTH_BACKEND selection, the one front over two symmetric engines, and build_info()."""

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ptth
import ptth._front as front
from ptth._engine import PRIMITIVES, load

SHOW = (
    "import json, ptth; print(json.dumps({'backend': ptth.backend, "
    "'info': ptth.build_info(), 'loads': ptth.loads.__module__, "
    "'max': ptth.DEFAULT_MAX_SIZE}))"
)


def run_python(code, backend_env, **kw):
    env = dict(os.environ)
    env.pop("PTTH_BACKEND", None)
    if backend_env is not None:
        env["PTTH_BACKEND"] = backend_env
    env.update(kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, **kw
    )


@pytest.mark.parametrize(
    "env, want",
    [
        ("native", "native"),
        ("python", "python"),
        (None, "native"),
        ("auto", "native"),
        ("", "native"),
        (" Python ", "python"),
    ],
)
def test_backend_env(env, want):
    out = run_python(SHOW, env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["backend"] == want
    assert got["info"]["backend"] == want
    assert got["loads"] == "ptth._front"
    assert got["max"] == 512 * 1024 * 1024


@pytest.mark.parametrize("env", ["fast", "c", "pure", "native,python"])
def test_invalid_backend_fails_to_import(env):
    out = run_python("import ptth", env)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "PTTH_BACKEND" in out.stderr


def test_package_reexports_the_front():
    from ptth import _robust  # median and trimmed_mean: written once, on the front's API

    for name in ptth.__all__:
        obj = getattr(ptth, name)
        if callable(obj) and name not in ("PTTHError",):
            home = _robust if name in ("median", "trimmed_mean") else front
            assert obj is getattr(home, name), name
    assert ptth.backend == front.backend


def test_engines_export_the_same_primitives():
    native, pure = load("native"), load("python")
    assert sorted(native.__all__) == sorted(pure.__all__) == sorted(PRIMITIVES)
    for name in ("ByteOrder", "Relabel", "Wrapper", "DType", "Convert", "Accum", "Kind", "Output"):
        n_members = {k: int(v) for k, v in getattr(native, name).__members__.items()}
        p_members = {k: int(v) for k, v in getattr(pure, name).__members__.items()}
        assert n_members == p_members, name


def test_reason_list_is_the_cores():
    assert dict(load("native").reasons()) == ptth.REASONS
    assert dict(load("python").reasons()) == ptth.REASONS
    assert "bad_argument" not in ptth.REASONS  # bad arguments are TypeError / ValueError


def test_build_info():
    info = ptth.build_info()
    assert {"compiler", "simd", "zlib_ng", "backend"} <= info.keys()
    assert info["zlib_ng"] == "2.3.3"
    assert info["backend"] == ptth.backend
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert info["simd"] in info["simd_available"]


def test_build_info_under_python_backend_describes_the_pure_engine():
    out = run_python(SHOW, "python")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["info"]
    assert info["backend"] == "python" and info["zlib_ng"] == "2.3.3"
    assert info["simd"] is None and info["simd_available"] == [] and info["compiler"] is None


def test_runs_with_the_compiled_module_absent(tmp_path):
    """A copy of the package without its compiled module: the pure engine runs alone."""
    pkg = Path(ptth.__file__).parent
    shutil.copytree(
        pkg, tmp_path / "ptth", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    assert not list((tmp_path / "ptth").rglob("_core*.so"))
    code = (
        "import numpy as np, ptth, sys; b = ptth.dumps({'w': np.ones(3, np.float32)}, "
        "compress=6); a = ptth.Aggregator({'w': np.zeros(3, np.float32)}); a.add(b); "
        "print(ptth.backend, ptth.build_info()['simd'], a.apply()['w'].tolist()); "
        "assert 'ptth._native._core' not in sys.modules"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    out = run_python(code, "python", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "None", "[1.0,", "1.0,", "1.0]"]
    demo = subprocess.run(
        [sys.executable, "-m", "ptth.cli", "demo", "--params", "20000", "--clients", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PTTH_BACKEND": "python", "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    assert "OK" in demo.stdout
    # auto on CPython refuses to fall back silently
    out = run_python("import ptth", "auto", env=env, cwd=tmp_path)
    assert out.returncode != 0 and "PTTH_BACKEND=python" in out.stderr


def test_public_api_is_documented():
    for name in ptth.__all__:
        obj = getattr(ptth, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
            if inspect.isclass(obj):
                for meth_name, meth in vars(obj).items():
                    if not meth_name.startswith("_") and inspect.isfunction(meth):
                        assert meth.__doc__, f"{name}.{meth_name}"
    assert "Raises" in ptth.loads.__doc__ and "Example" in ptth.loads.__doc__
