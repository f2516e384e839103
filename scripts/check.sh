#!/usr/bin/env bash
# Install everything the tests need into .venv, then run ruff, mypy and pytest.
# The README's test command and CI (.ci/run) both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "== ruff"
.venv/bin/ruff check src tests benchmarks scripts conftest.py
.venv/bin/ruff format --check src tests benchmarks scripts conftest.py
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
