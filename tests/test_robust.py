"""ptth.median and ptth.trimmed_mean on both engines, against NumPy and scipy on stacked arrays.

The references stack every holder's values as float64 (minus the template's
for kind="full") and call np.median(stack, axis=0) / scipy.stats.trim_mean's
algorithm in NumPy (checked against scipy itself below). ptth's functions are
bound to each engine's copy of the front with ptth._robust.over (the `backend`
fixture's modules are copies of ptth._front, which does not carry them).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ptth
from needs import need
from ptth import _robust

PROBE = Path(__file__).with_name("robustprobe.py")
FORMS = ("mapping", "plain", "zlib", "gzip", "deflate")
SHAPES = [(), (0,), (5,), (3, 4), (2, 3, 2), (257,)]
DTYPES = [np.float16, np.float32, np.float64, np.int32]
EPS = np.finfo(np.float64).eps


@pytest.fixture(scope="session")
def robust(backend):
    return _robust.over(backend)


@contextlib.contextmanager
def small_blocks():
    """64-value blocks, so a few hundred elements already cross block boundaries."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_robust, "_BLOCK_ELEMENTS", 64)
        yield


def encode(api, update: dict, form: str):
    if form == "mapping":
        return dict(update)
    if form == "plain":
        return api.dumps(update)
    return api.dumps(update, compress=1, wrapper=form)


def stacked(values, template, kind):
    """name -> float64 stack of the holders' values, in first-seen order (template's if given)."""
    names = list(template) if template is not None else []
    for u in values:
        names += [n for n in u if n not in names]
    out = {}
    for name in names:
        rows = [np.asarray(u[name]).astype(np.float64) for u in values if name in u]
        if not rows:
            continue
        if kind == "full":
            rows = [r - np.asarray(template[name]).astype(np.float64) for r in rows]
        out[name] = np.stack(rows)
    return out


def ref_median(values, template=None, kind="delta"):
    return {n: np.median(s, axis=0) for n, s in stacked(values, template, kind).items()}


def trim_mean(stack, p):
    """scipy.stats.trim_mean(stack, p, axis=0) as scipy computes it: partition, then the mean of
    the middle, NaN wherever the coordinate holds one (its nan_policy="propagate")."""
    n = stack.shape[0]
    lo = int(p * n)
    part = np.partition(stack, (lo, n - lo - 1), axis=0)
    with np.errstate(all="ignore"):
        out = np.mean(part[lo : n - lo], axis=0)
    return np.where(np.isnan(stack).any(axis=0), np.nan, out)


def ref_trimmed(values, p, template=None, kind="delta"):
    return {n: trim_mean(s, p) for n, s in stacked(values, template, kind).items()}


def test_numpy_trim_mean_reference_is_scipys():
    stats = need("scipy.stats")
    rng = np.random.default_rng(11)
    for n in (1, 2, 5, 8, 9):
        stack = rng.choice([-1.0, 0.0, 2.5, np.inf, -np.inf, np.nan], size=(n, 300))
        stack[:, :100] = rng.standard_normal((n, 100))
        for p in (0.0, 0.1, 0.25, 0.49):
            with np.errstate(all="ignore"):
                want = stats.trim_mean(stack, p, axis=0)
            got = trim_mean(stack, p)
            # the same values kept; scipy adds them in another order
            np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
            finite = np.isfinite(want)
            np.testing.assert_array_equal(got[~finite], want[~finite])
            np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=4 * n * EPS * 4)


def assert_trimmed_close(got, want, values, template=None, kind="delta"):
    """Equal up to the order of the additions: a few ulps of the largest magnitude kept."""
    stacks = stacked(values, template, kind)
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == np.float64 and g.shape == w.shape
        with np.errstate(all="ignore"):
            scale = np.max(np.abs(np.nan_to_num(stacks[name], posinf=0, neginf=0)), axis=0)
        tol = 4 * stacks[name].shape[0] * EPS * scale
        finite = np.isfinite(w)
        np.testing.assert_array_equal(np.isfinite(g), finite)
        np.testing.assert_array_equal(g[~finite], w[~finite])
        assert np.all(np.abs(g[finite] - w[finite]) <= tol[finite]), name


