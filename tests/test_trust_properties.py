"""The hardening property tests, both engines: FedAvg of every client style against NumPy,
corrupted saved states, kernels whose ``out=`` overlaps their input.
"""

from __future__ import annotations

import math
import pickle
import struct

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from zlib_ng import zlib_ng

from blobs import bits, blob, error_of, f16_like_ptth, record

# ---- FedAvg of every client style -----------------------------------------------------

F16, F32, F64, I32 = (np.dtype(t) for t in ("float16", "float32", "float64", "int32"))
STYLES = ("ios", "android", "f16zlib", "plain", "partial", "full")


def _plausible(words: np.ndarray) -> np.ndarray:
    e = (words >> 23) & 0xFF
    return ((words & 0x7FFFFFFF) == 0) | ((e >= 64) & (e <= 190))


def quirk_decision(data: bytes):
    """docs/format.md's "How ptth reads the quirks" under the Aggregator's defaults
    (byteorder and relabel_float32 "auto"), from the bytes alone: ">" or "<" when a
    payload decides, "ambiguous" when none does though one could read either way,
    None when no payload tells and none is ambiguous (read "<")."""
    if data[:4] != b"PTTH":
        data = zlib_ng.decompress(data, 47)  # zlib or gzip
    (count,) = struct.unpack_from(">I", data, 8)
    pos, order, ambiguous = 12, None, False
    for _ in range(count):
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4 + n
        (ndim,) = struct.unpack_from(">I", data, pos)
        dims = struct.unpack_from(f">{ndim}I", data, pos + 4)
        pos += 4 + 4 * ndim
        code, data_len = struct.unpack_from(">II", data, pos)
        pos += 8
        payload = data[pos : pos + data_len]
        pos += data_len
        numel = math.prod(dims)
        f32 = code == 0 or (code == 1 and data_len == 4 * numel)
        if code == 2:
            words = np.frombuffer(payload, (order or "<") + "u4")[:1024].astype(np.uint32)
            small = np.abs(words.view(np.int32).astype(np.int64)) < 2**24
            f32 = int(_plausible(words).sum()) > int(small.sum())
        if order is None and f32:
            le = np.frombuffer(payload, "<u4").astype(np.uint32)
            be = le.byteswap()
            a, b = int(_plausible(le[:1024]).sum()), int(_plausible(be[:1024]).sum())
            if a != b:
                order = ">" if b > a else "<"
            elif np.any((le != be) & (_plausible(le) | _plausible(be))):
                ambiguous = True
    return order if order is not None or not ambiguous else "ambiguous"


@st.composite
def templates(draw):
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = {}
    for i in range(n):
        dtype = draw(st.sampled_from([F32, F64, F16, I32]))
        shape = tuple(draw(st.lists(st.integers(1, 6), max_size=2)))
        if dtype == I32:
            out[f"layer{i}.count"] = rng.integers(-50, 50, shape).astype(I32)
        else:
            out[f"layer{i}.weight"] = rng.standard_normal(shape).astype(dtype)
    return out


uploads = st.lists(
    st.tuples(
        st.sampled_from(STYLES),
        st.integers(0, 2**32 - 1),  # values
        st.floats(0.5, 100.0),  # weight
        st.integers(-3, 1),  # log10 of the update's scale
    ),
    min_size=1,
    max_size=6,
)


def client_upload(backend, tmpl, style, seed, scale):
    """(blob or mapping, kind, {name: the true delta in float64}) as each client writes it."""
    rng = np.random.default_rng(seed)
    names = list(tmpl)
    if style == "partial":
        names = [n for n in names if rng.random() < 0.5] or names[:1]
    delta = {}
    for n in names:
        t = tmpl[n]
        # arrays, also for 0-d parameters (NumPy scalars ignore a byte order)
        if t.dtype == I32:
            delta[n] = np.asarray(rng.integers(-5, 6, t.shape), np.float64)
        else:
            delta[n] = np.asarray(rng.standard_normal(t.shape) * 10.0**scale)
    if style in ("ios", "android"):
        # iOS: float32 little-endian under the original codes; Android: float32
        # big-endian under code 0; both in the client's string order
        order = ">" if style == "android" else "<"
        codes = {F32: 0, F16: 0, F64: 1, I32: 2}
        recs = []
        for n in sorted(names):
            x = delta[n].astype(F32)
            code = 0 if style == "android" else codes[tmpl[n].dtype]
            recs.append(record(n, list(x.shape), code, x.astype(order + "f4").tobytes()))
            delta[n] = x.astype(np.float64)
        return blob(*recs), "delta", delta
    if style == "f16zlib":
        out = {}
        for n in names:
            if tmpl[n].dtype == I32:
                out[n] = delta[n].astype(I32)
            else:
                out[n] = delta[n].astype(F32)
                delta[n] = f16_like_ptth(out[n]).astype(np.float64)
        return backend.dumps(out, dtype="float16", compress=6), "delta", delta
    if style == "full":
        weights = {n: (tmpl[n].astype(np.float64) + delta[n]).astype(tmpl[n].dtype) for n in names}
        for n in names:
            delta[n] = weights[n].astype(np.float64) - tmpl[n].astype(np.float64)
        return backend.dumps(weights), "full", delta
    out = {n: delta[n].astype(tmpl[n].dtype) for n in names}  # plain, partial
    for n in names:
        delta[n] = out[n].astype(np.float64)
    return backend.dumps(out), "delta", delta


