"""ptth: read, write, quantize, diff, compress and aggregate PTTH weight updates.

The backend is chosen by the environment variable ``PTTH_BACKEND``:
``auto`` (default: the compiled core; on CPython a core that fails to import
is an error, never a silent fallback), ``native`` or ``python`` (the pure
NumPy fallback). ``ptth.backend`` names the active one.
"""

from __future__ import annotations

import os as _os
import platform as _platform

from .errors import PTTHError, REASONS

__version__ = "0.1.0"

_choice = _os.environ.get("PTTH_BACKEND", "auto").strip().lower() or "auto"
if _choice not in ("auto", "native", "python"):
    raise ImportError(f"PTTH_BACKEND must be auto, native or python, not {_choice!r}")

if _choice == "python":
    from . import _pure as _impl
else:
    try:
        from . import _native_api as _impl
    except ImportError as exc:
        if _choice == "native" or _platform.python_implementation() == "CPython":
            raise ImportError(
                "ptth's compiled core (ptth._native) failed to import; reinstall ptth "
                "(python -m pip install .) or set PTTH_BACKEND=python to use the "
                f"pure-Python fallback explicitly: {exc}"
            ) from exc
        from . import _pure as _impl

backend: str = _impl.name
DEFAULT_MAX_SIZE: int = _impl.DEFAULT_MAX_SIZE

loads = _impl.loads
dumps = _impl.dumps
load = _impl.load
dump = _impl.dump
iter_load = _impl.iter_load
Decoder = _impl.Decoder
compress = _impl.compress
decompress = _impl.decompress
detect_wrapper = _impl.detect_wrapper
to_float16 = _impl.to_float16
to_float32 = _impl.to_float32
subtract = _impl.subtract
compute_delta = _impl.compute_delta
apply_delta = _impl.apply_delta
Aggregator = _impl.Aggregator


def build_info() -> dict:
    """The compiler, SIMD tier and zlib-ng version in use, and the backend."""
    from . import _native_api

    info = dict(_native_api.build_info()) if _native_api.available() else {}
    info["backend"] = backend
    return info


__all__ = [
    "PTTHError", "REASONS", "DEFAULT_MAX_SIZE", "backend", "build_info",
    "loads", "dumps", "load", "dump", "iter_load", "Decoder",
    "compress", "decompress", "detect_wrapper",
    "to_float16", "to_float32", "subtract", "compute_delta", "apply_delta", "Aggregator",
]
