"""The public API is typed: a client file passes mypy --strict against the installed ptth."""

import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).parent / "typing" / "client.py"


def test_client_passes_strict_mypy(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path),
            str(CLIENT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_py_typed_marker_is_installed():
    import ptth

    assert (Path(ptth.__file__).parent / "py.typed").exists()
