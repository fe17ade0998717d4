""".npz reading and writing without pickles, treating the archive as untrusted.

An .npz is a zip of ``NAME.npy`` members (NumPy's ``savez``). The reader
accepts stored and deflated members whose .npy header (parsed here, never by
``pickle``) describes a plain numeric array whose payload fills the member
exactly. Stored members become views into the caller's buffer after their
CRC-32 is checked; deflated ones are inflated, capped by ``max_size``. Any
violation is a :class:`ptth.PTTHError` with reason ``bad_npz``; object arrays
are refused with ``unsupported_dtype`` whatever the policy, since their
payload is a pickle.
"""

from __future__ import annotations

import ast
import io
import re
import struct
import zipfile
import zlib
from typing import cast

import numpy as np

from ..errors import PTTHError
from ._dtypes import NPZ_KINDS, Tensor, canonical_dtype

NPY_MAGIC = b"\x93NUMPY"
#: NumPy's own cap on .npy headers it parses without allow_pickle
MAX_NPY_HEADER = 10_000
MAX_NDIM = 64
_MAX_INTP = np.iinfo(np.intp).max
#: local file header: signature, (version, flags), method, (time, date, crc, sizes),
#: name and extra lengths
_LOCAL = struct.Struct("<4s4xH16xHH")
#: exceptions zipfile and zlib raise on damaged archives
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    IndexError,
    KeyError,
)
_DESCR = re.compile(r"[<>|=]?[biufc]\d{1,2}")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: output independent of the clock


def _bad(message: str, offset: int | None = None, record: int | None = None) -> PTTHError:
    return PTTHError("bad_npz", message, offset=offset, record=record)


