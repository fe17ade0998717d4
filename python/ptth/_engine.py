"""Which engine runs under the front: ``PTTH_BACKEND=auto|native|python``.

``auto`` (the default) is the native engine; on CPython a native engine that
fails to import is an error, never a silent fallback (other interpreters fall
back to the pure engine). ``python`` never imports the compiled module, so
ptth runs where it was not built.
"""

from __future__ import annotations

import importlib
import os
import platform
from types import ModuleType

#: the engine's name -> its module
MODULES = {"native": "ptth._native", "python": "ptth._pure"}

#: the primitives every engine exports (the front uses nothing else)
PRIMITIVES = (
    "DEFAULT_MAX_SIZE",
    "NAME",
    "Accum",
    "AddOptions",
    "AggregatorCore",
    "ByteOrder",
    "Convert",
    "DType",
    "Decoder",
    "Hold",
    "Kind",
    "Output",
    "Relabel",
    "Wrapper",
    "axpy_f32",
    "axpy_f32_f16",
    "axpy_f64",
    "build_info",
    "compress",
    "decode",
    "decompress",
    "detect_wrapper",
    "empty",
    "encode",
    "f16_to_f32",
    "f32_to_f16",
    "f64_to_f16",
    "reasons",
    "release_memory",
    "sub_f32",
    "sub_f32_to_f16",
    "sub_f64",
    "sub_f64_to_f16",
)


def choice() -> str:
    """The normalized value of PTTH_BACKEND; ImportError for anything unknown."""
    value = os.environ.get("PTTH_BACKEND", "auto").strip().lower() or "auto"
    if value not in ("auto", "native", "python"):
        raise ImportError(f"PTTH_BACKEND must be auto, native or python, not {value!r}")
    return value


def load(name: str | None = None) -> ModuleType:
    """The engine module for ``name`` (None: as PTTH_BACKEND says)."""
    wanted = choice() if name is None else name
    if wanted == "python":
        return importlib.import_module(MODULES["python"])
    try:
        return importlib.import_module(MODULES["native"])
    except ImportError as exc:
        if wanted == "native" or platform.python_implementation() == "CPython":
            raise ImportError(
                "ptth's compiled engine (ptth._native) failed to import; reinstall ptth "
                "(python -m pip install .) or set PTTH_BACKEND=python to use the pure-Python "
                f"engine explicitly: {exc}"
            ) from exc
        return importlib.import_module(MODULES["python"])


def front_for(name: str) -> ModuleType:
    """A private copy of the front bound to engine ``name`` (for tests comparing engines).

    It is the module ``ptth._front_<name>``, so what it pickles unpickles into it.
    """
    import importlib.util
    import sys

    qualified = f"ptth._front_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    origin = importlib.util.find_spec("ptth._front")
    assert origin is not None and origin.origin is not None
    spec = importlib.util.spec_from_file_location(qualified, origin.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__dict__["_ENGINE_NAME"] = name
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    return module
