"""The guard, end to end: an unexpected exception at each way into a connection.

Every way into a connection (readiness, a job's completion, a chunk read on
the portable path, the timer, the server stopping) passes through
``Connection._guarded``, which logs an error nobody expected once and costs
that connection only. These tests make the real server raise a RuntimeError
carrying MARKER at each of those ways in, injected by a sitecustomize module
(support.servers.sitecustomize_env, as in test_faults.py), on the three send
paths: sendfile, the portable path (--no-sendfile) and TLS.

Each checks what the guard promises: the faulty connection gets a 500 when
nothing of the answer it waits for had gone out, and is closed when bytes had;
stderr holds the marker's traceback once, and it passed through the way in
under test; the process goes on serving other clients; a graceful stop then
exits 0.
"""

import random
import shutil
import signal
import ssl

import pytest
from support.checks import check_still_serving
from support.clients import RawClient, get, read_head
from support.environment import DEMO_ROOT, wait_until
from support.servers import sitecustomize_env

from reactor_http.connection.writer import CHUNK_BYTES

MARKER = "guard-test marker"

# One fault per run, chosen by GUARD_FAULT; each raises only for a target
# (or a request head) holding "/boom", so every other client is served as usual.
FAULT_CODE = """
import os
import sys
import threading

import reactor_http.connection.connection as connection
import reactor_http.connection.writer as writer
import reactor_http.static.files as files
import reactor_http.static.site as site

MARKER = "guard-test marker"
# "FAULT+cold": as if the page cache held no file, so that the portable path
# reads every chunk on the executor (and its completion is a way in).
FAULT, _, COLD = os.environ["GUARD_FAULT"].partition("+")
Connection = connection.Connection


def fail(where):
    raise RuntimeError(MARKER + ": " + where)


def wrap(owner, name, check):
    original = getattr(owner, name)

    def wrapper(*args):
        check(*args)
        return original(*args)
    setattr(owner, name, wrapper)


if FAULT == "handle":  # readiness, or whatever way in answers a pipelined request
    wrap(site.StaticSite, "handle", lambda self, request, exchange: "/boom" in request.target and fail(FAULT))
elif FAULT == "continuation":  # what the handler does when its job completes
    wrap(site.StaticSite, "_serve_result",
         lambda self, request, *rest: "/boom" in request.target and fail(FAULT))
elif FAULT == "job":  # the job itself, on the executor: its Outcome carries the error
    wrap(files, "resolve", lambda root, segments, *rest: "boom" in segments and fail(FAULT))
elif FAULT == "chunk-read":  # the portable path's second chunk of a file cannot be read by the executor
    wrap(connection, "read_chunk", lambda fd, buffer, offset: offset > 0 and fail(FAULT))
elif FAULT == "cached-chunk-read":  # the same chunk, read on the loop thread from the page cache
    wrap(writer, "read_cached_chunk", lambda fd, buffer, offset: offset > 0 and fail(FAULT))
elif FAULT == "timer":  # the deadline check of a request head holding the marker
    wrap(Connection, "_on_timeout", lambda self: "/boom" in self._parser.first_line() and fail(FAULT))
elif FAULT == "shutdown":  # the stop's step, on a connection whose request waits for the disk
    wrap(Connection, "_stop_if_idle",
         lambda self: self._request is not None and "/boom" in self._request.target and fail(FAULT))
    disk_answers = threading.Event()  # set by SIGUSR2: until then the disk hangs on /boom

    def hang(root, segments, *rest):
        if "boom" in segments:
            print("guard-test: the disk hangs", file=sys.stderr, flush=True)
            disk_answers.wait(60)
    wrap(files, "resolve", hang)
    import signal
    signal.signal(signal.SIGUSR2, lambda signum, frame: disk_answers.set())
if COLD:
    writer.read_cached_chunk = lambda fd, buffer, offset: None
"""

SEND_PATHS = {"sendfile": [], "no-sendfile": ["--no-sendfile"], "tls": []}  # TLS never uses sendfile
PORTABLE_PATHS = ["no-sendfile", "tls"]
BIG_BYTES = 100 * 1024         # more than the small-file limit (64 KiB): sent from its descriptor, one chunk
HUGE_BYTES = 4 * CHUNK_BYTES   # four chunks on the portable path


