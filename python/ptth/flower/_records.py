"""How a PTTH blob travels in a Flower Message, and the client side that writes one.

A reply's ``ArrayRecord`` carries either ordinary Flower arrays (``stype``
``"numpy.ndarray"``, one per parameter) or exactly one PTTH blob: an ``Array``
with ``stype="ptth"``, ``dtype="uint8"``, ``shape=(len(blob),)`` and the blob
as its ``data``, stored under the key ``"ptth.delta"`` (the blob is
``updated - global``) or ``"ptth.full"`` (full weights). The blob stays one
``Array`` because Flower chunks an ``Array``'s bytes for transport and
rebuilds them unchanged; a ``ConfigRecord`` bytes value is not chunked.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, MessageType
from flwr.common.constant import ErrorCode, SType

import ptth

#: the ``Array.stype`` of a PTTH blob
PTTH_STYPE = "ptth"
#: the key of a blob holding ``updated - global`` (``Aggregator.add(kind="delta")``)
DELTA_KEY = "ptth.delta"
#: the key of a blob holding full weights (``Aggregator.add(kind="full")``)
FULL_KEY = "ptth.full"
KINDS = {DELTA_KEY: "delta", FULL_KEY: "full"}

#: what the helpers accept as a model: a Flower ArrayRecord or a mapping of arrays
Arrays = Union[ArrayRecord, Mapping[str, Any]]
Mod = Callable[[Message, Context, Callable[[Message, Context], Message]], Message]

_ENCODE_DTYPES = (None, "float16", "float32")
_F16_MAX = 65504.0


def is_ptth_record(record: ArrayRecord) -> bool:
    """True when `record` holds a PTTH blob (any of its Arrays has ``stype="ptth"``).

    Example::

        >>> is_ptth_record(encode_record({"w": np.ones(2, np.float32)}))
        True
    """
    return any(a.stype == PTTH_STYPE for a in record.values())


def numpy_view(array: Array, name: str = "") -> np.ndarray:
    """The NumPy array an ordinary Flower ``Array`` holds, as a read-only view of its bytes.

    ``Array.numpy()`` copies the payload through ``np.load``; this parses the
    same ``.npy`` header and maps the payload where it lies, so folding a reply
    costs no copy. Raises ``ptth.PTTHError`` for anything ``np.load`` (without
    pickles) would refuse: another ``stype`` (``unsupported_dtype``), a damaged
    header (``bad_magic``, ``truncated``), object or structured dtypes
    (``unsupported_dtype``) or a payload of the wrong length (``length_mismatch``).

    Example::

        >>> numpy_view(Array(np.arange(3, dtype=np.float32)))
        array([0., 1., 2.], dtype=float32)
    """
    label = f"Array {name!r}" if name else "Array"
    if array.stype != SType.NUMPY:
        raise ptth.PTTHError(
            "unsupported_dtype",
            f"{label} has stype {array.stype!r}; ptth reads "
            f"{SType.NUMPY!r} arrays and {PTTH_STYPE!r} blobs",
        )
    data = array.data
    parsed = _npy_header_fast(data)
    if parsed is None:
        parsed = _npy_header(data, label)
    shape, fortran, dtype, offset = parsed
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufc":
        raise ptth.PTTHError("unsupported_dtype", f"{label} has dtype {dtype}")
    count = math.prod(shape)  # Python ints: a hostile shape cannot wrap around
    if len(data) - offset != count * dtype.itemsize:
        raise ptth.PTTHError(
            "length_mismatch",
            f"{label}: the header says {shape} {dtype}, the payload has {len(data) - offset} bytes",
        )
    if count == 0:
        return np.empty(shape, dtype)
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


# What np.save writes for a plain dtype: parsed here in microseconds (np.lib.format evaluates
# the header with ast.literal_eval, ~0.1 ms per Array, which dominates small-tensor models).
_NPY_FAST = re.compile(
    rb"\{'descr': '([<>|=][a-zA-Z][0-9]*)', 'fortran_order': (True|False), "
    rb"'shape': \(([0-9, ]*)\), \} *\n"
)
_DTYPES: dict = {}


def _npy_header_fast(data: bytes):
    """(shape, fortran, dtype, payload offset) of np.save's usual header, or None."""
    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        start = 10
        end = start + int.from_bytes(data[8:10], "little")
    elif data[:8] == b"\x93NUMPY\x02\x00" and len(data) >= 12:
        start = 12
        end = start + int.from_bytes(data[8:12], "little")
    else:
        return None
    m = _NPY_FAST.fullmatch(data, start, end) if end <= len(data) else None
    if m is None:
        return None
    descr = m.group(1)
    dtype = _DTYPES.get(descr)
    if dtype is None:
        try:
            dtype = np.dtype(descr.decode("ascii"))
        except TypeError:
            return None
        _DTYPES[descr] = dtype
    shape = tuple(int(d) for d in m.group(3).split(b",") if d.strip())
    return shape, m.group(2) == b"True", dtype, end


