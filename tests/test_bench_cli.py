"""`ptth bench --quick` runs on each backend and prints every target row (no time is asserted).

The native engine runs every section (the integrations' rows included); the fallback runs the
core section, whose rows are the same on both engines."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROWS = [
    "to_float16",
    "to_float16 out=",
    "to_float32",
    'subtract(dtype="float16")',
    "loads, uncompressed, 200 tensors",
    "loads at this size vs at 1 MB",
    "loads, zlib level 6",
    "dumps(compress=6)",
    "Aggregator.add, float16 delta",
    "two threads calling add",
    "FedAvg round, 4 uploads",
    "peak memory, N=8 uploads",
]


@pytest.mark.parametrize("backend", ["native", "python"])
def test_bench_quick(backend, tmp_path):
    out_json = tmp_path / "bench.json"
    env = dict(os.environ, PTTH_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-m", "ptth.cli", "bench", "--quick", "--json", str(out_json)]
        + ([] if backend == "native" else ["--sections", "core"]),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"backend {backend}" in proc.stdout
    assert "machine:" in proc.stdout and "cores" in proc.stdout
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("operation"))
    assert lines[header].split()[:6] == ["operation", "ptth", "baseline", "ratio", "target", "met"]
    table = [line.strip() for line in lines[header + 2 :]]
    for op in ROWS:
        row = next((line for line in table if line.startswith(op)), None)
        assert row is not None, f"no row for {op!r}:\n{proc.stdout}"
        assert any(word in row.split() for word in ("met", "MISSED", "-")), row
    assert "SIZE" not in proc.stdout and "MEANS DIFFER" not in proc.stdout
    report = json.loads(out_json.read_text())
    core = [r["operation"].strip() for r in report["rows"] if r["section"] == "core"]
    assert core == ROWS
    sections = {r["section"] for r in report["rows"]}
    if backend == "native":
        # A section whose extra is missing (the ASan run's venv has neither) says so instead.
        extras = {"flower": "flwr", "dask": "distributed"}
        present = {name for name, module in extras.items() if importlib.util.find_spec(module)}
        for name in set(extras) - present:
            assert f'pip install "ptth[{name}]"' in proc.stdout, proc.stdout
        assert sections == {"core", "memory_path", "compression", "privacy"} | present
    else:
        assert sections == {"core"}
    assert report["machine"]["backend"] == backend
