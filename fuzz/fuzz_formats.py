"""Coverage-guided fuzzing (atheris) of ptth.convert's safetensors and .npz readers.

The first input byte picks the reader; the rest is the file. The only exception
allowed out of a reader is ptth.PTTHError; anything else, or a result that
breaks the reader's promises, is a finding. Whatever a reader accepts is also
written back and read again (round trip through every format).

    python fuzz/fuzz_formats.py --make-seeds DIR       # the seed corpus
    python fuzz/fuzz_formats.py -max_total_time=30 CORPUS DIR
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

import atheris

# Seeds are written without instrumentation (quiet, and fast to import).
_instrument = (
    contextlib.nullcontext() if "--make-seeds" in sys.argv else atheris.instrument_imports()
)
with _instrument:
    import numpy as np

    import ptth
    import ptth.convert as pc
    from ptth.convert import _npz, _safetensors

FORMATS = ("safetensors", "npz")
LIMIT = 1 << 24  # decoded bytes per input: keeps the fuzzer's memory flat


def check_roundtrip(tensors: dict, metadata: dict) -> None:
    arrays = {
        k: t.array
        for k, t in tensors.items()
        if t.dtype in ("float32", "float64", "int32", "float16")
    }
    for fmt in pc.FORMATS:
        buf = io.BytesIO()
        pc.save_model(arrays, buf, format=fmt)
        back = pc.load_model(buf.getvalue(), format=fmt)
        if list(back) != list(arrays):
            raise AssertionError(f"{fmt}: names changed: {list(arrays)} -> {list(back)}")
        for k, v in arrays.items():
            if back[k].shape != v.shape or not np.array_equal(back[k], v, equal_nan=True):
                raise AssertionError(f"{fmt}: {k!r} changed in a round trip")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    fmt, body = FORMATS[data[0] % 2], data[1:]
    try:
        tensors, metadata, _ = pc.read_tensors(body, format=fmt, max_size=LIMIT)
    except ptth.PTTHError:
        return
    # safetensors tensors are views: together they can never exceed the input
    if fmt == "safetensors" and sum(t.array.nbytes for t in tensors.values()) > len(body):
        raise AssertionError("safetensors tensors larger than their input")
    if not all(isinstance(name, str) for name in tensors):
        raise AssertionError("a tensor name is not a str")
    try:
        check_roundtrip(tensors, metadata)
    except ptth.PTTHError as exc:
        if exc.reason not in ("unsupported_name", "size_overflow"):
            raise


def make_seeds(folder: str) -> None:
    """Valid files of each format, with the first byte choosing the reader."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    models = [
        {},
        {
            "w": rng.standard_normal((3, 4)).astype(np.float32),
            "b": np.zeros(4, np.float64),
            "n": np.array(7, np.int32),
            "h": np.ones((2, 0), np.float16),
        },
        {
            "x": np.arange(5, dtype=np.int64),
            "m": np.ones(3, bool),
            "q": np.ones(2, np.int8),
            "c": np.ones(1, np.complex64),
        },
    ]
    n = 0
    for m in models:
        for meta in (None, {"format": "pt"}):
            out = io.BytesIO()
            _safetensors.write([(k, pc.Tensor(*_describe(v))) for k, v in m.items()], meta, out)
            _write(folder, n, 0, out.getvalue())
            n += 1
        for compress in (None, 6):
            out = io.BytesIO()
            np.savez_compressed(out, **m) if compress else np.savez(out, **m)
            _write(folder, n, 1, out.getvalue())
            n += 1
            out = io.BytesIO()
            _npz.write(
                [(k, pc.Tensor(*_describe(v))) for k, v in m.items()], out, compress=compress
            )
            _write(folder, n, 1, out.getvalue())
            n += 1


def _describe(arr):
    from ptth.convert._dtypes import canonical_dtype

    return canonical_dtype(arr.dtype), arr.shape, arr


def _write(folder, n, selector, body):
    with open(os.path.join(folder, f"seed-{n:03d}"), "wb") as f:
        f.write(bytes([selector]) + body)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(sys.argv[2])
        sys.exit(0)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
