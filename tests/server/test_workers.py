"""--workers N: several processes on one port, looked after by a parent.

Each test starts the real server with two workers, with SO_REUSEPORT (one
listening socket per worker) and with the portable fallback (one socket
inherited from the parent), and talks to it over real sockets.
"""

import os
import signal
import time

import psutil
import pytest
from support.clients import RawClient, get


def wait_for(predicate, timeout=20, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def worker_pids(server):
    return sorted(child.pid for child in psutil.Process(server.pid).children())


@pytest.fixture(params=["reuseport", "shared-socket"])
def workers_server(request, start_server):
    flags = ["--workers", "2"] + (["--no-reuseport"] if request.param == "shared-socket" else [])
    server = start_server(*flags)
    wait_for(lambda: len(worker_pids(server)) == 2, message="two workers")
    return server


def fetch_index(server):
    client = RawClient(server.connect())
    try:
        return client.request(get("/"))
    finally:
        client.close()


def test_banner_names_the_workers(workers_server):
    assert "2 workers" in workers_server.stdout_lines[0]


def test_workers_serve_requests(workers_server):
    """Many connections are all answered, whichever worker takes each."""
    for _ in range(40):
        status, headers, body = fetch_index(workers_server)
        assert status == 200
        assert body.startswith(b"<!DOCTYPE html>")


def test_a_dead_worker_is_replaced(workers_server):
    """Kill a worker: the parent starts another and the service goes on."""
    before = worker_pids(workers_server)
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: (pids := worker_pids(workers_server)) and len(pids) == 2
                     and before[0] not in pids and pids, message="a replacement worker")
    assert before[1] in after
    for _ in range(10):
        assert fetch_index(workers_server)[0] == 200
    wait_for(lambda: any("exited (signal 9); starting another" in line
                         for line in workers_server.stderr_lines), message="the replacement logged")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_worker(workers_server, sig):
    """The parent passes SIGTERM/SIGINT on and exits 0 once every worker has."""
    pids = worker_pids(workers_server)
    assert fetch_index(workers_server)[0] == 200
    assert workers_server.stop(sig) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert workers_server.stdout_lines[-1].strip() == "Stopped."


def test_bad_worker_count_is_refused(start_server):
    import subprocess
    import sys

    from support.environment import REPO
    result = subprocess.run([sys.executable, "-m", "reactor_http", "--workers", "0"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--workers" in result.stderr
