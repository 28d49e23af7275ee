"""The habits the package keeps: ruff finds nothing, mypy finds nothing.

Both read their settings from pyproject.toml. They come with the test extras
(`pip install -e '.[test]'`), so the test command runs them; a machine without
them skips here, except under CI=true, which fails instead.
"""

import importlib.util
import subprocess
import sys

import pytest
from support.environment import REPO, skip_locally_fail_in_ci


def run_tool(module, *arguments):
    if importlib.util.find_spec(module) is None:
        skip_locally_fail_in_ci(f"{module} is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_ruff_finds_nothing_in_the_package_scripts_and_tests():
    result = run_tool("ruff", "check", "--no-cache", "reactor_http", "scripts", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("python_version", ["3.10", "3.11"])
def test_mypy_finds_nothing_in_the_package(python_version):
    """Checked as each interpreter the package supports would see it (the
    version-specific branches, tomllib for one, differ)."""
    result = run_tool("mypy", "--no-incremental", "--python-version", python_version, "reactor_http")
    assert result.returncode == 0, result.stdout + result.stderr
