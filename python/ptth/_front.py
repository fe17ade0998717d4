"""The front: ptth's public API, written once over either engine.

Every public function and class lives here. The front normalizes and checks
arguments (types, ranges, names, weights, byte orders, sources and targets)
and runs the loops over mappings; the engine below it (``ptth._native`` or
``ptth._pure``, chosen by ``PTTH_BACKEND``) provides only the primitives that
mirror the C++ core: decode, encode, inflate/deflate, the element kernels and
the aggregator core. A rule written here cannot disagree with itself across
engines; the engines differ only below that line.

Bad arguments raise ``TypeError`` (wrong type) or ``ValueError`` (wrong value)
naming the argument; bad data raises :class:`ptth.PTTHError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import operator
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple, SupportsIndex, Union, cast

import numpy as np

from . import _engine as _engines
from .errors import PTTHError

_engine = _engines.load(globals().get("_ENGINE_NAME"))

#: the active engine: "native" or "python"
backend: str = _engine.NAME

#: the default bound on what a stream or a compressed input may decode to (512 MiB)
DEFAULT_MAX_SIZE: int = int(_engine.DEFAULT_MAX_SIZE)

#: ``max_size=UNLIMITED`` lifts the bound (any int at least this large does too)
UNLIMITED: int = 2**64 - 1

#: DEFLATE's largest expansion (258 bytes from 2 bits): what a compressed file of n bytes
#: can decode to at most, so a file's own size bounds its decode
_DEFLATE_MAX_RATIO = 1032

#: bytes read from a file per step when streaming
READ_CHUNK = 1 << 20

Buffer = Union[bytes, bytearray, memoryview, np.ndarray, Any]
Tensors = Mapping[str, Any]
Source = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", BinaryIO, Any]

_F16, _F32, _F64, _I32 = (np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32))
_NATIVE_DTYPES = {
    _F32: _engine.DType.float32,
    _F64: _engine.DType.float64,
    _I32: _engine.DType.int32,
    _F16: _engine.DType.float16,
}
_FLOATS = (_F16, _F32, _F64)


# ---- argument rules ----------------------------------------------------------------


def _type_name(value: object) -> str:
    return type(value).__name__


def _flag(value: object, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")


def _integer(value: object, name: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {_type_name(value)}") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {span}, not {number}")
    return number


def _real(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {_type_name(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} does not fit in a float64") from None


def _finite(value: object, name: str, *, positive: bool = False) -> float:
    number = _real(value, name)
    if not math.isfinite(number) or (positive and not number > 0):
        want = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{name} must be {want}, not {number!r}")
    return number


def _bound(value: object, name: str) -> float:
    """None (no bound) or a positive number (inf allowed)."""
    if value is None:
        return math.inf
    number = _real(value, name)
    if not number > 0:
        raise ValueError(f"{name} must be a positive number or None, not {number!r}")
    return number


def _choice(value: object, name: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be one of {', '.join(map(repr, options))}, not {_type_name(value)}"
        )
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, not {value!r}")
    return value


_BYTEORDERS = {
    "<": _engine.ByteOrder.little,
    ">": _engine.ByteOrder.big,
    "auto": _engine.ByteOrder.auto,
}
_WRAPPERS = {
    "none": _engine.Wrapper.none,
    "zlib": _engine.Wrapper.zlib,
    "gzip": _engine.Wrapper.gzip,
    "deflate": _engine.Wrapper.deflate,
}


def _byteorder(value: object) -> Any:
    return _BYTEORDERS[_choice(value, "byteorder", _BYTEORDERS)]


def _relabel(value: object) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return _engine.Relabel.on if value else _engine.Relabel.off
    if isinstance(value, str) and value == "auto":
        return _engine.Relabel.auto
    if isinstance(value, str):
        raise ValueError(f"relabel_float32 must be True, False or 'auto', not {value!r}")
    raise TypeError(f"relabel_float32 must be True, False or 'auto', not {_type_name(value)}")


def _max_size(value: object, default: int = DEFAULT_MAX_SIZE) -> int:
    if value is None:
        return default
    return min(_integer(value, "max_size", 0), UNLIMITED)


def _wrapper(value: object, choices: Iterable[str] = ("zlib", "gzip", "deflate")) -> Any:
    return _WRAPPERS[_choice(value, "wrapper", choices)]


def _level(value: object, name: str) -> int:
    return _integer(value, name, 0, 9)


#: the most threads compress/dumps take (0 means one per core)
_MAX_THREADS = 1 << 16


def _threads(value: object) -> int:
    return _integer(value, "threads", 0, _MAX_THREADS)


# ---- buffers, arrays, sources ---------------------------------------------------------


_EMPTY = memoryview(b"")


def _bytes(data: object, name: str = "data") -> memoryview:
    """A flat unsigned-byte view of any C-contiguous buffer, without a copy."""
    if isinstance(data, str):
        raise TypeError(f"{name} must be a bytes-like object, not str")
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise TypeError(f"{name} must be a bytes-like object, not an array of Python objects")
        if not data.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
        data = data.reshape(-1).view(np.uint8)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {_type_name(data)}") from None
    if "O" in view.format:
        raise TypeError(f"{name} must be a bytes-like object, not a buffer of Python objects")
    if not view.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if view.nbytes == 0:
        return _EMPTY
    if view.format != "B" or view.ndim != 1:
        try:
            view = view.cast("B")
        except (TypeError, ValueError):
            # NumPy arrays support the buffer protocol; the stubs do not say so.
            view = memoryview(np.asarray(view).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return view


def _array(value: object, what: str) -> np.ndarray:
    """np.asarray(value); something that is not an array of numbers is unsupported_dtype."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise PTTHError("unsupported_dtype", f"{what} is not an array: {exc}") from None
    return arr


def _native_c(arr: np.ndarray) -> np.ndarray:
    """arr in native byte order and C order, without a copy when it already is."""
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # not ascontiguousarray: that makes 0-d arrays 1-d
    return arr


def _engine_dtype(arr: np.ndarray) -> Any:
    return _NATIVE_DTYPES.get(arr.dtype.newbyteorder("="))