def parse_npy_header(data, record: int, name: str):
    """(descr or None, dtype or None, shape, fortran, payload offset) of one .npy member."""
    if bytes(data[:6]) != NPY_MAGIC:
        raise _bad(f"member {name!r} is not a .npy array (no \\x93NUMPY magic)", None, record)
    if len(data) < 10:
        raise _bad(f"member {name!r}: truncated .npy header", None, record)
    major, minor = data[6], data[7]
    if (major, minor) == (1, 0):
        (hlen,), start, encoding = struct.unpack_from("<H", data, 8), 10, "latin1"
    elif (major, minor) in ((2, 0), (3, 0)):
        if len(data) < 12:
            raise _bad(f"member {name!r}: truncated .npy header", None, record)
        (hlen,), start = struct.unpack_from("<I", data, 8), 12
        encoding = "latin1" if major == 2 else "utf-8"
    else:
        raise _bad(f"member {name!r}: unknown .npy version {major}.{minor}", None, record)
    if hlen > MAX_NPY_HEADER:
        raise _bad(
            f"member {name!r}: .npy header of {hlen} bytes exceeds {MAX_NPY_HEADER}", None, record
        )
    if start + hlen > len(data):
        raise _bad(f"member {name!r}: truncated .npy header", None, record)
    try:
        text = bytes(data[start : start + hlen]).decode(encoding)
        header = ast.literal_eval(text)
    except (
        UnicodeDecodeError,
        ValueError,
        SyntaxError,
        TypeError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise _bad(
            f"member {name!r}: the .npy header is not a Python literal: {type(exc).__name__}",
            None,
            record,
        ) from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _bad(
            f"member {name!r}: the .npy header must hold exactly descr, fortran_order and shape",
            None,
            record,
        )
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(fortran, bool):
        raise _bad(f"member {name!r}: fortran_order must be True or False", None, record)
    if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
        raise _bad(f"member {name!r}: shape must be a tuple of non-negative integers", None, record)
    if len(shape) > MAX_NDIM:
        raise _bad(
            f"member {name!r}: {len(shape)} dimensions, more than NumPy's {MAX_NDIM}", None, record
        )
    dtype = None
    if isinstance(descr, str) and (descr in ("|b1", "?", "b1") or _DESCR.fullmatch(descr)):
        try:
            dtype = np.dtype(descr)
        except TypeError:
            dtype = None
        if dtype is not None and (dtype.kind not in NPZ_KINDS or canonical_dtype(dtype) is None):
            dtype = None
    if _holds_objects(descr):
        raise PTTHError(
            "unsupported_dtype",
            f"member {name!r} holds Python objects (a pickle); ptth never unpickles",
            record=record,
        )
    return descr, dtype, shape, fortran, start + hlen


def _holds_objects(descr) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=") == "O"
    if isinstance(descr, (list, tuple)):
        return any(_holds_objects(part) for part in descr)
    return False


class _ViewFile(io.RawIOBase):
    """A seekable read-only file over a buffer, without copying it (zipfile needs a file)."""

    def __init__(self, buf):
        super().__init__()
        self._view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, out) -> int:
        chunk = self._view[self._pos : self._pos + len(out)]
        out[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        if base + offset < 0:  # zipfile expects what a real file raises here
            raise OSError(22, "Invalid argument: negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def read(buf, *, max_size: int, on_unsupported) -> dict:
    """Tensors of the .npz in `buf` (bytes-like or mmap), views for stored members.

    ``on_unsupported(name, message)`` decides about a member whose dtype no
    format holds (e.g. strings, structured, datetime): it raises or returns.
    """
    try:
        archive = zipfile.ZipFile(io.BufferedReader(_ViewFile(buf)))
        infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise _bad(f"not a valid zip archive: {exc}", 0) from None
    names = set()
    tensors = {}
    inflated = 0
    for index, info in enumerate(infos):
        member = info.filename
        if not member.endswith(".npy"):
            hint = (
                (
                    " (this is a PyTorch .pt/.pth file: ptth never unpickles; save the "
                    "state_dict with safetensors)"
                )
                if member.endswith("data.pkl")
                else ""
            )
            raise _bad(f"member {member!r} is not a .npy array{hint}", info.header_offset, index)
        name = member[:-4]
        if name in names:
            raise PTTHError(
                "duplicate_name",
                f"the archive holds {member!r} twice",
                offset=info.header_offset,
                record=index,
            )
        names.add(name)
        if info.flag_bits & 0x61:  # encrypted (bits 0, 6) or patch data (bit 5)
            raise _bad(f"member {member!r} is encrypted or patch data", info.header_offset, index)
        if info.compress_type == zipfile.ZIP_STORED:
            data, start = _stored(buf, info, index)
            base = buf
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            inflated += info.file_size
            if inflated > max_size:
                raise PTTHError(
                    "too_large",
                    f"member {member!r}: the deflated members "
                    f"inflate to more than max_size={max_size} bytes",
                    offset=info.header_offset,
                    record=index,
                )
            data = base = _inflate(archive, info, index)
            start = 0
        else:
            raise _bad(
                f"member {member!r} uses zip compression method {info.compress_type}; "
                ".npz members are stored or deflated",
                info.header_offset,
                index,
            )
        descr, dtype, shape, fortran, at = parse_npy_header(data, index, name)
        if dtype is None:
            on_unsupported(
                name, f"dtype {descr!r} is not a bool, integer, floating or complex array dtype"
            )
            continue
        numel = 1
        for d in shape:
            numel *= d
        nonzero = 1
        for d in shape:
            nonzero *= max(d, 1)
        if nonzero * dtype.itemsize > _MAX_INTP:
            raise _bad(f"member {member!r}: shape {shape} is too large for NumPy", None, index)
        if numel * dtype.itemsize != len(data) - at:
            raise _bad(
                f"member {member!r}: shape {shape} of {dtype} needs "
                f"{numel * dtype.itemsize} bytes, the member holds {len(data) - at}",
                None,
                index,
            )
        if numel == 0:
            arr = np.empty(shape, dtype, order="F" if fortran else "C")
        else:
            arr = np.frombuffer(base, dtype, numel, start + at)
            arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
        # parse_npy_header keeps only dtypes that have a canonical name
        tensors[name] = Tensor(cast(str, canonical_dtype(dtype)), shape, arr)
    return tensors


def _data_start(buf, info, index) -> int:
    """Where a member's data starts, after its local header agreed with the directory."""
    start = info.header_offset
    head = bytes(buf[start : start + _LOCAL.size])
    if len(head) < _LOCAL.size:
        raise _bad(f"member {info.filename!r}: truncated local header", start, index)
    sig, method, name_len, extra_len = _LOCAL.unpack(head)
    if sig != b"PK\x03\x04":
        raise _bad(f"member {info.filename!r}: bad local header signature", start, index)
    name = bytes(buf[start + _LOCAL.size : start + _LOCAL.size + name_len])
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        expected = info.orig_filename.encode(encoding)
    except UnicodeEncodeError:
        expected = None
    if name != expected or method != info.compress_type:
        raise _bad(
            f"member {info.filename!r}: the local header disagrees with the central directory",
            start,
            index,
        )
    return start + _LOCAL.size + name_len + extra_len


def _stored(buf, info, index):
    """(a view of a stored member's bytes, their offset in `buf`), after the CRC-32 matched."""
    if info.compress_size != info.file_size:
        raise _bad(
            f"member {info.filename!r} is stored but its sizes differ", info.header_offset, index
        )
    start = _data_start(buf, info, index)
    end = start + info.file_size
    if end > len(buf):
        raise _bad(
            f"member {info.filename!r}: truncated (needs bytes up to {end}, the file "
            f"has {len(buf)})",
            len(buf),
            index,
        )
    view = memoryview(buf)[start:end]
    if zlib.crc32(view) != info.CRC:
        raise _bad(f"member {info.filename!r}: CRC-32 mismatch", start, index)
    return view, start


def _inflate(archive, info, index) -> bytearray:
    out = bytearray(info.file_size)
    try:
        with archive.open(info) as member:
            got = member.readinto(out)
            extra = member.read(1)  # reads to the end, where zipfile checks the CRC
    except _ZIP_ERRORS as exc:
        raise _bad(f"member {info.filename!r}: {exc}", info.header_offset, index) from None
    if got != info.file_size or extra:
        raise _bad(
            f"member {info.filename!r}: inflates to a size other than declared",
            info.header_offset,
            index,
        )
    return out


def check_name(name: str) -> None:
    """Raise unless an .npz member can be named after `name`."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise PTTHError(
            "unsupported_name", f"tensor name {name!r} cannot be written as UTF-8"
        ) from None
    if "\x00" in name:
        raise PTTHError(
            "unsupported_name",
            f"tensor name {name!r} holds a NUL byte, which zip member names cannot",
        )
    if len(encoded) + 4 > 0xFFFF:
        raise PTTHError(
            "unsupported_name",
            f"tensor name of {len(encoded)} bytes is longer than a zip member name can be",
        )


def write(items: list, f, *, compress: int | None) -> None:
    """Write [(name, Tensor)] as NumPy's savez would, with a fixed timestamp."""
    for name, _ in items:
        check_name(name)
    method = zipfile.ZIP_STORED if not compress else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(
        f, "w", compression=method, compresslevel=compress or None, allowZip64=True
    ) as archive:
        for name, t in items:
            info = zipfile.ZipInfo(name + ".npy", date_time=_FIXED_TIME)
            info.compress_type = method
            if compress:  # the level's attribute became public (compress_level) in 3.13
                setattr(
                    info,
                    "compress_level" if hasattr(info, "compress_level") else "_compresslevel",
                    compress,
                )
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, t.array, allow_pickle=False)
