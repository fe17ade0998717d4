"""The one place the server reads and writes model files.

At merge these two point at ``ptth.convert.load_model`` / ``save_model``
(PTTH, safetensors, npz by extension); until then only ``.ptth`` is handled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import ptth

_SUFFIXES = (".ptth",)


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(
            f"model file {str(path)!r}: this build of ptth serve reads and writes .ptth "
            f"models only, not {path.suffix or 'files without an extension'!r}"
        )


def load_model(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a model file, as owned native-order arrays."""
    p = Path(path)
    _check_suffix(p)
    return dict(ptth.load(p, copy=True))


def save_model(tensors: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a model file (not atomically: the caller renames it into place)."""
    p = Path(path)
    _check_suffix(p)
    ptth.dump(tensors, p)