def assert_median_equal(got, want):
    assert list(got) == list(want)
    for name, w in want.items():
        assert got[name].dtype == np.float64 and got[name].shape == w.shape
        np.testing.assert_array_equal(got[name], w)


@st.composite
def rounds(draw, *, nonfinite=False):
    """A template layout, N uploads (partial, mixed dtypes and forms), kind and proportion."""
    n_params = draw(st.integers(1, 4))
    layout = {
        f"p{i}": (draw(st.sampled_from(SHAPES)), draw(st.sampled_from(DTYPES)))
        for i in range(n_params)
    }
    n = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ties = draw(st.booleans())
    specials = [np.nan, np.inf, -np.inf] if nonfinite else []

    def values(shape):
        if ties:  # few distinct values: every coordinate has ties
            pool = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0] + specials)
            return rng.choice(pool, size=shape)
        v = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3)
        if specials and v.size:
            hit = rng.random(shape) < 0.1
            v = np.where(hit, rng.choice(np.array(specials), size=shape), v)
        return v

    template = {
        k: (values(shape) if dt != np.int32 else rng.integers(-3, 4, shape)).astype(dt)
        for k, (shape, dt) in layout.items()
    }
    if nonfinite:  # a template's own NaN would make every difference NaN
        template = {k: np.nan_to_num(v, posinf=0, neginf=0) for k, v in template.items()}
    uploads = []
    for _ in range(n):
        upd = {}
        for k, (shape, dt) in layout.items():
            if draw(st.integers(0, 4)) == 0:
                continue  # a partial update
            if dt == np.int32:
                upd[k] = rng.integers(-3, 4, shape).astype(np.int32)
            else:
                upd[k] = values(shape).astype(draw(st.sampled_from(DTYPES[:3])))
        uploads.append((upd, draw(st.sampled_from(FORMS))))
    kind = draw(st.sampled_from(["delta", "full"]))
    with_template = kind == "full" or draw(st.booleans())
    proportion = draw(st.sampled_from([0.0, 0.1, 0.2, 0.25, 1 / 3, 0.49]))
    return template if with_template else None, uploads, kind, proportion


def run_round(robust, backend, template, uploads, kind, proportion, **kw):
    encoded = [encode(backend, u, form) for u, form in uploads]
    values = [u for u, _ in uploads]
    want_m = ref_median(values, template, kind)
    want_t = ref_trimmed(values, proportion, template, kind)
    if not want_m:
        for fn in (robust.median, lambda ups, **k: robust.trimmed_mean(ups, proportion, **k)):
            with pytest.raises(ptth.PTTHError) as err:
                fn(encoded, template=template, kind=kind, **kw)
            assert err.value.reason == "no_contributions"
        return
    got_m = robust.median(encoded, template=template, kind=kind, **kw)
    assert_median_equal(got_m, want_m)
    got_t = robust.trimmed_mean(encoded, proportion, template=template, kind=kind, **kw)
    assert_trimmed_close(got_t, want_t, values, template, kind)


@given(case=rounds())
def test_against_numpy_and_scipy(robust, backend, case):
    template, uploads, kind, proportion = case
    finite = [(u, f) for u, f in uploads if all(np.isfinite(v).all() for v in u.values())]
    with small_blocks():
        run_round(robust, backend, template, finite, kind, proportion)


@given(case=rounds(nonfinite=True))
def test_nonfinite_as_numpy_when_allowed(robust, backend, case):
    template, uploads, kind, proportion = case
    with small_blocks(), np.errstate(all="ignore"):
        run_round(robust, backend, template, uploads, kind, proportion, allow_nonfinite=True)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8])
