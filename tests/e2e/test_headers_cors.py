"""--header (a field on every response) and --cors (simple and preflight requests)."""

import os
import subprocess
import sys

import pytest
from support.clients import get, request_once
from support.environment import DEMO_ROOT, REPO, demo_bytes


def exchange(server, data):
    return request_once(server, data)


def test_headers_on_every_kind_of_response(start_server):
    server = start_server("--header", "X-Frame-Options: DENY", "--header",
                          "Strict-Transport-Security: max-age=63072000; includeSubDomains")
    ok = exchange(server, get("/"))
    etag = ok[1]["etag"]
    for status, headers, _ in (ok, exchange(server, get("/missing")),
                               exchange(server, get("/", extra=f"If-None-Match: {etag}\r\n")),
                               exchange(server, b"GET /bad path HTTP/1.1\r\nHost: x\r\n\r\n")):
        assert headers["x-frame-options"] == "DENY", status
        assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert [ok[0]] == [200]


@pytest.mark.parametrize("value", ["Content-Length: 1", "X-A: b\r\nX-B: c", "no colon"])
def test_a_header_that_would_break_responses_is_refused(value):
    completed = subprocess.run([sys.executable, "-m", "reactor_http", "--root", DEMO_ROOT, "--header", value],
                               cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                               text=True, timeout=30)
    assert completed.returncode == 2
    assert completed.stderr.splitlines()[0].startswith("reactor-http: error: --header:")


def test_no_cors_fields_without_cors(start_server):
    server = start_server()
    _, headers, _ = exchange(server, get("/", extra="Origin: https://app.example\r\n"))
    assert not [name for name in headers if name.startswith("access-control-")]
    status, headers, _ = exchange(server, b"OPTIONS /style.css HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
                                          b"Access-Control-Request-Method: GET\r\n\r\n")
    assert status == 204 and "access-control-allow-origin" not in headers


@pytest.mark.parametrize("origin", ["*", "https://app.example"])
def test_simple_cors_request(start_server, origin):
    server = start_server("--cors", origin)
    for request in (get("/", extra="Origin: https://app.example\r\n"), get("/missing"),
                    get("/style.css", extra="Range: bytes=0-9\r\n")):
        status, headers, _ = exchange(server, request)
        assert headers["access-control-allow-origin"] == origin, status
        assert "Content-Range" in headers["access-control-expose-headers"]
        assert "vary" not in headers or "Origin" not in headers["vary"]  # the same answer for any Origin


def test_preflight(start_server):
    server = start_server("--cors", "https://app.example")
    status, headers, body = exchange(server, b"OPTIONS /style.css HTTP/1.1\r\nHost: x\r\n"
                                             b"Origin: https://app.example\r\n"
                                             b"Access-Control-Request-Method: GET\r\n"
                                             b"Access-Control-Request-Headers: range, x-requested-with\r\n\r\n")
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert headers["access-control-allow-headers"] == "range, x-requested-with"
    assert int(headers["access-control-max-age"]) > 0
    # A plain OPTIONS (no Access-Control-Request-Method) is not a preflight.
    status, headers, _ = exchange(server, b"OPTIONS /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 204 and "access-control-allow-methods" not in headers
    # A field list that is not a list of names is not echoed.
    status, headers, _ = exchange(server, b"OPTIONS /style.css HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                                          b"Access-Control-Request-Method: GET\r\n"
                                          b"Access-Control-Request-Headers: a b\r\n\r\n")
    assert status == 204 and "access-control-allow-headers" not in headers
    assert exchange(server, get("/style.css"))[::2] == (200, demo_bytes("style.css"))