def _npy_header(data: bytes, label: str):
    """The same through np.lib.format, for every header the fast path does not take."""
    head = io.BytesIO(memoryview(data)[: 65536 + 64])  # np.save's largest header, and more
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"npy format version {version} is not read here")
    except (ValueError, EOFError, SyntaxError) as exc:
        reason = "truncated" if len(data) < 10 else "bad_magic"
        raise ptth.PTTHError(reason, f"{label} is not a .npy payload: {exc}") from None
    return shape, fortran, dtype, head.tell()


def _as_arrays(arrays: Arrays, what: str, keys=None) -> dict:
    """name -> ndarray for an ArrayRecord (views of its bytes) or a mapping (as given)."""
    if isinstance(arrays, ArrayRecord):
        if is_ptth_record(arrays):
            raise ptth.PTTHError("unsupported_dtype", f"{what} is already a PTTH record")
        names = arrays.keys() if keys is None else [k for k in keys if k in arrays]
        return {k: numpy_view(arrays[k], k) for k in names}
    if not isinstance(arrays, Mapping):
        raise TypeError(
            f"{what} must be an ArrayRecord or a mapping of names to arrays, "
            f"not {type(arrays).__name__}"
        )
    if keys is None:
        return dict(arrays)
    return {k: arrays[k] for k in keys if k in arrays}


def _check_dtype(dtype) -> None:
    if not (dtype is None or isinstance(dtype, str)) or dtype not in _ENCODE_DTYPES:
        raise ValueError(f"dtype must be 'float16', 'float32' or None, not {dtype!r}")


def _check_float16(values: dict) -> None:
    """A float16 upload must not turn finite weights into infinities: refuse instead."""
    for name, arr in values.items():
        if arr.dtype == np.float16 and arr.size and not np.isfinite(arr).all():
            raise ptth.PTTHError(
                "nonfinite",
                f"{name!r} is not finite in float16 (|value| > "
                f"{_F16_MAX:g}, or NaN/inf in the weights); encode it with "
                "dtype='float32'",
            )


def encode_record(
    arrays: Arrays,
    base: Arrays | None = None,
    *,
    dtype: str | None = "float16",
    compress: int | None = 6,
    wrapper: str = "zlib",
) -> ArrayRecord:
    """A client's update as a one-Array PTTH ``ArrayRecord`` (the reply ptth.flower.FedAvg reads).

    Parameters:
        arrays: the client's trained model: an ``ArrayRecord`` or a mapping of
            names to arrays. A subset of the global model's parameters is a
            partial update.
        base: the round's global model (the arrays the client received). Given,
            the blob is the delta ``arrays - base`` under ``"ptth.delta"``;
            ``None`` (default) sends full weights under ``"ptth.full"``.
        dtype: ``"float16"`` (default: half the bytes of float32), ``"float32"``
            (float64 arrays become float32), or ``None`` to keep each array's
            dtype. int32 arrays stay int32 in every case.
        compress: zlib level 0-9 (default 6), or ``None`` for no compression.
        wrapper: ``"zlib"`` (default), ``"gzip"`` or ``"deflate"``.

    Raises:
        ptth.PTTHError: a parameter of `arrays` that `base` lacks
            (``unknown_name``), shapes that differ (``shape_mismatch``), a dtype
            PTTH cannot carry (``unsupported_dtype``), or a value that float16
            cannot hold (``nonfinite``: nothing is rounded to infinity silently).
        TypeError, ValueError: a bad argument (`dtype`, `compress`, `wrapper`).

    Example::

        >>> glob = {"w": np.zeros(4, np.float32)}
        >>> rec = encode_record({"w": np.full(4, 0.5, np.float32)}, glob)
        >>> list(rec), rec["ptth.delta"].stype
        (['ptth.delta'], 'ptth')
    """
    _check_dtype(dtype)
    updated = _as_arrays(arrays, "arrays")
    if base is None:
        key = FULL_KEY
        values = {
            k: ptth.to_float16(v) if dtype == "float16" and _is_float(v) else v
            for k, v in updated.items()
        }
    else:
        key = DELTA_KEY
        values = ptth.compute_delta(updated, _as_arrays(base, "base", keys=updated), dtype=dtype)
    if dtype == "float16":
        _check_float16(values)
    blob = ptth.dumps(
        values,
        dtype="float32" if dtype == "float32" else None,
        compress=compress,
        wrapper=None if compress is None else wrapper,
    )
    return ArrayRecord(
        {key: Array(dtype="uint8", shape=(len(blob),), stype=PTTH_STYPE, data=bytes(blob))}
    )


