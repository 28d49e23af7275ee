"""A raw-socket HTTP client that reads responses exactly as framed on the wire."""

import socket


class RawClient:
    """A raw-socket HTTP client that reads responses exactly as framed on the wire."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"server closed; unparsed bytes: {self.buffer[:200]!r}")
        self.buffer += data

    def read_response(self, head_request=False):
        """One response: (status, headers with lower-case names, body bytes)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated field {name}"
            headers[name.lower()] = value.strip()
        status = int(status)
        length = 0 if head_request or status in (204, 304) else int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def request(self, data, head_request=False):
        self.send(data)
        return self.read_response(head_request)

    def is_closed_by_peer(self, timeout=10):
        """True if the server closes (EOF or reset) with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"
        return True

    def close(self):
        self.sock.close()


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


def read_head(sock, limit=65536):
    """Read one response head from a socket without reading its body into memory.

    Returns (status, headers with lower-case names, the body bytes that came in
    the same reads as the head)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed before a complete head: {buffer[:200]!r}")
        buffer += data
        assert len(buffer) <= limit, "response head too long"
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[:2]
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status), headers, rest


