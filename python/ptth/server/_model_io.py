"""The one place the server reads and writes model files: ``ptth.convert``.

PTTH, safetensors and .npz, by extension (or sniffed from the first bytes
when reading); what PTTH cannot carry follows ``ptth.convert``'s default
policy (bfloat16 widened exactly, int64 narrowed when every value fits).
"""

from __future__ import annotations

import os

import numpy as np

from ptth import convert


def load_model(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a model file, as owned native-order arrays."""
    return {k: np.array(v) for k, v in convert.load_model(path).items()}


def save_model(tensors: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a model file in the format its extension names (atomically)."""
    convert.save_model(tensors, path)