def test_odd_and_even_counts_and_ties_across_blocks(robust, n):
    """100k elements cross several default-size blocks; 3 distinct values make ties everywhere."""
    rng = np.random.default_rng(n)
    ups = [{"w": rng.choice([-1.0, 0.0, 3.0], size=100_000).astype(np.float32)} for _ in range(n)]
    assert_median_equal(robust.median(ups), ref_median(ups))
    for p in (0.0, 0.2, 0.45):
        assert_trimmed_close(robust.trimmed_mean(ups, p), ref_trimmed(ups, p), ups)


def test_even_median_is_numpys_mean_of_the_middle_pair(robust):
    ups = [{"w": np.array([v])} for v in (1.0, 2.0**-1074, 3.0, -1.0)]  # subnormal halves
    assert_median_equal(robust.median(ups), ref_median(ups))
    big = [{"w": np.array([v])} for v in (1.7e308, 1.7e308, -1.0, 1.75e308)]
    with np.errstate(over="ignore"):
        want = ref_median(big)
        assert want["w"][0] == np.inf  # NumPy's (a + b) / 2 overflows
        with pytest.raises(ptth.PTTHError) as err:
            robust.median(big)
        assert err.value.reason == "overflow" and err.value.name == "w"
        assert_median_equal(robust.median(big, allow_nonfinite=True), want)
        with pytest.raises(ptth.PTTHError) as err:
            robust.trimmed_mean(big, 0.0)
        assert err.value.reason == "overflow"


def test_nonfinite_is_refused_by_default_naming_the_upload(robust, backend):
    good = {"w": np.zeros(3, np.float32)}
    bad = {"w": np.array([0.0, np.nan, 1.0], np.float32)}
    for ups in ([good, good, bad], [good, backend.dumps(good), backend.dumps(bad, compress=6)]):
        for fn in (robust.median, lambda u: robust.trimmed_mean(u, 0.1)):
            with pytest.raises(ptth.PTTHError) as err:
                fn(ups)
            assert err.value.reason == "nonfinite" and err.value.name == "w"
            assert "updates[2]" in str(err.value)


def test_full_kind_is_the_statistic_of_update_minus_template(robust, backend):
    rng = np.random.default_rng(3)
    tmpl = {"w": rng.standard_normal((4, 5)).astype(np.float32), "n": np.array(7, np.int32)}
    ups = [
        {"w": (tmpl["w"] + rng.standard_normal((4, 5))).astype(np.float32), "n": np.int32(9 + i)}
        for i in range(5)
    ]
    got = robust.median([backend.dumps(u) for u in ups], template=tmpl, kind="full")
    assert_median_equal(got, ref_median(ups, tmpl, "full"))
    assert got["n"] == 4.0  # median of 2..6
    overflow = {"w": np.full((4, 5), 1.7e308), "n": np.int32(0)}
    with pytest.raises(ptth.PTTHError) as err:
        robust.median(
            [overflow], template={"w": np.full((4, 5), -1.7e308), "n": np.int32(0)}, kind="full"
        )
    assert err.value.reason == "overflow" and err.value.name == "w"


