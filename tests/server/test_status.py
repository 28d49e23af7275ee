"""--status-path: the server's state as JSON, for allowed addresses only; SIGUSR1."""

import json
import signal

from support.clients import RawClient, get, request_once
from support.environment import demo_bytes, wait_until


def exchange(server, data):
    return request_once(server, data, head_request=data.startswith(b"HEAD"))


def test_off_by_default(start_server):
    server = start_server()
    assert exchange(server, get("/_status"))[0] == 404


def test_the_status_document(start_server):
    """Counters that move with the traffic: connections by state (the one
    asking is reading its request), responses and bytes, cache hits."""
    server = start_server("--status-path", "/_status")
    for _ in range(3):
        assert exchange(server, get("/"))[::2] == (200, demo_bytes("index.html"))
    idle = RawClient(server.connect())
    assert idle.request(get("/"))[0] == 200  # and it stays open, idle
    status, headers, body = exchange(server, get("/_status?pretty"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"

    def settled():
        # The closed connections' ends may still be on their way to the
        # server: ask until it has seen them all (the idle one and the
        # asker remain).
        document = json.loads(exchange(server, get("/_status"))[2])
        return document if document["connections"]["open"] == 2 else None
    document = wait_until(settled, 10, "the closed connections were never noticed")
    assert document["server"].startswith("reactor_http ")
    assert document["pid"] == server.pid
    assert document["uptime_seconds"] > 0
    assert document["stopping"] is False
    connections = document["connections"]
    assert connections["accepted"] >= 6
    assert connections["open"] == 2
    assert connections["by_state"]["idle"] == 1
    assert connections["by_state"]["reading-request"] == 1  # the request for this page
    responses = document["responses"]
    assert responses["sent"] >= 5  # four pages, then the status page at least once
    assert responses["body_bytes"] > 4 * len(demo_bytes("index.html"))
    cache = document["cache"]
    assert cache["misses"] >= 1 and cache["hits"] >= 3 and 0 < cache["hit_rate"] < 1
    assert document["executor"]["threads"] == 8
    assert document["executor"]["jobs_in_flight"] == 0
    loop = document["loop"]  # the reactor's own measurements; the lag probe runs with the status page
    assert loop["turns"] > 0 and 0 < loop["busy_seconds"] < document["uptime_seconds"]
    assert 0 < loop["busiest_turn_seconds"] and loop["worst_lag_seconds"] >= 0
    idle.close()


def test_head_and_other_methods(start_server):
    server = start_server("--status-path", "/_status")
    status, headers, body = exchange(server, b"HEAD /_status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 100
    status, headers, _ = exchange(server, b"POST /_status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD")


def test_only_allowed_addresses(start_server):
    """Loopback is allowed by default; --status-allow replaces the list, and
    everyone else gets 403 while the rest of the site is served as before."""
    server = start_server("--status-path", "/_status", "--status-allow", "10.0.0.0/8")
    status, _, body = exchange(server, get("/_status"))
    assert status == 403 and b"not open to this address" in body
    assert exchange(server, get("/"))[0] == 200


def test_sigusr1_writes_the_status_to_stderr(start_server):
    server = start_server()
    assert exchange(server, get("/"))[0] == 200
    server.process.send_signal(signal.SIGUSR1)
    line = wait_until(lambda: next((line for line in server.stderr_lines if line.startswith("{")), None),
                      10, lambda: f"no status on stderr: {server.stderr_lines}")
    document = json.loads(line)
    assert document["responses"]["sent"] == 1
    assert server.process.poll() is None
