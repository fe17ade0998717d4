"""Optional test dependencies: present in the test extra, absent in the ASan run's venv."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import a test dependency; only the ASan run's venv (.ci/asan.sh: the core's
    dependencies) lacks one, and there the test skips instead of failing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if "libasan" in os.environ.get("LD_PRELOAD", ""):
            pytest.skip(f"{module} is not installed in the ASan venv")
        raise
