"""The one HTTP/1.1 response reader, strict, and the bytes of requests.

parse_head reads a response head strictly: an HTTP/1.1 status line (or
another version where the caller allows it), CRLF lines, ``name: value``
fields with no space before the colon, and no field repeated. body_length
frames the body: none for HEAD, 1xx, 204 and 304, else exactly Content-Length,
which every response with content must carry (reactor_http never sends
chunked). ClientConnection reads responses so over a blocking socket,
pipelined ones back to back; frame_response does the same for a client that
reads from non-blocking sockets into buffers of its own.
"""

import dataclasses
import socket
import struct

RECEIVE_BYTES = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024
SOCKET_TIMEOUT_SECONDS = 60.0
HTTP_1_1 = ("HTTP/1.1",)


class Mismatch(Exception):
    """A response that is not what its request must get, or not well-formed."""


@dataclasses.dataclass(slots=True)
class Head:
    """A response's status line and header fields (names in lower case)."""

    status: int
    reason: str
    headers: dict
    version: str = "HTTP/1.1"


def parse_head(data, versions=HTTP_1_1):
    """The Head of ``data``, a response head without its closing empty line."""
    lines = bytes(data).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3 or parts[0] not in versions or not parts[1].isdigit():
        raise Mismatch(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.lower()
        if not colon or name != name.strip():
            raise Mismatch(f"bad header line {line!r}")
        if name in headers:
            raise Mismatch(f"repeated header field {name!r}")
        headers[name] = value.strip(" \t")
    return Head(int(parts[1]), parts[2], headers, parts[0])


def body_length(head, method="GET"):
    """How many body bytes follow ``head`` in the answer to ``method``."""
    if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
        return 0
    length = head.headers.get("content-length")
    if length is None or not length.isdigit():
        raise Mismatch(f"{head.status} response without a valid Content-Length: {head.headers}")
    return int(length)


def frame_response(buffer, method="GET", versions=HTTP_1_1):
    """(Head, bytes of head and body) of the response at the start of
    ``buffer``, or None while its head is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise Mismatch("a response head longer than 64 KiB")
        return None
    head = parse_head(buffer[:end], versions)
    return head, end + 4 + body_length(head, method)


def request_bytes(method, target, fields=(), version="HTTP/1.1", host="localhost"):
    """The bytes of a request with no body: Host, then ``fields`` ("Name: value")."""
    lines = [f"{method} {target} {version}", f"Host: {host}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ClientConnection:
    """A blocking client socket and the bytes read from it that no response
    has used yet (pipelined responses arrive back to back). Give it a socket
    (plain or TLS), or a host and port to connect to."""

    def __init__(self, sock, timeout=SOCKET_TIMEOUT_SECONDS, versions=HTTP_1_1):
        sock.settimeout(timeout)
        self.sock = sock
        self.versions = versions
        self.buffer = bytearray()

    @classmethod
    def connect(cls, host, port, timeout=SOCKET_TIMEOUT_SECONDS, receive_buffer=None, versions=HTTP_1_1):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if receive_buffer:
                # Before connect: the receive buffer sets the window the server may fill.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return cls(sock, timeout, versions)

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(RECEIVE_BYTES)
        if not data:
            raise ConnectionError(f"the server closed the connection mid-response "
                                  f"(unparsed: {bytes(self.buffer[:200])!r})")
        self.buffer += data

    def read_head(self):
        """The next response head."""
        searched = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                break
            searched = len(self.buffer)
            if searched > MAX_HEAD_BYTES:
                raise Mismatch("a response head longer than 64 KiB")
            self._fill()
        head = parse_head(self.buffer[:end], self.versions)
        del self.buffer[:end + 4]
        return head

    def read_body(self, length):
        """Exactly ``length`` body bytes, received straight into one buffer."""
        body = bytearray(length)
        view = memoryview(body)
        have = min(length, len(self.buffer))
        view[:have] = self.buffer[:have]
        del self.buffer[:have]
        while have < length:
            received = self.sock.recv_into(view[have:], min(length - have, 4 * 1024 * 1024))
            if not received:
                raise ConnectionError(f"the server closed after {have} of {length} body bytes")
            have += received
        return body

    def read_response(self, method="GET"):
        """(Head, body) of the next response to a ``method`` request."""
        head = self.read_head()
        return head, self.read_body(body_length(head, method))

    def read_until_closed(self, limit):
        """Bytes until the server closes or resets (at most ``limit``): what a
        client gets of a response that the server cut short."""
        data = bytearray(self.buffer)
        self.buffer.clear()
        try:
            while len(data) < limit:
                chunk = self.sock.recv(RECEIVE_BYTES)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def closed_by_server(self, timeout=None):
        """True when the server closes (FIN or RST) with no bytes after the
        last response; False if nothing comes within the socket's timeout
        (or ``timeout``)."""
        if self.buffer:
            raise Mismatch(f"bytes after the last response: {bytes(self.buffer[:200])!r}")
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(RECEIVE_BYTES)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if data:
            raise Mismatch(f"bytes after the last response: {data[:200]!r}")
        return True

    def reset(self):
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()


def fetch(host, port, target, method="GET", timeout=SOCKET_TIMEOUT_SECONDS, versions=HTTP_1_1):
    """(Head, body) of one request on a new connection."""
    connection = ClientConnection.connect(host, port, timeout, versions=versions)
    try:
        connection.send(request_bytes(method, target, ["Connection: close"], host=host))
        return connection.read_response(method)
    finally:
        connection.close()
