"""A raw-socket HTTP client that reads responses exactly as framed on the wire.

The reading is the harness's (scripts/harness/http.py), the one strict reader
the scripts use too; here a response that breaks its rules fails the test.
"""

import subprocess

from harness.http import ClientConnection, Mismatch

from .environment import require_program


class RawClient:
    """A raw-socket HTTP client that reads responses exactly as framed on the
    wire: HTTP/1.1, no field repeated, the body as long as Content-Length says."""

    def __init__(self, sock, timeout=10):
        self.connection = ClientConnection(sock, timeout)

    @property
    def sock(self):
        return self.connection.sock

    @property
    def buffer(self):
        """Bytes received after the last response read."""
        return self.connection.buffer

    def send(self, data):
        self.connection.send(data)

    def read_response(self, head_request=False):
        """One response: (status, headers with lower-case names, body bytes)."""
        try:
            head, body = self.connection.read_response("HEAD" if head_request else "GET")
        except Mismatch as error:
            raise AssertionError(str(error)) from error
        return head.status, head.headers, bytes(body)

    def request(self, data, head_request=False):
        self.send(data)
        return self.read_response(head_request)

    def is_closed_by_peer(self, timeout=10):
        """True if the server closes (EOF or reset) with no further bytes."""
        try:
            return self.connection.closed_by_server(timeout)
        except Mismatch as error:
            raise AssertionError(str(error)) from error

    def close(self):
        self.connection.close()


def get(path="/", host="x", extra=""):
    """Bytes of a simple HTTP/1.1 GET."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def request_once(server, data, head_request=False):
    """Send ``data`` on a new connection and read one response: (status, headers, body)."""
    client = RawClient(server.connect())
    try:
        return client.request(data, head_request=head_request)
    finally:
        client.close()


def ask(server, target, method="GET", extra=""):
    """``method target`` (with ``extra`` header lines) on a new connection:
    (status, headers, body)."""
    return request_once(server, f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode(),
                        head_request=method == "HEAD")


def read_head(sock):
    """Read one response head from a socket without reading its body into memory.

    Returns (status, headers with lower-case names, the body bytes that came in
    the same reads as the head)."""
    connection = ClientConnection(sock, sock.gettimeout())
    try:
        head = connection.read_head()
    except Mismatch as error:
        raise AssertionError(str(error)) from error
    return head.status, head.headers, bytes(connection.buffer)


def curl(*args):
    """Run curl quietly and return its stdout bytes; a transport error fails the test."""
    program = require_program("curl")
    completed = subprocess.run([program, "--silent", "--show-error", "--max-time", "30", *args],
                               capture_output=True, timeout=60)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout
