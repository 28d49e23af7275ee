"""Listeners: several --bind addresses, a Unix domain socket, systemd socket activation.

Each test runs the real server and connects to it the way a client of that
listener would: TCP to each address, AF_UNIX to the socket file, and for
socket activation a socket this test opened and handed over as descriptor 3.
"""

import os
import socket

import pytest
from support.cli import run_cli
from support.clients import RawClient, get
from support.environment import DEMO_ROOT, demo_bytes, ipv6_loopback_available

EXIT_USAGE = 2


def fetch_over(sock, path="/"):
    client = RawClient(sock)
    try:
        return client.request(get(path))
    finally:
        client.close()


def tcp(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def unix(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


# -- several TCP addresses ------------------------------------------------------------------


def test_several_bind_addresses_share_one_port(start_server):
    """Two --bind addresses on --port 0: the second takes the port the kernel
    chose for the first, and both answer."""
    server = start_server("--bind", "127.0.0.1", "--bind", "127.0.0.2")
    banners = server.banners(2)
    assert f"http://127.0.0.1:{server.port}/" in banners[0]
    assert f"http://127.0.0.2:{server.port}/" in banners[1]
    for host in ("127.0.0.1", "127.0.0.2"):
        assert fetch_over(tcp(host, server.port))[::2] == (200, demo_bytes("index.html"))
    with pytest.raises(ConnectionRefusedError):
        tcp("127.0.0.3", server.port)  # not one of the addresses asked for


def test_ipv4_and_ipv6_loopback_side_by_side(start_server):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback")
    server = start_server("--bind", "127.0.0.1", "--bind", "::1")
    assert f"http://[::1]:{server.port}/" in server.banners(2)[1]
    for host in ("127.0.0.1", "::1"):
        assert fetch_over(tcp(host, server.port))[::2] == (200, demo_bytes("index.html"))


def test_an_address_in_use_names_itself(start_server):
    first = start_server("--bind", "127.0.0.1")
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, "--bind", "127.0.0.2", "--bind", "127.0.0.1",
                                     "--port", str(first.port))
    assert status == EXIT_USAGE
    # One line, naming the address, and who holds it (found in /proc).
    assert stderr.strip() == (f"reactor-http: error: cannot listen on 127.0.0.1 port {first.port}: "
                              f"Address already in use (by process {first.pid} "
                              f"({' '.join(first.process.args)[:80]}): stop it, or choose another --port)")


# -- a Unix domain socket -------------------------------------------------------------------


@pytest.fixture
def socket_path(tmp_path):
    # AF_UNIX paths are limited to ~107 bytes: keep it short.
    directory = tmp_path / "s"
    directory.mkdir()
    return str(directory / "http.sock")


def test_unix_socket_only(start_server, socket_path):
    """--unix alone: no TCP listener at all, the socket answers, the access
    log says "unix:" for the client, and the socket file goes at exit."""
    server = start_server("--unix", socket_path)
    assert server.port is None  # no TCP banner
    assert server.unix_path() == socket_path
    status, _, body = fetch_over(unix(socket_path))
    assert (status, body) == (200, demo_bytes("index.html"))
    server.wait_for_log(lambda line: line.startswith('unix: - - [') and '"GET / HTTP/1.1" 200' in line)
    assert server.stop() == 0
    assert not os.path.exists(socket_path)


def test_unix_socket_beside_tcp(start_server, socket_path):
    server = start_server("--unix", socket_path, "--bind", "127.0.0.1")
    assert server.unix_path(listeners=2) == socket_path
    assert fetch_over(unix(socket_path))[0] == 200
    assert fetch_over(tcp("127.0.0.1", server.port))[0] == 200


def test_a_stale_socket_file_is_replaced(start_server, socket_path):
    """A socket file left behind by a server that died (nobody listens) is
    taken over."""
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(socket_path)
    leftover.close()  # the file stays, with no listener
    server = start_server("--unix", socket_path)
    assert fetch_over(unix(socket_path))[0] == 200
    assert server.process.poll() is None


def test_a_socket_someone_listens_on_is_not_taken(socket_path):
    occupant = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    occupant.bind(socket_path)
    occupant.listen()
    try:
        status, stdout, stderr = run_cli("--root", DEMO_ROOT, "--unix", socket_path)
    finally:
        occupant.close()
    assert status == EXIT_USAGE
    assert stderr.strip() == f"reactor-http: error: --unix {socket_path}: another server is listening there"


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path):
    regular = tmp_path / "not-a-socket"
    regular.write_text("precious\n")
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, "--unix", str(regular))
    assert status == EXIT_USAGE
    assert "exists and is not a socket" in stderr
    assert regular.read_text() == "precious\n"


# -- systemd socket activation --------------------------------------------------------------

def start_activated(start_server, listener, *flags, env_extra=None):
    """Start the server as systemd would: the listening socket is descriptor 3,
    LISTEN_FDS=1 and LISTEN_PID is the server's own pid (set by the shell that
    then execs it, keeping its pid)."""
    fd = listener.fileno()

    def become_descriptor_3():
        os.dup2(fd, 3)  # inheritable, and kept: pass_fds lists it

    command_prefix = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh"]
    return start_server(*flags, launcher=command_prefix, preexec_fn=become_descriptor_3, pass_fds=(3,),
                        env=env_extra)


def test_socket_activation_serves_on_the_inherited_socket(start_server):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        server = start_activated(start_server, listener)
        # Only the inherited socket: no listener of its own on 127.0.0.1:8080 or elsewhere.
        assert server.port == port
        assert len(server.banners(1)) == 1
        assert fetch_over(tcp("127.0.0.1", port))[::2] == (200, demo_bytes("index.html"))
    finally:
        listener.close()


def test_socket_activation_of_a_unix_socket(start_server, socket_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    try:
        server = start_activated(start_server, listener)
        assert server.unix_path() == socket_path
        assert fetch_over(unix(socket_path))[0] == 200
        assert server.stop() == 0
        # systemd owns that socket file: the server leaves it where it was.
        assert os.path.exists(socket_path)
    finally:
        listener.close()


def test_socket_activation_for_another_process_is_ignored(start_server):
    """LISTEN_PID names some other process: the descriptors are not ours, and
    the server listens where its flags say."""
    server = start_server(env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert server.port is not None
    assert fetch_over(tcp("127.0.0.1", server.port))[0] == 200
