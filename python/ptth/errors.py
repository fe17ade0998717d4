"""The one exception type of ptth for bad data, shared by both engines.

Malformed bytes and tensors or updates that ptth cannot accept (a broken
blob, a damaged compressed stream, an update that does not fit an
aggregator) raise :class:`PTTHError`; its ``reason`` is a short stable code
from :data:`REASONS`, the same on both engines for the same input. Bad
*arguments* (a weight that is not a number, an unknown byte order) are plain
``TypeError`` / ``ValueError`` naming the argument.

The list of reasons is the C++ core's (``PTTH_REASONS`` in
``csrc/core/errors.hpp``); this copy serves the pure engine, and a test
checks that the two agree.
"""

from __future__ import annotations

__all__ = ["REASONS", "PTTHError"]

#: reason code -> what it means. The codes are part of the public API.
REASONS: dict[str, str] = {
    # blob structure (docs/format.md, "What a valid blob satisfies")
    "bad_magic": "the blob does not start with the magic 'PTTH'",
    "bad_version": "the version field is not 1",
    "truncated": "the blob ended where more bytes were expected",
    "bad_name": "a parameter name is not valid UTF-8",
    "duplicate_name": "a parameter name occurs twice",
    "too_many_dims": "ndim is larger than 64",
    "bad_dtype": "the dtype code is not 0, 1, 2 or 3",
    "size_overflow": "numel * itemsize does not fit in 64 bits",
    "length_mismatch": "data_len differs from numel * itemsize",
    "trailing_bytes": "bytes follow the last record",
    "ambiguous_byteorder": "byteorder 'auto' found no payload that tells the byte order, "
    "but the two readings differ",
    "not_ptth": "the input is neither a PTTH blob nor a zlib, gzip or raw DEFLATE stream of one",
    # compressed input
    "too_large": "the decoded size would exceed max_size",
    "stream_corrupt": "the compressed stream is not valid DEFLATE/zlib/gzip data",
    "bad_checksum": "the compressed stream's checksum does not match its data",
    "stream_truncated": "the compressed stream ended before its end marker",
    "stream_trailing": "bytes follow the end of the compressed stream",
    # tensors and updates
    "unsupported_dtype": "an array's dtype has no PTTH dtype code",
    "not_representable": "a tensor does not fit the format (a dim or its payload exceeds 32 bits)",
    "shape_mismatch": "arrays that must have one shape do not",
    "unknown_name": "an update names a parameter the aggregator does not hold",
    "dtype_mismatch": "an update's values cannot belong to the template parameter's dtype",
    "nonfinite": "an update holds NaN or infinity",
    "norm_exceeded": "an update's norm exceeds the aggregator's bound",
    "overflow": "a value does not fit the result's dtype",
    "no_contributions": "the round has no contribution to average",
    "bad_state": "a saved aggregator state does not match its template",
    "closed": "the decoder was already closed or failed",
    # foreign model formats (ptth.convert)
    "bad_safetensors": "a safetensors file breaks its format (header length, JSON, dtypes, "
    "shapes or offsets)",
    "bad_npz": "an .npz is not a zip of .npy arrays as NumPy writes them",
    "unsupported_name": "the target format cannot hold this tensor name",
}


class PTTHError(ValueError):
    """Invalid PTTH data: a malformed blob or stream, or a tensor or update ptth cannot accept.

    Attributes:
        reason: short stable code, a key of :data:`REASONS`.
        message: a human-readable explanation.
        offset: byte offset in the (decompressed) blob where the problem was
            found, or ``None`` when no offset applies.
        record: index of the record being read, or ``None`` outside records.
        name: the parameter the error is about, or ``None``.

    Example:
        >>> import ptth
        >>> try:
        ...     ptth.loads(b"PTTH\\x00\\x00\\x00\\x01")
        ... except ptth.PTTHError as err:
        ...     print(err.reason, err.offset)
        truncated 8
    """

    def __init__(
        self,
        reason: str,
        message: str | None = None,
        *,
        offset: int | None = None,
        record: int | None = None,
        name: str | None = None,
    ) -> None:
        self.reason = reason
        self.message = message or REASONS.get(reason, reason)
        self.offset = offset
        self.record = record
        self.name = name
        super().__init__(reason, self.message, offset, record, name)

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.record is not None:
            where.append(f"record {self.record}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.reason}: {self.message}{suffix}"

    def __reduce__(self):
        return (_rebuild, (self.reason, self.message, self.offset, self.record, self.name))


def _rebuild(reason, message, offset, record, name=None):
    return PTTHError(reason, message, offset=offset, record=record, name=name)
