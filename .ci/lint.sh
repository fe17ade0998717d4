#!/usr/bin/env bash
# CI: the linters and formatters, as .pre-commit-config.yaml runs them.
#   ruff check and ruff format --check over the Python (pinned by the lint extra)
#   clang-format --dry-run over csrc/ (.clang-format; Debian's clang-format)
#   mypy over python/ptth, and stubtest: the binding's _core.pyi matches the module
# Needs root for apt-get only when clang-format is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== lint tools"
# The lint extra's pins, read from pyproject.toml so they live in one place.
mapfile -t lint < <(python - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["lint"]))
PY
)
python -m pip install -q "${lint[@]}"
if ! command -v clang-format >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clang-format >/dev/null
fi
clang-format --version

echo "== ruff"
python -m ruff check .
python -m ruff format --check .

echo "== clang-format"
git ls-files 'csrc/*.cpp' 'csrc/*.hpp' 'csrc/*.h' | xargs clang-format --dry-run --Werror

echo "== mypy"
python -m mypy

echo "== stubtest (python/ptth/_native/_core.pyi against the built module)"
python -m mypy.stubtest ptth._native._core
