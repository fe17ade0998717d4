"""The central-DP round on both engines: clipping in the fold, norm bounds, the fixed
denominator and the Gaussian noise, against NumPy references written from the algebra.

The reference for an add, given the norm the aggregator reports (checked itself
against np.linalg.norm): ``factor = C / norm if C and norm > C else 1``, then
``acc += T(weight * factor) * T(x)`` (delta) or ``T(weight * factor) * (T(x) - T(t))``
(full), with T the accumulate dtype and ``weight * factor`` one float64 product
rounded once to T. Outputs: ``s = T(acc + noise)``, ``m = s / T(d)``,
``apply = T(t) + T(lr) * m``, noise ``rng.standard_normal(shape, dtype=T) * T(std)``
drawn parameter by parameter in template order.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ptth
from blobs import bits
from needs import need

# The uploads here are written by ptth.dumps (little-endian). Tiny random float32 records can
# read plausibly in both orders, which byteorder="auto" refuses (ambiguous_byteorder);
# these tests are about clipping and noise, so they name the order.
LE = "<"

DOC = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"
FORMS = ("mapping", "plain", "zlib", "deflate")
SHAPES = [(), (0,), (3,), (4, 5), (5000,)]  # 5000 crosses the norm's 4096-element chunk
FLOATS = [np.float16, np.float32, np.float64]
ACCUM = {"float64": np.float64, "float32": np.float32}
#: two-sided 1e-6 false-failure bound of a standard normal statistic (4.89)
Z_1E6 = -NormalDist().inv_cdf(0.5e-6)


def chi2_quantile(p, k):
    """Wilson-Hilferty: the chi-square(k) quantile; at k = 10^6 it is within 2e-6 standard
    deviations of the exact one (a test checks it against scipy)."""
    z = NormalDist().inv_cdf(p)
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def encode(api, update, form):
    if form == "mapping":
        return dict(update)
    if form == "plain":
        return api.dumps(update)
    return api.dumps(update, compress=1, wrapper=form)


def widened(template, update, kind, T):
    """The update's values as the aggregator folds them: T(x) or T(x) - T(t)."""
    out = {}
    for name, x in update.items():
        v = np.asarray(x).astype(T)
        if kind == "full":
            v = v - np.asarray(template[name]).astype(T)
        out[name] = v
    return out


def numpy_norm(template, update, kind, T):
    """The L2 norm over all the update's parameters: float64 values (delta), or T(x) - T(t)."""
    if kind == "delta":
        parts = [np.asarray(x).astype(np.float64).ravel() for x in update.values()]
    else:
        parts = [v.astype(np.float64).ravel() for v in widened(template, update, kind, T).values()]
    return float(np.linalg.norm(np.concatenate(parts))) if parts else 0.0


class Reference:
    """The round in NumPy: accumulators, per-parameter weight sums, the outputs."""

    def __init__(self, template, accumulate):
        self.template, self.T = template, ACCUM[accumulate]
        self.acc = {k: np.zeros(np.shape(v), self.T) for k, v in template.items()}
        self.wsum = dict.fromkeys(template, 0.0)

    def add(self, update, weight, kind, clip_norm, norm):
        factor = clip_norm / norm if clip_norm and norm > clip_norm else 1.0
        scale = self.T(weight * factor)  # one float64 product, rounded once to T
        for name, v in widened(self.template, update, kind, self.T).items():
            self.acc[name] = self.acc[name] + scale * v
            self.wsum[name] += weight
        return factor

    def noise(self, std, seed):
        if not std:
            return dict.fromkeys(self.template)
        rng = np.random.default_rng(seed)
        T = self.T
        return {
            k: rng.standard_normal(np.shape(v), dtype=T) * T(std) for k, v in self.template.items()
        }

    def sum(self, std=0.0, seed=None):
        noise = self.noise(std, seed)
        return {k: a if noise[k] is None else a + noise[k] for k, a in self.acc.items()}

    def mean(self, denominator=None, std=0.0, seed=None):
        out = {}
        for k, s in self.sum(std, seed).items():
            d = denominator if denominator is not None else self.wsum[k]
            out[k] = np.asarray(s / self.T(d)) if d > 0 else np.zeros_like(s)
        return out

    def apply(self, lr, denominator=None, std=0.0, seed=None):
        return {
            k: np.asarray(self.template[k]).astype(self.T) + self.T(lr) * m
            for k, m in self.mean(denominator, std, seed).items()
        }


