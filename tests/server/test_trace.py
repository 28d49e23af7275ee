"""--trace: one request's story, told by the reactor, the connection and the executor."""

import re
import subprocess
import sys
import time

from support.clients import RawClient, get
from support.environment import REPO

TRACE_LINE = re.compile(r"^\d+\.\d{6} (\S+)\s+fd=(-?\d+)\s+(\S+)\s+(.*)$")


def trace_lines(server, until, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [TRACE_LINE.match(line.rstrip("\n")) for line in list(server.stderr_lines)]
        lines = [match.groups() for match in lines if match]
        if any(until(line) for line in lines):
            return lines
        time.sleep(0.02)
    raise AssertionError(f"trace incomplete: {server.stderr_lines}")


def one_request(server):
    client = RawClient(server.connect())
    status, _, _ = client.request(get("/style.css"))
    client.close()
    assert status == 200


def test_one_request_tells_its_story_in_order(start_server):
    server = start_server("--trace", "--quiet")
    one_request(server)
    lines = trace_lines(server, lambda line: line[2] == "close")
    story = [(what, detail) for _, _, what, detail in lines]
    wanted = [
        ("accept", "connection from 127.0.0.1"),
        ("state", "idle -> reading-request"),
        ("executor", "submit resolve"),
        ("state", "reading-request -> waiting-executor"),
        ("executor", "resolve done"),
        ("state", "waiting-executor -> writing"),
        ("state", "writing -> idle"),
        ("close", "connection from 127.0.0.1"),
    ]
    position = 0
    for what, detail in story:
        if position < len(wanted) and what == wanted[position][0] and detail.startswith(wanted[position][1]):
            position += 1
    assert position == len(wanted), story
    # The connection's lines all name its descriptor; the job ran on a worker thread.
    connection_fds = {fd for thread, fd, what, _ in lines if what in ("accept", "state", "close")}
    assert len(connection_fds) == 1 and int(connection_fds.pop()) > 2
    assert any(thread.startswith("executor") and "running resolve" in detail
               for thread, _, what, detail in lines)
    assert any(what == "ready" and detail == "readable" for _, _, what, detail in lines)
    assert any(what == "interest" and detail == "unregister" for _, _, what, detail in lines)
    # The story of one request is short enough to read.
    assert len(lines) <= 30, lines


def test_categories_filter_the_trace(start_server):
    server = start_server("--trace=conn", "--quiet")
    one_request(server)
    lines = trace_lines(server, lambda line: line[2] == "close")
    assert {what for _, _, what, _ in lines} <= {"accept", "state", "close"}


def test_no_trace_by_default(start_server):
    server = start_server("--quiet")
    one_request(server)
    assert server.stop() == 0
    assert not [line for line in server.stderr_lines if TRACE_LINE.match(line.rstrip("\n"))]


def test_unknown_category_is_refused():
    result = subprocess.run([sys.executable, "-m", "reactor_http", "--trace=bogus"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown trace categories: bogus" in result.stderr


def imported_modules(server):
    return {line.rsplit("|", 1)[1].strip() for line in server.stderr_lines if line.startswith("import time:")}


def test_tracing_off_is_tracing_compiled_out(start_server):
    """Off, the tracing module is never even imported, so no method is wrapped
    and the hot path is the same code as a build without tracing. On, it is.
    (PYTHONPROFILEIMPORTTIME lists every import on stderr.)"""
    for flags, expected in (((), False), (("--trace=conn",), True)):
        server = start_server("--quiet", *flags, env={"PYTHONPROFILEIMPORTTIME": "1"})
        one_request(server)
        assert server.stop() == 0
        modules = imported_modules(server)
        assert "reactor_http.connection.connection" in modules  # the listing is there
        assert ("reactor_http.server.trace" in modules) is expected, flags