@settings(max_examples=150)
@given(tmpl=templates(), ups=uploads)
def test_auto_aggregator_is_the_fedavg_of_the_true_values(backend, tmpl, ups):
    """Every client style into one Aggregator with its "auto" defaults: the NumPy
    FedAvg of the values the clients meant (not of what a wrong reading makes of them).
    An upload is refused only when the format's rules say its byte order cannot be
    decided (ambiguous_byteorder), and then it leaves no trace."""
    agg = backend.Aggregator(tmpl)
    acc = {n: np.zeros(t.shape) for n, t in tmpl.items()}
    mag = {n: np.zeros(t.shape) for n, t in tmpl.items()}  # for the rounding bound
    wsum = dict.fromkeys(tmpl, 0.0)
    reported = []
    for style, seed, weight, scale in ups:
        data, kind, true = client_upload(backend, tmpl, style, seed, scale)
        decision = quirk_decision(data)
        event(f"{style}: {decision or 'no telling payload'}")
        if decision == "ambiguous":
            assert error_of(agg.add, data, weight, kind=kind).reason == "ambiguous_byteorder"
            continue
        result = agg.add(data, weight, kind=kind)
        reported.append((result, decision or "<", len(true)))
        for n, x in true.items():
            acc[n] += weight * x
            mag[n] += weight * np.abs(x)
            wsum[n] += weight
    if not any(wsum.values()):
        assert error_of(agg.mean).reason == "no_contributions"
        return
    got = agg.mean(dtype="float64")
    for n in tmpl:
        if not wsum[n]:
            assert not got[n].any(), n  # a parameter nobody updated
            continue
        # float64 sums in another order (or fused): a few ulps of the magnitudes summed
        err = np.abs(got[n] - acc[n] / wsum[n])
        assert np.all(err <= 1e-12 * mag[n] / wsum[n] + 1e-300), (n, err.max())
    for result, order, parameters in reported:
        assert (result.byteorder, result.parameters, result.counted) == (order, parameters, True)


# ---- corrupted saved states -------------------------------------------------------------

TEMPLATE = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8,
    "fc.bias": np.linspace(-1, 1, 5),
    "steps": np.array([3, 4], np.int32),
    "half": np.full((2, 2), 0.5, np.float16),
}


def saved(backend, accumulate="float64"):
    agg = backend.Aggregator(TEMPLATE, accumulate=accumulate)
    rng = np.random.default_rng(1)
    for w in (1.0, 2.5):
        agg.add({k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in TEMPLATE.items()}, w)
    return agg


def _accs(state, i, fn):
    accs = list(state["accumulators"])
    accs[i] = fn(np.asarray(accs[i]))
    return dict(state, accumulators=accs)


