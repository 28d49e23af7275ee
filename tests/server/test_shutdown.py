"""Graceful shutdown: SIGTERM or SIGINT lets responses in progress finish.

The real server in a subprocess, real sockets. After the first signal the
listeners are closed (new connections are refused), idle keep-alive
connections are closed, and a response already under way is sent to its last
byte; then the server exits 0. --shutdown-timeout bounds the wait, and a
second signal ends it at once.
"""

import hashlib
import random
import signal
import time

import psutil
import pytest
from support.clients import RawClient, get, read_head
from support.environment import wait_until
from support.servers import refuses_connections, wait_for_exit

MIB = 1 << 20
BIG_MIB = 200


@pytest.fixture(scope="module")
def big_site(tmp_path_factory):
    """A root with index.html and a 200 MiB file of distinct random blocks
    (so a byte at a wrong offset cannot look right); returns (root, sha256)."""
    root = tmp_path_factory.mktemp("shutdown-site")
    (root / "index.html").write_bytes(b"<h1>index</h1>\n")
    digest = hashlib.sha256()
    with open(root / "big.bin", "wb") as file:
        for block in range(BIG_MIB):
            data = random.Random(block).randbytes(MIB)
            digest.update(data)
            file.write(data)
    return str(root), digest.hexdigest()


def start_download(server, path="/big.bin", started=MIB):
    """Ask for the big file and read its head and the first ``started`` bytes;
    then stop reading, so the server's sends block far from the end."""
    sock = server.connect(timeout=30)
    sock.sendall(get(path))
    status, headers, first = read_head(sock)
    assert (status, int(headers["content-length"])) == (200, BIG_MIB * MIB)
    assert headers.get("connection") != "close"  # it began before the signal: keep-alive
    digest = hashlib.sha256(first)
    received = len(first)
    while received < started:
        chunk = sock.recv(65536)
        assert chunk, "closed before the download was under way"
        digest.update(chunk)
        received += len(chunk)
    return sock, digest, received


def finish_download(sock, digest, received):
    """Read the rest, to the end of the stream; return (bytes received, sha256)."""
    while True:
        try:
            chunk = sock.recv(4 * MIB)
        except ConnectionResetError:
            break
        if not chunk:
            break
        digest.update(chunk)
        received += len(chunk)
    sock.close()
    return received, digest.hexdigest()


def idle_keep_alive_client(server):
    client = RawClient(server.connect())
    status, headers, body = client.request(get("/index.html"))
    assert (status, body) == (200, b"<h1>index</h1>\n")
    return client


def request_while_the_disk_works(start_server, big_site, disk_delay):
    """A server whose file jobs each sleep ``disk_delay`` seconds (a slow disk,
    simulated, and no cache), and a client whose request is waiting on one:
    returns (server, client) once the job has started."""
    server = start_server("--cache-bytes", "0", "--disk-delay", disk_delay, "--trace=executor",
                          root=big_site[0])
    client = RawClient(server.connect(timeout=30), timeout=30)
    client.send(get("/index.html"))
    wait_until(lambda: any("running resolve" in line for line in server.stderr_lines), 10,
               "the file job never started")
    return server, client


@pytest.mark.parametrize("flags", [(), ("--no-sendfile",)], ids=["sendfile", "no-sendfile"])
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_download_started_before_the_signal_completes(start_server, big_site, flags, signal_number):
    """The signal arrives 1 MiB into a 200 MiB download. The listener closes at
    once and an idle keep-alive client is let go; the download goes on to its
    last byte, with the right sha256; then the server exits 0."""
    root, expected_sha256 = big_site
    server = start_server(*flags, root=root)
    idle = idle_keep_alive_client(server)
    sock, digest, received = start_download(server)

    server.process.send_signal(signal_number)
    wait_until(lambda: refuses_connections(server), 10, "new connections were still accepted")
    assert idle.is_closed_by_peer(), "the idle keep-alive connection was not closed"
    assert server.process.poll() is None, "the server exited with a download in progress"

    received, sha256 = finish_download(sock, digest, received)
    assert received == BIG_MIB * MIB
    assert sha256 == expected_sha256
    assert wait_for_exit(server) == 0
    assert server.stdout_lines[-1] == "Stopped.\n"
    stderr = "".join(server.stderr_lines)
    assert "stopping: waiting for 1 connection to finish" in stderr, stderr
    # The access log has the whole download.
    assert any(f'"GET /big.bin HTTP/1.1" 200 {BIG_MIB * MIB}' in line for line in server.stdout_lines)


