"""Models in the formats servers hold: PTTH <-> safetensors <-> .npz.

An aggregation server keeps its global model as a safetensors file, an .npz
or a PyTorch state_dict; its clients upload PTTH. This module moves named
tensors between those formats with a policy, chosen by the caller and
reported, for what a target cannot hold:

- ``widen_bfloat16=True``: bfloat16 becomes float32 where the target lacks
  bfloat16 (PTTH, .npz). Exact: every bfloat16 is a float32.
- ``narrow_int64=True``: int64, uint32 and uint64 become int32 for PTTH when
  every value fits (``num_batches_tracked``); a value that does not fit is a
  ``overflow`` error naming the tensor.
- ``unsupported="error"``: any other tensor the target cannot hold (bool,
  int8, complex, float8, ... for PTTH) is an ``unsupported_dtype`` error
  naming it; ``"skip"`` leaves such tensors (and out-of-range integers) out
  and lists them in the report.

Nothing else changes a value. Readers treat their input as untrusted: a
safetensors header or an .npz that lies is a :class:`ptth.PTTHError`
(``bad_safetensors``, ``bad_npz``); .npz members are never unpickled. Loading
from a path memory-maps the file and returns read-only views where the bytes
can be used as they are.

Example::

    import ptth.convert as pc

    report = pc.convert("model.safetensors", "model.ptth")
    print(report.widened, report.narrowed, report.dropped)
    template = pc.load_model("model.safetensors")       # name -> ndarray, PTTH dtypes
    pc.save_model(template, "new.safetensors", metadata={"round": "7"})
"""

from __future__ import annotations

import io
import mmap
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

import ptth

from ..errors import PTTHError
from . import _npz, _safetensors
from ._dtypes import Policy, Tensor, adapt, tensor_from_array

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "ConversionReport",
    "convert",
    "detect_format",
    "load_model",
    "read_tensors",
    "save_model",
]

#: the formats this module reads and writes
FORMATS = ("ptth", "safetensors", "npz")
#: file extension -> format
EXTENSIONS = {".ptth": "ptth", ".safetensors": "safetensors", ".npz": "npz"}
_WRAPPERS = ("zlib", "gzip", "deflate")


@dataclass
class ConversionReport:
    """What a conversion did, tensor by tensor.

    Attributes:
        source_format: ``"ptth"``, ``"safetensors"`` or ``"npz"`` (None for a mapping).
        target_format: the format written (None for :func:`load_model`'s arrays).
        tensors: name -> (source dtype, written dtype) for every tensor kept, in order.
        widened: names whose dtype was widened exactly (bfloat16 -> float32).
        narrowed: names narrowed to int32 (every value fitted).
        skipped: name -> why, for tensors left out under ``unsupported="skip"``.
        dropped: what -> why, for things other than tensors that the target cannot
            hold (safetensors' ``__metadata__`` going to PTTH or .npz).
        metadata: safetensors ``__metadata__`` read from the source ({} if none).
        parameters: elements in the tensors kept.
        bytes_read: size of the source in bytes (None for a mapping).
        bytes_written: size of what was written (None for :func:`load_model`).
    """

    source_format: str | None = None
    target_format: str | None = None
    tensors: dict = field(default_factory=dict)
    widened: list = field(default_factory=list)
    narrowed: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    parameters: int = 0
    bytes_read: int | None = None
    bytes_written: int | None = None

    @property
    def converted(self) -> list:
        """Names of the tensors kept, in order."""
        return list(self.tensors)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return {
            "source_format": self.source_format,
            "target_format": self.target_format,
            "tensors": {k: list(v) for k, v in self.tensors.items()},
            "widened": list(self.widened),
            "narrowed": list(self.narrowed),
            "skipped": dict(self.skipped),
            "dropped": dict(self.dropped),
            "metadata": dict(self.metadata),
            "parameters": self.parameters,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }

    def lines(self) -> list:
        """A short human-readable summary, one line per fact."""
        out = [
            f"{len(self.tensors)} tensors, {self.parameters:,} parameters"
            + (f", {self.bytes_written:,} bytes written" if self.bytes_written is not None else "")
        ]
        for what, names in (("widened", self.widened), ("narrowed", self.narrowed)):
            if names:
                pairs = ", ".join(f"{n} ({'->'.join(self.tensors[n])})" for n in names)
                out.append(f"{what} {len(names)}: {pairs}")
        for name, why in self.skipped.items():
            out.append(f"skipped {name}: {why}")
        for what, why in self.dropped.items():
            out.append(f"dropped {what}: {why}")
        return out