# Each breaks one field of a saved state; every one must be refused as bad_state. Those
# of the first kinds break a PartialAggregate's fields too.
PARTIAL_FIELDS = ("accumulator", "weight sum", "count", "empty", "total weight")
CORRUPTIONS = {
    "accumulator shorter": lambda s, i: _accs(s, i, lambda a: a.reshape(-1)[:-1]),
    "accumulator longer": lambda s, i: _accs(s, i, lambda a: np.append(a, 0.0).astype(a.dtype)),
    "accumulator flat": lambda s, i: _accs(
        s, i, lambda a: a.reshape(-1) if a.ndim != 1 else a.reshape(1, -1)
    ),
    "accumulator of another dtype": lambda s, i: _accs(
        s, i, lambda a: a.astype(np.float32 if a.dtype == np.float64 else np.float64)
    ),
    "accumulator of ints": lambda s, i: _accs(s, i, lambda a: a.astype(np.int64)),
    "accumulator reversed view": lambda s, i: _accs(s, i, lambda a: a.reshape(-1)[::-1]),
    "accumulator strided view": lambda s, i: _accs(
        s, i, lambda a: np.repeat(a.reshape(-1), 2)[::2] if a.size > 1 else a[None][:, :0]
    ),
    "accumulator byte-swapped": lambda s, i: _accs(
        s, i, lambda a: a.astype(a.dtype.newbyteorder(">"))
    ),
    "accumulator NaN": lambda s, i: _accs(
        s, i, lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(a.dtype)
    ),
    "accumulator inf": lambda s, i: _accs(s, i, lambda a: np.full_like(a, np.inf)),
    "accumulator a string": lambda s, i: _accs(s, i, lambda a: "not an array"),
    "accumulator missing": lambda s, i: dict(
        s, accumulators=[a for k, a in enumerate(s["accumulators"]) if k != i]
    ),
    "accumulator extra": lambda s, i: dict(
        s, accumulators=list(s["accumulators"]) + [s["accumulators"][i]]
    ),
    "weight sum NaN": lambda s, i: dict(
        s, weight_sums=[math.nan if k == i else w for k, w in enumerate(s["weight_sums"])]
    ),
    "weight sum negative": lambda s, i: dict(
        s, weight_sums=[-1.0 if k == i else w for k, w in enumerate(s["weight_sums"])]
    ),
    "weight sum inf": lambda s, i: dict(
        s, weight_sums=[math.inf if k == i else w for k, w in enumerate(s["weight_sums"])]
    ),
    "weight sum a string": lambda s, i: dict(
        s, weight_sums=["1" if k == i else w for k, w in enumerate(s["weight_sums"])]
    ),
    "weight sums short": lambda s, i: dict(s, weight_sums=list(s["weight_sums"])[:i]),
    "count negative": lambda s, i: dict(s, count=-1 - i),
    "count past 64 bits": lambda s, i: dict(s, count=2**64 + i),
    "count not an integer": lambda s, i: dict(s, count=2.5),
    "empty negative": lambda s, i: dict(s, empty=-1),
    "total weight NaN": lambda s, i: dict(s, total_weight=math.nan),
    "total weight negative": lambda s, i: dict(s, total_weight=-3.0),
    "total weight a string": lambda s, i: dict(s, total_weight="3"),
    "accumulate unknown": lambda s, i: dict(s, accumulate="float16"),
    "option unknown": lambda s, i: dict(s, options=dict(s["options"], byteorder="middle")),
    "version": lambda s, i: dict(s, version=2),
    "template parameter dropped": lambda s, i: dict(
        s, template={k: v for k, v in s["template"].items() if k != list(s["template"])[i]}
    ),
    "template reshaped": lambda s, i: dict(
        s,
        template={
            k: (v.reshape(-1)[:-1] if k == list(s["template"])[i] else v)
            for k, v in s["template"].items()
        },
    ),
    "not a dict": lambda s, i: [s],
}


@settings(max_examples=120)
@given(
    corruption=st.sampled_from(sorted(CORRUPTIONS)),
    index=st.integers(0, len(TEMPLATE) - 1),
    accumulate=st.sampled_from(["float64", "float32"]),
)
def test_a_corrupted_checkpoint_is_refused(backend, corruption, index, accumulate):
    """A damaged Aggregator state handed to what pickle.loads calls to rebuild one:
    bad_state, never a crash (the native engine wrote past short accumulators) and
    never a half-loaded aggregator; a damaged PartialAggregate merged into a live
    aggregator changes nothing. (Called directly: pickling would make contiguous
    native copies of the views, which then restore by value.)"""
    agg = saved(backend, accumulate)
    rebuild, (state,) = agg.__reduce_ex__(5)
    bad = CORRUPTIONS[corruption](state, index)
    err = error_of(rebuild, bad)
    assert err.reason == "bad_state", (corruption, str(err))

    if not corruption.startswith(PARTIAL_FIELDS):
        return
    live = saved(backend, accumulate)
    before = pickle.dumps(live.partial())
    p = live.partial()
    p.accumulators, p.weight_sums = bad["accumulators"], bad["weight_sums"]
    p.count, p.total_weight, p.empty = bad["count"], bad["total_weight"], bad["empty"]
    err = error_of(live.merge, p)
    assert err.reason == "bad_state", (corruption, str(err))
    assert pickle.dumps(live.partial()) == before, corruption


@pytest.mark.parametrize("accumulate", ["float64", "float32"])
def test_a_checkpoint_restores_exactly_also_from_read_only_buffers(backend, accumulate):
    agg = saved(backend, accumulate)
    buffers = []
    data = pickle.dumps(agg, protocol=5, buffer_callback=buffers.append)
    ro = [memoryview(bytes(b.raw())).toreadonly() for b in buffers]
    back = pickle.loads(data, buffers=ro)
    assert (back.count, back.total_weight) == (agg.count, agg.total_weight)
    for k, v in agg.apply().items():
        assert np.array_equal(bits(back.apply()[k]), bits(v)), k