@pytest.fixture(scope="module")
def site_root(tmp_path_factory):
    """The demo's index page (check_still_serving asks for it), and two files of random bytes."""
    root = tmp_path_factory.mktemp("guard-site")
    shutil.copy(f"{DEMO_ROOT}/index.html", root / "index.html")
    generator = random.Random(12)
    contents = {"/big.bin": generator.randbytes(BIG_BYTES), "/huge.bin": generator.randbytes(HUGE_BYTES)}
    for url, data in contents.items():
        (root / url.lstrip("/")).write_bytes(data)
    return str(root), contents


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """(a client context that trusts the CA, the server's certificate and key in one file)."""
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    pem = tmp_path_factory.mktemp("guard-tls") / "server.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context, str(pem)


class Dialer:
    """How clients reach the server: plain TCP, or TLS over it. Has the
    ``connect`` that check_still_serving calls."""

    def __init__(self, server, tls_context=None):
        self.server = server
        self.tls_context = tls_context

    def connect(self, timeout=10):
        sock = self.server.connect(timeout)
        if self.tls_context is None:
            return sock
        return self.tls_context.wrap_socket(sock, server_hostname="127.0.0.1")

    def client(self):
        return RawClient(self.connect())


@pytest.fixture
def faulty_server(start_server, site_root, tmp_path, request):
    """faulty_server(fault, send_path, *flags) -> (server, Dialer): the server
    with the fault injected, on that send path."""
    def start(fault, send_path, *flags):
        env = sitecustomize_env(str(tmp_path / "guard-fault"), FAULT_CODE)
        env["GUARD_FAULT"] = fault
        tls_context, tls_flags = None, []
        if send_path == "tls":
            tls_context, certificate = request.getfixturevalue("tls_files")
            tls_flags = ["--certfile", certificate]
        server = start_server(*SEND_PATHS[send_path], *tls_flags, *flags, root=site_root[0], env=env)
        server.tracebacks_expected = True
        return server, Dialer(server, tls_context)
    return start


def stderr(server):
    return "".join(list(server.stderr_lines))


def wait_for_marker(server):
    wait_until(lambda: MARKER in stderr(server), 10, lambda: f"no {MARKER!r} in stderr: {stderr(server)[-2000:]}")


def assert_answered_500_then_closed(client):
    status, headers, _ = client.read_response()
    assert (status, headers["connection"]) == (500, "close")
    assert client.is_closed_by_peer()
    client.close()


def assert_contained(server, dialer, *ways_in):
    """The marker's traceback was logged once, having come in through one of
    ``ways_in`` (Connection methods); the server still serves, and stops
    gracefully with status 0."""
    wait_for_marker(server)
    assert server.process.poll() is None
    check_still_serving(dialer)
    assert server.stop() == 0
    text = stderr(server)
    assert text.count(f"RuntimeError: {MARKER}") == 1, text
    assert text.count("Traceback") == 1, text
    assert any(f", in {way_in}\n" in text for way_in in ways_in), text


# -- (a) readiness ------------------------------------------------------------------------------


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_a_handler_raising_on_readiness_gets_a_500(faulty_server, send_path):
    server, dialer = faulty_server("handle", send_path)
    client = dialer.client()
    client.send(get("/boom"))
    assert_answered_500_then_closed(client)
    assert_contained(server, dialer, "_receive")


# -- (b) an executor job's completion -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["continuation", "job"])
@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_a_failure_when_a_job_completes_gets_a_500(faulty_server, send_path, fault):
    server, dialer = faulty_server(fault, send_path)
    client = dialer.client()
    client.send(get("/boom"))
    assert_answered_500_then_closed(client)
    assert_contained(server, dialer, "_on_job_done")


# -- (c) a chunk read's completion, on the portable path -----------------------------------------