def test_partial_updates_and_absent_parameters(robust, backend):
    tmpl = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32), "c": np.zeros(1)}
    ups = [
        {"a": np.array([1.0, 2, 3], np.float32)},
        {"a": np.array([3.0, 2, 1], np.float32), "b": np.array([5.0, 6], np.float32)},
        {},
    ]
    blobs = [backend.dumps(u) for u in ups]
    got = robust.median(blobs, template=tmpl)
    assert list(got) == ["a", "b"]  # template order; "c", held by nobody, is absent
    np.testing.assert_array_equal(got["a"], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(got["b"], [5.0, 6.0])  # over the one upload holding it
    no_tmpl = robust.trimmed_mean(blobs[::-1], 0.0)
    assert list(no_tmpl) == ["a", "b"]  # first-seen order: upload 1 names a, then b
    for ups_ in ([], [backend.dumps({})], [{}, {}]):
        with pytest.raises(ptth.PTTHError) as err:
            robust.median(ups_, template=tmpl)
        assert err.value.reason == "no_contributions"


def test_every_buffer_type_and_a_generator(robust, backend, tmp_path):
    rng = np.random.default_rng(5)
    ups = [{"w": rng.standard_normal(50).astype(np.float32)} for _ in range(5)]
    plain = [backend.dumps(u) for u in ups]
    path = tmp_path / "u0.ptth"
    path.write_bytes(backend.dumps(ups[0], compress=6))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        forms = [
            mm,  # a compressed file, mapped
            bytearray(plain[1]),
            memoryview(plain[2]),
            np.frombuffer(plain[3], np.uint8),
            ups[4],
        ]
        got = robust.median(x for x in forms)
    assert_median_equal(got, ref_median(ups))


def test_byteorder_and_relabel_go_to_loads(robust, backend):
    w = np.arange(6, dtype=np.float32)
    android = backend.dumps({"w": w.astype(">f4")})  # a big-endian payload under code 0
    android = android[: len(android) - 24] + w.astype(">f4").tobytes()
    got = robust.median([android, android], byteorder=">")
    np.testing.assert_array_equal(got["w"], w)
    with pytest.raises(ValueError, match="byteorder"):
        robust.median([{"w": w}], byteorder="big")  # checked even with no blob to read
    # an iOS float32 payload under code 2 (int32): refused against a float template
    ios = bytearray(backend.dumps({"w": w}))
    code_at = len(ios) - 24 - 8
    ios[code_at : code_at + 4] = (2).to_bytes(4, "big")
    with pytest.raises(ptth.PTTHError) as err:
        robust.median([bytes(ios)], template={"w": w})
    assert err.value.reason == "dtype_mismatch" and "relabel_float32" in str(err.value)
    got = robust.median([bytes(ios)], template={"w": w}, relabel_float32=True)
    np.testing.assert_array_equal(got["w"], w)


def test_bad_uploads_are_ptth_errors_naming_them(robust, backend):
    good = backend.dumps({"w": np.zeros(3, np.float32)})
    cases = [
        ([good, good[:-2]], "truncated"),
        ([good, backend.compress(good)[:-3]], "stream_truncated"),
        ([good, backend.dumps({"w": np.zeros(4, np.float32)})], "shape_mismatch"),
        ([good, {"w": np.zeros(3, np.int32)}], "dtype_mismatch"),
        ([good, {"w": np.zeros(3, np.complex64)}], "unsupported_dtype"),
    ]
    for ups, reason in cases:
        with pytest.raises(ptth.PTTHError) as err:
            robust.median(ups)
        assert err.value.reason == reason, (reason, err.value)
        assert "updates[1]" in str(err.value)
    with pytest.raises(ptth.PTTHError) as err:
        robust.median([good], template={"v": np.zeros(3, np.float32)})
    assert err.value.reason == "unknown_name"


def test_bad_arguments_are_type_or_value_errors_naming_them(robust):
    ups = [{"w": np.zeros(2)}]
    cases = [
        (lambda: robust.median(ups, kind="weights"), ValueError, "kind"),
        (lambda: robust.median(ups, kind=1), TypeError, "kind"),
        (lambda: robust.median(ups, kind="full"), ValueError, "template"),
        (lambda: robust.median(ups, template=[1]), TypeError, "template"),
        (
            lambda: robust.median(ups, template={"w": np.zeros(2, np.complex64)}),
            TypeError,
            "template",
        ),
        (lambda: robust.median(ups, allow_nonfinite=1), TypeError, "allow_nonfinite"),
        (lambda: robust.median(ups, copy="yes"), TypeError, "copy"),
        (lambda: robust.median(ups, weights=[1]), TypeError, "weights"),
        (lambda: robust.median(ups, max_size=-1), ValueError, "max_size"),
        (lambda: robust.median({"w": np.zeros(2)}), TypeError, "updates"),
        (lambda: robust.median(b"PTTH"), TypeError, "updates"),
        (lambda: robust.median(3), TypeError, "updates"),
        (lambda: robust.median([3]), TypeError, r"updates\[0\]"),
        (lambda: robust.median(["a.ptth"]), TypeError, r"updates\[0\]"),
        (lambda: robust.median([{1: np.zeros(2)}]), TypeError, "names"),
        (lambda: robust.trimmed_mean(ups, 0.5), ValueError, "proportion"),
        (lambda: robust.trimmed_mean(ups, -0.1), ValueError, "proportion"),
        (lambda: robust.trimmed_mean(ups, float("nan")), ValueError, "proportion"),
        (lambda: robust.trimmed_mean(ups, True), TypeError, "proportion"),
        (lambda: robust.trimmed_mean(ups, "0.1"), TypeError, "proportion"),
    ]
    for call, exc, word in cases:
        with pytest.raises(exc, match=word) as info:
            call()
        assert not isinstance(info.value, ptth.PTTHError), word


def test_public_names_run_over_the_active_engine():
    assert ptth.median is _robust.median and "median" in ptth.__all__
    assert "trimmed_mean" in ptth.__all__
    ups = [ptth.dumps({"w": np.array([v], np.float32)}, compress=6) for v in (3.0, 1.0, 2.0)]
    assert ptth.median(ups)["w"].tolist() == [2.0]
    assert ptth.trimmed_mean(ups, 0.34)["w"].tolist() == [2.0]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_the_spool_is_an_unlinked_file_closed_on_error(robust, backend, tmp_path, monkeypatch):
    """Compressed uploads are decoded into a temporary file that no directory lists, and
    closed even when a later upload fails."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again

    def open_in_tmp():
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:  # the listing's own descriptor, closed by now
                continue
            if target.startswith(str(tmp_path)):
                found.append(target)
        return found

    z = backend.dumps({"w": np.ones(10, np.float32)}, compress=6)
    seen = []
    real = _robust._Spool.append

    def append(self, arr):
        seen.extend(open_in_tmp())  # the spool is open in TMPDIR while it is written
        assert list(tmp_path.iterdir()) == []  # and no directory lists it
        return real(self, arr)

    monkeypatch.setattr(_robust._Spool, "append", append)
    with pytest.raises(ptth.PTTHError):
        robust.median([z, z, b"junk"])
    assert seen and open_in_tmp() == []
    assert robust.median([z, z])["w"].tolist() == [1.0] * 10
    assert open_in_tmp() == [] and list(tmp_path.iterdir()) == []


def test_typed_for_strict_clients(tmp_path):
    client = tmp_path / "client.py"
    client.write_text(
        "import numpy as np\nimport ptth\n\n"
        "def robust(ups: list[bytes]) -> tuple[np.ndarray, np.ndarray]:\n"
        '    m: dict[str, np.ndarray] = ptth.median(ups, kind="delta")\n'
        "    t: dict[str, np.ndarray] = ptth.trimmed_mean(ups, 0.1, template=None)\n"
        '    return m["w"], t["w"]\n'
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(client),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---- peak memory, in a fresh process ---------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="ASan's allocator keeps freed blocks in quarantine: RSS is not the program's",
)
@pytest.mark.parametrize("stat", ["median", "trimmed_mean"])
def test_peak_memory_is_about_n_largest_parameters_not_n_models(backend, stat):
    """24 uploads (half zlib) of a 2M-parameter float32 model in 16 parameters of 128k.

    The uploads' own bytes are made before the high-water mark is reset: what is
    measured is what the statistic adds. Allowed: the float64 result (16 MB),
    one float64 copy of the largest parameter per upload (N x 1 MB) and 8 MiB
    of slack: about 50 MB, where N x the model is 192 MB. A fixed mmap
    threshold makes glibc return freed arrays at once, so memory freed before
    the reset cannot be reused unseen.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), MALLOC_MMAP_THRESHOLD_="65536")
    args = [sys.executable, str(PROBE), backend.backend, stat, "24", "16", "131072"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["checked"], "the probe's result differs from its NumPy reference"
    assert r["growth"] > r["result_bytes"], r  # the measurement sees the result itself
    bound = r["result_bytes"] + 8 * r["n"] * r["largest_elements"] + 8 * 2**20
    assert r["growth"] < bound, r
    assert r["growth"] < 0.3 * r["n"] * r["model_bytes"], r