def _name(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{what} names must be str, not {_type_name(key)}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise PTTHError("bad_name", f"the name {key!r} cannot be encoded as UTF-8") from None
    return key


def _mapping(value: object, name: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of names to arrays, not {_type_name(value)}")
    return value


def _file_size(f: Any) -> int | None:
    """The bytes left in a regular file or an mmap, or None for a stream."""
    try:
        import mmap

        if isinstance(f, mmap.mmap):
            return len(f) - f.tell()
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(st.st_size - f.tell(), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


@contextlib.contextmanager
def _open_source(source: object) -> Iterator[Any]:
    if isinstance(source, (str, bytes, os.PathLike)):
        with open(source, "rb") as f:
            yield f
        return
    if isinstance(source, io.TextIOBase):
        raise TypeError("source is a file opened in text mode; open it in binary mode ('rb')")
    if not (hasattr(source, "readinto") or hasattr(source, "read")):
        raise TypeError(f"source must be a path or a binary file, not {_type_name(source)}")
    yield source


def _read_into(f: Any, view: memoryview) -> int:
    if hasattr(f, "readinto"):
        n = f.readinto(view)
        return n or 0
    chunk = f.read(len(view))
    if isinstance(chunk, str):
        raise TypeError("source is a file opened in text mode; open it in binary mode ('rb')")
    if chunk is None:
        return 0
    view[: len(chunk)] = chunk
    return len(chunk)


def _read_all(f: Any) -> bytes:
    data = f.read()
    if isinstance(data, str):
        raise TypeError("source is a file opened in text mode; open it in binary mode ('rb')")
    if data is None:
        return b""
    return bytes(data) if not isinstance(data, bytes) else data


def _cap_for(size: int | None, head: memoryview) -> int:
    """The default decode bound of a source of `size` bytes that starts with `head`."""
    if size is None:
        return DEFAULT_MAX_SIZE
    if _engine.detect_wrapper(head[:4]) == _engine.Wrapper.none:
        return UNLIMITED  # bounded by the file's own end: a short one is `truncated`
    return min(max(size, 1) * _DEFLATE_MAX_RATIO, UNLIMITED)


# ---- decoding -------------------------------------------------------------------------------


def loads(
    data: Buffer,
    *,
    copy: bool = False,
    byteorder: str = "<",
    relabel_float32: bool | str = False,
    max_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode one PTTH blob (any wrapper) into a dict of name -> NumPy array.

    Args:
        data: any C-contiguous bytes-like object (bytes, bytearray, memoryview,
            mmap, NumPy array).
        copy: return owned, writable, 64-byte-aligned arrays in native byte
            order. Otherwise an uncompressed blob gives zero-copy views into
            ``data`` (read-only when ``data`` is), whose ``base`` keeps it alive.
        byteorder: payload byte order: ``"<"`` (the format's), ``">"`` (the
            Android extractor's) or ``"auto"`` (decided per blob from the
            float32 bit patterns; a view's dtype, e.g. ``'>f4'``, shows the
            decision).
        relabel_float32: ``True`` reads a record whose ``data_len`` is
            ``4 * numel`` as float32 whatever its code (the iOS SDK's payloads);
            ``"auto"`` does so for code 1 by its length and for code 2 when the
            bit patterns look like floats rather than small integers.
        max_size: bound on the decoded size of a compressed blob (``None``:
            :data:`DEFAULT_MAX_SIZE`; :data:`UNLIMITED`: none). An uncompressed
            blob is bounded by itself.

    Returns:
        The records in blob order.

    Raises:
        PTTHError: the bytes are not a valid blob (``reason``, ``offset``,
            ``record`` and ``name`` say what and where).
        TypeError, ValueError: an argument has the wrong type or value.

    Example:
        >>> import numpy as np, ptth
        >>> ptth.loads(ptth.dumps({"w": np.array([1.0, -2.0], np.float32)}))["w"]
        array([ 1., -2.], dtype=float32)
    """
    view = _bytes(data)
    records = _engine.decode(
        view,
        _flag(copy, "copy"),
        _byteorder(byteorder),
        _relabel(relabel_float32),
        _max_size(max_size),
    )
    return dict(records)


def load(
    source: Source,
    *,
    copy: bool = False,
    byteorder: str = "<",
    relabel_float32: bool | str = False,
    max_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode the PTTH blob in a file: a path or a binary file object.

    The arguments are :func:`loads`'; without ``max_size`` a compressed file
    may decode to what its own size allows (DEFLATE's largest expansion).

    Raises:
        PTTHError: the file does not hold a valid blob.
        OSError: the file cannot be read.
        TypeError: ``source`` is neither a path nor a binary file.

    Example:
        >>> ptth.dump({"w": np.zeros(3, np.float32)}, "model.ptth")  # doctest: +SKIP
        >>> ptth.load("model.ptth")["w"].shape  # doctest: +SKIP
        (3,)
    """
    with _open_source(source) as f:
        size = _file_size(f)
        data = _read_all(f)
    view = _bytes(data)
    cap = _max_size(max_size, _cap_for(size if size is None else len(view), view))
    return loads(
        view, copy=copy, byteorder=byteorder, relabel_float32=relabel_float32, max_size=cap
    )


class Decoder:
    """A streaming decoder: ``feed(chunk)`` returns the records that chunk completed.

    Memory is one chunk plus the record being filled; compressed input (any
    wrapper) is inflated straight into the arrays. Arrays are owned, writable,
    64-byte aligned and in native byte order. An error ends the decoder: any
    later ``feed`` or ``close`` raises ``PTTHError("closed")``; ``close()``
    after a successful ``close()`` does nothing. Safe to share between threads.

    Args:
        copy: accepted for symmetry with :func:`loads`; streamed arrays are
            always owned.
        byteorder, relabel_float32: as for :func:`loads`.
        max_size: bound on the decoded blob (``None``: :data:`DEFAULT_MAX_SIZE`).

    Raises:
        PTTHError: ``too_large`` at once when ``max_size`` is below 4 bytes.

    Example:
        >>> dec = ptth.Decoder()
        >>> blob = ptth.dumps({"w": np.ones(2, np.float32)})
        >>> dec.feed(blob[:7]), [n for n, _ in dec.feed(blob[7:])]
        ([], ['w'])
        >>> dec.close()
    """

    def __init__(
        self,
        *,
        copy: bool = True,
        byteorder: str = "<",
        relabel_float32: bool | str = False,
        max_size: int | None = None,
    ) -> None:
        _flag(copy, "copy")
        self._dec = _engine.Decoder(
            _byteorder(byteorder), _relabel(relabel_float32), _max_size(max_size)
        )

    def feed(self, chunk: Buffer) -> list[tuple[str, np.ndarray]]:
        """Consume ``chunk``; return the (name, array) records it completed, in order.

        Raises:
            PTTHError: the stream broke a rule, or the decoder is closed or failed.
        """
        return self._dec.feed(_bytes(chunk, "chunk"))

    def close(self) -> None:
        """Say the input ended.

        Raises:
            PTTHError: ``truncated`` / ``stream_truncated`` if the blob is incomplete.
        """
        self._dec.close()

    @property
    def byteorder(self) -> str | None:
        """``"<"`` or ``">"`` once the payload byte order is known, else ``None``."""
        order = self._dec.byteorder
        return None if order is None else (">" if order == _engine.ByteOrder.big else "<")

    @property
    def wrapper(self) -> str | None:
        """``"none"``, ``"zlib"``, ``"gzip"`` or ``"deflate"`` once detected, else ``None``."""
        wrapper = self._dec.wrapper
        return None if wrapper is None else wrapper.name

    @property
    def state(self) -> str:
        """``"open"``, ``"closed"`` or ``"failed"``."""
        return str(self._dec.state)


def iter_load(
    source: Source,
    *,
    copy: bool = True,
    byteorder: str = "<",
    relabel_float32: bool | str = False,
    max_size: int | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, array) records of a file as they complete, one chunk in memory at a time.

    ``source`` is a path or a binary file object (a pipe or socket file too).
    Without ``max_size`` a regular file or mmap bounds its own decode (its
    size if uncompressed; DEFLATE's largest expansion of it if compressed); a
    stream of unknown size keeps :data:`DEFAULT_MAX_SIZE`.

    Raises:
        PTTHError: the content is not a valid blob.
        TypeError: ``source`` is neither a path nor a binary file.

    Example:
        >>> for name, array in ptth.iter_load("upload.ptth"):  # doctest: +SKIP
        ...     print(name, array.shape)
    """
    _flag(copy, "copy")
    order, relabel = _byteorder(byteorder), _relabel(relabel_float32)
    explicit = None if max_size is None else _max_size(max_size)
    with _open_source(source) as f:
        size = _file_size(f)
        buf = bytearray(READ_CHUNK)
        view = memoryview(buf)
        n = _read_into(f, view)
        cap = explicit if explicit is not None else _cap_for(size, view[:n])
        # a payload no larger than the file may be allocated whole: a longer claim is
        # truncation anyway, and a whole allocation reuses pooled pages
        dec = _engine.Decoder(order, relabel, cap, 0 if size is None else size)
        while n:
            yield from dec.feed(view[:n])
            n = _read_into(f, view)
    dec.close()


def detect_wrapper(data: Buffer) -> str:
    """The wrapper the format's table gives for these first bytes: none, zlib, gzip or deflate.

    Example:
        >>> ptth.detect_wrapper(b"PTTH"), ptth.detect_wrapper(b"\\x78\\x9c")
        ('none', 'zlib')
    """
    return _engine.detect_wrapper(_bytes(data)).name


# ---- encoding -----------------------------------------------------------------------------


_TARGETS = {"float16": _engine.DType.float16, "float32": _engine.DType.float32}
_CONVERT = {
    (_engine.DType.float32, _engine.DType.float16): _engine.Convert.f32_to_f16,
    (_engine.DType.float64, _engine.DType.float16): _engine.Convert.f64_to_f16,
    (_engine.DType.float64, _engine.DType.float32): _engine.Convert.f64_to_f32,
}
_ITEMSIZE = {
    _engine.DType.float32: 4,
    _engine.DType.float64: 8,
    _engine.DType.int32: 4,
    _engine.DType.float16: 2,
}
_U32_MAX = 2**32 - 1


def _dtype_name(value: object, name: str, allowed: Iterable[str]) -> str | None:
    """None, or the name of an allowed dtype given as a string, type or np.dtype."""
    options = tuple(allowed)
    if value is None:
        return None
    if isinstance(value, str):
        key = value
    else:
        try:
            key = np.dtype(value).name  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be None or one of {', '.join(options)}, not {_type_name(value)}"
            ) from None
    if key not in options:
        raise ValueError(f"{name} must be None or one of {', '.join(options)}, not {value!r}")
    return key


def _records(tensors: object, dtype: object) -> list[tuple[str, np.ndarray, Any, Any]]:
    mapping = _mapping(tensors, "tensors")
    target_name = _dtype_name(dtype, "dtype", _TARGETS)
    target = None if target_name is None else _TARGETS[target_name]
    records = []
    for key, value in mapping.items():
        name = _name(key, "tensor")
        arr = _array(value, f"tensor {name!r}")
        code = _engine_dtype(arr)
        if code is None:
            raise PTTHError(
                "unsupported_dtype",
                f"tensor {name!r} has dtype {arr.dtype}; PTTH "
                "stores float32, float64, int32 and float16",
                name=name,
            )
        convert = _CONVERT.get((code, target))
        written = target if convert is not None else code
        # Before any copy (a broadcast array would be materialized first).
        if arr.size * _ITEMSIZE[written] > _U32_MAX:
            raise PTTHError(
                "not_representable",
                f"tensor {name!r}: its payload of "
                f"{arr.size * _ITEMSIZE[written]} bytes exceeds 4 GiB - 1",
                name=name,
            )
        records.append((name, _native_c(arr), written, convert or _engine.Convert.none))
    return records


def dumps(
    tensors: Tensors,
    *,
    dtype: str | None = None,
    compress: int | None = None,
    wrapper: str | None = None,
    saturate: bool = False,
    threads: int = 1,
) -> bytes:
    """Encode a mapping of names to arrays as one PTTH blob.

    Args:
        tensors: name -> array (float32, float64, int32 or float16; anything
            ``np.asarray`` accepts). Records keep the mapping's order.
        dtype: ``"float16"`` quantizes float32/float64 tensors; ``"float32"``
            narrows float64 ones; ``None`` writes each tensor's own dtype.
        compress: a level 0..9 wraps the blob in a DEFLATE stream.
        wrapper: with ``compress``: ``"zlib"`` (default), ``"gzip"`` or
            ``"deflate"`` (raw). Without ``compress`` it is refused: a blob
            that silently stayed uncompressed would be a surprise.
        saturate: when narrowing overflows (e.g. 1e6 to float16), write the
            largest finite value of the sign instead of raising.
        threads: cores that deflate at once (``0``: all); the bytes do not
            depend on it.

    Raises:
        PTTHError: a tensor has no PTTH dtype (``unsupported_dtype``), cannot
            be written (``not_representable``, ``bad_name``), or narrowing
            overflows (``overflow``, naming the tensor).
        TypeError, ValueError: an argument has the wrong type or value.

    Example:
        >>> blob = ptth.dumps({"w": np.ones(4, np.float32)}, dtype="float16", compress=6)
        >>> ptth.detect_wrapper(blob)
        'zlib'
    """
    records = _records(tensors, dtype)
    if compress is None:
        if wrapper is not None:
            raise ValueError("wrapper= needs compress=: pass compress=LEVEL (0..9, e.g. 6)")
        level, wrapped = -1, _engine.Wrapper.zlib
    else:
        level = _level(compress, "compress")
        wrapped = _wrapper("zlib" if wrapper is None else wrapper)
    return _engine.encode(records, level, wrapped, _flag(saturate, "saturate"), _threads(threads))


def dump(
    tensors: Tensors,
    target: Source,
    *,
    dtype: str | None = None,
    compress: int | None = None,
    wrapper: str | None = None,
    saturate: bool = False,
    threads: int = 1,
) -> None:
    """Encode ``tensors`` (as :func:`dumps` does) into a path or a writable binary file.

    Raises:
        PTTHError, TypeError, ValueError: as :func:`dumps`.
        OSError: the file cannot be written.

    Example:
        >>> ptth.dump({"w": np.zeros(3, np.float32)}, "update.ptth", compress=6)  # doctest: +SKIP
    """
    blob = dumps(
        tensors, dtype=dtype, compress=compress, wrapper=wrapper, saturate=saturate, threads=threads
    )
    if isinstance(target, (str, bytes, os.PathLike)):
        with open(target, "wb") as f:
            f.write(blob)
        return
    if isinstance(target, io.TextIOBase):
        raise TypeError("target is a file opened in text mode; open it in binary mode ('wb')")
    if not hasattr(target, "write"):
        raise TypeError(
            f"target must be a path or a writable binary file, not {_type_name(target)}"
        )
    target.write(blob)


def compress(data: Buffer, level: int = 6, wrapper: str = "zlib", threads: int = 1) -> bytes:
    """Compress bytes into one standard zlib, gzip or raw DEFLATE stream.

    The stream is written in 1 MiB blocks (pigz's layout: each primed with the
    previous 32 KiB, joined by sync flushes, one checksum), so ``threads``
    cores can deflate at once and the bytes do not depend on how many did.
    Any zlib, gzip or DEFLATE decoder reads it. Levels 1..9 keep at least
    zlib-ng level 6's ratio on float payloads (docs/compression.md says
    which engine runs each level; that is not part of the contract).

    Args:
        data: any bytes-like object.
        level: 0 (stored) .. 9.
        wrapper: ``"zlib"``, ``"gzip"`` or ``"deflate"`` (raw, as Apple's
            Compression framework writes it).
        threads: cores to use (``0``: all of them).

    Raises:
        TypeError, ValueError: an argument has the wrong type or value.

    Example:
        >>> ptth.decompress(ptth.compress(b"PTTH" * 100)) == b"PTTH" * 100
        True
    """
    view = _bytes(data)
    return _engine.compress(view, _level(level, "level"), _wrapper(wrapper), _threads(threads))


def decompress(data: Buffer, *, wrapper: str = "auto", max_size: int | None = None) -> bytes:
    """Inflate a zlib, gzip or raw DEFLATE stream (``wrapper="auto"`` detects which).

    Args:
        data: the compressed bytes.
        wrapper: ``"auto"``, ``"zlib"``, ``"gzip"``, ``"deflate"`` or ``"none"``.
        max_size: bound on the output (``None``: :data:`DEFAULT_MAX_SIZE`).

    Raises:
        PTTHError: ``too_large``, ``stream_corrupt``, ``bad_checksum``,
            ``stream_truncated`` or ``stream_trailing``, with the output offset.

    Example:
        >>> ptth.decompress(ptth.compress(b"abc", wrapper="gzip"))
        b'abc'
    """
    view = _bytes(data)
    choice = _choice(wrapper, "wrapper", ("auto", "none", "zlib", "gzip", "deflate"))
    return _engine.decompress(
        view, None if choice == "auto" else _WRAPPERS[choice], _max_size(max_size)
    )


# ---- element kernels --------------------------------------------------------------------


def _float_input(x: object, what: str, allowed: tuple[np.dtype, ...] = _FLOATS) -> np.ndarray:
    arr = _array(x, what)
    if arr.dtype.newbyteorder("=") not in allowed:
        names = ", ".join(d.name for d in allowed)
        raise PTTHError("unsupported_dtype", f"{what} must be {names}, not {arr.dtype}")
    return arr


_ENGINE_DTYPES = {_F16: "float16", _F32: "float32", _F64: "float64", _I32: "int32"}


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A fresh output from the engine's allocator (the native one maps huge pages and
    reuses freed buffers, so a fresh output need not fault and zero new pages)."""
    return _engine.empty(list(shape), getattr(_engine.DType, _ENGINE_DTYPES[dtype]))


def _out(out: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return _empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, not {_type_name(out)}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype.name} (native order), not {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, the result {shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writable")
    return out


def _apart(arr: np.ndarray, out: np.ndarray) -> np.ndarray:
    """arr as a native C-contiguous input that does not overlap ``out``: overlapping
    inputs are copied first, so the result is as if they had been."""
    arr = _native_c(arr)
    if np.may_share_memory(arr, out):
        arr = arr.copy()
    return arr


def to_float16(x: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Round float32 or float64 values to float16 (nearest, ties to even), NumPy's result.

    float64 is rounded directly (never through float32); values beyond
    float16's range become +-inf, as NumPy's ``astype`` does; a NaN stays NaN
    (quiet, with its sign). float16 input is copied.

    Args:
        x: array-like of float16, float32 or float64, any shape and strides.
        out: a writable C-contiguous float16 array of ``x``'s shape to write into.

    Raises:
        PTTHError: ``unsupported_dtype`` for any other input dtype.
        TypeError, ValueError: ``out`` is not such an array.

    Example:
        >>> ptth.to_float16(np.array([0.1, 70000.0], np.float32))
        array([0.1, inf], dtype=float16)
    """
    arr = _float_input(x, "x")
    result = _out(out, arr.shape, _F16)
    src = _apart(arr, result)
    if src.dtype == _F16:
        np.copyto(result, src)
    elif src.dtype == _F32:
        _engine.f32_to_f16(src, result)
    else:
        _engine.f64_to_f16(src, result)
    return result


def to_float32(h: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Widen float16 values to float32 (exact).

    Raises:
        PTTHError: ``unsupported_dtype`` unless ``h`` is float16.
        TypeError, ValueError: ``out`` is not a writable C-contiguous float32
            array of ``h``'s shape.

    Example:
        >>> ptth.to_float32(np.array([0.5, -2], np.float16))
        array([ 0.5, -2. ], dtype=float32)
    """
    arr = _float_input(h, "h", (_F16,))
    result = _out(out, arr.shape, _F32)
    _engine.f16_to_f32(_apart(arr, result), result)
    return result


_RESULT_DTYPES = {"float16": _F16, "float32": _F32, "float64": _F64}


def subtract(
    updated: Any, base: Any, *, dtype: str | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """``updated - base`` in their dtype (float32 or float64), converted to ``dtype``.

    Args:
        updated, base: arrays of one shape and one dtype, float32 or float64.
        dtype: ``None`` (the inputs'), ``"float16"`` (one rounding of the
            difference), ``"float32"`` or ``"float64"``.
        out: a writable C-contiguous array of the result's dtype and shape;
            it may overlap the inputs (the result is as if they were copied).

    Raises:
        PTTHError: ``shape_mismatch`` or ``unsupported_dtype``.
        TypeError, ValueError: ``dtype`` or ``out`` is not acceptable.

    Example:
        >>> ptth.subtract(np.ones(2, np.float32), np.zeros(2, np.float32), dtype="float16")
        array([1., 1.], dtype=float16)
    """
    u, b = _array(updated, "updated"), _array(base, "base")
    key = _dtype_name(dtype, "dtype", _RESULT_DTYPES)
    if u.shape != b.shape:
        raise PTTHError("shape_mismatch", f"updated has shape {u.shape}, base {b.shape}")
    ud, bd = u.dtype.newbyteorder("="), b.dtype.newbyteorder("=")
    if ud != bd or ud not in (_F32, _F64):
        raise PTTHError(
            "unsupported_dtype",
            f"subtract takes two float32 or two float64 arrays, not {u.dtype} and {b.dtype}",
        )
    target = ud if key is None else _RESULT_DTYPES[key]
    result = _out(out, u.shape, target)
    u, b = _apart(u, result), _apart(b, result)
    if target == ud:
        (_engine.sub_f32 if ud == _F32 else _engine.sub_f64)(u, b, result)
    elif target == _F16:
        (_engine.sub_f32_to_f16 if ud == _F32 else _engine.sub_f64_to_f16)(u, b, result)
    else:  # float32 <-> float64: one rounding of the difference, as NumPy does it
        diff = np.empty(u.shape, ud)
        (_engine.sub_f32 if ud == _F32 else _engine.sub_f64)(u, b, diff)
        np.copyto(result, diff, casting="unsafe")
    return result


def _is_int32(arr: np.ndarray) -> bool:
    return arr.dtype.newbyteorder("=") == _I32


def compute_delta(
    updated: Tensors, base: Tensors, *, dtype: str | None = None
) -> dict[str, np.ndarray]:
    """Per name of ``updated``: ``subtract(updated[name], base[name], dtype=dtype)``.

    int32 tensors (counters) are subtracted as int32, wrapping, and ignore ``dtype``.

    Raises:
        PTTHError: a name of ``updated`` is missing from ``base`` (``unknown_name``),
            or :func:`subtract`'s errors, naming the tensor.
        TypeError, ValueError: an argument has the wrong type or value.

    Example:
        >>> d = ptth.compute_delta({"w": np.ones(2, np.float32)}, {"w": np.zeros(2, np.float32)})
        >>> d["w"]
        array([1., 1.], dtype=float32)
    """
    _dtype_name(dtype, "dtype", _RESULT_DTYPES)
    new_map, old_map = _mapping(updated, "updated"), _mapping(base, "base")
    delta = {}
    for key, value in new_map.items():
        if key not in old_map:
            raise PTTHError("unknown_name", f"{key!r} is not in base", name=str(key))
        new, old = _array(value, f"updated[{key!r}]"), _array(old_map[key], f"base[{key!r}]")
        if _is_int32(new) and _is_int32(old):
            if new.shape != old.shape:
                raise PTTHError(
                    "shape_mismatch", f"{key!r}: shapes {new.shape} and {old.shape}", name=str(key)
                )
            with np.errstate(all="ignore"):
                delta[key] = np.subtract(new, old, dtype=np.int32)
            continue
        try:
            delta[key] = subtract(new, old, dtype=dtype)
        except PTTHError as exc:
            raise PTTHError(exc.reason, f"{key!r}: {exc.message}", name=str(key)) from None
    return delta


def apply_delta(base: Tensors, delta: Tensors, *, scale: float = 1.0) -> dict[str, np.ndarray]:
    """A new dict in ``base``'s order: ``base + scale * delta`` per name.

    Floating tensors compute in the base's type T with two roundings
    (``T(scale) * T(delta)``, then the sum); float16 deltas widen exactly.
    int32 tensors get ``base + delta`` (counters: ``scale`` does not apply).
    Names absent from ``delta`` map to the base's own arrays.

    Raises:
        PTTHError: a name only in ``delta`` (``unknown_name``), shapes that
            differ, or dtypes that do not combine.
        TypeError, ValueError: ``scale`` is not a real number.

    Example:
        >>> base, delta = {"w": np.ones(2, np.float32)}, {"w": np.ones(2, np.float16)}
        >>> ptth.apply_delta(base, delta, scale=0.5)
        {'w': array([1.5, 1.5], dtype=float32)}
    """
    factor = _real(scale, "scale")
    base_map, delta_map = _mapping(base, "base"), _mapping(delta, "delta")
    for key in delta_map:
        if key not in base_map:
            raise PTTHError("unknown_name", f"{key!r} is in delta but not in base", name=str(key))
    out: dict[str, np.ndarray] = {}
    for key, value in base_map.items():
        if key not in delta_map:
            out[key] = value
            continue
        b = _native_c(_array(value, f"base[{key!r}]"))
        d = _native_c(_array(delta_map[key], f"delta[{key!r}]"))
        if b.shape != d.shape:
            raise PTTHError(
                "shape_mismatch", f"{key!r}: shapes {b.shape} and {d.shape}", name=str(key)
            )
        if _is_int32(b) and _is_int32(d):
            with np.errstate(all="ignore"):
                out[key] = np.add(b, d, dtype=np.int32)
            continue
        if b.dtype not in _FLOATS or d.dtype not in _FLOATS:
            raise PTTHError(
                "unsupported_dtype",
                f"{key!r}: cannot apply a {d.dtype} delta to {b.dtype}",
                name=str(key),
            )
        if b.dtype == _F16:  # no kernel for float16 arithmetic: NumPy's, in float16
            with np.errstate(all="ignore"):
                step = d.astype(_F16)
                np.multiply(_F16.type(factor), step, out=step)
                out[key] = np.add(b, step, out=step)
            continue
        result = _empty(b.shape, b.dtype)
        if b.dtype == _F32 and d.dtype == _F16:
            _engine.axpy_f32_f16(b, factor, d, result)
        elif b.dtype == _F32:
            _engine.axpy_f32(b, factor, d.astype(_F32, copy=False), result)
        else:
            _engine.axpy_f64(b, factor, d.astype(_F64, copy=False), result)
        out[key] = result
    return out


# ---- the aggregator ---------------------------------------------------------------------


class AddResult(NamedTuple):
    """What :meth:`Aggregator.add` folded.

    Attributes:
        norm: the update's L2 norm before clipping, over all its parameters
            (for ``kind="full"``, of the update minus the template).
        max_abs: its largest absolute element.
        factor: the clipping factor applied, ``min(1, clip_norm / norm)``.
        parameters: how many parameters it touched.
        elements: how many elements.
        byteorder: ``"<"`` or ``">"``: the byte order its payloads were read in.
        relabelled: records read as float32 under another dtype code.
        counted: whether it counts as a contribution (an update with no
            parameters does not, unless ``count_empty=True``).
    """

    norm: float
    max_abs: float
    factor: float
    parameters: int
    elements: int
    byteorder: str
    relabelled: int
    counted: bool


_ACCUMULATE = {"float64": (_engine.Accum.f64, _F64), "float32": (_engine.Accum.f32, _F32)}
_KINDS = {"delta": _engine.Kind.delta, "full": _engine.Kind.full}
_LOADS_KW = ("copy", "byteorder", "relabel_float32", "max_size")
_OUT_DTYPES = {"float16": _F16, "float32": _F32, "float64": _F64, "int32": _I32}


class PartialAggregate:
    """An aggregator's state without its template: accumulators, weight sums, counts.

    What :meth:`Aggregator.partial` returns and :meth:`Aggregator.merge`
    takes: the smallest thing a partial round can ship between machines. It
    pickles with protocol-5 out-of-band buffers. Partials of the same
    template merge with ``+`` (in order: the sums are the same as merging
    them into an aggregator one after the other).
    """

    __slots__ = (
        "accumulate",
        "accumulators",
        "count",
        "empty",
        "names",
        "shapes",
        "total_weight",
        "weight_sums",
    )

    def __init__(
        self,
        names: list[str],
        shapes: list[tuple[int, ...]],
        accumulate: str,
        accumulators: list[np.ndarray],
        weight_sums: list[float],
        count: int,
        total_weight: float,
        empty: int,
    ) -> None:
        self.names, self.shapes, self.accumulate = names, shapes, accumulate
        self.accumulators, self.weight_sums = accumulators, weight_sums
        self.count, self.total_weight, self.empty = count, total_weight, empty

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for slot, value in zip(self.__slots__, state):
            setattr(self, slot, value)

    def __add__(self, other: PartialAggregate) -> PartialAggregate:
        if not isinstance(other, PartialAggregate):
            return NotImplemented
        if (other.names, other.shapes, other.accumulate) != (
            self.names,
            self.shapes,
            self.accumulate,
        ):
            raise PTTHError("shape_mismatch", "the partial aggregates hold different parameters")
        return PartialAggregate(
            self.names,
            self.shapes,
            self.accumulate,
            [np.add(a, b) for a, b in zip(self.accumulators, other.accumulators)],
            [a + b for a, b in zip(self.weight_sums, other.weight_sums)],
            self.count + other.count,
            self.total_weight + other.total_weight,
            self.empty + other.empty,
        )

    @property
    def nbytes(self) -> int:
        """Bytes of accumulator data."""
        return sum(a.nbytes for a in self.accumulators)


class Aggregator:
    """Weighted FedAvg over PTTH updates in about one model's memory.

    The aggregator keeps the template (the round's global model, borrowed:
    do not modify it during the round), one accumulator per parameter in
    ``accumulate``'s dtype and a weight sum per parameter. ``add`` validates a
    whole update (structure; names, shapes and dtypes against the template as
    each record header arrives; finiteness, integrality and norm bounds in one
    pass that also yields its norm) before it folds ``weight * factor *
    update`` in: a rejected update changes nothing. Adds release the GIL and
    may run from many threads at once; snapshots (``mean``, ``apply``,
    ``sum``, pickling) never see an add half-way.

    Args:
        template: name -> array (float16, float32, float64 or int32).
        accumulate: ``"float64"`` (exact for float16/float32 updates) or
            ``"float32"``.
        byteorder, relabel_float32: how blob payloads are read, for every add
            (an add may override them). The defaults decide from the bit
            patterns (``"auto"``), so an Android (big-endian) upload is read
            correctly and an iOS relabelled one too; each add's result says
            what was decided.
        allow_cast: fold values whatever the template's dtype (by default an
            int32 update for a float parameter, or non-integral values for an
            int32 parameter, is refused as ``dtype_mismatch``).
        allow_nonfinite: fold NaN and infinity instead of refusing them.
        max_size: bound on a compressed upload's decoded size; by default what
            a valid update of this template can be (every parameter at
            float64, plus headers).

    Raises:
        TypeError, ValueError: the template or an option is not acceptable.

    Example:
        >>> model = {"w": np.zeros(2, np.float32)}
        >>> agg = ptth.Aggregator(model)
        >>> agg.add(ptth.dumps({"w": np.ones(2, np.float32)}), weight=3).norm
        1.4142135623730951
        >>> agg.apply()["w"]
        array([1., 1.], dtype=float32)
    """

    def __init__(
        self,
        template: Tensors,
        *,
        accumulate: str = "float64",
        byteorder: str = "auto",
        relabel_float32: bool | str = "auto",
        allow_cast: bool = False,
        allow_nonfinite: bool = False,
        max_size: int | None = None,
    ) -> None:
        mapping = _mapping(template, "template")
        self._accumulate = _choice(accumulate, "accumulate", _ACCUMULATE)
        names, arrays = [], []
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise TypeError(f"template names must be str, not {_type_name(key)}")
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"template name {key!r} cannot be encoded as UTF-8") from None
            try:
                arr = np.asarray(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"template[{key!r}] is not an array: {exc}") from None
            if _engine_dtype(arr) is None:
                raise TypeError(
                    f"template[{key!r}] has dtype {arr.dtype}; the aggregator takes "
                    "float16, float32, float64 and int32"
                )
            names.append(key)
            arrays.append(_native_c(arr))
        self._names = names
        self._template = dict(zip(names, arrays))
        self._core = _engine.AggregatorCore(names, arrays, _ACCUMULATE[self._accumulate][0])
        cap = int(self._core.blob_cap)
        self._defaults = {
            "byteorder": _byteorder(byteorder),
            "relabel": _relabel(relabel_float32),
            "allow_cast": _flag(allow_cast, "allow_cast"),
            "allow_nonfinite": _flag(allow_nonfinite, "allow_nonfinite"),
            "max_size": cap if max_size is None else min(_max_size(max_size), cap),
        }

    # -- adding -----------------------------------------------------------------------

    def _weight(self, weight: object) -> float:
        w = _finite(weight, "weight", positive=True)
        if self._accumulate == "float32":
            with np.errstate(over="ignore"):  # an overflow is the refusal below
                w32 = np.float32(w)
            if not (np.isfinite(w32) and w32 >= np.finfo(np.float32).tiny):
                raise ValueError(
                    f"weight {w!r} is outside float32's normal range (accumulate='float32')"
                )
        return w

    def _options(
        self,
        kind: str,
        clip_norm: object,
        max_norm: object,
        max_abs: object,
        allow_nonfinite: object,
        allow_cast: object,
        count_empty: object,
        loads_kw: dict[str, Any],
    ) -> Any:
        unknown = set(loads_kw) - set(_LOADS_KW)
        if unknown:
            raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
        if "copy" in loads_kw:
            _flag(
                loads_kw["copy"], "copy"
            )  # accepted for symmetry with loads; adds never keep arrays
        d = self._defaults
        clip = 0.0 if clip_norm is None else _finite(clip_norm, "clip_norm", positive=True)
        return _engine.AddOptions(
            kind=_KINDS[_choice(kind, "kind", _KINDS)],
            byteorder=_byteorder(loads_kw["byteorder"])
            if "byteorder" in loads_kw
            else d["byteorder"],
            relabel=_relabel(loads_kw["relabel_float32"])
            if "relabel_float32" in loads_kw
            else d["relabel"],
            max_size=min(_max_size(loads_kw["max_size"]), int(self._core.blob_cap))
            if loads_kw.get("max_size") is not None
            else d["max_size"],
            allow_nonfinite=d["allow_nonfinite"]
            if allow_nonfinite is None
            else _flag(allow_nonfinite, "allow_nonfinite"),
            allow_cast=d["allow_cast"] if allow_cast is None else _flag(allow_cast, "allow_cast"),
            count_empty=_flag(count_empty, "count_empty"),
            clip_norm=clip,
            max_norm=_bound(max_norm, "max_norm"),
            max_abs=_bound(max_abs, "max_abs"),
        )

    def _update(self, update: object) -> Any:
        """A blob as a byte view, or a mapping as [(name, native C-contiguous array)]."""
        if isinstance(update, Mapping):
            items = []
            for key, value in update.items():
                name = _name(key, "update")
                arr = _array(value, f"update[{name!r}]")
                if _engine_dtype(arr) is None:
                    raise PTTHError(
                        "unsupported_dtype", f"update[{name!r}] has dtype {arr.dtype}", name=name
                    )
                items.append((name, _native_c(arr)))
            return items
        return _bytes(update, "update")

    def add(
        self,
        update: Buffer | Tensors,
        weight: float = 1.0,
        *,
        kind: str = "delta",
        clip_norm: float | None = None,
        max_norm: float | None = None,
        max_abs: float | None = None,
        allow_nonfinite: bool | None = None,
        allow_cast: bool | None = None,
        count_empty: bool = False,
        **loads_kw: Any,
    ) -> AddResult:
        """Validate one update and fold ``weight * factor * update`` into the round.

        Args:
            update: a PTTH blob (any bytes-like object, any wrapper, any payload
                dtype) or a mapping of names to arrays; it may hold a subset of
                the template's parameters (a partial update).
            weight: a positive finite number, e.g. the client's sample count.
            kind: ``"delta"`` (the update is ``updated - template``) or
                ``"full"`` (the client's full weights; the template is
                subtracted).
            clip_norm: scale the update to at most this L2 norm first (over all
                its parameters), as DP-FedAvg does.
            max_norm, max_abs: refuse (``norm_exceeded``) an update whose L2
                norm, or any element's magnitude, exceeds the bound.
            allow_nonfinite, allow_cast: override the aggregator's setting.
            count_empty: count an update with no parameters as a contribution.
            **loads_kw: ``byteorder``, ``relabel_float32``, ``max_size`` (as for
                :func:`loads`; they override the aggregator's for this add).

        Returns:
            The update's norm, the factor applied and what it touched.

        Raises:
            PTTHError: the update is malformed or does not fit the template
                (``unknown_name``, ``shape_mismatch``, ``dtype_mismatch``,
                ``nonfinite``, ``norm_exceeded``, ``overflow``...); nothing changed.
            TypeError, ValueError: an argument has the wrong type or value.

        A blob in a writable buffer is read twice (validation, then the fold):
        another thread that rewrites the buffer during the add defeats the
        validation. Pass ``bytes`` or a buffer nobody writes.
        """
        w = self._weight(weight)
        opts = self._options(
            kind, clip_norm, max_norm, max_abs, allow_nonfinite, allow_cast, count_empty, loads_kw
        )
        data = self._update(update)
        if isinstance(data, list):
            return AddResult(*self._core.add_arrays(data, w, opts))
        return AddResult(*self._core.add_blob(data, w, opts))

    def add_many(
        self,
        updates: Iterable[Buffer | Tensors],
        weights: Iterable[float] | None = None,
        *,
        kind: str = "delta",
        clip_norm: float | None = None,
        max_norm: float | None = None,
        max_abs: float | None = None,
        allow_nonfinite: bool | None = None,
        allow_cast: bool | None = None,
        count_empty: bool = False,
        **loads_kw: Any,
    ) -> list[AddResult | PTTHError]:
        """Validate each update, then fold every valid one in one pass over the accumulators.

        Each update is still all-or-nothing: an invalid one is reported by its
        ``PTTHError`` in the returned list and leaves no trace; the others are
        folded. The result is bit-identical to calling :meth:`add` on the
        valid ones in order. The keywords are :meth:`add`'s, for every update.

        Args:
            updates: blobs and/or mappings.
            weights: one per update (default 1.0 each).

        Returns:
            One :class:`AddResult` or :class:`PTTHError` per update, in order.

        Raises:
            TypeError, ValueError: an argument (a weight, an update's type) is
                not acceptable; nothing is added.

        Example:
            >>> agg = ptth.Aggregator({"w": np.zeros(2, np.float32)})
            >>> good = ptth.dumps({"w": np.ones(2, np.float32)})
            >>> [type(r).__name__ for r in agg.add_many([good, b"junk"], [1, 2])]
            ['AddResult', 'PTTHError']
        """
        try:
            batch = list(updates)
        except (TypeError, NotImplementedError):
            raise TypeError(
                f"updates must be an iterable of blobs or mappings, not {_type_name(updates)}"
            ) from None
        # A bad update (wrong dtype in a mapping) is that update's outcome; only a bad
        # argument (an update of the wrong type) stops the call.
        items: list[Any] = []
        for u in batch:
            try:
                items.append(self._update(u))
            except PTTHError as exc:
                items.append(exc)
        if weights is None:
            ws = [1.0] * len(items)
        else:
            try:
                given = list(weights)
            except (TypeError, NotImplementedError):
                raise TypeError(
                    f"weights must be an iterable of numbers, not {_type_name(weights)}"
                ) from None
            ws = [self._weight(w) for w in given]
            if len(ws) != len(items):
                raise ValueError(f"weights has {len(ws)} values for {len(items)} updates")
        opts = self._options(
            kind, clip_norm, max_norm, max_abs, allow_nonfinite, allow_cast, count_empty, loads_kw
        )
        ready = [i for i, it in enumerate(items) if not isinstance(it, PTTHError)]
        done = self._core.add_many([items[i] for i in ready], [ws[i] for i in ready], opts)
        out: list[AddResult | PTTHError] = list(items)  # the refused ones keep their error
        for i, r in zip(ready, done):
            out[i] = r if isinstance(r, PTTHError) else AddResult(*r)
        return out

    def merge(self, other: Aggregator | PartialAggregate) -> None:
        """Add another aggregator's (or a :class:`PartialAggregate`'s) state over the same template.

        Raises:
            PTTHError: the parameters differ (``shape_mismatch``) or the
                partial state is inconsistent (``bad_state``).
            TypeError, ValueError: ``other`` is neither, accumulates in another
                dtype, or is this aggregator.
        """
        if isinstance(other, PartialAggregate):
            self._check_partial(other)
            accs, sums, count, total, empty = _state_values(
                other.accumulators, other.weight_sums, other.count, other.total_weight, other.empty
            )
            self._core.restore(accs, sums, count, total, empty, True)
            return
        if not isinstance(other, Aggregator):
            raise TypeError(
                f"can only merge an Aggregator or a PartialAggregate, not {_type_name(other)}"
            )
        if other is self:
            raise ValueError("an aggregator cannot merge itself")
        if other._accumulate != self._accumulate:
            raise ValueError("the aggregators accumulate in different dtypes")
        self._core.merge(other._core)

    def _check_partial(self, p: PartialAggregate) -> None:
        if p.accumulate != self._accumulate:
            raise ValueError("the partial aggregate accumulates in another dtype")
        shapes = [self._template[n].shape for n in self._names]
        if list(p.names) != self._names or [tuple(s) for s in p.shapes] != shapes:
            raise PTTHError("shape_mismatch", "the partial aggregate holds other parameters")

    # -- reading the round ----------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many updates contributed (never waits behind adders)."""
        return int(self._core.totals()[0])

    @property
    def total_weight(self) -> float:
        """The sum of the contributing updates' weights."""
        return float(self._core.totals()[1])

    @property
    def empty_updates(self) -> int:
        """Updates that held no parameters and were not counted."""
        return int(self._core.totals()[2])

    @property
    def template(self) -> dict[str, np.ndarray]:
        """The template the aggregator holds (native order, C-contiguous)."""
        return dict(self._template)

    @property
    def accumulate(self) -> str:
        """The accumulate dtype: ``"float64"`` or ``"float32"``."""
        return self._accumulate

    @contextlib.contextmanager
    def _held(self) -> Iterator[Any]:
        hold = self._core.hold()
        try:
            yield hold
        finally:
            hold.release()

    def weight_sums(self) -> dict[str, float]:
        """Per parameter: the sum of the weights of the updates that held it."""
        with self._held() as h:
            return dict(zip(self._names, h.weight_sums()))

    def _outputs(
        self,
        what: Any,
        *,
        lr: float,
        dtype: object,
        out: object,
        denominator: object,
        noise_std: object,
        rng: object,
        allow_empty: object,
        allow_nonfinite: object,
        default_dtype: str | None,
    ) -> dict[str, np.ndarray]:
        key = _dtype_name(dtype, "dtype", _OUT_DTYPES)
        denom = 0.0 if denominator is None else _finite(denominator, "denominator", positive=True)
        std = 0.0 if noise_std is None else _real(noise_std, "noise_std")
        if not (math.isfinite(std) and std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, not {std!r}")
        if std and rng is None:
            rng = np.random.default_rng()  # seeded from the operating system's entropy
        if std and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, not {_type_name(rng)}")
        empty_ok = _flag(allow_empty, "allow_empty")
        nonfinite_ok = _flag(allow_nonfinite, "allow_nonfinite")
        outs: Mapping[str, Any] | None = None
        if out is not None:
            outs = _mapping(out, "out")
            missing = [n for n in self._names if n not in outs]
            if missing:
                raise ValueError(f"out lacks {missing[0]!r}")
        acc_dtype = _ACCUMULATE[self._accumulate][1]
        result: dict[str, np.ndarray] = {}
        with self._held() as h:
            if h.totals()[0] == 0 and not empty_ok:
                raise PTTHError(
                    "no_contributions",
                    "the round has no contribution: pass allow_empty=True to get the result anyway",
                )
            for i, name in enumerate(self._names):
                tmpl = self._template[name]
                want = (
                    _OUT_DTYPES[key]
                    if key is not None
                    else tmpl.dtype
                    if default_dtype is None
                    else _OUT_DTYPES[default_dtype]
                )
                target = _out(outs[name] if outs is not None else None, tmpl.shape, want)
                noise = None
                if std:
                    # rng is a Generator whenever std is set (checked above); acc_dtype is
                    # float32 or float64, which the stub's overloads take one at a time.
                    gen = cast(np.random.Generator, rng)
                    noise = gen.standard_normal(tmpl.shape, dtype=acc_dtype)  # type: ignore[arg-type]
                    noise *= acc_dtype.type(std)
                h.output(i, what, lr, denom, nonfinite_ok, target, noise)
                result[name] = target
        return result

    def mean(
        self,
        *,
        dtype: str | None = None,
        out: Mapping[str, np.ndarray] | None = None,
        denominator: float | None = None,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
        allow_empty: bool = False,
        allow_nonfinite: bool = False,
    ) -> dict[str, np.ndarray]:
        """The weighted mean update per parameter: ``(sum + noise) / denominator``.

        Computed in the accumulate dtype in one pass and written straight into
        the result in the template's dtype (or ``dtype``, or ``out``).

        Args:
            dtype: the result dtype for every parameter (``"float16"``,
                ``"float32"``, ``"float64"``, ``"int32"``); default the template's.
            out: name -> array to write into (C-contiguous, writable, the
                template's shape, the result dtype).
            denominator: a fixed denominator (the expected number of clients or
                total weight, as central DP requires); default each parameter's
                own weight sum (a parameter nobody updated gives 0).
            noise_std, rng: Gaussian noise of this standard deviation added once
                to the sum, drawn from ``rng`` (default: a generator seeded from
                the operating system's entropy). See the private-aggregation notes.
            allow_empty: return the result of a round with no contribution
                instead of raising.
            allow_nonfinite: return non-finite values instead of raising.

        Raises:
            PTTHError: ``no_contributions`` for an empty round, ``overflow`` when
                a result is not finite or does not fit its dtype.
        """
        return self._outputs(
            _engine.Output.mean,
            lr=1.0,
            dtype=dtype,
            out=out,
            denominator=denominator,
            noise_std=noise_std,
            rng=rng,
            allow_empty=allow_empty,
            allow_nonfinite=allow_nonfinite,
            default_dtype=None,
        )

    def sum(
        self,
        *,
        dtype: str | None = None,
        out: Mapping[str, np.ndarray] | None = None,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
        allow_empty: bool = False,
        allow_nonfinite: bool = False,
    ) -> dict[str, np.ndarray]:
        """The weighted sum ``sum(weight x factor x update)`` per parameter, plus optional noise.

        In the accumulate dtype unless ``dtype`` or ``out`` say otherwise; the
        arguments are :meth:`mean`'s.
        """
        return self._outputs(
            _engine.Output.sum,
            lr=1.0,
            dtype=dtype,
            out=out,
            denominator=None,
            noise_std=noise_std,
            rng=rng,
            allow_empty=allow_empty,
            allow_nonfinite=allow_nonfinite,
            default_dtype=self._accumulate,
        )

    def apply(
        self,
        lr: float = 1.0,
        *,
        dtype: str | None = None,
        out: Mapping[str, np.ndarray] | None = None,
        denominator: float | None = None,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
        allow_empty: bool = False,
        allow_nonfinite: bool = False,
    ) -> dict[str, np.ndarray]:
        """The round's new model: ``template + lr * mean`` per parameter.

        Computed in the accumulate dtype in one fused pass and written straight
        into the result in the template's dtype (int32: rounded half to even),
        with no intermediate copies: peak memory is the accumulators plus the
        result. The keywords are :meth:`mean`'s.

        Raises:
            PTTHError: ``no_contributions`` for an empty round (``allow_empty=True``
                returns the template's values), ``overflow`` when a value does not
                fit the template's dtype.
            ValueError: ``lr`` is not finite.

        Example:
            >>> agg = ptth.Aggregator({"w": np.zeros(2, np.float32)})
            >>> _ = agg.add({"w": np.full(2, 0.5, np.float32)})
            >>> agg.apply(lr=2.0)["w"]
            array([1., 1.], dtype=float32)
        """
        return self._outputs(
            _engine.Output.apply,
            lr=_finite(lr, "lr"),
            dtype=dtype,
            out=out,
            denominator=denominator,
            noise_std=noise_std,
            rng=rng,
            allow_empty=allow_empty,
            allow_nonfinite=allow_nonfinite,
            default_dtype=None,
        )

    # -- state ------------------------------------------------------------------------------

    def partial(self) -> PartialAggregate:
        """A copy of the state without the template (see :class:`PartialAggregate`)."""
        with self._held() as h:
            accs = [a.copy() for a in h.accumulators()]
            sums = list(h.weight_sums())
            count, total, empty = h.totals()
        shapes = [self._template[n].shape for n in self._names]
        return PartialAggregate(
            list(self._names),
            shapes,
            self._accumulate,
            accs,
            sums,
            int(count),
            float(total),
            int(empty),
        )

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # NumPy hands contiguous arrays to protocol 5 as PickleBuffers: the
        # snapshot below is the only copy on the way out.
        p = self.partial()
        state = {
            "version": 1,
            "template": self._template,
            "accumulate": self._accumulate,
            "accumulators": p.accumulators,
            "weight_sums": p.weight_sums,
            "count": p.count,
            "total_weight": p.total_weight,
            "empty": p.empty,
            "options": self._options_state(),
        }
        return (_restore_aggregator, (state,))

    def _options_state(self) -> dict[str, Any]:
        d = self._defaults
        return {
            "byteorder": {v: k for k, v in _BYTEORDERS.items()}[d["byteorder"]],
            "relabel_float32": {
                _engine.Relabel.on: True,
                _engine.Relabel.off: False,
                _engine.Relabel.auto: "auto",
            }[d["relabel"]],
            "allow_cast": d["allow_cast"],
            "allow_nonfinite": d["allow_nonfinite"],
            "max_size": d["max_size"],
        }


def _state_values(
    accumulators: Any, weight_sums: Any, count: Any, total: Any, empty: Any
) -> tuple[list[np.ndarray], list[float], int, float, int]:
    """A saved state's fields as the engines take them; any that is not is ``bad_state``
    (the engines check the rest against the template: sizes, dtypes, finiteness)."""
    try:
        accs = [np.asarray(a) for a in accumulators]
        sums = [_real(s, "weight sum") for s in weight_sums]
        values = (
            _integer(count, "count", 0, _U64_MAX),
            _real(total, "total_weight"),
            _integer(empty, "empty", 0, _U64_MAX),
        )
    except (TypeError, ValueError) as exc:
        raise PTTHError("bad_state", f"the aggregator state is not valid: {exc}") from None
    return accs, sums, values[0], values[1], values[2]


_U64_MAX = 2**64 - 1


def _restore_aggregator(state: Any) -> Aggregator:
    """Rebuild a pickled Aggregator; a state that does not fit its template is ``bad_state``."""
    try:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("not a version-1 aggregator state")
        agg = Aggregator(state["template"], accumulate=state["accumulate"], **state["options"])
        fields: tuple[Any, ...] = (state["accumulators"], state["weight_sums"], state["count"])
        fields += (state["total_weight"], state["empty"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PTTHError):
            raise
        raise PTTHError("bad_state", f"the aggregator state is not valid: {exc}") from None
    agg._core.restore(*_state_values(*fields), False)
    return agg


def release_memory() -> int:
    """Return the memory ptth keeps for reuse to the operating system; the bytes released.

    The native engine keeps freed buffers of 64 KiB and more (decoded uploads,
    outputs, scratch of compressed adds) in a pool bounded by the environment
    variable ``PTTH_POOL_BYTES`` (default 1 GiB), so a steady stream of
    same-sized work faults no new pages. ``build_info()["pool_idle_bytes"]``
    says how much it holds now. The pure engine keeps none (returns 0).

    Example:
        >>> ptth.release_memory() >= 0
        True
    """
    return int(_engine.release_memory())


def build_info() -> dict[str, Any]:
    """What the engine in use was built with: backend, compiler, SIMD tier, zlib-ng...

    Under ``PTTH_BACKEND=python`` it describes the pure engine (NumPy and the
    Python compression modules), not the compiled core.

    Example:
        >>> ptth.build_info()["backend"] in ("native", "python")
        True
    """
    info = dict(_engine.build_info())
    info["backend"] = backend
    return info
