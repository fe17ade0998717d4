"""The README's Python example runs as written, on both backends."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("backend_name", ["native", "python"])
def test_readme_example_runs(backend_name):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no Python example"
    env = dict(os.environ, PTTH_BACKEND=backend_name)
    for code in blocks:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert res.returncode == 0, res.stderr
        assert backend_name in res.stdout
