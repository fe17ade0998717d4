"""The `backend` fixture (native and python) and the hypothesis profiles."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import HealthCheck, settings

from blobs import API, GOLDEN

# ~3 minutes for the whole suite on 2 cores; "thorough" for a longer soak.
settings.register_profile(
    "default", max_examples=50, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(os.environ.get("PTTH_HYPOTHESIS_PROFILE", "default"))

MODULES = {"native": "ptth._native_api", "python": "ptth._pure"}


def import_backend(name: str):
    """The backend module; a missing or incomplete one fails the test, never skips."""
    try:
        mod = importlib.import_module(MODULES[name])
    except Exception as exc:  # noqa: BLE001 - any import failure must be loud
        pytest.fail(f"backend {name!r} ({MODULES[name]}) failed to import: {exc!r}",
                    pytrace=False)
    missing = [a for a in API if not hasattr(mod, a)]
    if missing:
        pytest.fail(f"backend {name!r} ({MODULES[name]}) lacks {', '.join(missing)}",
                    pytrace=False)
    assert mod.name == name
    return mod


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
