"""End-to-end HTTP behaviour: the real server in a subprocess, spoken to over real sockets.

Every test runs under both readiness backends, epoll and poll, and checks what
goes over the wire: exact statuses, header fields and body bytes, and whether
the connection stays open or is closed. Tests that only read from a server
share one per backend (see "shared servers" below); tests that need their own
flags, their own log or a stop start their own. Three kinds of client are used
on purpose: a raw socket (to send exactly the bytes we want, malformed ones
included), ``http.client`` and curl (to prove that ordinary clients are happy).

Nothing here depends on timing to pass: short server timeouts come from flags,
and every wait is for a condition, with a generous deadline.
"""

import hashlib
import http.client
import os
import re
import select
import socket
import threading
import time

import pytest
from support.clients import RawClient, curl, get
from support.environment import DEMO_ROOT
from support.servers import ServerProcess, stop_and_check

INDEX_HTML = os.path.join(DEMO_ROOT, "index.html")


def read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


def demo_bytes(relative_path):
    return read_bytes(os.path.join(DEMO_ROOT, relative_path))


def build_root(directory, files):
    """Create a document root under ``directory`` from {relative path: bytes}."""
    root = directory / "root"
    root.mkdir()
    for relative_path, content in files.items():
        path = root / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


# IMF-fixdate, the one Date format a server may send (RFC 9110 §5.6.7).
_IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT")

REASONS = {
    301: "Moved Permanently", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 414: "URI Too Long",
    431: "Request Header Fields Too Large", 501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


def assert_common_fields(status, headers, body=None):
    """The fields every response carries, whatever its status."""
    assert _IMF_FIXDATE.fullmatch(headers["date"]), headers["date"]
    assert headers["server"].startswith("reactor_http"), headers["server"]
    assert headers["x-content-type-options"] == "nosniff"
    if status != 304:  # a 304 may omit it (RFC 9110 §8.6)
        assert "content-length" in headers
        if body is not None:
            assert int(headers["content-length"]) == len(body)


def assert_error_body(status, headers, body):
    """An error (or redirect) body is a short plain-text line starting with the status."""
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body.startswith(f"{status} {REASONS[status]}".encode()), body
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    assert len(body) < 200, body


def assert_still_serving(server):
    """A fresh connection still gets the index page: an error cost one connection only."""
    client = RawClient(server.connect())
    try:
        status, headers, body = client.request(get("/"))
    finally:
        client.close()
    assert status == 200
    assert body == read_bytes(INDEX_HTML)




def parse_curl_include(output):
    """Split `curl -i` output into (status, headers with lower-case names, body)."""
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def recv_until_readable(sock, timeout):
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


# -- shared servers ------------------------------------------------------------------
#
# Starting a server costs a Python start-up. Tests that only read from a server
# (each on its own connections) share one per backend for the whole module;
# tests that need their own flags, their own log or a stop start their own.




@pytest.fixture(scope="module")
def demo_server(shared_selector):
    """The demo site (www/), shared by the read-only tests of this module."""
    server = ServerProcess(["--selector", shared_selector], DEMO_ROOT)
    yield server
    stop_and_check(server)


LARGE_FILE_BYTES = 5 * 1024 * 1024
SECRET = b"top secret\n"
DOTFILES = {".env": b"PASSWORD=hunter2\n", ".git/config": b"[core]\n\tbare = false\n"}


@pytest.fixture(scope="module")
def site_root(tmp_path_factory):
    """A document root with what the demo site lacks: odd names, dotfiles,
    symlinks, and a 5 MiB random file (well above the in-memory size).
    Returns (root, sha256 of the large file)."""
    directory = tmp_path_factory.mktemp("site")
    outside = directory / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    large = os.urandom(LARGE_FILE_BYTES)
    root = build_root(directory, {
        "data.xyz": b"\x00\x01binary", "README": b"plain words\n", "public.txt": b"public\n",
        "small.txt": b"small\n", "big.bin": large,
        "evil.example/index.html": b"x", "images/a.png": b"x", "\\evil.example/index.html": b"x",
        ".well-known/x.txt": b"well known\n", **DOTFILES,
    })
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside)
    (root / "hiddenlink.txt").symlink_to(root / ".env")
    return root, hashlib.sha256(large).hexdigest()


