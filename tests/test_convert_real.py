"""Real trained weights (silero-vad 6.2.3's model): round trips and a simulated round.

The data comes from tests/data.py (downloaded, hash-checked, cached). The FedAvg
reference decodes the uploads with zlib and struct written here, not with ptth.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import safetensors.numpy as stn

import ptth
import ptth.convert as pc
from data import PARAMETERS, TENSORS, silero_vad_path

NAMES = [
    "stft_conv.weight",
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "conv4.weight",
    "conv4.bias",
    "lstm_cell.weight_ih",
    "lstm_cell.weight_hh",
    "lstm_cell.bias_ih",
    "lstm_cell.bias_hh",
    "final_conv.weight",
    "final_conv.bias",
]
REF_DTYPES = {0: "<f4", 1: "<f8", 2: "<i4", 3: "<f2"}


@pytest.fixture(scope="module")
def silero():
    return silero_vad_path()


def reference_decode(blob: bytes) -> dict:
    """the format's layout read by hand: zlib wrapper, big-endian header, little-endian payload."""
    raw = zlib.decompress(blob) if blob[:4] != b"PTTH" else blob
    magic, version, count = struct.unpack_from(">4sII", raw, 0)
    assert (magic, version) == (b"PTTH", 1)
    pos, out = 12, {}
    for _ in range(count):
        (n,) = struct.unpack_from(">I", raw, pos)
        name = raw[pos + 4 : pos + 4 + n].decode()
        pos += 4 + n
        (ndim,) = struct.unpack_from(">I", raw, pos)
        dims = struct.unpack_from(f">{ndim}I", raw, pos + 4)
        code, length = struct.unpack_from(">II", raw, pos + 4 + 4 * ndim)
        pos += 12 + 4 * ndim
        out[name] = np.frombuffer(raw[pos : pos + length], REF_DTYPES[code]).reshape(dims)
        pos += length
    assert pos == len(raw)
    return out


def test_the_model_is_what_the_issue_says(silero):
    ref = stn.load_file(str(silero))
    assert len(ref) == TENSORS and sum(v.size for v in ref.values()) == PARAMETERS
    got = pc.load_model(silero)
    assert list(got) == NAMES  # data order, which is the file's header order
    for k, v in ref.items():
        assert got[k].dtype == v.dtype == np.float32 and np.array_equal(got[k], v)


def test_safetensors_ptth_safetensors_bit_for_bit(silero, tmp_path):
    original = silero.read_bytes()
    rep = pc.convert(silero, tmp_path / "m.ptth")
    assert rep.widened == rep.narrowed == [] and rep.skipped == rep.dropped == {}
    assert rep.parameters == PARAMETERS
    ref = reference_decode((tmp_path / "m.ptth").read_bytes())
    assert list(ref) == NAMES
    pc.convert(tmp_path / "m.ptth", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == original
    pc.convert(silero, tmp_path / "m.npz")
    pc.convert(tmp_path / "m.npz", tmp_path / "m2.ptth", compress=6)
    pc.convert(tmp_path / "m2.ptth", tmp_path / "back2.safetensors")
    assert (tmp_path / "back2.safetensors").read_bytes() == original


def test_simulated_round_of_float16_zlib_deltas(silero):
    template = pc.load_model(silero)
    rng = np.random.default_rng(2026)
    clients = 8
    weights = rng.integers(10, 500, clients).astype(np.float64)
    uploads = []
    for _ in range(clients):
        # local training, simulated: a small change scaled to each tensor's spread
        delta = {
            k: (rng.standard_normal(v.shape) * (float(v.std()) * 1e-2 + 1e-6)).astype(np.float32)
            for k, v in template.items()
        }
        uploads.append(ptth.dumps(delta, dtype="float16", compress=6))
    agg = ptth.Aggregator(template)
    for blob, w in zip(uploads, weights):
        agg.add(blob, float(w))
    mean, new = agg.mean(dtype="float64"), agg.apply(lr=1.0)
    # NumPy FedAvg over the hand-decoded uploads
    acc = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}
    for blob, w in zip(uploads, weights):
        for k, d in reference_decode(blob).items():
            assert d.dtype == np.float16
            acc[k] += w * d.astype(np.float64)
    for k, v in template.items():
        ref_mean = acc[k] / weights.sum()
        assert np.allclose(mean[k], ref_mean, rtol=1e-12, atol=1e-15), k
        ref_new = (v.astype(np.float64) + ref_mean).astype(np.float32)
        assert np.array_equal(new[k], ref_new), k
    ratio = sum(len(u) for u in uploads) / (clients * PARAMETERS * 4)
    assert 0.3 < ratio < 0.5  # float16 halves; zlib takes a little more off noise-like deltas


def test_cli_aggregate_on_real_weights(silero, tmp_path):
    template = pc.load_model(silero)
    rng = np.random.default_rng(7)
    folder = tmp_path / "uploads"
    folder.mkdir()
    weights, blobs = [], []
    for i in range(5):
        delta = {
            k: (rng.standard_normal(v.shape) * 1e-3).astype(np.float32) for k, v in template.items()
        }
        blob = ptth.dumps(delta, dtype="float16", compress=6)
        (folder / f"client{i}.ptth").write_bytes(blob)
        weights.append(float(rng.integers(1, 100)))
        blobs.append(blob)
    (tmp_path / "w.txt").write_text(
        "".join(f"client{i}.ptth {w:g}\n" for i, w in enumerate(weights))
    )
    out = tmp_path / "new.safetensors"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptth.cli",
            "aggregate",
            "--template",
            str(silero),
            str(folder),
            "--weights",
            str(tmp_path / "w.txt"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "5 accepted, 0 rejected" in res.stdout
    new = stn.load_file(str(out))
    total = sum(weights)
    for k, v in template.items():
        ref = sum(w * reference_decode(b)[k].astype(np.float64) for w, b in zip(weights, blobs))
        expect = (v.astype(np.float64) + ref / total).astype(np.float32)
        assert np.array_equal(new[k], expect), k