# ---- formats and sources ---------------------------------------------------------


def _check_format(fmt, what="format"):
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(FORMATS)} or None, not {fmt!r}")
    return fmt


def _extension_format(path) -> str | None:
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def _sniff(head) -> str:
    head = bytes(head[:16])
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if (
        len(head) >= 9
        and head[8:9] == b"{"
        and int.from_bytes(head[:8], "little") <= _safetensors.MAX_HEADER
    ):
        return "safetensors"
    return "ptth"  # PTTH, or PTTH in zlib/gzip/raw DEFLATE (which may start with anything)


def _is_buffer(obj) -> bool:
    if isinstance(obj, (str, os.PathLike)) or hasattr(obj, "read"):
        return False
    try:
        memoryview(obj)
    except TypeError:
        return False
    return True


def detect_format(path_or_bytes) -> str:
    """The format of a file or of bytes: ``"ptth"``, ``"safetensors"`` or ``"npz"``.

    A path with a known extension (``.ptth``, ``.safetensors``, ``.npz``) is
    decided by it; otherwise, and for bytes, the first bytes decide: a zip is
    ``npz``, an 8-byte length followed by ``{`` is ``safetensors``, anything
    else ``ptth`` (plain, or in one of PTTH's compression wrappers).

    Args:
        path_or_bytes: a path (str or os.PathLike) or a bytes-like object.

    Raises:
        TypeError: for anything else. OSError: a path without a known
            extension that cannot be read.

    Example::

        >>> detect_format(b"PTTH\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00")
        'ptth'
    """
    if isinstance(path_or_bytes, (str, os.PathLike)):
        fmt = _extension_format(path_or_bytes)
        if fmt:
            return fmt
        with open(path_or_bytes, "rb") as f:
            return _sniff(f.read(16))
    if _is_buffer(path_or_bytes):
        return _sniff(memoryview(path_or_bytes).cast("B")[:16])
    raise TypeError(f"path_or_bytes must be a path or bytes, not {type(path_or_bytes).__name__}")


