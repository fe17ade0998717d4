"""The pure-Python backend of ptth: Python + NumPy + zlib_ng, the reference the native one is checked against."""

from .aggregator import Aggregator
from .decode import Decoder, iter_load, load, loads
from .deflate import compress
from .format import DEFAULT_MAX_SIZE
from .format import byte_view as _byte_view
from .format import detect_wrapper as _detect
from .inflate import decompress
from .kernels import apply_delta, compute_delta, subtract, to_float16, to_float32
from .writer import dumps
from .._source import open_target as _open_target

name = "python"

__all__ = ["loads", "dumps", "load", "dump", "iter_load", "Decoder", "compress",
           "decompress", "to_float16", "to_float32", "subtract", "compute_delta",
           "apply_delta", "Aggregator", "detect_wrapper", "DEFAULT_MAX_SIZE", "name"]


def detect_wrapper(data) -> str:
    """The wrapper SPEC.md's table gives for these first bytes: none, zlib, gzip or deflate."""
    return _detect(_byte_view(data))


def dump(tensors, target, **dumps_kw) -> None:
    blob = dumps(tensors, **dumps_kw)
    with _open_target(target) as f:
        f.write(blob)
