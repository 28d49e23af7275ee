"""scripts/test.sh --matrix finds each supported CPython the machine has.

The script's own functions (``works`` and ``find_python``) are taken from it
and run by bash: the interpreter running this test must be found for its own
version, and a version no machine has must not be.
"""

import os
import subprocess
import sys

from support.environment import REPO

SCRIPT = os.path.join(REPO, "scripts", "test.sh")


def find_python(version):
    functions = "\n".join(_function_text(name) for name in ("works", "find_python"))
    completed = subprocess.run(["bash", "-c", f'{functions}\nfind_python "$1"', "bash", version],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def _function_text(name):
    lines = open(SCRIPT).read().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{name}() {{")))
    end = lines.index("}", start)
    return "\n".join(lines[start:end + 1])


def test_the_running_version_is_found():
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = find_python(version)
    assert found, f"no Python {version} found"
    reported = subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60).stdout.strip()
    assert reported == version


def test_a_version_nobody_has_is_not_found():
    assert find_python("3.99") == ""
