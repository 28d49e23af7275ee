#!/usr/bin/env bash
# The README's test command: make a virtual environment with the test extras,
# then run every test. Extra arguments go to pytest (e.g. -k parser -x).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
