"""The connection state machine, driven in-process: a real Server and reactor,
a socket pair instead of a network, and a socket wrapper that counts sends."""

import socket

import pytest
from support.environment import DEMO_ROOT

from reactor_http.config import Config
from reactor_http.connection.connection import TRANSITIONS, Connection, State
from reactor_http.server.server import Server


class CountingSocket:
    """A socket that counts send() calls (the system calls we want few of)."""

    def __init__(self, sock):
        self._sock = sock
        self.sends = 0

    def send(self, data, flags=0):
        self.sends += 1
        return self._sock.send(data, flags)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture
def served():
    server = Server(Config(root=DEMO_ROOT, quiet=True))
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)
    counting = CountingSocket(server_end)
    connection = Connection(server, counting, "test")
    server.connections.add(connection)
    connection.start()
    client_end.settimeout(10)
    yield server, connection, counting, client_end
    connection.close()
    client_end.close()
    server.executor.shutdown(wait=True)
    server.reactor.close()


def read_responses(server, client_end, count):
    """Run the loop until `count` complete responses have arrived; return the raw bytes."""
    received = b""
    client_end.setblocking(False)
    for _ in range(10000):
        server.reactor.run_once(max_timeout=0.05)
        try:
            data = client_end.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            raise AssertionError(f"the server closed the connection: {received[-300:]!r}")
        received += data
        if received.count(b"HTTP/1.1 200 OK") >= count and received.endswith(b"</html>\n"):
            return received
    raise AssertionError(f"only {received.count(b'HTTP/1.1 200 OK')} responses")


PIPELINE = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n" * 16


def test_pipelined_answers_go_out_in_one_send(served):
    """16 pipelined requests for a cached file: the answers are batched into a
    single send() (the first, cold request alone waits for the executor)."""
    server, connection, counting, client_end = served
    client_end.sendall(PIPELINE)
    first = read_responses(server, client_end, 16)
    assert first.count(b"HTTP/1.1 200 OK") == 16
    assert counting.sends <= 2  # the cold answer, then the batch of 15
    counting.sends = 0
    client_end.sendall(PIPELINE)
    second = read_responses(server, client_end, 16)
    assert second.count(b"HTTP/1.1 200 OK") == 16
    assert counting.sends == 1
    assert connection.state is State.IDLE


def test_every_transition_is_in_the_table():
    """The table names each state's ways out; CLOSED has none."""
    sources = {source for source, _ in TRANSITIONS}
    assert State.CLOSED not in sources
    assert sources | {State.CLOSED} == set(State)


def test_an_illegal_transition_is_refused(served):
    server, connection, counting, client_end = served
    with pytest.raises(RuntimeError):
        connection._enter(State.CLOSING)  # IDLE -> CLOSING is not in the table


def test_a_batch_is_sent_when_the_next_request_is_incomplete(served):
    """Answers batched for pipelined requests go out as soon as the requests
    that follow run out mid-head, and the half-received request is answered
    once the rest of it arrives."""
    server, connection, counting, client_end = served
    one = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    client_end.sendall(one)
    read_responses(server, client_end, 1)  # the file is now in the cache
    counting.sends = 0
    client_end.sendall(one * 3 + one[:10])
    assert read_responses(server, client_end, 3).count(b"HTTP/1.1 200 OK") == 3
    assert counting.sends == 1
    assert connection.state is State.READING_REQUEST
    client_end.sendall(one[10:])
    assert read_responses(server, client_end, 1).count(b"HTTP/1.1 200 OK") == 1
    assert connection.state is State.IDLE
