"""The `ptth` command, run as a subprocess on each backend."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from blobs import header, record

TENSORS = {
    "conv.weight": np.zeros((4, 3, 3, 3), np.float32),
    "fc.bias": np.zeros(10, np.float64),
    "steps": np.array(7, np.int32),
    "half": np.zeros((2, 5), np.float16),
    "gewicht.ä": np.zeros((0, 3), np.float32),
}
ROWS = [
    ("conv.weight", "4x3x3x3", "float32", 432),
    ("fc.bias", "10", "float64", 80),
    ("steps", "scalar", "int32", 4),
    ("half", "2x5", "float16", 20),
    ("gewicht.ä", "0x3", "float32", 0),
]


def run(backend, *args, command=None):
    env = dict(os.environ, PTTH_BACKEND=backend.backend, PYTHONIOENCODING="utf-8")
    cmd = command or [sys.executable, "-m", "ptth.cli"]
    return subprocess.run(
        cmd + [str(a) for a in args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )


def parse_inspect(stdout):
    lines = stdout.splitlines()
    wrapper = lines[0].split(":", 1)[1].strip()
    assert lines[1].startswith("payload byte order: ")
    assert lines[2].split() == ["name", "shape", "dtype", "bytes"]
    rows = [tuple(line.split()) for line in lines[3:-1]]
    return wrapper, [(n, s, d, int(b)) for n, s, d, b in rows], lines[-1]


@pytest.mark.parametrize(
    "compress, wrapper", [(None, "none"), (6, "zlib"), (1, "gzip"), (9, "deflate")]
)
def test_inspect(backend, tmp_path, compress, wrapper):
    path = tmp_path / "update.ptth"
    backend.dump(TENSORS, path, compress=compress, wrapper=wrapper if compress else None)
    out = run(backend, "inspect", path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    got_wrapper, rows, total = parse_inspect(out.stdout)
    assert got_wrapper == wrapper
    assert rows == ROWS
    assert total.startswith("5 parameters, 129 elements, 536 payload bytes")


def test_inspect_big_endian_option(backend, tmp_path, golden):
    path = tmp_path / "android.ptth"
    path.write_bytes(golden["vector4_android_be"])
    out = run(backend, "inspect", path, "--byteorder", "auto")
    assert out.returncode == 0, out.stderr
    assert parse_inspect(out.stdout)[1] == [("w", "2", "float32", 8)]
    assert "payload byte order: big-endian (decided" in out.stdout  # the decision is shown
    plain = tmp_path / "ios.ptth"
    plain.write_bytes(golden["vector1_float32"])
    out = run(backend, "inspect", plain, "--byteorder", "auto")
    assert "payload byte order: little-endian (decided" in out.stdout


def test_inspect_reads_standard_input(backend, tmp_path):
    blob = backend.dumps(TENSORS, compress=6)
    env = dict(os.environ, PTTH_BACKEND=backend.backend, PYTHONIOENCODING="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "ptth.cli", "inspect", "-"],
        input=blob,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert parse_inspect(out.stdout.decode())[1] == ROWS
    path = tmp_path / "u.ptth"
    path.write_bytes(blob)
    with open(path, "rb") as f:  # a pipe: nothing can seek
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        out = subprocess.run(
            [sys.executable, "-m", "ptth.cli", "inspect", "/dev/stdin"],
            stdin=cat.stdout,
            capture_output=True,
            env=env,
            timeout=120,
        )
        cat.wait()
    assert out.returncode == 0, out.stderr
    assert parse_inspect(out.stdout.decode())[1] == ROWS


def test_inspect_escapes_names(backend, tmp_path):
    """Names are data from an upload: control characters must not reach the terminal."""
    path = tmp_path / "evil.ptth"
    backend.dump(
        {
            "a\nforged line": np.zeros(1, np.float32),
            "\x1b[31mred": np.zeros(1, np.float32),
            "bidi\u202e": np.zeros(1, np.float32),
        },
        path,
    )
    out = run(backend, "inspect", path)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert "a\\nforged line" in out.stdout and "\\x1b[31mred" in out.stdout
    assert len(out.stdout.splitlines()) == 3 + 3 + 1


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_inspect_escapes_names_of_other_formats(backend, tmp_path, fmt):
    """The same for safetensors and .npz files: their names are data too."""
    import ptth.convert as pc

    path = tmp_path / f"evil.{fmt}"
    names = ["a\nforged line", "\x1b[31mred", "bidi\u202e"]
    pc.save_model({n: np.zeros(1, np.float32) for n in names}, path, format=fmt)
    out = run(backend, "inspect", path)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert "a\\nforged line" in out.stdout and "\\x1b[31mred" in out.stdout


@pytest.mark.parametrize(
    "content, reason",
    [
        (header(2) + record("a", [1], 0, b"\x00" * 4), "truncated"),
        (header(1, version=9), "bad_version"),
        (header(0) + b"\x00", "trailing_bytes"),
        (b"GIF89a" + b"\x00" * 20, "not_ptth"),
        (b"", "truncated"),
    ],
)
def test_inspect_bad_file_one_line(backend, tmp_path, content, reason):
    path = tmp_path / "bad.ptth"
    path.write_bytes(content)
    out = run(backend, "inspect", path)
    assert out.returncode != 0
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert reason in lines[0] and "bad.ptth" in lines[0]
    assert "Traceback" not in out.stderr


def test_inspect_missing_file(backend, tmp_path):
    out = run(backend, "inspect", tmp_path / "nope.ptth")
    assert out.returncode != 0
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_inspect_max_size(backend, tmp_path):
    path = tmp_path / "z.ptth"
    backend.dump(TENSORS, path, compress=6)
    for size in ("100", "100B", "0.1kB"):
        out = run(backend, "inspect", path, "--max-size", size)
        assert out.returncode != 0 and "too_large" in out.stderr
        assert len(out.stderr.splitlines()) == 1
    for size in ("1MiB", "unlimited"):
        assert run(backend, "inspect", path, "--max-size", size).returncode == 0
    out = run(backend, "inspect", path, "--max-size", "12 parsecs")
    assert out.returncode == 2 and "not a size" in out.stderr


def test_version_and_help(backend):
    import ptth

    out = run(backend, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"ptth {ptth.__version__}"
    for command in ("inspect", "example", "demo", "bench"):
        out = run(backend, command, "--help")
        assert out.returncode == 0, out.stderr
        assert "example:" in out.stdout and f"ptth {command}" in out.stdout
        assert "``" not in out.stdout and "**" not in out.stdout  # no markup


@pytest.mark.parametrize(
    "extra, wrapper, dtype",
    [
        ([], "none", "float32"),
        (["--dtype", "float16", "--compress", "6"], "zlib", "float16"),
        (["--compress", "1", "--wrapper", "gzip"], "gzip", "float32"),
        (["--compress", "9", "--wrapper", "deflate", "--width", "16"], "deflate", "float32"),
    ],
)
def test_example_then_inspect(backend, tmp_path, extra, wrapper, dtype):
    path = tmp_path / "example.ptth"
    out = run(backend, "example", path, *extra)
    assert out.returncode == 0, out.stderr
    out = run(backend, "inspect", path)
    assert out.returncode == 0, out.stderr
    got_wrapper, rows, total = parse_inspect(out.stdout)
    assert got_wrapper == wrapper
    assert rows[-1][:3] == ("steps", "scalar", "int32")
    assert {r[2] for r in rows[:-1]} == {dtype}
    loaded = backend.load(path)
    assert [
        (k, "x".join(map(str, v.shape)) or "scalar", v.dtype.name, v.nbytes)
        for k, v in loaded.items()
    ] == rows
    assert total.startswith(
        f"{len(rows)} parameters, {sum(v.size for v in loaded.values())} elements"
    )


def test_console_script(backend, tmp_path):
    exe = shutil.which("ptth")
    assert exe, "the ptth console script is not installed"
    path = tmp_path / "e.ptth"
    assert run(backend, "example", path, command=[exe]).returncode == 0
    out = run(backend, "inspect", path, command=[exe])
    assert out.returncode == 0 and "8 parameters" in out.stdout


def test_demo_small_round(backend):
    out = run(backend, "demo", "--params", 20000, "--clients", 5, "--threads", 2, "--level", 1)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"backend {backend.backend}" in out.stdout
    check = [line for line in out.stdout.splitlines() if line.strip().startswith("check")]
    assert len(check) == 1 and ": OK;" in check[0], out.stdout
