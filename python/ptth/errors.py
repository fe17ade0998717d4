"""The one exception type of ptth, shared by the native and pure backends.

Every failure caused by input data (a malformed blob, a bad argument value,
a damaged compressed stream, an update that does not fit an aggregator)
raises :class:`PTTHError`. Its ``reason`` is a short stable code from
:data:`REASONS`; both backends give the same ``reason`` for the same input.
"""

from __future__ import annotations

__all__ = ["PTTHError", "REASONS"]

#: reason code -> what it means. The codes are part of the public API.
REASONS = {
    # blob structure (SPEC.md "What a valid blob satisfies")
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
    # compressed input
    "too_large": "the decoded size would exceed max_size",
    "stream_corrupt": "the compressed stream is not valid DEFLATE/zlib/gzip data",
    "bad_checksum": "the compressed stream's checksum does not match its data",
    "stream_truncated": "the compressed stream ended before its end marker",
    "stream_trailing": "bytes follow the end of the compressed stream",
    # arguments and values
    "bad_argument": "an argument has a value ptth does not accept",
    "unsupported_dtype": "an array's dtype has no PTTH dtype code",
    "shape_mismatch": "arrays that must have one shape do not",
    "unknown_name": "an update names a parameter the aggregator does not hold",
    "nonfinite": "an update holds NaN or infinity",
    "closed": "the decoder was already closed",
    # foreign model formats (ptth.convert)
    "bad_safetensors": "a safetensors file breaks its format (header length, JSON, dtypes, "
                       "shapes or offsets)",
    "bad_npz": "an .npz is not a zip of .npy arrays as NumPy writes them",
    "value_out_of_range": "an integer tensor holds values the target dtype (int32) cannot",
    "unsupported_name": "the target format cannot hold this tensor name",
}


class PTTHError(ValueError):
    """Invalid PTTH input or argument.

    Attributes:
        reason: short stable code, a key of :data:`REASONS`.
        offset: byte offset in the (decompressed) blob where the problem was
            found, or ``None`` when no offset applies.
        record: index of the record being read, or ``None`` outside records.
    """

    def __init__(self, reason: str, message: str | None = None, *,
                 offset: int | None = None, record: int | None = None):
        self.reason = reason
        self.message = message or REASONS.get(reason, reason)
        self.offset = offset
        self.record = record
        super().__init__(reason, self.message, offset, record)

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.record is not None:
            where.append(f"record {self.record}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.reason}: {self.message}{suffix}"

    def __reduce__(self):
        return (_rebuild, (self.reason, self.message, self.offset, self.record))


def _rebuild(reason, message, offset, record):
    return PTTHError(reason, message, offset=offset, record=record)