def test_a_request_in_hand_is_answered_with_connection_close(start_server, big_site):
    """A request the server has read, whose file work is under way when the
    signal comes (a slow disk, simulated), still gets its whole answer, which
    says Connection: close; then the connection ends."""
    server, client = request_while_the_disk_works(start_server, big_site, disk_delay="1")
    server.process.send_signal(signal.SIGTERM)
    status, headers, body = client.read_response()
    assert (status, body) == (200, b"<h1>index</h1>\n")
    assert headers["connection"] == "close"
    assert client.is_closed_by_peer()
    assert wait_for_exit(server) == 0


def test_the_shutdown_timeout_closes_what_is_left(start_server, big_site):
    """A client that stops reading cannot hold the server: after
    --shutdown-timeout its connection is closed and the server exits 0."""
    root, _ = big_site
    server = start_server("--shutdown-timeout", "1", root=root)
    sock, digest, received = start_download(server)
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server) == 0
    received, _ = finish_download(sock, digest, received)
    assert MIB <= received < BIG_MIB * MIB
    assert "shutdown timeout: closing 1 connection(s) still open" in "".join(server.stderr_lines)


def test_a_second_signal_stops_at_once(start_server, big_site):
    """Graceful stop under way, a download stalled: a second SIGTERM ends it
    now, long before the 30 s shutdown timeout."""
    root, _ = big_site
    server = start_server(root=root)
    sock, digest, received = start_download(server)
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(server), 10, "the first signal was not acted on")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=20) == 0
    assert time.monotonic() - started < 20
    received, _ = finish_download(sock, digest, received)
    assert received < BIG_MIB * MIB
    assert "second signal: stopping now" in "".join(server.stderr_lines)


def test_no_connections_means_an_immediate_stop(start_server, big_site):
    root, _ = big_site
    server = start_server(root=root)
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=20) == 0
    assert "stopping: waiting" not in "".join(server.stderr_lines)


@pytest.mark.parametrize("flags", [(), ("--no-reuseport",)], ids=["reuseport", "shared-socket"])
def test_workers_drain_too(start_server, big_site, flags):
    """With --workers 2 the parent passes SIGTERM on; the worker with the
    download finishes it byte-exact, every worker exits, then the parent, 0."""
    root, expected_sha256 = big_site
    server = start_server("--workers", "2", *flags, root=root)
    wait_until(lambda: len(psutil.Process(server.pid).children()) == 2, 20, "two workers")
    sock, digest, received = start_download(server)
    workers = psutil.Process(server.pid).children()

    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(server), 10, "new connections were still accepted")
    received, sha256 = finish_download(sock, digest, received)
    assert (received, sha256) == (BIG_MIB * MIB, expected_sha256)
    assert wait_for_exit(server) == 0
    for worker in workers:
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert server.stdout_lines[-1] == "Stopped.\n"


def test_a_second_signal_does_not_wait_for_a_hung_disk(start_server, big_site):
    """A request waits on a file job that will not end for 60 s (a hung disk,
    simulated). The first signal waits for it; the second closes the
    connection, and the server exits 0 without waiting for the job: it gives
    running jobs a moment, then leaves their thread behind."""
    server, client = request_while_the_disk_works(start_server, big_site, disk_delay="60")
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(server), 10, "the first signal was not acted on")
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=30) == 0
    assert client.is_closed_by_peer()
    stderr = "".join(server.stderr_lines)
    assert "a file operation is still running (a hung disk?): exiting without it" in stderr
