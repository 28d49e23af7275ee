"""Accepting: what the server sets on each socket it accepts.

In-process, on a real listening socket: the server is built by wiring.py as
the CLI builds it, and the test calls its accept callback itself (no loop
runs), then looks at the sockets it accepted. The accepted socket is the
kernel's object, so what the test reads from it is what the server set.
"""

import socket

import pytest

from reactor_http.config import Config
from reactor_http.loop.reactor import EVENT_READ
from reactor_http.server.wiring import build_server


@pytest.fixture
def server(tmp_path):
    server = build_server(Config(root=str(tmp_path), quiet=True))
    yield server
    server.stop_now()
    server.parts.reactor.close()


def listening_tcp():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def accept_clients(server, listener, count):
    """Connect ``count`` clients, let the server accept them, and return the
    server's ends (the clients say nothing, so each connection waits idle)."""
    clients = [socket.create_connection(listener.getsockname()) for _ in range(count)]
    before = set(server.connections)
    for _ in range(count):
        server.on_acceptable(listener, EVENT_READ)
        if len(server.connections) - len(before) == count:
            break
    accepted = [connection.sock for connection in server.connections - before]
    assert len(accepted) == count
    return clients, accepted


def nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.parametrize("inherited", [True, False], ids=["inherited", "not-inherited"])
def test_every_accepted_tcp_socket_has_nagle_off(server, inherited):
    """TCP_NODELAY is set on the listener, for its sockets to inherit; where
    they do not (emulated by clearing it on the listener after adoption),
    the server sets it on each one."""
    listener = listening_tcp()
    server.adopt(listener)
    assert nodelay(listener)
    if not inherited:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    clients, accepted = accept_clients(server, listener, 1)
    clients2, accepted2 = accept_clients(server, listener, 2)  # after the first connection's probe
    assert [nodelay(sock) for sock in accepted + accepted2] == [True, True, True]
    for client in clients + clients2:
        client.close()


def test_a_unix_listener_gets_no_tcp_option(server, tmp_path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "socket"))
    listener.listen()
    server.adopt(listener)
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(tmp_path / "socket"))
    server.on_acceptable(listener, EVENT_READ)
    assert len(server.connections) == 1
    client.close()
