"""The `backend` fixture (native and python) and the hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from blobs import API, GOLDEN
from ptth._engine import front_for

# ~3 minutes for the whole suite on 2 cores; "thorough" for a longer soak.
settings.register_profile(
    "default",
    max_examples=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(os.environ.get("PTTH_HYPOTHESIS_PROFILE", "default"))

_FRONTS: dict = {}


def import_backend(name: str):
    """The public API (a copy of the front) over engine `name`; an engine that fails to
    import or lacks a primitive fails the test, never skips."""
    if name not in _FRONTS:
        try:
            mod = front_for(name)
        except Exception as exc:
            pytest.fail(f"engine {name!r} failed to load: {exc!r}", pytrace=False)
        missing = [a for a in API if not hasattr(mod, a)]
        if missing:
            pytest.fail(f"the front over {name!r} lacks {', '.join(missing)}", pytrace=False)
        assert mod.backend == name
        _FRONTS[name] = mod
    return _FRONTS[name]


@pytest.fixture(scope="session", params=["native", "python"])
def backend(request):
    return import_backend(request.param)


@pytest.fixture(scope="session")
def native():
    return import_backend("native")


@pytest.fixture(scope="session")
def pure():
    return import_backend("python")


@pytest.fixture(scope="session")
def golden():
    return {p.stem: p.read_bytes() for p in GOLDEN.glob("*.ptth")}