def assert_bits(got, want):
    """Bit-identical float arrays (the dtype of `got` may be wider than `want`'s T)."""
    assert list(got) == list(want)
    for k, w in want.items():
        g = got[k]
        w = np.asarray(w).astype(g.dtype)  # exact: T widened to the output's dtype
        assert g.shape == w.shape, k
        np.testing.assert_array_equal(bits(g), bits(w), err_msg=k)


@st.composite
def rounds(draw):
    """A template, an accumulate dtype, a kind, and uploads with weights and clip bounds."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layout = {}
    for i in range(draw(st.integers(1, 4))):
        layout[f"p{i}"] = (
            draw(st.sampled_from(SHAPES)),
            draw(st.sampled_from(FLOATS + [np.int32])),
        )
    template = {
        k: (rng.integers(-3, 4, shape) if dt == np.int32 else rng.standard_normal(shape)).astype(dt)
        for k, (shape, dt) in layout.items()
    }
    accumulate = draw(st.sampled_from(list(ACCUM)))
    kind = draw(st.sampled_from(["delta", "full"]))
    uploads = []
    for _ in range(draw(st.integers(1, 5))):
        upd = {}
        for k, (shape, dt) in layout.items():
            if draw(st.integers(0, 3)) == 0:
                continue  # a partial update
            if dt == np.int32:
                upd[k] = (template[k] if kind == "full" else 0) + rng.integers(-2, 3, shape)
                upd[k] = upd[k].astype(np.int32)
            else:
                scale = 10.0 ** draw(st.integers(-3, 1))
                delta = rng.standard_normal(shape) * scale
                value = template[k].astype(np.float64) + delta if kind == "full" else delta
                upd[k] = value.astype(draw(st.sampled_from(FLOATS)))
        weight = draw(st.one_of(st.integers(1, 500), st.floats(0.01, 1000.0, allow_nan=False)))
        # a bound relative to the update's size: some clip hard, some not at all
        clip = draw(st.sampled_from([None, 0.05, 0.5, 1.0, 3.0, 1e6]))
        uploads.append((upd, weight, clip, draw(st.sampled_from(FORMS))))
    return template, accumulate, kind, uploads, draw(st.integers(0, 2**31))


def play(api, template, accumulate, kind, uploads):
    """Fold the uploads into an aggregator and into the reference; return both and the results."""
    agg = api.Aggregator(template, accumulate=accumulate, byteorder=LE)
    ref = Reference(template, accumulate)
    results = []
    for upd, weight, clip, form in uploads:
        r = agg.add(encode(api, upd, form), weight, kind=kind, clip_norm=clip)
        results.append(r)
        want_norm = numpy_norm(template, upd, kind, ref.T)
        assert math.isclose(r.norm, want_norm, rel_tol=1e-13, abs_tol=1e-300), (r.norm, want_norm)
        factor = ref.add(upd, weight, kind, clip, r.norm)
        assert r.factor == factor and r.parameters == len(upd)
        if clip is not None:
            assert r.norm * r.factor <= clip * (1 + 1e-15)
    return agg, ref, results


@given(case=rounds())
def test_clipped_round_is_the_reference_bit_for_bit(backend, case):
    template, accumulate, kind, uploads, seed = case
    agg, ref, _ = play(backend, template, accumulate, kind, uploads)
    assert_bits(agg.sum(allow_empty=True), ref.sum())
    assert agg.weight_sums() == ref.wsum
    denominator = float(len(uploads)) * 7.5
    assert_bits(agg.mean(dtype="float64", allow_empty=True), ref.mean())
    assert_bits(
        agg.mean(dtype="float64", denominator=denominator, allow_empty=True), ref.mean(denominator)
    )
    assert_bits(
        agg.sum(noise_std=0.25, rng=np.random.default_rng(seed), allow_empty=True),
        ref.sum(0.25, seed),
    )
    assert_bits(
        agg.mean(
            dtype="float64",
            denominator=denominator,
            noise_std=0.25,
            rng=np.random.default_rng(seed),
            allow_empty=True,
        ),
        ref.mean(denominator, 0.25, seed),
    )
    assert_bits(
        agg.apply(
            0.5,
            dtype="float64",
            denominator=denominator,
            noise_std=0.25,
            rng=np.random.default_rng(seed),
            allow_empty=True,
        ),
        ref.apply(0.5, denominator, 0.25, seed),
    )


@given(case=rounds())
def test_engines_agree_bit_for_bit_with_the_same_seed(native, pure, case):
    template, accumulate, kind, uploads, seed = case
    a, _, ra = play(native, template, accumulate, kind, uploads)
    b, _, rb = play(pure, template, accumulate, kind, uploads)
    assert [(r.norm, r.factor) for r in ra] == [(r.norm, r.factor) for r in rb]
    for out in (
        lambda agg: agg.sum(noise_std=1.5, rng=np.random.default_rng(seed), allow_empty=True),
        lambda agg: agg.apply(
            1.0, denominator=3.0, noise_std=1.5, rng=np.random.default_rng(seed), allow_empty=True
        ),
    ):
        assert_bits(out(a), out(b))


def test_the_norm_is_over_all_parameters_int32_too(backend):
    tmpl = {"w": np.zeros(3, np.float32), "steps": np.zeros((), np.int32)}
    agg = backend.Aggregator(tmpl, byteorder=LE)
    r = agg.add({"w": np.array([3.0, 0, 0], np.float32), "steps": np.int32(4)}, clip_norm=1.0)
    assert r.norm == 5.0 and r.factor == 0.2
    assert_bits(agg.sum(), {"w": np.array([0.2 * 3.0, 0, 0]), "steps": np.float64(0.2 * 4.0)})


# ---- max_norm / max_abs: all or nothing ----------------------------------------------------


def snapshot(agg):
    p = agg.partial()
    return [bits(a).tobytes() for a in p.accumulators], p.weight_sums, p.count, p.total_weight


@given(case=rounds(), ratio=st.sampled_from([0.5, 0.9, 0.999]))
def test_norm_bounds_refuse_whole_updates(backend, case, ratio):
    template, accumulate, kind, uploads, _ = case
    agg, _, results = play(backend, template, accumulate, kind, uploads)
    before = snapshot(agg)
    upd, weight, clip, form = uploads[-1]
    norm, peak = results[-1].norm, results[-1].max_abs
    blob = encode(backend, upd, form)
    if norm > 0:
        with pytest.raises(ptth.PTTHError) as err:  # bounded before clipping, clip or not
            agg.add(blob, weight, kind=kind, clip_norm=clip, max_norm=norm * ratio)
        assert err.value.reason == "norm_exceeded"
        assert snapshot(agg) == before
    if peak > 0:
        with pytest.raises(ptth.PTTHError) as err:
            agg.add(blob, weight, kind=kind, max_abs=peak * ratio)
        assert err.value.reason == "norm_exceeded"
        assert snapshot(agg) == before
    # add_many: the refused are reported and leave no trace; the rest fold as sequential adds
    bound = max(r.norm for r in results) * ratio
    if bound == 0:
        return
    batch = [encode(backend, u, f) for u, _, _, f in uploads]
    weights = [w for _, w, _, _ in uploads]
    many = backend.Aggregator(template, accumulate=accumulate, byteorder=LE)
    one = backend.Aggregator(template, accumulate=accumulate, byteorder=LE)
    out = many.add_many(batch, weights, kind=kind, clip_norm=0.5, max_norm=bound)
    for r, res, b, w in zip(out, results, batch, weights):
        if res.norm > bound:
            assert isinstance(r, ptth.PTTHError) and r.reason == "norm_exceeded"
        else:
            assert r.norm == res.norm
            one.add(b, w, kind=kind, clip_norm=0.5, max_norm=bound)
    assert snapshot(many) == snapshot(one)


def test_a_nonfinite_norm_cannot_be_clipped(backend):
    agg = backend.Aggregator({"w": np.zeros(2)}, byteorder=LE)
    before = snapshot(agg)
    for kw in ({"clip_norm": 1.0}, {"max_norm": 1.0}):
        with pytest.raises(ptth.PTTHError) as err:
            agg.add({"w": np.array([1e200, 1e200])}, **kw)  # its sum of squares overflows
        assert err.value.reason == "nonfinite"
        assert snapshot(agg) == before


# ---- the fixed denominator --------------------------------------------------------------


def test_fixed_denominator_ignores_who_contributed(backend):
    tmpl = {"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float32)}
    agg = backend.Aggregator(tmpl, byteorder=LE)
    agg.add({"a": np.ones(2, np.float32)}, 1.0)
    agg.add({"a": np.ones(2, np.float32), "b": np.full(2, 2.0, np.float32)}, 3.0)
    own = agg.mean(dtype="float64")
    np.testing.assert_array_equal(own["a"], [1.0, 1.0])  # (1 + 3) / (1 + 3)
    np.testing.assert_array_equal(own["b"], [2.0, 2.0])  # 6 / 3
    fixed = agg.mean(dtype="float64", denominator=10.0)
    np.testing.assert_array_equal(fixed["a"], [0.4, 0.4])
    np.testing.assert_array_equal(fixed["b"], [0.6, 0.6])
    new = agg.apply(2.0, denominator=10.0)
    np.testing.assert_array_equal(new["b"], np.float32(0.6 * 2.0) * np.ones(2, np.float32))
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="denominator"):
            agg.mean(denominator=bad)


# ---- the noise ---------------------------------------------------------------------------


def noise_round(backend, accumulate, n=1_000_000):
    """A template of 10^6 elements in two parameters, and a round nobody contributed to."""
    tmpl = {"a": np.zeros(n * 3 // 5), "b": np.zeros((n * 2 // 5 // 100, 100), np.float32)}
    return backend.Aggregator(tmpl, accumulate=accumulate, byteorder=LE)


def check_gaussian(values, std):
    """Mean and variance of iid N(0, std^2) draws, each within its 1e-6 false-failure bound."""
    x = np.concatenate([np.asarray(v, np.float64).ravel() for v in values])
    n = x.size
    z_mean = x.mean() / (std / math.sqrt(n))
    assert abs(z_mean) < Z_1E6, z_mean
    chi2 = float(np.sum((x / std) ** 2))  # known mean 0: chi-square with n degrees
    lo, hi = chi2_quantile(0.5e-6, n), chi2_quantile(1 - 0.5e-6, n)
    assert lo < chi2 < hi, (chi2, lo, hi, n)
    z_lag = float(np.sum(x[1:] * x[:-1])) / (std**2 * math.sqrt(n - 1))  # neighbours independent
    assert abs(z_lag) < Z_1E6, z_lag


@pytest.mark.parametrize("accumulate", ["float64", "float32"])
def test_noise_of_an_empty_round_is_gaussian(backend, accumulate):
    agg = noise_round(backend, accumulate)
    with pytest.raises(ptth.PTTHError) as err:
        agg.sum(noise_std=0.37, rng=np.random.default_rng(1))
    assert err.value.reason == "no_contributions"
    s = agg.sum(noise_std=0.37, rng=np.random.default_rng(2), allow_empty=True)
    assert s["a"].dtype == s["b"].dtype == np.dtype(accumulate)
    check_gaussian(s.values(), 0.37)
    m = agg.mean(
        dtype="float64",
        denominator=4.0,
        noise_std=0.37,
        allow_empty=True,
        rng=np.random.default_rng(3),
    )
    check_gaussian(m.values(), 0.37 / 4.0)
    # what the round promises: the sum's noise is drawn parameter by parameter in
    # template order from the caller's generator, and added to the (zero) sums: a float32
    # draw can be -0.0, and 0.0 + -0.0 is 0.0
    rng = np.random.default_rng(2)
    T = np.dtype(accumulate)
    want = {
        k: np.zeros(v.shape, T) + rng.standard_normal(v.shape, dtype=T) * T.type(0.37)
        for k, v in agg.template.items()
    }
    assert_bits(s, want)


def test_default_generator_is_fresh_os_entropy(backend):
    agg = noise_round(backend, "float64", n=200_000)
    a = agg.sum(noise_std=2.0, allow_empty=True)
    b = agg.sum(noise_std=2.0, allow_empty=True)
    assert not np.array_equal(a["a"], b["a"])  # equal only with probability ~0
    check_gaussian(a.values(), 2.0)
    with pytest.raises(TypeError, match="rng"):
        agg.sum(noise_std=1.0, rng=np.random.RandomState(0), allow_empty=True)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="noise_std"):
            agg.sum(noise_std=bad, allow_empty=True)


def test_noise_is_added_once_to_the_sum(backend):
    """The mean's noise is the sum's noise over the denominator, not noise per upload."""
    tmpl = {"w": np.zeros(50_000)}
    agg = backend.Aggregator(tmpl, byteorder=LE)
    for i in range(10):
        agg.add({"w": np.full(50_000, 0.1 * i)}, clip_norm=1.0)
    plain = agg.mean(denominator=10.0)["w"]
    noisy = agg.mean(denominator=10.0, noise_std=3.0, rng=np.random.default_rng(9))["w"]
    check_gaussian([(noisy - plain)], 3.0 / 10.0)


def test_chi2_quantiles_are_scipys():
    stats = need("scipy.stats")
    for k in (10_000, 400_000, 1_000_000):
        for p in (0.5e-6, 1 - 0.5e-6):
            # within a thousandth of the statistic's standard deviation, sqrt(2k)
            assert abs(chi2_quantile(p, k) - stats.chi2.ppf(p, k)) < 1e-3 * math.sqrt(2 * k)
    assert math.isclose(Z_1E6, stats.norm.isf(0.5e-6), rel_tol=1e-9)


# ---- the docs' worked example ------------------------------------------------------------


@pytest.mark.parametrize("backend_name", ["native", "python"])
def test_privacy_doc_examples_run(backend_name):
    need("dp_accounting")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2, "docs/privacy.md lost its examples"
    env = dict(os.environ, PTTH_BACKEND=backend_name)
    for code in blocks:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
        assert res.returncode == 0, res.stderr
        assert "OK" in res.stdout, res.stdout


# ---- ptth bench's rows ---------------------------------------------------------------------


def test_privacy_rows_for_ptth_bench():
    """privacy_rows(quick=True) gives ptth.bench.Row's arguments; both sides of every row ran
    and computed the same statistic (no time is asserted)."""
    from ptth import _bench_privacy, bench

    rows = _bench_privacy.privacy_rows(quick=True)
    ops = [r["op"] for r in rows]
    assert ops[:2] == ["add(clip_norm=)", "  vs decode + NumPy norm + add"]
    if Path("/proc/self/clear_refs").exists():
        assert ops[2:] == ["median, 8 uploads", "trimmed_mean, 8 uploads"]
    for r in rows:
        cells = bench.Row(**r).cells()
        assert cells[0] == r["op"] and r["ours"] > 0 and r["base"] > 0
        assert "DIFFER" not in r["note"]
