"""The readiness path (--health-path) and --shutdown-delay: what a load balancer sees.

The real server in a subprocess, real sockets. The path answers 200 while the
server serves and 503 from the moment a graceful stop begins; with
--shutdown-delay the server goes on serving (new connections, keep-alive
ones) while it says 503, then drains as without it. No test waits for a
delay to pass in order to pass: each either acts within a long delay, or
waits (with a generous bound) for something that must eventually happen.
"""

import base64
import json
import signal

import pytest
from support.clients import RawClient, ask, get
from support.environment import wait_until
from support.servers import refuses_connections, wait_for_exit

SITE = {"index.html": b"<h1>index</h1>\n", "healthz.txt": b"a file, not the path\n"}


@pytest.fixture
def site(tmp_path):
    for name, data in SITE.items():
        (tmp_path / name).write_bytes(data)
    return str(tmp_path)


def test_the_path_says_ok_while_serving(start_server, site):
    server = start_server("--health-path", "/healthz", root=site)
    status, headers, body = ask(server, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert ask(server, "/healthz?from=haproxy")[0] == 200
    status, headers, body = ask(server, "/healthz", "HEAD")
    assert (status, headers["content-length"], body) == (200, "3", b"")
    status, headers, _ = ask(server, "/healthz", "POST", "Content-Length: 0\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    # Only the path itself: the rest of the site is served as usual.
    assert ask(server, "/healthz.txt")[2] == SITE["healthz.txt"]
    assert ask(server, "/healthz/")[0] == 404
    assert ask(server, "/")[2] == SITE["index.html"]


def test_without_the_flag_there_is_no_such_path(start_server, site):
    server = start_server(root=site)
    assert ask(server, "/healthz")[0] == 404


def test_the_path_is_open_when_the_site_is_locked(start_server, site, tmp_path_factory):
    """A load balancer cannot log in, and may come from anywhere: the
    readiness path is answered before --auth-file and --deny look."""
    from reactor_http.access.passwords import apr1
    users = tmp_path_factory.mktemp("auth") / "users"
    users.write_text(f"alice:{apr1(b'secret', b'saltsalt')}\n")
    server = start_server("--health-path", "/healthz", "--auth-file", str(users), root=site)
    assert ask(server, "/healthz")[0] == 200
    assert ask(server, "/")[0] == 401
    credentials = base64.b64encode(b"alice:secret").decode()
    assert ask(server, "/", extra=f"Authorization: Basic {credentials}\r\n")[0] == 200
    server = start_server("--health-path", "/healthz", "--deny", "all", root=site)
    assert ask(server, "/healthz")[0] == 200
    assert ask(server, "/")[0] == 403


def test_a_stop_says_503_at_once_and_serves_on_through_the_delay(start_server, site):
    """SIGTERM with --shutdown-delay 60: the path says 503 on a keep-alive
    connection that was open before, and on new ones; files are still
    served on both, keep-alive still holds, and the status page says
    stopping. A second signal then stops it at once."""
    server = start_server("--health-path", "/healthz", "--shutdown-delay", "60", "--status-path", "/_status",
                          root=site)
    before = RawClient(server.connect())
    assert before.request(get("/healthz"))[0] == 200

    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: ask(server, "/healthz")[0] == 503, 10, "the readiness path never said 503")
    status, headers, body = before.request(get("/healthz"))
    assert (status, body) == (503, b"stopping\n")
    assert headers.get("connection") != "close", "the delay is not the drain: keep-alive holds"
    status, headers, body = before.request(get("/index.html"))
    assert (status, body) == (200, SITE["index.html"])
    assert headers.get("connection") != "close"
    status, _, body = ask(server, "/index.html")
    assert (status, body) == (200, SITE["index.html"])
    assert json.loads(ask(server, "/_status")[2])["stopping"] is True
    assert "stopping in 60 s: /healthz answers 503 meanwhile" in "".join(server.stderr_lines)
    assert server.process.poll() is None

    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=20) == 0
    assert "second signal: stopping now" in "".join(server.stderr_lines)
    before.close()


def test_after_the_delay_the_drain_closes_the_listener_and_the_server_exits(start_server, site):
    """A short delay ends by itself: then the listener closes, an idle
    keep-alive connection is let go, and the server exits 0."""
    server = start_server("--health-path", "/healthz", "--shutdown-delay", "0.5", root=site)
    idle = RawClient(server.connect())
    assert idle.request(get("/index.html"))[0] == 200
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=30) == 0
    assert refuses_connections(server)
    assert idle.is_closed_by_peer()
    assert server.stdout_lines[-1] == "Stopped.\n"


def test_without_a_delay_the_listener_closes_at_once(start_server, site):
    """--shutdown-delay 0 (the default) is the graceful stop as before: the
    listener closes at once, and the server exits 0."""
    server = start_server("--health-path", "/healthz", root=site)
    assert ask(server, "/healthz")[0] == 200
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(server), 10, "new connections were still accepted")
    assert wait_for_exit(server, timeout=30) == 0
    assert "stopping in" not in "".join(server.stderr_lines)


@pytest.mark.parametrize("flags", [("--health-path", "/a", "--status-path", "/a"),
                                   ("--health-path", "healthz"),
                                   ("--shutdown-delay", "-1")])
def test_bad_settings_are_one_line_errors(flags):
    from support.cli import assert_one_line_usage_error, run_cli
    status, stdout, stderr = run_cli(*flags, "--port", "0")
    assert_one_line_usage_error(status, stdout, stderr)