@pytest.mark.parametrize(
    "view",
    [lambda a: a[::-1].copy()[::-1], lambda a: a.astype(a.dtype.newbyteorder(">"))],
    ids=["reversed view", "byte-swapped"],
)
def test_a_template_restored_from_a_view_is_read_by_value(backend, view):
    """A template restored as a reversed or '>f4' view was read as raw memory."""
    agg = saved(backend)
    rebuild, (state,) = agg.__reduce_ex__(5)
    tmpl = {k: view(np.asarray(v)) for k, v in state["template"].items()}
    back = rebuild(dict(state, template=tmpl))
    for k, v in agg.apply().items():
        assert np.array_equal(bits(back.apply()[k]), bits(v)), k


# ---- kernels whose out= overlaps their input ---------------------------------------------


def _views(buf: np.ndarray, dtype, n, start):
    dtype = np.dtype(dtype)
    return buf[start : start + n * dtype.itemsize].view(dtype)


@settings(max_examples=150)
@given(
    n=st.integers(1, 300),
    kind=st.sampled_from(["to_float16", "to_float32", "subtract"]),
    src=st.sampled_from([np.float32, np.float64]),
    target=st.sampled_from([None, "float16", "float32", "float64"]),
    shift=st.integers(-40, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_overlapping_out_is_computed_as_if_the_input_were_copied(
    backend, n, kind, src, target, shift, seed
):
    """to_float32(h, out=buf) over the same memory, subtract(x[:32], z, out=x[1:])...
    gave wrong elements, different ones on each engine."""
    rng = np.random.default_rng(seed)
    in_dtype = np.dtype(np.float16 if kind == "to_float32" else src)
    out_dtype = {
        "to_float16": np.dtype(np.float16),
        "to_float32": np.dtype(np.float32),
        "subtract": np.dtype(target or src),
    }[kind]
    # one buffer; the input and the output start `shift` items (of the output) apart
    size = (n + abs(shift) + 2) * 8 * 2
    buf = np.zeros(size, np.uint8)
    base = size // 2 - (n * max(in_dtype.itemsize, out_dtype.itemsize)) // 2
    base -= base % 8
    in_at = base
    out_at = base + shift * out_dtype.itemsize
    x = _views(buf, in_dtype, n, in_at)
    values = (rng.standard_normal(n) * 100).astype(in_dtype)
    x[...] = values
    z = (rng.standard_normal(n) * 10).astype(src) if kind == "subtract" else None
    with np.errstate(all="ignore"):
        if kind == "to_float16":
            want = f16_like_ptth(values)
        elif kind == "to_float32":
            want = values.astype(np.float32)
        else:
            want = (values - z).astype(out_dtype)
    out = _views(buf, out_dtype, n, out_at)
    if kind == "to_float16":
        got = backend.to_float16(x, out=out)
    elif kind == "to_float32":
        got = backend.to_float32(x, out=out)
    else:
        got = backend.subtract(x, z, dtype=target, out=out)
    assert got is out
    assert np.array_equal(bits(out), bits(want)), (kind, shift)


def test_overlap_examples_from_the_issue(backend):
    buf = np.zeros(64, np.float32)
    h = buf.view(np.float16)[:64]
    h[...] = np.arange(64) / 4
    want = h.astype(np.float32)
    assert np.array_equal(backend.to_float32(h, out=buf), want)
    x = np.arange(33, dtype=np.float32)
    z = np.full(32, 0.5, np.float32)
    want = x[:32] - z
    backend.subtract(x[:32], z, out=x[1:])
    assert np.array_equal(x[1:], want)


# ---- the norm's summation order ---------------------------------------------------------


@settings(max_examples=40)
@given(
    sizes=st.lists(st.sampled_from([1, 7, 16, 17, 255, 4095, 4096, 4097, 9000]), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_both_engines_give_the_same_norm_bit_for_bit(native, pure, sizes, seed):
    """The norm (and so the clipping factor) is summed in the core's fixed order on both
    engines, short records included (the fallback now skips their padding)."""
    rng = np.random.default_rng(seed)
    tmpl = {f"p{i}": np.zeros(n, np.float32) for i, n in enumerate(sizes)}
    upd = {k: (rng.standard_normal(v.shape) * 3).astype(np.float32) for k, v in tmpl.items()}
    results = []
    for mod in (native, pure):
        agg = mod.Aggregator(tmpl)
        results.append(agg.add(upd, clip_norm=1.0))
    a, b = results
    for field in ("norm", "max_abs", "factor"):
        assert np.float64(getattr(a, field)).tobytes() == np.float64(getattr(b, field)).tobytes()
