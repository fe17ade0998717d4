"""ptth.convert and PTTH compression on real trained weights (silero-vad 6.2.3, 309,633 float32).

Each group pairs ptth with the baseline a server would otherwise write, on the
same input in the same run; nothing asserts a time. The compression group also
records each output's size over the float32 payload (``extra_info["ratio"]``,
printed as it runs): the weights themselves, float16, and a simulated client
delta (N(0, (1% of each tensor's std)^2), quantized to float16), at zlib levels.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy as stn
from zlib_ng import zlib_ng

import ptth
import ptth.convert as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data import silero_vad_path


@pytest.fixture(scope="module")
def silero():
    path = silero_vad_path()
    model = {k: np.array(v) for k, v in stn.load_file(str(path)).items()}
    rng = np.random.default_rng(3)
    delta = {
        k: (rng.standard_normal(v.shape) * (float(v.std()) * 1e-2 + 1e-6)).astype(np.float32)
        for k, v in model.items()
    }
    return path, path.read_bytes(), model, delta


def _glue_convert(path):
    """The hand-written glue: the safetensors library, then ptth.dumps, into the same sink."""
    out = io.BytesIO()
    out.write(ptth.dumps(stn.load_file(str(path))))
    return out.getvalue()


def _ours_convert(path):
    out = io.BytesIO()
    pc.convert(path, out, dst_format="ptth")
    return out.getvalue()


@pytest.mark.parametrize("impl", ["baseline-safetensors", "ptth.convert"])
def test_load_safetensors(benchmark, silero, impl):
    path = silero[0]
    benchmark.group = "silero load_model safetensors"
    fn = (
        (lambda: stn.load_file(str(path)))
        if impl.startswith("baseline")
        else (lambda: pc.load_model(path))
    )
    got = benchmark(fn)
    assert len(got) == 15


@pytest.mark.parametrize("impl", ["baseline-glue", "ptth.convert"])
def test_safetensors_to_ptth(benchmark, silero, impl):
    path = silero[0]
    benchmark.group = "silero safetensors->ptth"
    blob = benchmark(_glue_convert if impl.startswith("baseline") else _ours_convert, path)
    assert ptth.loads(blob).keys() == silero[2].keys()


CASES = {
    "baseline-zlib_ng6-file": lambda raw, m, d: zlib_ng.compress(raw, 6),
    "f32-z6": lambda raw, m, d: ptth.dumps(m, compress=6),
    "f16": lambda raw, m, d: ptth.dumps(m, dtype="float16"),
    "f16-z6": lambda raw, m, d: ptth.dumps(m, dtype="float16", compress=6),
    "delta-f16-z1": lambda raw, m, d: ptth.dumps(d, dtype="float16", compress=1),
    "delta-f16-z6": lambda raw, m, d: ptth.dumps(d, dtype="float16", compress=6),
    "delta-f16-z9": lambda raw, m, d: ptth.dumps(d, dtype="float16", compress=9),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compression(benchmark, silero, case, capsys):
    _, raw, model, delta = silero
    payload = sum(v.nbytes for v in model.values())
    benchmark.group = "silero compression"
    out = benchmark(CASES[case], raw, model, delta)
    ratio = len(out) / payload
    benchmark.extra_info.update(bytes=len(out), payload=payload, ratio=ratio)
    with capsys.disabled():  # the ratio is the result here: show it whatever -q/-s say
        print(
            f"\n  silero {case:<24} {len(out):>10,} bytes = {ratio:6.1%} of the float32 "
            f"payload ({payload:,} bytes)"
        )