@pytest.fixture(scope="module")
def site_server(shared_selector, site_root):
    """The site_root served with default flags, shared by the read-only tests."""
    server = ServerProcess(["--selector", shared_selector], str(site_root[0]))
    yield server
    stop_and_check(server)


# -- the tutorial's curl examples ---------------------------------------------------


def test_curl_get_index(demo_server):
    """`curl -i /` gets the index page as UTF-8 HTML, byte for byte."""
    status, headers, body = parse_curl_include(curl("-i", demo_server.url + "/"))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == read_bytes(INDEX_HTML)
    assert_common_fields(status, headers, body)


def test_curl_stylesheet_content_type(demo_server):
    """The stylesheet is served as text/css with its charset."""
    status, headers, body = parse_curl_include(curl("-i", demo_server.url + "/style.css"))
    assert status == 200
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert body == demo_bytes("style.css")


def test_curl_missing_file(demo_server):
    """A file that does not exist is a short plain-text 404."""
    status, headers, body = parse_curl_include(curl("-i", demo_server.url + "/no-such-file.html"))
    assert status == 404
    assert body == b"404 Not Found\n"
    assert_error_body(status, headers, body)
    assert_common_fields(status, headers, body)


def test_curl_head_matches_get(demo_server):
    """`curl -I` (HEAD) gets exactly the head a GET gets, and no body (RFC 9110 §9.3.2)."""
    _, get_headers, get_body = parse_curl_include(curl("-i", demo_server.url + "/"))
    output = curl("-I", demo_server.url + "/")
    _, separator, after = output.partition(b"\r\n\r\n")
    assert separator and after == b""  # nothing after the head
    status, head_headers, _ = parse_curl_include(output)
    assert status == 200
    # Date may tick between the two requests; every other field must match.
    del get_headers["date"], head_headers["date"]
    assert head_headers == get_headers
    assert head_headers["content-length"] == str(len(get_body))


def test_curl_post_is_not_allowed(demo_server):
    """`curl -X POST` gets 405 with the methods that are allowed (RFC 9110 §15.5.6)."""
    status, headers, body = parse_curl_include(curl("-i", "-X", "POST", demo_server.url + "/"))
    assert status == 405
    assert headers["allow"] == "GET, HEAD, OPTIONS"
    assert body == b"405 Method Not Allowed\n"
    assert_error_body(status, headers, body)


def test_curl_fifty_parallel_requests(demo_server, tmp_path):
    """50 transfers at once from one curl: each gets 200 and its own file's bytes."""
    paths = ["/", "/style.css", "/app.js", "/images/reactor.png"]
    expected = [demo_bytes("index.html"), demo_bytes("style.css"), demo_bytes("app.js"),
                demo_bytes("images/reactor.png")]
    arguments = ["--parallel", "--parallel-max", "50", "--write-out", "%{http_code}\\n"]
    for number in range(50):
        arguments += ["--output", str(tmp_path / f"out{number}"), demo_server.url + paths[number % 4]]
    output = curl(*arguments)
    assert output.split() == [b"200"] * 50
    for number in range(50):
        assert (tmp_path / f"out{number}").read_bytes() == expected[number % 4], number


def test_fifty_threads_at_once(demo_server):
    """50 http.client connections released together: every one gets 200 and the right body."""
    index = read_bytes(INDEX_HTML)
    barrier = threading.Barrier(50)
    results = [None] * 50

    def fetch(number):
        connection = http.client.HTTPConnection(demo_server.host, demo_server.port, timeout=30)
        try:
            barrier.wait(30)
            connection.request("GET", "/")
            response = connection.getresponse()
            results[number] = (response.status, response.read())
        finally:
            connection.close()

    threads = [threading.Thread(target=fetch, args=(number,)) for number in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(200, index)] * 50


# -- methods ------------------------------------------------------------------------


def test_unknown_method_is_not_implemented(demo_server, client_for):
    """A method the server does not know gets 501 (RFC 9110 §15.6.2), and it keeps serving."""
    client = client_for(demo_server)
    status, headers, body = client.request(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501
    assert_error_body(status, headers, body)
    assert_common_fields(status, headers, body)
    assert "allow" not in headers
    assert_still_serving(demo_server)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "TRACE", "PATCH", "CONNECT"])