@pytest.mark.parametrize("send_path", PORTABLE_PATHS)
def test_a_request_after_a_large_file_raising_gets_a_500(faulty_server, site_root, send_path):
    """The large file's last chunk arrives; sending it ends that answer, and
    the pipelined request after it is answered from that same completion.
    Raising there once let the exception escape the reactor's turn."""
    server, dialer = faulty_server("handle+cold", send_path)
    client = dialer.client()
    client.send(get("/big.bin") + get("/boom"))
    assert client.read_response()[::2] == (200, site_root[1]["/big.bin"])
    assert_answered_500_then_closed(client)
    assert_contained(server, dialer, "_on_chunk")


def read_until_cut_short(dialer, site_root):
    """GET /huge.bin, whose second chunk cannot be read: the head and the
    first chunk arrive, then the connection closes short of Content-Length,
    and the access log says how much of the body went."""
    sock = dialer.connect()
    sock.sendall(get("/huge.bin"))
    status, headers, body = read_head(sock)
    assert (status, headers["content-length"]) == (200, str(HUGE_BYTES))
    try:
        while data := sock.recv(1 << 20):
            body += data
    except ConnectionResetError:
        pass
    sock.close()
    assert body == site_root[1]["/huge.bin"][:CHUNK_BYTES]


@pytest.mark.parametrize("send_path", PORTABLE_PATHS)
def test_a_chunk_that_cannot_be_read_closes_the_connection_mid_body(faulty_server, site_root, send_path):
    """The second chunk's read on the executor raises: there is no 500 to
    give, and the error comes in through the chunk's completion."""
    server, dialer = faulty_server("chunk-read+cold", send_path)
    read_until_cut_short(dialer, site_root)
    server.wait_for_log(lambda line: f'"GET /huge.bin HTTP/1.1" 200 {CHUNK_BYTES}' in line)
    assert_contained(server, dialer, "_on_chunk")


@pytest.mark.parametrize("send_path", PORTABLE_PATHS)
def test_a_cached_chunk_that_cannot_be_read_closes_the_connection_mid_body(faulty_server, site_root, send_path):
    """The same, when the chunk is read on the loop thread (the page cache
    holds it): the error comes out of the send, wherever the send was."""
    server, dialer = faulty_server("cached-chunk-read", send_path)
    read_until_cut_short(dialer, site_root)
    server.wait_for_log(lambda line: f'"GET /huge.bin HTTP/1.1" 200 {CHUNK_BYTES}' in line)
    assert_contained(server, dialer, "_on_job_done", "on_ready")


# -- (d) the timer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_a_deadline_check_raising_gets_a_500(faulty_server, send_path):
    """The request head stops halfway; when its header timeout passes, the
    check raises: the client gets a 500 (not the 408 it would have got)."""
    server, dialer = faulty_server("timer", send_path, "--header-timeout", "2")
    client = dialer.client()
    client.send(b"GET /boom HTTP/1.1\r\nHost: x\r\n")
    assert_answered_500_then_closed(client)
    assert_contained(server, dialer, "_check_deadline")


# -- (e) the server stopping --------------------------------------------------------------------------


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_a_shutdown_step_raising_gets_a_500_and_the_stop_completes(faulty_server, send_path):
    """SIGTERM while one connection is idle and another waits for a hung
    disk: the step raises for the busy one, which gets a 500; the idle one is
    closed as usual; the stop completes with status 0."""
    server, dialer = faulty_server("shutdown", send_path)
    idle = dialer.client()
    assert idle.request(get("/"))[0] == 200
    busy = dialer.client()
    busy.send(get("/boom"))
    wait_until(lambda: "guard-test: the disk hangs" in stderr(server), 10, lambda: stderr(server))
    server.process.send_signal(signal.SIGTERM)
    status, headers, _ = busy.read_response()
    assert (status, headers["connection"]) == (500, "close")
    assert idle.is_closed_by_peer()
    assert busy.is_closed_by_peer()
    server.process.send_signal(signal.SIGUSR2)  # the disk answers, so no job is left running at exit
    idle.close()
    busy.close()
    assert server.process.wait(30) == 0
    assert server.stop() == 0
    text = stderr(server)
    assert text.count(f"RuntimeError: {MARKER}: shutdown") == 1 and text.count("Traceback") == 1, text