def _is_float(value) -> bool:
    return np.asarray(value).dtype.kind == "f"


def decode_record(record: ArrayRecord, **loads_kw) -> tuple[str, dict]:
    """The kind (``"delta"`` or ``"full"``) and the arrays of a PTTH ``ArrayRecord``.

    `loads_kw` go to ``ptth.loads`` (``byteorder``, ``relabel_float32``,
    ``max_size``, ``copy``). Raises ``ptth.PTTHError`` if the record is not one
    PTTH Array under ``"ptth.delta"`` or ``"ptth.full"`` (``bad_argument``) or
    the blob is malformed (its own reason).

    Example::

        >>> decode_record(encode_record({"w": np.ones(2, np.float32)}))
        ('full', {'w': array([1., 1.], dtype=float16)})
    """
    kind, data = record_blob(record)
    return kind, ptth.loads(data, **loads_kw)


def record_blob(record: ArrayRecord) -> tuple[str, bytes]:
    """(kind, blob bytes) of a PTTH ``ArrayRecord``; ``ptth.PTTHError`` if it is not one."""
    if len(record) != 1:
        raise ptth.PTTHError(
            "bad_argument",
            f"a PTTH record holds exactly one Array, not "
            f"{len(record)} ({', '.join(map(repr, list(record)[:4]))})",
        )
    key, array = next(iter(record.items()))
    if key not in KINDS or array.stype != PTTH_STYPE:
        raise ptth.PTTHError(
            "bad_argument",
            f"a PTTH record holds one Array of stype "
            f"{PTTH_STYPE!r} under {DELTA_KEY!r} or {FULL_KEY!r}, not one of "
            f"stype {array.stype!r} under {key!r}",
        )
    return KINDS[key], array.data


# ---- the client mod --------------------------------------------------------------


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type.split(".", 1)[0] == MessageType.TRAIN


def _mod_error(msg: Message, reason: str) -> Message:
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg)


def make_ptth_mod(
    *, dtype: str | None = "float16", compress: int | None = 6, wrapper: str = "zlib"
) -> Mod:
    """A Flower client mod that sends each train reply as a PTTH delta against the global model.

    On a ``train`` message, the mod notes the one ``ArrayRecord`` it brings
    (the round's global model), runs the ClientApp, and replaces the reply's
    one ``ArrayRecord`` (same record key) with ``encode_record(reply_arrays,
    global_arrays, dtype=..., compress=..., wrapper=...)``. Other message
    types, error replies and replies already carrying a PTTH record pass
    unchanged. A train message or reply without exactly one ``ArrayRecord``,
    or an update that cannot be encoded (a parameter the global model lacks,
    a changed shape, a float16 overflow), becomes an error reply
    (``MOD_FAILED_PRECONDITION``) with the reason, as Flower's own mods do.

    Bad options raise ``TypeError``/``ValueError`` here, not at the first round.

    Example::

        from flwr.clientapp import ClientApp
        app = ClientApp(mods=[make_ptth_mod(compress=1)])   # or mods=[ptth_mod]
    """
    _check_dtype(dtype)
    encode_record({}, {}, dtype=dtype, compress=compress, wrapper=wrapper)  # checks the options

    def ptth_mod(msg: Message, context: Context, call_next) -> Message:
        if not _is_train(msg):
            return call_next(msg, context)
        incoming = msg.content.array_records
        if len(incoming) != 1:
            return _mod_error(
                msg,
                "ptth_mod expects exactly one ArrayRecord (the global model) "
                f"in the train message, found {len(incoming)}",
            )
        # The Array objects themselves: the ClientApp may rebind the record's entries.
        base = dict(next(iter(incoming.values())).items())
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        outgoing = reply.content.array_records
        if len(outgoing) != 1:
            return _mod_error(
                msg,
                "ptth_mod expects exactly one ArrayRecord in the ClientApp's "
                f"train reply, found {len(outgoing)}",
            )
        key, record = next(iter(outgoing.items()))
        if is_ptth_record(record):
            return reply
        try:
            base_arrays = {k: numpy_view(a, k) for k, a in base.items() if k in record}
            reply.content[key] = encode_record(
                record, base_arrays, dtype=dtype, compress=compress, wrapper=wrapper
            )
        except ptth.PTTHError as err:
            return _mod_error(msg, f"ptth_mod could not encode the update: {err}")
        return reply

    return ptth_mod


#: the default mod: float16 deltas, zlib level 6
ptth_mod: Mod = make_ptth_mod()