def test_known_methods_are_not_allowed(demo_server, client_for, method):
    """Known methods other than GET and HEAD get 405 with an Allow field (RFC 9110 §15.5.6)."""
    client = client_for(demo_server)
    status, headers, body = client.request(f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 405
    assert headers["allow"] == "GET, HEAD, OPTIONS"
    assert body == b"405 Method Not Allowed\n"
    assert_error_body(status, headers, body)
    assert_common_fields(status, headers, body)


# -- fields every response carries ---------------------------------------------------


@pytest.mark.parametrize("request_bytes, expected_status", [
    (get("/"), 200),
    (get("/images/reactor.png"), 200),
    (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (get("/images"), 301),
    (get("/missing"), 404),
    (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"nonsense\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
], ids=["index", "png", "head", "redirect", "missing", "delete", "brew", "garbage", "http2"])
def test_every_response_has_common_fields(demo_server, client_for, request_bytes, expected_status):
    """Date, Server, Content-Length and nosniff are on every response; error bodies are short text."""
    client = client_for(demo_server)
    status, headers, body = client.request(request_bytes, head_request=request_bytes.startswith(b"HEAD"))
    assert status == expected_status
    assert_common_fields(status, headers, None if request_bytes.startswith(b"HEAD") else body)
    if status >= 300:
        assert_error_body(status, headers, body)


# -- content types -------------------------------------------------------------------


@pytest.mark.parametrize("path, content_type", [
    ("/index.html", "text/html; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),  # RFC 9239
    ("/images/reactor.png", "image/png"),
])
def test_content_types(demo_server, client_for, path, content_type):
    """Each demo file is served with the Content-Type of its extension, byte for byte."""
    client = client_for(demo_server)
    status, headers, body = client.request(get(path))
    assert status == 200
    assert headers["content-type"] == content_type
    assert body == demo_bytes(path.lstrip("/"))


def test_unknown_extension_is_octet_stream(site_server, client_for):
    """An extension not in the table (and no extension at all) is application/octet-stream."""
    client = client_for(site_server)
    for path, content in (("/data.xyz", b"\x00\x01binary"), ("/README", b"plain words\n")):
        status, headers, body = client.request(get(path))
        assert (path, status) == (path, 200)
        assert headers["content-type"] == "application/octet-stream"
        assert body == content


# -- persistent connections ------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_socket(demo_server, client_for):
    """HTTP/1.1 connections persist by default (RFC 9112 §9.3): one socket, many requests."""
    client = client_for(demo_server)
    local_address = client.sock.getsockname()
    for path, expected_status in (("/", 200), ("/style.css", 200), ("/missing", 404),
                                  ("/app.js", 200), ("/", 200)):
        status, headers, body = client.request(get(path))
        assert (path, status) == (path, expected_status)
        assert "connection" not in headers  # persistence is the 1.1 default: nothing to say
    assert body == read_bytes(INDEX_HTML)
    assert client.sock.getsockname() == local_address
    # The server has not closed: a recv finds no EOF (it would return at once if it had).
    assert not client.is_closed_by_peer(timeout=0.3)
    assert client.request(get("/"))[0] == 200


def test_keep_alive_with_http_client(demo_server):
    """http.client reuses its one connection for every request."""
    connection = http.client.HTTPConnection(demo_server.host, demo_server.port, timeout=10)
    try:
        ports = set()
        for path in ("/", "/app.js", "/style.css"):
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status == 200
            assert response.read() == demo_bytes(path.lstrip("/") or "index.html")
            assert not response.will_close
            ports.add(connection.sock.getsockname()[1])
        assert len(ports) == 1
    finally:
        connection.close()


def test_client_connection_close(demo_server, client_for):
    """`Connection: close` from the client: the response says close and the server closes."""
    client = client_for(demo_server)
    status, headers, body = client.request(get("/", extra="Connection: close\r\n"))
    assert status == 200
    assert body == read_bytes(INDEX_HTML)
    assert headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_http10_closes_by_default(demo_server, client_for):
    """HTTP/1.0 without keep-alive: the connection closes after the response (RFC 9112 §9.3)."""
    client = client_for(demo_server)
    status, headers, body = client.request(b"GET / HTTP/1.0\r\n\r\n")
    assert status == 200
    assert body == read_bytes(INDEX_HTML)
    assert headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_http10_keep_alive(demo_server, client_for):
    """HTTP/1.0 with `Connection: keep-alive` gets it confirmed, and the connection stays usable."""
    client = client_for(demo_server)
    request = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    for _ in range(3):
        status, headers, body = client.request(request)
        assert status == 200
        assert headers["connection"] == "keep-alive"
        assert body == read_bytes(INDEX_HTML)


# -- pipelining and odd segmentation ---------------------------------------------------


def test_a_pipelined_request_that_arrives_in_part(demo_server, client_for):
    """A complete request and the start of the next in one send: the first is
    answered at once, without waiting for the second, which is answered when
    the rest of it arrives (the connection reads on in between)."""
    index = read_bytes(INDEX_HTML)
    client = client_for(demo_server)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHo")
    status, _, body = client.read_response()
    assert (status, body) == (200, index)
    client.send(b"st: x\r\n\r\n")
    status, _, body = client.read_response()
    assert (status, body) == (200, demo_bytes("style.css"))


def test_pipelined_requests_answered_in_order(demo_server, client_for):
    """Ten requests in one send get ten responses, in order (RFC 9112 §9.3.2)."""
    index = read_bytes(INDEX_HTML)
    plan = [
        ("GET", "/", 200, index),
        ("GET", "/missing", 404, b"404 Not Found\n"),
        ("HEAD", "/", 200, b""),
        ("GET", "/style.css", 200, demo_bytes("style.css")),
        ("HEAD", "/app.js", 200, b""),
        ("GET", "/app.js", 200, demo_bytes("app.js")),
        ("GET", "/nope.css", 404, b"404 Not Found\n"),
        ("GET", "/images/reactor.png", 200, demo_bytes("images/reactor.png")),
        ("HEAD", "/missing", 404, b""),
        ("GET", "/", 200, index),
    ]
    client = client_for(demo_server)
    client.send(b"".join(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                         for method, path, _, _ in plan))
    for method, path, expected_status, expected_body in plan:
        status, headers, body = client.read_response(head_request=method == "HEAD")
        assert (method, path, status, body) == (method, path, expected_status, expected_body)
    # Nothing more: ten requests, ten responses, and the connection is still open.
    assert client.buffer == b""
    assert not client.is_closed_by_peer(timeout=0.3)


def test_request_one_byte_at_a_time(demo_server, client_for):
    """A head that arrives one byte per segment parses as if it came whole."""
    client = client_for(demo_server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in get("/style.css", extra="Accept: */*\r\n"):
        client.sock.sendall(bytes([byte]))
    status, headers, body = client.read_response()
    assert status == 200
    assert body == demo_bytes("style.css")


# -- requests with bodies ------------------------------------------------------------------


def test_post_with_body_gets_405_and_the_connection_goes_on(demo_server, client_for):
    """The body of a refused POST is framed by its Content-Length and skipped, so
    the next request on the connection is answered correctly (RFC 9112 §6.3)."""
    client = client_for(demo_server)
    status, headers, body = client.request(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert status == 405
    assert headers["allow"] == "GET, HEAD, OPTIONS"
    assert "connection" not in headers  # kept alive: the body was read
    status, headers, body = client.request(get("/style.css"))
    assert status == 200
    assert body == read_bytes(os.path.join(DEMO_ROOT, "style.css"))


def test_get_body_is_never_taken_for_a_request(demo_server, client_for):
    """A GET whose body looks like a request: the body is skipped, and the next
    response answers the next real request, never the smuggled one."""
    smuggled = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
    client = client_for(demo_server)
    status, headers, body = client.request(
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
    assert status == 200
    assert body == read_bytes(INDEX_HTML)
    status, headers, body = client.request(get("/app.js"))
    assert status == 200
    assert body == read_bytes(os.path.join(DEMO_ROOT, "app.js"))
    assert client.buffer == b""


def test_chunked_body_is_never_taken_for_a_request(demo_server, client_for):
    """The same with a chunked body (RFC 9112 §7.1), with an extension and a trailer."""
    smuggled = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = b"%x;name=value\r\n" % len(smuggled) + smuggled + b"\r\n0\r\nTrailer-Field: x\r\n\r\n"
    client = client_for(demo_server)
    status, headers, body = client.request(
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert status == 200
    assert body == read_bytes(INDEX_HTML)
    status, headers, body = client.request(get("/app.js"))
    assert status == 200
    assert body == read_bytes(os.path.join(DEMO_ROOT, "app.js"))
    assert client.buffer == b""


def test_refused_request_expecting_100_continue_is_answered_at_once(demo_server, client_for):
    """With Expect: 100-continue the client waits for us before sending the body:
    a refusal is sent at once, without the body, then the connection is closed
    (RFC 9110 §10.1.1), so a late body can never be read as a request."""
    client = client_for(demo_server)
    status, headers, body = client.request(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert status == 405
    assert headers["connection"] == "close"
    assert client.is_closed_by_peer()


def test_options_answers_with_allow(demo_server, client_for):
    """OPTIONS * and OPTIONS on a path: 204 with Allow (RFC 9110 §9.3.7)."""
    client = client_for(demo_server)
    for target in ("*", "/", "/style.css"):
        status, headers, body = client.request(f"OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status == 204
        assert headers["allow"] == "GET, HEAD, OPTIONS"
        assert "content-length" not in headers and body == b""


# -- timeouts ----------------------------------------------------------------------------


def test_idle_keep_alive_connection_is_closed(start_server, selector, client_for):
    """After the keep-alive timeout, an idle connection is closed quietly."""
    # A long header timeout, so that only the keep-alive timeout can close it in time.
    server = start_server("--selector", selector, "--keepalive-timeout", "0.5",
                          "--header-timeout", "60")
    client = client_for(server)
    assert client.request(get("/"))[0] == 200
    assert client.is_closed_by_peer(timeout=15)


def test_partial_head_gets_408(start_server, selector, client_for):
    """A head that does not finish within the header timeout gets 408, then a close."""
    server = start_server("--selector", selector, "--header-timeout", "0.5")
    client = client_for(server, timeout=15)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    status, headers, body = client.read_response()
    assert status == 408
    assert headers["connection"] == "close"
    assert_error_body(status, headers, body)
    assert_common_fields(status, headers, body)
    assert client.is_closed_by_peer(timeout=15)
    assert_still_serving(server)


def test_silent_connection_is_closed_without_response(start_server, selector, client_for):
    """A client that connects and sends nothing is closed after the header timeout, with no bytes."""
    server = start_server("--selector", selector, "--header-timeout", "0.5")
    client = client_for(server)
    assert client.is_closed_by_peer(timeout=15)


def test_slowloris_gets_408(start_server, selector, client_for):
    """Bytes trickling in do not extend the header timeout: it runs from the first byte."""
    server = start_server("--selector", selector, "--header-timeout", "0.5")
    client = client_for(server, timeout=15)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    sent = 1
    deadline = time.monotonic() + 15
    # Keep sending a byte every 0.2 s until the server answers.
    while not recv_until_readable(client.sock, 0.2):
        assert time.monotonic() < deadline, "the server never answered the slow head"
        client.send(b"a")
        sent += 1
    status, headers, body = client.read_response()
    assert status == 408
    assert headers["connection"] == "close"
    # The server cannot answer before 0.5 s after our first send, and each wait
    # above lasts 0.2 s, so at least two more bytes came after the first.
    assert sent >= 3
    assert client.is_closed_by_peer(timeout=15)


# -- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize("request_bytes, expected_status", [
    (b"this is not http\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (number, b"v" * 1000)
                                                 for number in range(17)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Field-%d: v\r\n" % number
                                                 for number in range(100)) + b"\r\n", 431),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),  # 1.1 requires Host (RFC 9112 §3.2)
    # Heads that never end are refused as soon as they are too long, not at the timeout.
    (b"GET /" + b"a" * 9000, 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"v" * 30000, 431),
], ids=["garbage", "long-request-line", "large-header-section", "101-fields", "http2",
        "missing-host", "unfinished-request-line", "unfinished-header-section"])
def test_malformed_request(demo_server, client_for, request_bytes, expected_status):
    """A malformed head gets its status and a close; the server goes on serving others."""
    client = client_for(demo_server)
    status, headers, body = client.request(request_bytes)
    assert status == expected_status
    assert headers["connection"] == "close"
    assert_error_body(status, headers, body)
    assert_common_fields(status, headers, body)
    assert client.is_closed_by_peer()
    assert_still_serving(demo_server)


def test_one_hundred_fields_are_accepted(demo_server, client_for):
    """The limit is 100 fields: exactly 100 (Host plus 99) is still served."""
    client = client_for(demo_server)
    fields = "".join(f"X-Field-{number}: v\r\n" for number in range(99))
    status, _, body = client.request(get("/", extra=fields))
    assert status == 200
    assert body == read_bytes(INDEX_HTML)


# -- paths -------------------------------------------------------------------------------------


def test_directory_without_slash_redirects(demo_server, client_for):
    """`/images` is a directory: 301 to `/images/` (so relative links resolve)."""
    client = client_for(demo_server)
    status, headers, body = client.request(get("/images"))
    assert status == 301
    assert headers["location"] == "/images/"
    assert_error_body(status, headers, body)


def test_redirect_keeps_query(demo_server, client_for):
    """The query string survives the redirect."""
    client = client_for(demo_server)
    status, headers, _ = client.request(get("/images?size=large&x=1"))
    assert status == 301
    assert headers["location"] == "/images/?size=large&x=1"


@pytest.mark.parametrize("target, expected_status, expected_location", [
    ("//evil.example", 301, "/evil.example/"),
    ("///evil.example", 301, "/evil.example/"),
    ("/%2Fevil.example", 301, "/evil.example/"),
    ("/%2f%2fevil.example", 301, "/evil.example/"),
    ("/./evil.example", 301, "/evil.example/"),
    ("//images", 301, "/images/"),
    ("/\\evil.example", 301, "/%5Cevil.example/"),  # browsers read "/\\host" as "//host"
    ("//evil.example/..", 400, None),
])
def test_redirect_never_leaves_the_site(site_server, client_for, target, expected_status,
                                        expected_location):
    """A Location starting with "//" would send the browser to another host: the
    redirect is rebuilt from the decoded segments, always with a single leading "/"."""
    client = client_for(site_server)
    status, headers, _ = client.request(get(target))
    assert status == expected_status
    assert headers.get("location") == expected_location


def test_directory_without_index(demo_server, client_for):
    """A directory with no index.html is 404 (listings are off unless
    --autoindex), and the page says why and how to list it."""
    client = client_for(demo_server)
    status, headers, body = client.request(get("/images/"))
    assert status == 404
    assert body.startswith(b"404 Not Found: this folder has no index.html"), body
    assert b"--autoindex" in body


def test_query_string_is_ignored_for_files(demo_server, client_for):
    """`/?x=1` serves the index page."""
    client = client_for(demo_server)
    status, _, body = client.request(get("/?x=1"))
    assert status == 200
    assert body == read_bytes(INDEX_HTML)


def test_percent_encoded_path_is_decoded(demo_server, client_for):
    """`/%69ndex.html` is `/index.html` (RFC 3986 §2.1)."""
    client = client_for(demo_server)
    status, headers, body = client.request(get("/%69ndex.html"))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == read_bytes(INDEX_HTML)


def test_absolute_form_target(demo_server, client_for):
    """The absolute form (RFC 9112 §3.2.2) is served by its path; the authority is ignored."""
    client = client_for(demo_server)
    status, _, body = client.request(get("http://anything/index.html"))
    assert status == 200
    assert body == read_bytes(INDEX_HTML)


@pytest.mark.parametrize("target", [
    "/../etc/passwd",
    "/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/images/../../etc/passwd",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/etc/passwd",
    "http://x/../../etc/passwd",
])
def test_traversal_never_escapes_the_root(demo_server, client_for, target):
    """No spelling of ".." reaches a file outside the root."""
    client = client_for(demo_server)
    status, _, body = client.request(get(target))
    assert status in (400, 403, 404)
    assert b"root:" not in body


def test_symlink_out_of_the_root_is_refused(site_server, client_for):
    """A symlink inside the root that leads outside it is refused, never followed."""
    for path in ("/link.txt", "/linkdir/secret.txt"):
        client = client_for(site_server)
        status, headers, body = client.request(get(path))
        assert (path, status) in ((path, 403), (path, 404))
        assert SECRET not in body
        assert_error_body(status, headers, body)
    status, _, body = client_for(site_server).request(get("/public.txt"))
    assert (status, body) == (200, b"public\n")


def test_symlink_to_a_hidden_file_is_hidden(site_server, client_for):
    """A visible name that links to a dotfile inside the root is hidden like the dotfile."""
    status, _, body = client_for(site_server).request(get("/hiddenlink.txt"))
    assert status == 404
    assert body == b"404 Not Found\n"


def test_dotfiles_are_hidden_by_default(site_server, client_for):
    """`.env` and `.git/config` answer 404, as if they did not exist."""
    for path in DOTFILES:
        client = client_for(site_server)
        status, _, body = client.request(get("/" + path))
        assert (path, status) == (path, 404)
        assert body == b"404 Not Found\n"


def test_dotfiles_served_with_show_hidden(start_server, selector, client_for, site_root):
    """With --show-hidden the same files are served."""
    server = start_server("--selector", selector, "--show-hidden", root=str(site_root[0]))
    for path, content in DOTFILES.items():
        client = client_for(server)
        status, headers, body = client.request(get("/" + path))
        assert (path, status) == (path, 200)
        assert body == content
        assert headers["content-type"] == "application/octet-stream"


def test_well_known_is_served(site_server, client_for):
    """`/.well-known/` is public by design (RFC 8615), even without --show-hidden."""
    client = client_for(site_server)
    status, headers, body = client.request(get("/.well-known/x.txt"))
    assert status == 200
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"well known\n"


# -- large files -----------------------------------------------------------------------------


def read_body_slowly(sock, length):
    """Read ``length`` bytes in small pieces, pausing now and then so that the
    server's send buffer fills and it has to wait for writability."""
    digest = hashlib.sha256()
    received = 0
    next_pause = 0
    while received < length:
        if received >= next_pause:
            time.sleep(0.05)
            next_pause += 1024 * 1024
        data = sock.recv(min(4096, length - received))
        assert data, f"server closed after {received} of {length} body bytes"
        digest.update(data)
        received += len(data)
    return digest.hexdigest()


def check_large_file(server, client_for, expected_digest):
    """GET the 5 MiB file fast and slowly, then HEAD it; each followed by a small request."""
    client = client_for(server, timeout=30)
    status, headers, body = client.request(get("/big.bin"))
    assert status == 200
    assert headers["content-length"] == str(LARGE_FILE_BYTES)
    assert hashlib.sha256(body).hexdigest() == expected_digest
    # The connection is still good for the next request.
    assert client.request(get("/small.txt"))[2] == b"small\n"

    # A slow reader with a small receive buffer: the server must wait for room
    # and resume exactly where it stopped.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(30)
    slow.connect((server.host, server.port))
    slow_client = RawClient(slow, timeout=30)
    try:
        slow_client.send(get("/big.bin"))
        time.sleep(0.2)  # let the server fill every buffer on the way
        head = b""
        while b"\r\n\r\n" not in head:
            head += slow.recv(1)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"Content-Length: {LARGE_FILE_BYTES}\r\n".encode() in head
        assert read_body_slowly(slow, LARGE_FILE_BYTES) == expected_digest
        assert slow_client.request(get("/small.txt"))[2] == b"small\n"
    finally:
        slow_client.close()

    # HEAD: the same length announced, and no body (the next response follows at once).
    head_client = client_for(server)
    status, headers, body = head_client.request(
        b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", head_request=True)
    assert status == 200
    assert headers["content-length"] == str(LARGE_FILE_BYTES)
    assert headers["content-type"] == "application/octet-stream"
    status, _, body = head_client.request(get("/small.txt"))
    assert (status, body) == (200, b"small\n")


def test_large_file_with_sendfile(site_server, client_for, site_root):
    """The default path (os.sendfile from the open file) sends a 5 MiB file byte for byte."""
    check_large_file(site_server, client_for, site_root[1])


def test_large_file_portable_path(start_server, selector, client_for, site_root):
    """--no-sendfile (chunks read on the executor) sends the same bytes."""
    root, expected_digest = site_root
    server = start_server("--selector", selector, "--no-sendfile", root=str(root))
    check_large_file(server, client_for, expected_digest)


# -- access log --------------------------------------------------------------------------------


_CLF_PREFIX = r'127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '


def test_access_log_common_log_format(server, client_for):
    """One Common Log Format line per response; "-" for no body bytes (HEAD)."""
    client = client_for(server)
    client.request(get("/"))
    client.request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", head_request=True)
    client.request(get("/missing"))
    get_line = server.wait_for_log(lambda line: '"GET / HTTP/1.1"' in line)
    head_line = server.wait_for_log(lambda line: '"HEAD / HTTP/1.1"' in line)
    missing_line = server.wait_for_log(lambda line: '"GET /missing HTTP/1.1"' in line)
    index_size = len(read_bytes(INDEX_HTML))
    assert re.fullmatch(_CLF_PREFIX + f'"GET / HTTP/1\\.1" 200 {index_size}\n', get_line), get_line
    assert re.fullmatch(_CLF_PREFIX + '"HEAD / HTTP/1\\.1" 200 -\n', head_line), head_line
    assert re.fullmatch(_CLF_PREFIX + '"GET /missing HTTP/1\\.1" 404 14\n', missing_line), missing_line
    # Exactly one line per response: after a stop, every buffered line is out.
    server.stop()
    access_lines = [line for line in server.stdout_lines if line.startswith("127.0.0.1 ")]
    assert access_lines == [get_line, head_line, missing_line]


def test_quiet_prints_no_access_log(start_server, selector, client_for):
    """--quiet: responses are served and nothing but the banner and the goodbye is printed."""
    server = start_server("--selector", selector, "--quiet")
    client = client_for(server)
    assert client.request(get("/"))[0] == 200
    assert client.request(get("/missing"))[0] == 404
    client.close()
    # Stopping flushes any buffered log lines, so what is printed now is all there is.
    assert server.stop() == 0
    assert server.stdout_lines[0].startswith("Serving ")
    assert server.stdout_lines[-1] == "Stopped.\n"
    assert not any('"GET ' in line for line in server.stdout_lines), server.stdout_lines


def test_access_log_escapes_control_characters(server, client_for):
    """Bytes from the network are logged escaped: no raw terminal escapes, and a
    quote cannot end the request-line field early."""
    # Over 8 KiB with no line end yet: refused (414) while the head is still
    # incomplete, and logged from the bytes received.
    client = client_for(server)
    start = b"GET /\x1b[2J\x07\x7f\xff"
    status, _, body = client.request(start + b"a" * 9000)
    assert status == 414
    long_line = server.wait_for_log(lambda line: " 414 " in line)
    # The log keeps the first 200 bytes of such a line, each control byte escaped.
    logged = "GET /\\x1b[2J\\x07\\x7f\\xff" + "a" * (200 - len(start))
    assert long_line.endswith(f'"{logged}" 414 {len(body)}\n'), long_line
    # Quote and backslash are legal in a target; they are escaped in the log.
    assert client_for(server).request(get('/a"b\\c'))[0] == 404
    quote_line = server.wait_for_log(lambda line: " 404 " in line)
    assert '"GET /a\\"b\\\\c HTTP/1.1" 404 14\n' in quote_line, quote_line
    server.stop()
    printed = "".join(server.stdout_lines)
    assert not any(character in printed for character in "\x1b\x07\x7f\xff")


@pytest.mark.parametrize("request_line, expected_status, logged", [
    (b"GET / HTTP/2.0", 505, "GET / HTTP/2.0"),
    (b"GET /\x1b[2J HTTP/1.1", 400, "GET /\\x1b[2J HTTP/1.1"),
], ids=["http2", "escape-in-target"])
def test_access_log_names_a_rejected_request(server, client_for, request_line, expected_status,
                                             logged):
    """A request refused after its whole head arrived is logged with its request line
    (escaped), so that the log says what was refused."""
    client = client_for(server)
    status, _, body = client.request(request_line + b"\r\nHost: x\r\n\r\n")
    assert status == expected_status
    line = server.wait_for_log(lambda line: f" {expected_status} " in line)
    assert re.fullmatch(_CLF_PREFIX + re.escape(f'"{logged}" {expected_status} {len(body)}') + "\n",
                        line), line