def _map_file(path):
    """The file's bytes: a read-only memory map for a non-empty regular file."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size and os.path.isfile(path):
            # MAP_POPULATE maps every page in one call instead of one fault per page
            populate = getattr(mmap, "MAP_POPULATE", 0)
            if populate and hasattr(mmap, "MAP_SHARED"):
                return mmap.mmap(
                    f.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ
                )
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return f.read()


def _source_bytes(source):
    """(buffer, path or None) of a path, a bytes-like object or a binary file."""
    if isinstance(source, (str, os.PathLike)):
        return _map_file(source), os.fspath(source)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("the source file must be opened in binary mode")
        return data, None
    if _is_buffer(source):
        view = memoryview(source)
        return (
            source
            if view.format in ("B", "b", "c") and view.ndim == 1 and view.c_contiguous
            else view.cast("B")
        ), None
    raise TypeError(
        f"source must be a path, a bytes-like object or a binary file, not {type(source).__name__}"
    )


def read_tensors(
    source, *, format=None, byteorder="<", relabel_float32=False, max_size=None
) -> tuple:
    """The tensors of a model file as stored, before any policy.

    Returns ``(tensors, metadata, format)``: ``tensors`` maps names to
    :class:`ptth.convert.Tensor` (``.dtype`` the stored dtype's name, e.g.
    ``"bfloat16"``; ``.shape``; ``.array`` a NumPy view, or the raw bytes
    for dtypes NumPy lacks), in the file's order (data order for
    safetensors); ``metadata`` is safetensors' ``__metadata__`` ({} otherwise).

    Args:
        source: a path, a bytes-like object or a binary file.
        format: ``"ptth"``, ``"safetensors"``, ``"npz"`` or None (extension, then sniffing).
        byteorder, relabel_float32: as for :func:`ptth.loads` (PTTH sources only).
        max_size: cap on decoded bytes for compressed PTTH and deflated .npz members
            (default ``ptth.DEFAULT_MAX_SIZE``).

    Raises:
        ptth.PTTHError: malformed input. OSError: an unreadable path.

    Example::

        >>> tensors, metadata, fmt = read_tensors("model.safetensors")  # doctest: +SKIP
    """
    return _read(source, format, byteorder, relabel_float32, max_size)[:3]


def _read(source, format, byteorder, relabel_float32, max_size) -> tuple:
    """read_tensors' work, plus the source's size in bytes."""
    _check_format(format)
    if (byteorder, relabel_float32) != ("<", False) and format not in (None, "ptth"):
        raise ValueError("byteorder and relabel_float32 apply to PTTH sources only")
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
    ):
        raise ValueError(f"max_size must be a non-negative integer or None, not {max_size!r}")
    limit = ptth.DEFAULT_MAX_SIZE if max_size is None else max_size
    buf, path = _source_bytes(source)
    size = memoryview(buf).nbytes
    fmt = format or (path and _extension_format(path)) or _sniff(buf[:16])
    if fmt == "ptth":
        arrays = ptth.loads(
            buf, byteorder=byteorder, relabel_float32=relabel_float32, max_size=max_size
        )
        return (
            {k: Tensor(np.dtype(v.dtype.str[1:]).name, v.shape, v) for k, v in arrays.items()},
            {},
            fmt,
            size,
        )
    if (byteorder, relabel_float32) != ("<", False):
        raise ValueError(f"byteorder and relabel_float32 apply to PTTH sources, not {fmt}")
    if fmt == "safetensors":
        tensors, metadata = _safetensors.read(buf)
        return tensors, metadata, fmt, size
    unreadable: dict[str, str] = {}
    tensors = _npz.read(buf, max_size=limit, on_unsupported=unreadable.__setitem__)
    for name, why in unreadable.items():  # reported by the callers' policy
        tensors[name] = Tensor("unreadable:" + why, (), np.empty(0, np.uint8))
    return tensors, {}, fmt, size


def _apply(tensors: dict, fmt: str | None, policy: Policy, report: ConversionReport) -> list:
    """[(name, Tensor)] as format `fmt` (None: PTTH dtypes for arrays) can hold them."""
    out = []
    for name, t in tensors.items():
        if t.dtype.startswith("unreadable:"):
            why = t.dtype.split(":", 1)[1]
            if policy.unsupported == "skip":
                report.skipped[name] = why
                continue
            raise PTTHError(
                "unsupported_dtype",
                f"tensor {name!r}: {why}; pass "
                "unsupported='skip' (--skip-unsupported) to leave it out",
            )
        kept = adapt(name, t, fmt or "ptth", policy, report)
        if kept is not None:
            out.append((name, kept))
    return out


# ---- the public calls --------------------------------------------------------------


def load_model(
    source,
    *,
    format=None,
    report=None,
    widen_bfloat16=True,
    narrow_int64=True,
    unsupported="error",
    byteorder="<",
    relabel_float32=False,
    max_size=None,
) -> dict:
    """A model file as ``{name: ndarray}`` in PTTH's dtypes, ready for ``ptth.Aggregator``.

    Args:
        source: a path (format from ``.ptth``/``.safetensors``/``.npz``, else sniffed),
            a bytes-like object or a binary file.
        format: the source's format, or None to detect it.
        report: a :class:`ConversionReport` to fill in (what was widened,
            narrowed, skipped; the safetensors metadata), or None.
        widen_bfloat16, narrow_int64, unsupported: the policy (module docstring);
            the defaults change no value.
        byteorder, relabel_float32: as for :func:`ptth.loads`, PTTH sources only.
        max_size: cap on decoded bytes of compressed input (``ptth.DEFAULT_MAX_SIZE``).

    Returns:
        A dict in the file's order. Arrays are read-only views into the
        memory-mapped file (or the caller's buffer) where no conversion was
        needed, new arrays where one was (bfloat16, int64, deflated members).

    Raises:
        ptth.PTTHError: malformed input (``bad_safetensors``, ``bad_npz``, PTTH's
            reasons) or a tensor the policy refuses (``unsupported_dtype``,
            ``overflow``). TypeError/ValueError: bad arguments.
        OSError: an unreadable path.

    Example::

        >>> model = load_model("model.safetensors")                   # doctest: +SKIP
        >>> agg = ptth.Aggregator(model)                               # doctest: +SKIP
    """
    policy = Policy.from_kwargs(widen_bfloat16, narrow_int64, unsupported)
    if report is not None and not isinstance(report, ConversionReport):
        raise TypeError(f"report must be a ConversionReport or None, not {type(report).__name__}")
    tensors, metadata, fmt, size = _read(source, format, byteorder, relabel_float32, max_size)
    report = report if report is not None else ConversionReport()
    report.source_format, report.metadata, report.bytes_read = fmt, dict(metadata), size
    return {name: t.array for name, t in _apply(tensors, None, policy, report)}


def _check_write_options(fmt, metadata, compress, wrapper, align):
    if metadata is not None:
        if fmt != "safetensors":
            raise ValueError(f"metadata can only be written to safetensors, not {fmt}")
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise TypeError("metadata must map str to str")
    if compress is not None:
        if isinstance(compress, bool) or not isinstance(compress, int) or not 0 <= compress <= 9:
            raise ValueError(f"compress must be None or a level 0..9, not {compress!r}")
        if fmt == "safetensors":
            raise ValueError(
                "safetensors files are not compressed; compress applies to ptth and npz"
            )
    if wrapper not in _WRAPPERS:
        raise ValueError(f"wrapper must be one of {', '.join(_WRAPPERS)}, not {wrapper!r}")
    if not isinstance(align, bool):
        raise TypeError(f"align must be True or False, not {align!r}")


def _target_format(target, fmt, what="format") -> str:
    _check_format(fmt, what)
    if fmt is None and isinstance(target, (str, os.PathLike)):
        fmt = _extension_format(target)
    if fmt is None:
        where = os.fspath(target) if isinstance(target, (str, os.PathLike)) else "the target"
        raise ValueError(
            f"cannot tell the format of {where}: "
            f"name it .ptth, .safetensors or .npz, or pass {what}= (--to)"
        )
    return fmt


def _write(items: list, target, fmt: str, metadata, compress, wrapper, align) -> int | None:
    """Write [(name, Tensor)]; a path is replaced atomically, never left half-written."""
    if fmt == "ptth":
        for name, _ in items:
            _check_ptth_name(name)
        blob = ptth.dumps(
            {name: t.array for name, t in items},
            compress=compress,
            wrapper=None if compress is None else wrapper,
        )
        return _emit(target, lambda f: f.write(blob) and len(blob))
    if fmt == "safetensors":
        items = _safetensors.library_order(items) if align else items
        return _emit(target, lambda f: _safetensors.write(items, metadata, f))
    return _emit(target, lambda f: _npz.write(items, f, compress=compress))


def _check_ptth_name(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PTTHError(
            "unsupported_name", f"tensor name {name!r} cannot be written as UTF-8"
        ) from None


def _emit(target, write_to) -> int | None:
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder
        )
        try:
            with os.fdopen(fd, "wb") as f:
                write_to(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return os.path.getsize(path)
    if not hasattr(target, "write"):
        raise TypeError(
            f"target must be a path or a writable binary file, not {type(target).__name__}"
        )
    if isinstance(target, io.TextIOBase):
        raise TypeError("the target file must be opened in binary mode")
    start = target.tell() if hasattr(target, "tell") and target.seekable() else None
    written = write_to(target)
    if start is not None:
        return target.tell() - start
    return written if isinstance(written, int) else None


def save_model(
    tensors,
    target,
    *,
    format=None,
    metadata=None,
    compress=None,
    wrapper="zlib",
    align=False,
    widen_bfloat16=True,
    narrow_int64=True,
    unsupported="error",
) -> ConversionReport:
    """Write ``{name: array}`` as a PTTH, safetensors or .npz file.

    Args:
        tensors: a mapping of str names to arrays (NumPy, or anything
            ``np.asarray`` takes; ml_dtypes' bfloat16/float8 arrays too).
        target: a path (format from its extension unless ``format`` is given;
            written to a temporary file and renamed, so a failure leaves any
            existing file as it was) or a writable binary file (e.g. io.BytesIO).
        format: ``"ptth"``, ``"safetensors"``, ``"npz"`` or None (the extension).
        metadata: safetensors ``__metadata__`` (str -> str); safetensors only.
        compress: PTTH: a zlib level 0..9 with ``wrapper``; .npz: deflate level
            0..9 (None or 0: stored). None (default) writes uncompressed.
        wrapper: PTTH's compression wrapper, ``"zlib"``, ``"gzip"`` or ``"deflate"``.
        align: safetensors: lay tensors out as the safetensors library does
            (by dtype size, then name) so every payload is aligned; default
            False keeps the mapping's order (a PTTH round trip stays bit for bit).
        widen_bfloat16, narrow_int64, unsupported: the policy (module docstring).

    Returns:
        A :class:`ConversionReport` (``source_format`` None).

    Raises:
        ptth.PTTHError: a tensor the target cannot hold under the policy, or a
            name it cannot hold (``unsupported_name``: ``__metadata__`` in
            safetensors, NUL in .npz). TypeError/ValueError: bad arguments.
        OSError: the target cannot be written.

    Example::

        >>> import numpy as np, io
        >>> rep = save_model({"w": np.ones(3, np.float32)}, io.BytesIO(), format="safetensors")
        >>> rep.tensors
        {'w': ('float32', 'float32')}
    """
    policy = Policy.from_kwargs(widen_bfloat16, narrow_int64, unsupported)
    fmt = _target_format(target, format)
    _check_write_options(fmt, metadata, compress, wrapper, align)
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"tensors must be a mapping of names to arrays, not {type(tensors).__name__}"
        )
    for name in tensors:
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}")
    report = ConversionReport(target_format=fmt)
    source = {name: tensor_from_array(name, value) for name, value in tensors.items()}
    items = _apply(source, fmt, policy, report)
    report.bytes_written = _write(items, target, fmt, metadata, compress, wrapper, align)
    return report


def convert(
    src,
    dst,
    *,
    src_format=None,
    dst_format=None,
    metadata=None,
    compress=None,
    wrapper="zlib",
    align=False,
    widen_bfloat16=True,
    narrow_int64=True,
    unsupported="error",
    byteorder="<",
    relabel_float32=False,
    max_size=None,
) -> ConversionReport:
    """Convert a model file between PTTH, safetensors and .npz.

    safetensors' ``__metadata__`` goes to a safetensors target unchanged
    (``metadata=`` replaces it); PTTH and .npz cannot hold it, so it is
    reported in ``dropped``. Dtypes the target lacks follow the policy.

    Args:
        src: a path, a bytes-like object or a binary file.
        dst: a path (replaced atomically) or a writable binary file.
        src_format, dst_format: the formats, or None for the extension (and, for
            ``src``, sniffing the first bytes).
        metadata, compress, wrapper, align: as for :func:`save_model`.
        widen_bfloat16, narrow_int64, unsupported: the policy (module docstring).
        byteorder, relabel_float32, max_size: as for :func:`load_model`.

    Returns:
        A :class:`ConversionReport`.

    Raises:
        ptth.PTTHError: malformed input, or a tensor or name the target cannot
            hold under the policy (nothing is written then).
        TypeError/ValueError: bad arguments. OSError: unreadable or unwritable paths.

    Example::

        >>> convert("model.safetensors", "model.ptth").dropped          # doctest: +SKIP
        {'__metadata__': 'PTTH has no metadata field: 1 key (format) dropped'}
    """
    policy = Policy.from_kwargs(widen_bfloat16, narrow_int64, unsupported)
    fmt = _target_format(dst, dst_format, "dst_format")
    _check_write_options(fmt, metadata, compress, wrapper, align)
    tensors, source_meta, sfmt, size = _read(
        src, _check_format(src_format, "src_format"), byteorder, relabel_float32, max_size
    )
    report = ConversionReport(
        source_format=sfmt, target_format=fmt, metadata=dict(source_meta), bytes_read=size
    )
    items = _apply(tensors, fmt, policy, report)
    if fmt == "safetensors":
        metadata = source_meta if metadata is None else metadata
    elif source_meta:
        keys = ", ".join(sorted(source_meta))
        what = {"ptth": "PTTH", "npz": ".npz"}[fmt]
        report.dropped["__metadata__"] = (
            f"{what} has no metadata field: {len(source_meta)} "
            f"key{'s' if len(source_meta) != 1 else ''} "
            f"({keys}) dropped"
        )
    report.bytes_written = _write(items, dst, fmt, metadata or None, compress, wrapper, align)
    return report
