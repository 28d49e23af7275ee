"""Where things are, which programs are here, and the rules CI plays by."""

import os
import shutil
import socket
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_ROOT = os.path.join(REPO, "www")
IN_CI = os.environ.get("CI") == "true"


def require_program(name):
    """Skip when a program is missing locally; fail under CI=true, never skip silently."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def skip_locally_fail_in_ci(reason):
    """Skip a test whose prerequisite this machine lacks; under CI=true, fail instead,
    so that a CI run never passes by skipping what it was meant to check."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def demo_bytes(relative_path):
    """The bytes of a file of the demo site, e.g. demo_bytes("style.css")."""
    with open(os.path.join(DEMO_ROOT, relative_path), "rb") as file:
        return file.read()


def make_sparse_file(path, size):
    """A file of ``size`` zero bytes that takes no disk space: one hole."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def ipv6_loopback_available():
    """Whether this machine can listen on ::1 (containers often have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(condition, timeout, message, interval=0.05):
    """Poll ``condition()`` until it returns a true value (returned) or the
    generous deadline passes (AssertionError with ``message()`` or ``message``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


def import_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOBODY_UID = 65534

# As in test_cli: import what the server needs while the interpreter can still
# read its own installation, then become nobody before `-m reactor_http` runs.
BECOME_NOBODY_CODE = f"""
import concurrent.futures.thread
import encodings.idna
import os
import runpy
import shutil
import reactor_http.server.cli
os.setgroups([])
os.setgid({NOBODY_UID})
os.setuid({NOBODY_UID})
"""


def world_traversable(path):
    """Whether every directory from / to ``path`` lets others in."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent



