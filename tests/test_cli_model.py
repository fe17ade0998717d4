"""`ptth convert`, `ptth aggregate`, `ptth diff` and `ptth inspect` of foreign formats, run
as subprocesses. References are NumPy FedAvg and the safetensors library / np.load.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as stn

import ptth
import ptth.convert as pc


def run(*args, stdin=None):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "ptth.cli", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        input=stdin,
        check=False,
    )


def one_line_error(res, *needles, status=1):
    assert res.returncode == status, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


TEMPLATE = {
    "fc.weight": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    "fc.bias": np.zeros(3, np.float32),
    "bn.num_batches_tracked": np.array(5, np.int64),
}


@pytest.mark.parametrize("command", ["convert", "aggregate", "diff", "inspect"])
def test_help_shows_an_example(command):
    res = run(command, "--help")
    assert res.returncode == 0
    if command != "inspect":
        assert "example:" in res.stdout and f"ptth {command} " in res.stdout


# ---- convert and inspect ---------------------------------------------------------------


def test_convert_and_inspect(tmp_path):
    src = tmp_path / "m.safetensors"
    src.write_bytes(stn.save(TEMPLATE, metadata={"format": "pt"}))
    res = run("convert", src, tmp_path / "m.ptth", "--compress", "6")
    assert res.returncode == 0, res.stderr
    assert "narrowed 1: bn.num_batches_tracked (int64->int32)" in res.stdout
    assert "dropped __metadata__" in res.stdout
    got = ptth.load(tmp_path / "m.ptth")
    assert got["bn.num_batches_tracked"].dtype == np.int32
    ins = run("inspect", src)
    assert ins.returncode == 0, ins.stderr
    lines = ins.stdout.splitlines()
    assert lines[0] == "format: safetensors" and lines[1] == "metadata: format = pt"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:-1]}
    assert rows["bn.num_batches_tracked"] == ["scalar", "int64", "8"]
    assert rows["fc.weight"] == ["3x4", "float32", "48"]
    assert lines[-1].startswith("3 parameters, 16 elements, 68 payload bytes")


def test_convert_json_report(tmp_path):
    src = tmp_path / "m.npz"
    np.savez(src, w=np.ones(3, np.float32), mask=np.ones(2, bool))
    res = run("convert", src, tmp_path / "out.ptth", "--skip-unsupported", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["tensors"] == {"w": ["float32", "float32"]} and "mask" in report["skipped"]


def test_inspect_npz_and_sniffed_formats(tmp_path):
    path = tmp_path / "model.bin"  # no known extension: the first bytes decide
    np.savez(path.open("wb"), a=np.zeros((2, 2), np.float16))
    res = run("inspect", path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "format: npz"
    ptth_file = tmp_path / "upload"
    ptth.dump({"x": np.ones(2, np.float32)}, ptth_file, compress=6)
    res = run("inspect", ptth_file)
    assert res.returncode == 0 and res.stdout.startswith("wrapper: zlib")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1} ', "bad_safetensors"),
        (b"\xff" * 8 + b"{}", "bad_safetensors"),
    ],
)
def test_bad_foreign_files_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    for args in (("inspect", path), ("convert", path, tmp_path / "x.ptth"), ("diff", path, path)):
        res = run(*args)
        one_line_error(res, needle, "bad.safetensors", status=2 if args[0] == "diff" else 1)
    assert not (tmp_path / "x.ptth").exists()


def test_convert_bad_arguments(tmp_path):
    src = tmp_path / "m.npz"
    np.savez(src, w=np.ones(3, np.float32))
    one_line_error(run("convert", src, tmp_path / "out.weird"), "--to")
    one_line_error(run("convert", src, tmp_path / "o.ptth", "--compress", "12"), "compress")
    one_line_error(run("convert", tmp_path / "missing.npz", tmp_path / "o.ptth"), "missing.npz")
    one_line_error(
        run("convert", src, tmp_path / "o.safetensors", "--compress", "1"), "not compressed"
    )
    np.savez(src, w=np.ones(3, np.float32), m=np.ones(1, bool))
    one_line_error(run("convert", src, tmp_path / "o.ptth"), "unsupported_dtype", "'m'")


# ---- diff --------------------------------------------------------------------------


def test_diff(tmp_path):
    a = {
        "w": np.array([1.0, 2.0, np.nan], np.float32),
        "b": np.zeros(2, np.float64),
        "only_a": np.ones(1, np.float32),
    }
    b = {
        "w": np.array([1.0, 2.5, np.nan], np.float32),
        "b": np.array([0.0, -1e-3]),
        "only_b": np.ones(1, np.float32),
    }
    pa, pb = tmp_path / "a.npz", tmp_path / "b.ptth"
    np.savez(pa, **a)
    ptth.dump(b, pb)
    res = run("diff", pa, pb, "--json")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    rows = {r["name"]: r for r in out["tensors"]}
    assert rows["w"]["max_abs"] == 0.5 and rows["w"]["mean_abs"] == pytest.approx(0.5 / 3)
    assert rows["b"]["max_abs"] == pytest.approx(1e-3) and rows["b"]["differing"] == 1
    assert out["only_a"] == ["only_a"] and out["only_b"] == ["only_b"]
    text = run("diff", pa, pb)
    assert text.returncode == 1 and "only in a: only_a" in text.stdout
    assert "they differ" in text.stdout
    same = run("diff", pa, pa)
    assert same.returncode == 0 and "identical within 0" in same.stdout
    np.savez(tmp_path / "c.npz", w=a["w"] + np.float32(1e-4), b=a["b"], only_a=a["only_a"])
    assert run("diff", pa, tmp_path / "c.npz", "--atol", "1e-3").returncode == 0
    assert run("diff", pa, tmp_path / "c.npz").returncode == 1


def test_diff_shapes_and_dtypes(tmp_path):
    np.savez(tmp_path / "a.npz", w=np.zeros((2, 3)), i=np.arange(3))
    np.savez(tmp_path / "b.npz", w=np.zeros((3, 2)), i=np.arange(3, dtype=np.int16))
    res = run("diff", tmp_path / "a.npz", tmp_path / "b.npz", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)["tensors"]}
    assert rows["w"]["status"] == "shape" and rows["i"]["max_abs"] == 0.0
    assert rows["i"]["dtype_a"] == "int64" and rows["i"]["dtype_b"] == "int16"
    assert res.returncode == 1


# ---- aggregate ---------------------------------------------------------------------


def make_round(tmp_path, n=4, seed=0, fmt="safetensors"):
    rng = np.random.default_rng(seed)
    tpath = tmp_path / f"global.{fmt}"
    if fmt == "safetensors":
        tpath.write_bytes(stn.save(TEMPLATE, metadata={"round": "3"}))
    else:
        pc.save_model(TEMPLATE, tpath)
    folder = tmp_path / "up"
    folder.mkdir()
    deltas = []
    for i in range(n):
        d = {
            "fc.weight": rng.standard_normal((3, 4)).astype(np.float32) * np.float32(0.1),
            "fc.bias": rng.standard_normal(3).astype(np.float32) * np.float32(0.1),
            "bn.num_batches_tracked": np.array(i + 1, np.int32),
        }
        ptth.dump(d, folder / f"c{i}.ptth", compress=6 if i % 2 else None)
        deltas.append(d)
    return tpath, folder, deltas


def fedavg(deltas, weights):
    total = sum(weights)
    out = {}
    for k, v in TEMPLATE.items():
        acc = sum(w * d[k].astype(np.float64) for w, d in zip(weights, deltas))
        value = v.astype(np.float64) + acc / total
        out[k] = np.rint(value).astype(np.int32) if v.dtype.kind == "i" else value.astype(v.dtype)
    return out


def test_aggregate_round(tmp_path):
    tpath, folder, deltas = make_round(tmp_path)
    (folder / "bad.ptth").write_bytes(ptth.dumps(deltas[0])[:-3])
    (folder / "wrong_shape.ptth").write_bytes(ptth.dumps({"fc.bias": np.ones(4, np.float32)}))
    weights = [30.0, 10.0, 5.5, 2.0]
    (tmp_path / "w.txt").write_text(
        "# samples per client\n"
        + "".join(f"c{i}.ptth {w}\n" for i, w in enumerate(weights))
        + "bad.ptth 1\nwrong_shape.ptth 1\n"
    )
    out = tmp_path / "new.safetensors"
    res = run(
        "aggregate",
        "--template",
        tpath,
        folder,
        "--weights",
        tmp_path / "w.txt",
        "-o",
        out,
        "--json",
        "--threads",
        2,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["uploads"] == 6 and summary["accepted"] == 4
    assert summary["total_weight"] == sum(weights)
    rejected = {os.path.basename(r["upload"]): r for r in summary["rejected"]}
    assert rejected["bad.ptth"]["reason"] == "truncated"
    assert rejected["bad.ptth"]["offset"] == len(ptth.dumps(deltas[0])) - 3
    assert rejected["wrong_shape.ptth"]["reason"] == "shape_mismatch"
    assert rejected["wrong_shape.ptth"]["record"] == 0
    assert summary["template_conversion"]["narrowed"] == ["bn.num_batches_tracked"]
    new = stn.load_file(str(out))
    expect = fedavg(deltas, weights)
    for k in TEMPLATE:
        assert np.array_equal(new[k], expect[k]), k
    from safetensors import safe_open

    with safe_open(str(out), framework="np") as f:
        assert f.metadata() == {"round": "3"}  # the template's metadata travels on


def test_aggregate_text_summary_and_progress_free_pipe(tmp_path):
    tpath, folder, deltas = make_round(tmp_path, fmt="npz")
    (folder / "junk.ptth").write_bytes(b"GIF89a")
    res = run("aggregate", "--template", tpath, folder, "-o", tmp_path / "new.npz")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no progress line when stderr is not a terminal
    assert "4 accepted, 1 rejected" in res.stdout and "junk.ptth: not_ptth" in res.stdout
    assert "uploads/s" in res.stdout
    with np.load(tmp_path / "new.npz") as z:
        expect = fedavg(deltas, [1.0] * 4)
        for k in TEMPLATE:
            assert np.array_equal(z[k], expect[k])
    fail = run(
        "aggregate", "--template", tpath, folder, "-o", tmp_path / "n2.npz", "--fail-on-reject"
    )
    assert fail.returncode == 1 and (tmp_path / "n2.npz").exists()


def test_aggregate_weights_in_order_list_file_and_kind_full(tmp_path):
    tpath, folder, deltas = make_round(tmp_path, fmt="ptth")
    files = sorted(folder.iterdir())
    full = tmp_path / "full"
    full.mkdir()
    for i, d in enumerate(deltas):  # the same updates sent as full weights
        ptth.dump(
            {
                k: (TEMPLATE[k].astype(np.float64) + d[k]).astype(np.float32)
                for k in ("fc.weight", "fc.bias")
            },
            full / f"f{i}.ptth",
        )
    (tmp_path / "list.txt").write_text("\n".join(str(f) for f in sorted(full.iterdir())))
    (tmp_path / "w.txt").write_text("3\n1\n1\n2\n")
    res = run(
        "aggregate",
        "--template",
        tpath,
        "--list",
        tmp_path / "list.txt",
        "--kind",
        "full",
        "--weights",
        tmp_path / "w.txt",
        "-o",
        tmp_path / "new.ptth",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    new = ptth.load(tmp_path / "new.ptth")
    total = 7.0
    for k in ("fc.weight", "fc.bias"):
        full_vals = [(TEMPLATE[k].astype(np.float64) + d[k]).astype(np.float32) for d in deltas]
        acc = sum(
            w * (f.astype(np.float64) - TEMPLATE[k].astype(np.float64))
            for w, f in zip([3, 1, 1, 2], full_vals)
        )
        assert np.array_equal(new[k], (TEMPLATE[k] + acc / total).astype(np.float32))
    assert int(new["bn.num_batches_tracked"]) == 5  # absent from the uploads: untouched
    assert len(files) == 4


@pytest.mark.parametrize(
    "weights, needle",
    [
        ("1\n2\n", "2 weights for 4 uploads"),
        ("1\n2\nx\n4\n", "w.txt:3"),
        ("1\n0\n1\n1\n", "positive"),
        ("c0.ptth 1\nc1.ptth 1\nc2.ptth 1\n", "no weight for"),
        ("c0.ptth 1\nc9.ptth 1\n", "c9.ptth"),
        ("c0.ptth 1\nc0.ptth 2\n", "second weight"),
        ("c0.ptth nan\n", "positive"),
    ],
)
def test_aggregate_bad_weights_file(tmp_path, weights, needle):
    tpath, folder, _ = make_round(tmp_path)
    (tmp_path / "w.txt").write_text(weights)
    res = run(
        "aggregate",
        "--template",
        tpath,
        folder,
        "--weights",
        tmp_path / "w.txt",
        "-o",
        tmp_path / "new.safetensors",
    )
    one_line_error(res, needle)
    assert not (tmp_path / "new.safetensors").exists()


def test_aggregate_bad_input(tmp_path):
    tpath, folder, _ = make_round(tmp_path)
    out = tmp_path / "new.safetensors"
    one_line_error(run("aggregate", "--template", tpath, tmp_path / "nope", "-o", out), "nope")
    one_line_error(run("aggregate", "--template", tpath, "-o", out), "no uploads")
    (tmp_path / "t.safetensors").write_bytes(b"\x00" * 3)
    one_line_error(
        run("aggregate", "--template", tmp_path / "t.safetensors", folder, "-o", out),
        "bad_safetensors",
        "t.safetensors",
    )
    empty = tmp_path / "bad_only"
    empty.mkdir()
    (empty / "x.ptth").write_bytes(b"PTTH\x00")
    res = run("aggregate", "--template", tpath, empty, "-o", out)
    assert res.returncode == 1 and "none of the 1 uploads was accepted" in res.stderr
    assert "x.ptth: truncated" in res.stdout and not out.exists()


def test_aggregate_progress_on_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")  # POSIX: stderr on a pseudo-terminal, as in a shell
    tpath, folder, _ = make_round(tmp_path)
    primary, secondary = pty.openpty()
    try:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "ptth.cli",
                "aggregate",
                "--template",
                str(tpath),
                str(folder),
                "-o",
                str(tmp_path / "n.safetensors"),
            ],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
            check=False,
        )
        os.close(secondary)
        secondary = None
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO once the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    assert res.returncode == 0
    assert b"4/4 uploads, 0 rejected" in shown and b"[" + b"#" * 30 + b"]" in shown


def test_aggregate_clip_norm_and_max_norm(tmp_path):
    """--clip-norm scales each delta to the bound (the norm over all its parameters);
    --max-norm rejects the ones beyond it, listed with their reason."""
    tpath, folder, deltas = make_round(tmp_path, fmt="ptth")
    norms = [
        math.sqrt(sum(float(np.sum(np.asarray(d[k], np.float64) ** 2)) for k in d)) for d in deltas
    ]
    clip = float(np.median(norms))
    res = run(
        "aggregate",
        "--template",
        tpath,
        folder,
        "--clip-norm",
        clip,
        "-o",
        tmp_path / "clipped.ptth",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    new = ptth.load(tmp_path / "clipped.ptth")
    for k in ("fc.weight", "fc.bias"):
        acc = sum(min(1.0, clip / n) * np.asarray(d[k], np.float64) for d, n in zip(deltas, norms))
        np.testing.assert_allclose(
            new[k], (TEMPLATE[k] + acc / len(deltas)).astype(np.float32), rtol=1e-6, atol=1e-7
        )
    res = run(
        "aggregate",
        "--template",
        tpath,
        folder,
        "--max-norm",
        clip,
        "-o",
        tmp_path / "bounded.ptth",
    )
    assert res.returncode == 0, res.stderr
    over = sum(n > clip for n in norms)
    assert f"{len(deltas) - over} accepted, {over} rejected" in res.stdout
    assert res.stdout.count("norm_exceeded") == over
