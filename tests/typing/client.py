"""A server's use of ptth, checked with ``mypy --strict`` (tests/test_typing.py)."""

from __future__ import annotations

import numpy as np

import ptth


def round_of(
    template: dict[str, np.ndarray], uploads: list[bytes], weights: list[float]
) -> dict[str, np.ndarray]:
    agg = ptth.Aggregator(template, accumulate="float64", byteorder="auto")
    norms: list[float] = []
    for blob, weight in zip(uploads, weights):
        try:
            result: ptth.AddResult = agg.add(blob, weight, kind="delta", clip_norm=10.0)
        except ptth.PTTHError as err:
            print(err.reason, err.offset, err.record, err.name)
            continue
        norms.append(result.norm * result.factor)
    outcomes = agg.add_many(uploads, weights)
    rejected = [r.reason for r in outcomes if isinstance(r, ptth.PTTHError)]
    print(len(rejected), sum(norms), agg.count, agg.total_weight)
    partial: ptth.PartialAggregate = agg.partial()
    merged = ptth.Aggregator(template)
    merged.merge(partial)
    return agg.apply(lr=1.0, denominator=float(len(uploads)), noise_std=0.0)


def codec(tensors: dict[str, np.ndarray]) -> bytes:
    blob: bytes = ptth.dumps(tensors, dtype="float16", compress=6, wrapper="zlib")
    back: dict[str, np.ndarray] = ptth.loads(blob, copy=True, max_size=ptth.UNLIMITED)
    dec = ptth.Decoder(byteorder="<")
    records: list[tuple[str, np.ndarray]] = dec.feed(blob)
    dec.close()
    order: str | None = dec.byteorder
    half: np.ndarray = ptth.to_float16(back["w"])
    delta = ptth.compute_delta(back, tensors, dtype="float16")
    applied = ptth.apply_delta(tensors, delta, scale=0.5)
    print(len(records), order, half.dtype, len(applied), ptth.detect_wrapper(blob))
    return ptth.compress(ptth.decompress(blob), level=6, wrapper="gzip")
