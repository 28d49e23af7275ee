"""The command line run to its end, and what a usage error must look like."""

import os
import shlex
import subprocess
import sys

import pytest

from .environment import REPO

EXIT_USAGE = 2
HINT = "reactor-http: --help lists every flag"


def run_cli(*args, env=None, cwd=REPO, timeout=30, command=None):
    """Run ``python -m reactor_http ARGS`` (or ``command``) to completion:
    (exit status, stdout, stderr). ``env`` adds to this process's environment.
    Every case should exit by itself; one that keeps running (it started
    serving when it should have refused) fails instead of hanging the suite."""
    command = command or [sys.executable, "-m", "reactor_http"]
    process = subprocess.Popen(
        [*command, *args], cwd=cwd, env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{args} was still running after {timeout} s; stdout: {stdout!r} stderr: {stderr!r}")
    return process.returncode, stdout, stderr


def assert_one_line_usage_error(status, stdout, stderr):
    """Exit 2, nothing served (no banner), no traceback, and one line on
    stderr, which a flag's mistake may follow with the one hint line.
    Returns the line."""
    assert status == EXIT_USAGE, (status, stderr)
    assert "Traceback" not in stderr, stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) in (1, 2), lines
    assert lines[0].startswith("reactor-http: error: "), lines
    if len(lines) == 2:
        assert lines[1] == HINT, lines
    return lines[0]


def page_command_line(text, programs=("reactor-http",)):
    """The arguments of a command line shown on a docs page (continuation
    lines joined, comments dropped), whose program is one of ``programs``."""
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    assert words[0] in programs, words
    return words[1:]


def replaced(arguments, **values):
    """The arguments with the value of each --flag named in ``values`` replaced."""
    result = list(arguments)
    for flag, value in values.items():
        flag = "--" + flag.replace("_", "-")
        assert flag in result, (flag, result)
        result[result.index(flag) + 1] = value
    return result
