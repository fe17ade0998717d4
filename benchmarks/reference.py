"""Baselines the benchmarks compare ptth against, and the inputs they share.

- ``reference_loads``: a PTTH reader written the way the format is usually
  read by hand: ``struct.unpack`` on header slices, ``np.frombuffer`` on a
  ``bytes`` slice of each payload (slicing ``bytes`` copies the payload).
- ``flower_fedavg``: FedAvg as Flower's ``aggregate()`` does it: a weighted
  float64 copy of every client's layers kept in a list, then one
  ``reduce(np.add)`` per layer at the end. Memory grows with the number of
  clients.

Neither validates much beyond what its decode needs; test_reference.py checks
once, outside any timing, that both give ptth's results on the same blobs.
"""

from __future__ import annotations

import numpy as np

# The hand-written reader and Flower's two steps ship with ptth for `ptth bench`
# (python/ptth/bench.py); the benchmarks use that one copy.
from ptth.bench import flower_decode, flower_reduce, reference_loads  # noqa: F401


def flower_fedavg(uploads, weights) -> list:
    """FedAvg of float16 (or any dtype) delta blobs: list of weighted copies, then reduce."""
    weighted = [flower_decode(blob, w) for blob, w in zip(uploads, weights)]
    return flower_reduce(weighted, float(sum(weights)))


# ---- shared inputs -----------------------------------------------------------


def layout(elements: int, tensors: int = 200) -> list:
    """(name, shape) of a model with `tensors` parameters and about `elements` elements.

    Half are weight matrices of a few sizes, half the bias vectors that go with
    them, the way a stack of dense or conv layers looks.
    """
    layers = tensors // 2
    shares = [1 + (i % 4) for i in range(layers)]  # layer sizes vary 1..4x
    unit = elements / (sum(shares) * 1.0)
    shapes = []
    for i, share in enumerate(shares):
        cols = 64 if elements < 1 << 22 else 512
        rows = max(1, int(unit * share) // (cols + 1))
        shapes.append((f"layers.{i}.weight", (rows, cols)))
        shapes.append((f"layers.{i}.bias", (rows,)))
    return shapes[:tensors]


def model(elements: int, tensors: int = 200, seed: int = 0) -> dict:
    """A float32 model (the global weights) of that layout."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape, dtype=np.float32) * np.float32(0.05)
        for name, shape in layout(elements, tensors)
    }


def delta(template: dict, seed: int, scale: float = 1e-3) -> dict:
    """A client's update as it would upload it: ~N(0, scale) per element, quantized to float16.

    Compresses like real quantized deltas (a narrow exponent range, noisy
    mantissas), unlike all-zeros or random bit patterns.
    """
    rng = np.random.default_rng(seed)
    return {
        name: (rng.standard_normal(t.shape, dtype=np.float32) * np.float32(scale)).astype(
            np.float16
        )
        for name, t in template.items()
    }
