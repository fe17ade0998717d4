"""ptth: read, write, quantize, diff, compress and aggregate PTTH weight updates.

Phones upload their weights or deltas as PTTH blobs (the format is
``docs/format.md``); an aggregation server imports ptth to decode thousands
of them per round, safely and at memory speed, and fold them into the
round's new model.

The engine under the API is chosen by the environment variable
``PTTH_BACKEND``: ``auto`` (default: the compiled C++ core; on CPython a core
that fails to import is an error, never a silent fallback), ``native`` or
``python`` (the pure NumPy engine, which needs no compiled module).
``ptth.backend`` names the active one.
"""

from ._front import (
    DEFAULT_MAX_SIZE,
    UNLIMITED,
    AddResult,
    Aggregator,
    Decoder,
    PartialAggregate,
    apply_delta,
    backend,
    build_info,
    compress,
    compute_delta,
    decompress,
    detect_wrapper,
    dump,
    dumps,
    iter_load,
    load,
    loads,
    release_memory,
    subtract,
    to_float16,
    to_float32,
)
from ._robust import median, trimmed_mean
from ._version import __version__
from .errors import REASONS, PTTHError

#: integrations, imported on first use (each needs its own extra: ptth[flower], ...)
_INTEGRATIONS = ("convert", "flower", "dask", "server")


def __getattr__(name: str):
    if name in _INTEGRATIONS:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ptth' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_SIZE",
    "REASONS",
    "UNLIMITED",
    "AddResult",
    "Aggregator",
    "Decoder",
    "PTTHError",
    "PartialAggregate",
    "__version__",
    "apply_delta",
    "backend",
    "build_info",
    "compress",
    "compute_delta",
    "decompress",
    "detect_wrapper",
    "dump",
    "dumps",
    "iter_load",
    "load",
    "loads",
    "median",
    "release_memory",
    "subtract",
    "to_float16",
    "to_float32",
    "trimmed_mean",
]
