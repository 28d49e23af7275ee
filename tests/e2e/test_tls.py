"""HTTPS: --certfile/--keyfile, the handshake inside the reactor, and what is not TLS.

Certificates come from trustme (a throw-away CA per test module); the clients
are curl --cacert and Python's own ssl / http.client, over real sockets to the
real server in a subprocess.
"""

import hashlib
import http.client
import os
import socket
import ssl
import subprocess

import pytest
from support import cli as support_cli
from support.clients import RawClient, get
from support.environment import require_program, wait_until

trustme = pytest.importorskip("trustme")

MIB = 1 << 20
INDEX = b"<h1>over TLS</h1>\n"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """(ca.pem, server.pem with its key): a CA and a certificate for 127.0.0.1 and localhost."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, server_path = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    issued.private_key_and_cert_chain_pem.write_to_path(str(server_path))
    key_path, chain_path = directory / "key.pem", directory / "chain.pem"
    issued.private_key_pem.write_to_path(str(key_path))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(chain_path), append=True)
    return {"ca": str(ca_path), "combined": str(server_path), "key": str(key_path), "chain": str(chain_path)}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-site")
    (root / "index.html").write_bytes(INDEX)
    big = os.urandom(4 * MIB + 123)
    (root / "big.bin").write_bytes(big)
    return str(root), big


@pytest.fixture
def tls_server(start_server, certificates, site):
    return start_server("--certfile", certificates["combined"], root=site[0])


def client_context(certificates):
    context = ssl.create_default_context(cafile=certificates["ca"])
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def tls_connect(server, certificates, timeout=10):
    raw = socket.create_connection((server.host, server.port), timeout=timeout)
    return client_context(certificates).wrap_socket(raw, server_hostname="127.0.0.1")


def test_banner_says_https(tls_server):
    assert f"https://127.0.0.1:{tls_server.port}/" in tls_server.stdout_lines[0]


def test_curl_with_the_ca_gets_the_page(tls_server, certificates):
    curl = require_program("curl")
    completed = subprocess.run([curl, "-sS", "--cacert", certificates["ca"], "-D", "-",
                                f"https://127.0.0.1:{tls_server.port}/index.html"],
                               capture_output=True, timeout=30)
    assert completed.returncode == 0, completed.stderr
    head, _, body = completed.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == INDEX


def test_curl_without_the_ca_refuses_the_certificate(tls_server):
    """The certificate really is checked by the client: without its CA, curl refuses."""
    curl = require_program("curl")
    completed = subprocess.run([curl, "-sS", f"https://127.0.0.1:{tls_server.port}/"],
                               capture_output=True, timeout=30)
    assert completed.returncode == 60, completed.stderr  # peer certificate cannot be authenticated


def test_alpn_chooses_http_1_1_and_tls_is_1_2_or_later(tls_server, certificates):
    sock = tls_connect(tls_server, certificates)
    try:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        client = RawClient(sock)
        assert client.request(get("/index.html"))[::2] == (200, INDEX)
    finally:
        sock.close()


def test_keep_alive_ranges_and_a_large_file_over_one_connection(tls_server, certificates, site):
    """http.client over TLS: several requests on one connection, a range, and
    a 4 MiB file sent through the read-and-send path (no sendfile under TLS)."""
    _, big = site
    connection = http.client.HTTPSConnection("127.0.0.1", tls_server.port, timeout=30,
                                             context=client_context(certificates))
    try:
        for _ in range(3):
            connection.request("GET", "/index.html")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, INDEX)
        connection.request("GET", "/big.bin")
        response = connection.getresponse()
        data = response.read()
        assert response.status == 200
        assert hashlib.sha256(data).digest() == hashlib.sha256(big).digest()
        connection.request("GET", "/big.bin", headers={"Range": "bytes=1000-1999"})
        response = connection.getresponse()
        assert (response.status, response.read()) == (206, big[1000:2000])
    finally:
        connection.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused_and_the_server_goes_on(tls_server, certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certificates["ca"])
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    raw = socket.create_connection((tls_server.host, tls_server.port), timeout=10)
    with pytest.raises(ssl.SSLError) as caught:
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    if "NO_PROTOCOLS_AVAILABLE" in str(caught.value) or "no protocols available" in str(caught.value):
        pytest.skip("this OpenSSL refused to offer TLS 1.1 itself")
    # The server's refusal: a protocol_version alert (RFC 8446 §6.2), or the
    # unsupported-protocol error OpenSSL reports for it.
    assert "PROTOCOL_VERSION" in str(caught.value).upper() or "UNSUPPORTED_PROTOCOL" in str(caught.value).upper()
    sock = tls_connect(tls_server, certificates)
    assert RawClient(sock).request(get("/index.html"))[::2] == (200, INDEX)
    sock.close()


def test_plain_http_on_the_tls_port_gets_a_plain_400(tls_server, certificates):
    """Someone types http:// for an https:// server: a readable 400 in plain
    HTTP (as nginx answers), then the connection closes; nothing breaks."""
    client = RawClient(tls_server.connect())
    status, headers, body = client.request(get("/index.html"))
    assert status == 400
    assert headers["connection"] == "close"
    assert b"https://" in body
    assert client.is_closed_by_peer()
    sock = tls_connect(tls_server, certificates)
    assert RawClient(sock).request(get("/index.html"))[::2] == (200, INDEX)
    sock.close()


@pytest.mark.parametrize("garbage", [b"\x00\x01\x02garbage\r\n\r\n", b"\x16\x03\x01\x00\x05hello",
                                     b"\x16" + os.urandom(2000)])
def test_garbage_is_closed_on_without_a_traceback(tls_server, certificates, garbage):
    """Bytes that are neither TLS nor HTTP, or a TLS record that is nonsense:
    the connection is closed; the server goes on (and prints no traceback,
    which the fixture checks at teardown)."""
    sock = tls_server.connect()
    sock.sendall(garbage)
    sock.settimeout(15)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    sock.close()
    # Nothing, or a TLS alert record (content type 21) saying why, then the end.
    assert received == b"" or (received[0] == 0x15 and len(received) <= 16), received
    tls = tls_connect(tls_server, certificates)
    assert RawClient(tls).request(get("/index.html"))[::2] == (200, INDEX)
    tls.close()


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01"], ids=["silent", "half-a-record"])
def test_a_stalled_handshake_is_closed_after_the_handshake_timeout(start_server, certificates, site, sent):
    server = start_server("--certfile", certificates["combined"], "--handshake-timeout", "1",
                          "--trace=conn", root=site[0])
    sock = server.connect(timeout=30)
    if sent:
        sock.sendall(sent)
    assert RawClient(sock).is_closed_by_peer(timeout=30)
    sock.close()
    # It was the handshake's own state that timed out. The line was written
    # before the socket closed, but the thread reading the server's stderr
    # may not have it yet: wait for it.
    wait_until(lambda: any(" state " in line and "handshake-want-read -> closed" in line
                           for line in list(server.stderr_lines)), 10,
               lambda: f"no handshake-want-read -> closed in {server.stderr_lines}")


def test_the_handshake_is_in_the_state_machine(start_server, certificates, site):
    server = start_server("--certfile", certificates["combined"], "--trace=conn", root=site[0])
    sock = tls_connect(server, certificates)
    assert RawClient(sock).request(get("/index.html"))[::2] == (200, INDEX)
    sock.close()
    wait_until(lambda: any(" close " in line for line in server.stderr_lines), 10, "no close traced")
    lines = "".join(server.stderr_lines)
    assert "handshake-want-read -> idle (TLS handshake done)" in lines
    assert "idle -> reading-request" in lines


def test_separate_key_file(start_server, certificates, site):
    server = start_server("--certfile", certificates["chain"], "--keyfile", certificates["key"], root=site[0])
    sock = tls_connect(server, certificates)
    assert RawClient(sock).request(get("/index.html"))[::2] == (200, INDEX)
    sock.close()


def run_cli(*args):
    return support_cli.run_cli("--port", "0", *args)


@pytest.mark.parametrize("problem, words", [
    ("missing", ["none.pem"]),
    ("not-a-certificate", ["holds no certificate"]),
    ("key-without-cert", ["--keyfile needs --certfile"]),
    ("cert-without-key", ["holds a certificate but no private key", "--keyfile"]),
    ("wrong-key", ["the private key does not belong to the certificate"]),
])
def test_unusable_certificates_are_a_one_line_error(tmp_path, certificates, problem, words):
    """Each way a certificate cannot be used is one line in words (never
    OpenSSL's "[SSL] PEM lib (_ssl.c:3926)"), exit status 2."""
    if problem == "missing":
        args = ("--certfile", str(tmp_path / "none.pem"))
    elif problem == "not-a-certificate":
        (tmp_path / "junk.pem").write_text("not a certificate\n")
        args = ("--certfile", str(tmp_path / "junk.pem"))
    elif problem == "key-without-cert":
        args = ("--keyfile", certificates["key"])
    elif problem == "cert-without-key":
        args = ("--certfile", certificates["chain"])
    else:
        other = trustme.CA().issue_cert("127.0.0.1")
        other.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
        args = ("--certfile", certificates["chain"], "--keyfile", str(tmp_path / "other-key.pem"))
    status, stdout, stderr = run_cli("--root", str(tmp_path), *args)
    assert status == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()  # the line, and for a flag's mistake the one hint line
    assert lines[0].startswith("reactor-http: error:"), stderr
    assert lines[1:] in ([], ["reactor-http: --help lists every flag"]), stderr
    assert "PEM lib" not in stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- the handshake waiting to write -----------------------------------------------------------
#
# OpenSSL asks to wait for writability (SSLWantWriteError) when the kernel's
# send buffer is full in the middle of a handshake flight. On loopback the
# kernel grows that buffer past any handshake a client can provoke, so these
# tests inject the answer: the server's do_handshake says "want write" once,
# at the first call or at the one that completes the handshake. What is under
# test is the connection's reaction: wait for writability, call again, and
# go on through the states.

WANT_WRITE_CODE = """
import os
import ssl

_real_do_handshake = ssl.SSLSocket.do_handshake
_WHEN = os.environ["TLS_FAULT_WANT_WRITE"]  # "first" or "last"
_faked = set()


def do_handshake(self, *args):
    key = self.fileno()
    if _WHEN == "first" and key not in _faked:
        _faked.add(key)
        raise ssl.SSLWantWriteError(3, "injected: the send buffer is full")
    result = _real_do_handshake(self, *args)
    if _WHEN == "last" and key not in _faked:
        _faked.add(key)  # done in fact; the next call finds nothing left to do
        raise ssl.SSLWantWriteError(3, "injected: the send buffer is full")
    return result


ssl.SSLSocket.do_handshake = do_handshake
"""


def want_write_server(start_server, certificates, site, tmp_path, when):
    from support.servers import sitecustomize_env
    env = sitecustomize_env(str(tmp_path / "want-write"), WANT_WRITE_CODE)
    env["TLS_FAULT_WANT_WRITE"] = when
    return start_server("--certfile", certificates["combined"], "--trace=conn", root=site[0], env=env)


class HandRunClient:
    """A TLS client over in-memory buffers, so that the test decides when
    each flight of the handshake goes out."""

    def __init__(self, sock, context):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    def handshake(self, may_finish):
        """Send the hello, wait until ``may_finish()`` is true, then read the
        server's answer and send the Finished."""
        hello_sent = False
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            self._send_pending()
            if not hello_sent:
                hello_sent = True
                wait_until(may_finish, 10, "the server did not reach the expected state")
            self._receive()
        self._send_pending()  # the Finished

    def request(self, data):
        """Send ``data`` and read one answer, framed by its Content-Length:
        (status, body)."""
        self.tls.write(data)
        self._send_pending()
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < self._length(answer):
            try:
                answer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                assert self._receive(), "the server closed before the answer was complete"
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body

    @staticmethod
    def _length(answer):
        head = answer.partition(b"\r\n\r\n")[0].lower()
        return int(head.split(b"content-length:")[1].split(b"\r\n")[0])

    def _send_pending(self):
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def _receive(self):
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return bool(data)


def traced_states(server):
    return [line.split(" state ", 1)[1].strip() for line in list(server.stderr_lines) if " state " in line]


@pytest.mark.parametrize("when, moves", [
    ("first", ["handshake-want-read -> handshake-want-write", "handshake-want-write -> handshake-want-read",
               "handshake-want-read -> idle"]),
    ("last", ["handshake-want-read -> handshake-want-write", "handshake-want-write -> idle"]),
])
def test_a_handshake_that_must_wait_to_write_goes_on(start_server, certificates, site, tmp_path, when, moves):
    server = want_write_server(start_server, certificates, site, tmp_path, when)
    # With the fault first, the client finishes its handshake only once the
    # server has answered the hello and gone back to waiting for it: were it
    # faster, the server's second attempt could find the client's Finished
    # already there and complete at once, and the move under test would
    # depend on how the two processes were scheduled.
    waited = "handshake-want-write -> handshake-want-read"
    sock = server.connect()
    client = HandRunClient(sock, client_context(certificates))
    client.handshake(lambda: when != "first" or any(line.startswith(waited) for line in traced_states(server)))
    assert client.request(get("/index.html")) == (200, INDEX)
    sock.close()
    wait_until(lambda: any("idle -> closed" in line for line in traced_states(server)), 10, "no close traced")
    states = traced_states(server)
    found = [move for move in moves if any(line.startswith(move) for line in states)]
    assert found == moves, states


def test_a_client_gone_while_the_handshake_waits_to_write(start_server, certificates, site, tmp_path):
    """The client sends its ClientHello and leaves while the server waits to
    write its answer: the connection closes from handshake-want-write."""
    server = want_write_server(start_server, certificates, site, tmp_path, "first")
    # A real ClientHello, made by the in-memory TLS client.
    sock = server.connect()
    client = HandRunClient(sock, client_context(certificates))
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.do_handshake()
    hello = client.outgoing.read()
    assert hello[0] == 0x16
    sock.sendall(hello)
    sock.close()
    wait_until(lambda: any(line.startswith("handshake-want-write -> closed") for line in traced_states(server)),
               10, lambda: f"states: {traced_states(server)}")
