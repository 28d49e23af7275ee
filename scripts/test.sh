#!/usr/bin/env bash
# The README's test command: make a virtual environment with the test extras,
# then run every test. Extra arguments go to pytest (e.g. -k parser -x).
#
# --matrix (the first argument): the same on each CPython the package claims,
# 3.10 to 3.13, that this machine has (python3.X on PATH, or pyenv's
# versions), each in its own .venv-3.X; then a line per version that ran,
# and a line for each that was not found. Fails if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED_VERSIONS="3.10 3.11 3.12 3.13"

test_with() {  # PYTHON VENV [pytest arguments...]
    local python=$1 venv=$2
    shift 2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[test]'
    "$venv/bin/python" -m pytest "$@"
}

works() {  # PYTHON VERSION: is PYTHON a CPython of that version? (pyenv's shims exist for versions it has not selected)
    [ -x "$1" ] && "$1" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$2'" >/dev/null 2>&1
}

find_python() {  # VERSION: print a CPython VERSION.x of this machine, if there is one
    local candidate
    candidate=$(command -v "python$1" || true)
    if [ -n "$candidate" ] && works "$candidate" "$1"; then
        echo "$candidate"
        return
    fi
    for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python 2>/dev/null | sort -rV); do
        if works "$candidate" "$1"; then
            echo "$candidate"
            return
        fi
    done
}

if [ "${1:-}" != "--matrix" ]; then
    test_with python3 .venv "$@"
    exit
fi
shift
summary=()
failed=0
for version in $SUPPORTED_VERSIONS; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        summary+=("Python $version: not found on this machine, not tested")
        continue
    fi
    echo "== Python $version ($python)"
    if test_with "$python" ".venv-$version" "$@"; then
        summary+=("Python $version: passed")
    else
        summary+=("Python $version: FAILED")
        failed=1
    fi
done
echo
printf '%s\n' "${summary[@]}"
exit $failed
