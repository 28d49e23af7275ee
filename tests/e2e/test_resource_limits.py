"""Resource limits under hostile client populations, watched from outside with psutil.

Each test starts its own server with the flags it is about, then looks at the
server process itself (its open descriptors, its TCP connections, its threads,
its CPU time) to prove that limits hold and that nothing leaks: connections
beyond --max-connections wait in the kernel's backlog, a client that stops
reading is dropped after --send-timeout, running out of descriptors pauses
accepting without spinning, thousands of resets and half-closes leave no
descriptor behind, and a crowd of slowloris clients gets 408 while a normal
client is still served.

Nothing depends on timing to pass: every wait is for a condition with a
generous deadline. The only time-based assertions are "no response while the
limit holds" (a correct server never answers then, however fast it is) and
CPU time used over a window, where a spinning loop would use the whole window.
"""

import re
import resource
import select
import shutil
import socket
import struct
import threading
import time

import psutil
import pytest
from harness.sampling import socket_descriptor_count
from support.checks import check_still_serving
from support.clients import RawClient, get, read_head
from support.environment import DEMO_ROOT, demo_bytes, make_sparse_file, wait_until

INDEX = demo_bytes("index.html")
STYLE = demo_bytes("style.css")


# -- helpers ---------------------------------------------------------------------------------


def build_root(tmp_path, big_bytes):
    """The demo site plus a sparse file /big.bin of ``big_bytes`` zero bytes."""
    root = tmp_path / "root"
    shutil.copytree(DEMO_ROOT, root)
    make_sparse_file(root / "big.bin", big_bytes)
    return str(root)


def open_connections(process):
    """The server's TCP sockets other than its listeners (any state)."""
    list_connections = getattr(process, "net_connections", None) or process.connections
    return [connection for connection in list_connections(kind="inet")
            if connection.status != psutil.CONN_LISTEN]


def connected_ports(process):
    """The client-side ports of the connections the server has accepted."""
    return {connection.raddr.port for connection in open_connections(process) if connection.raddr}


def reset(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_closed(sock, limit, timeout=10):
    """Read and count bytes until EOF or reset (at most ``limit``). Returns the count."""
    sock.settimeout(timeout)
    received = 0
    try:
        while received < limit:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += len(data)
    except ConnectionResetError:
        pass
    return received


def hold_open_in_cache(server, path="/big.bin"):
    """Ask for a large file once (HEAD), so the server's file cache holds it
    open from now on (like nginx's open_file_cache): that descriptor belongs
    in the baseline, it is not a leak."""
    client = RawClient(server.connect())
    try:
        assert client.request(get(path).replace(b"GET ", b"HEAD ", 1), head_request=True)[0] == 200
    finally:
        client.close()


def settle(process, baseline_fds=None, timeout=30):
    """Wait until the server holds no socket but its one listener (and, when
    given, exactly ``baseline_fds`` descriptors in all); return its descriptor count."""
    def settled():
        if socket_descriptor_count(process.pid) != 1:
            return False
        return baseline_fds is None or process.num_fds() == baseline_fds
    wait_until(settled, timeout,
               lambda: f"{socket_descriptor_count(process.pid)} sockets and {process.num_fds()} descriptors open "
                       f"(expected 1 and {baseline_fds}); connections: {open_connections(process)}")
    return process.num_fds()


# -- --max-connections ------------------------------------------------------------------------


def test_max_connections_leaves_the_next_client_in_the_backlog(start_server, client_for):
    """With --max-connections 3 and three connections held open, a fourth
    connects (the kernel completes the handshake) but is not accepted or answered
    until one of the three closes; then it is served, and so are the other two."""
    server = start_server("--max-connections", "3", "--keepalive-timeout", "60", "--header-timeout", "60")
    process = psutil.Process(server.pid)
    held = [client_for(server) for _ in range(3)]
    for client in held:
        status, _, body = client.request(get("/"))
        assert (status, body) == (200, INDEX)
    waiting = client_for(server)
    waiting.send(get("/style.css"))
    # The server owns exactly three connections: the fourth is the kernel's.
    wait_until(lambda: len(open_connections(process)) == 3, 10,
               lambda: f"server connections: {open_connections(process)}")
    assert waiting.sock.getsockname()[1] not in connected_ports(process)
    # A correct server never answers it while the three are open, however fast it is.
    readable, _, _ = select.select([waiting.sock], [], [], 0.5)
    assert not readable, "the fourth connection was answered beyond --max-connections"
    held[0].close()
    status, _, body = waiting.read_response()
    assert (status, body) == (200, STYLE)
    for client in held[1:]:
        status, _, body = client.request(get("/"))
        assert (status, body) == (200, INDEX)
    assert server.process.poll() is None


# -- --max-requests -----------------------------------------------------------------------------


def test_max_requests_closes_after_the_nth_response(start_server, client_for):
    """--max-requests 3: the third response says Connection: close and the server
    closes; the first two keep the connection (as nginx's keepalive_requests)."""
    server = start_server("--max-requests", "3")
    client = client_for(server)
    for number in (1, 2):
        status, headers, body = client.request(get("/"))
        assert (number, status, body) == (number, 200, INDEX)
        assert "connection" not in headers
    status, headers, body = client.request(get("/style.css"))
    assert (status, body) == (200, STYLE)
    assert headers["connection"] == "close"
    assert client.is_closed_by_peer()
    check_still_serving(server)


def test_max_requests_with_pipelining_answers_only_n(start_server, client_for):
    """Five pipelined requests under --max-requests 3: exactly three responses,
    the last with Connection: close, then the end of the connection."""
    server = start_server("--max-requests", "3")
    client = client_for(server)
    client.send(get("/") * 5)
    for number in (1, 2, 3):
        status, headers, body = client.read_response()
        assert (number, status, body) == (number, 200, INDEX)
    assert headers["connection"] == "close"
    assert client.buffer == b""
    assert client.is_closed_by_peer()


# -- --keepalive-timeout ----------------------------------------------------------------------


def test_keepalive_timeout_releases_idle_connections(start_server):
    """Twenty clients each make one request and then sit idle: after
    --keepalive-timeout the server closes every one quietly (EOF, no bytes) and
    holds exactly the descriptors it started with."""
    server = start_server("--keepalive-timeout", "0.5", "--header-timeout", "60")
    process = psutil.Process(server.pid)
    check_still_serving(server)
    baseline_fds = settle(process)
    clients = [RawClient(server.connect()) for _ in range(20)]
    try:
        for client in clients:
            status, _, body = client.request(get("/"))
            assert (status, body) == (200, INDEX)
        for client in clients:
            assert client.is_closed_by_peer(timeout=15)
        settle(process, baseline_fds)
    finally:
        for client in clients:
            client.close()
    check_still_serving(server)


# -- --send-timeout -----------------------------------------------------------------------------

STALLED_FILE_BYTES = 64 * 1024 * 1024


@pytest.mark.parametrize("send_path", ["sendfile", "portable"])
def test_send_timeout_drops_a_client_that_stops_reading(start_server, tmp_path, send_path):
    """A client with a tiny receive buffer asks for 64 MiB and never reads: once
    nothing moves for --send-timeout, the server closes the connection and frees
    its descriptors (socket and file), logs the partial response, and goes on
    serving others meanwhile. Both send paths (sendfile and executor chunks)."""
    flags = ["--send-timeout", "1"] + (["--no-sendfile"] if send_path == "portable" else [])
    server = start_server(*flags, root=build_root(tmp_path, STALLED_FILE_BYTES))
    process = psutil.Process(server.pid)
    check_still_serving(server)
    hold_open_in_cache(server)
    baseline_fds = settle(process)

    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
    try:
        stalled.connect((server.host, server.port))
        stalled.sendall(get("/big.bin"))
        wait_until(lambda: process.num_fds() > baseline_fds, 10, "the server never opened the stalled request")
        # While that client stalls, others are served.
        check_still_serving(server)
        settle(process, baseline_fds)
        # The access log records the interrupted response with the bytes that went out.
        line = server.wait_for_log(lambda text: '"GET /big.bin HTTP/1.1" 200 ' in text, timeout=30)
        sent = int(re.search(r'"GET /big\.bin HTTP/1\.1" 200 (\d+)', line).group(1))
        assert 0 < sent < STALLED_FILE_BYTES, line
        # The client sees what was in flight, then the end: never the whole file.
        assert read_until_closed(stalled, STALLED_FILE_BYTES + 1024) < STALLED_FILE_BYTES
    finally:
        stalled.close()
    check_still_serving(server)


# -- running out of descriptors (EMFILE) -----------------------------------------------------

DESCRIPTOR_LIMIT = 64
PAUSE_REPORT = re.compile(r"paus(e|ed|ing) accept", re.IGNORECASE)


def limit_descriptors():
    # Both soft and hard: the server raises its soft limit up to the hard one at start.
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system


def test_out_of_descriptors_pauses_accepting_without_spinning(start_server):
    """Under a 64-descriptor limit, more clients than fit connect: the server
    accepts what it can, then pauses accepting instead of spinning on a listening
    socket that stays readable (almost no CPU while the rest wait), keeps serving
    the connections it has, and recovers once clients go away."""
    server = start_server("--quiet", "--keepalive-timeout", "60", "--header-timeout", "60",
                          preexec_fn=limit_descriptors)
    process = psutil.Process(server.pid)
    assert process.rlimit(psutil.RLIMIT_NOFILE) == (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT)
    clients = []
    try:
        for _ in range(DESCRIPTOR_LIMIT + 40):
            clients.append(socket.create_connection((server.host, server.port), timeout=10))
        # The server says it has paused accepting (its own words may vary).
        wait_until(lambda: PAUSE_REPORT.search("".join(server.stderr_lines)), 15,
                   lambda: f"no pause reported; stderr: {''.join(server.stderr_lines)[-2000:]}")

        # A spinning loop would use the whole window; a paused one almost nothing.
        before = cpu_seconds(process)
        time.sleep(2)
        used = cpu_seconds(process) - before
        assert used < 0.5, f"the server used {used:.2f} s of CPU in 2 s while out of descriptors"
        assert server.process.poll() is None

        # The connections it accepted are still served, files and all.
        ports = connected_ports(process)
        accepted = [sock for sock in clients if sock.getsockname()[1] in ports]
        assert 0 < len(accepted) < len(clients)
        for sock, path, expected_body in ((accepted[0], "/style.css", STYLE), (accepted[-1], "/", INDEX)):
            client = RawClient(sock)
            status, _, body = client.request(get(path))
            assert (path, status, body) == (path, 200, expected_body)
    finally:
        for sock in clients:
            sock.close()
    # Recovery: with the clients gone, new connections are accepted and served.
    check_still_serving(server, timeout=20)
    stderr = "".join(server.stderr_lines)
    assert "Traceback" not in stderr, stderr


# -- resets and half-closes by the thousand --------------------------------------------------

CHURN_FILE_BYTES = 16 * 1024 * 1024
CHURN_CLIENTS = 2000
CHURN_THREADS = 8
BLOCKING_THREADS = 4


def reset_mid_response(server):
    """Ask for the big file, read the head and a little body, then reset."""
    sock = server.connect()
    sock.sendall(get("/big.bin"))
    status, _, _ = read_head(sock)
    assert status == 200
    sock.recv(65536)
    reset(sock)


def reset_right_after_request(server):
    """Ask for the big file and reset at once, reading nothing."""
    sock = server.connect()
    sock.sendall(get("/big.bin"))
    reset(sock)


def reset_mid_head(server):
    """Send part of a head, then reset."""
    sock = server.connect()
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHo")
    reset(sock)


def half_close_mid_head(server):
    """Send part of a head and half-close: the server closes without answering."""
    sock = server.connect()
    try:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHo")
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock, 1) == 0
    finally:
        sock.close()


def half_close_after_request(server):
    """Send a whole request and half-close: the response still comes, then the end."""
    sock = server.connect()
    try:
        sock.sendall(get("/style.css"))
        sock.shutdown(socket.SHUT_WR)
        client = RawClient(sock)
        status, _, body = client.read_response()
        assert (status, body) == (200, STYLE)
        assert client.buffer == b""
        assert client.is_closed_by_peer()
    finally:
        sock.close()


def half_close_mid_response(server):
    """Read some of the big file, half-close, then close with the rest unread."""
    sock = server.connect()
    sock.sendall(get("/big.bin"))
    assert read_head(sock)[0] == 200
    sock.shutdown(socket.SHUT_WR)
    sock.close()


CHURN_BEHAVIOURS = [reset_mid_response, reset_right_after_request, reset_mid_head, half_close_mid_head,
                    half_close_after_request, half_close_mid_response]


def test_resets_and_half_closes_leak_nothing(start_server, selector, tmp_path):
    """2000 clients that reset or half-close at every stage of a request (mid-head,
    right after it, mid-response) leave the server with exactly the descriptors
    and no more threads than it started with (loop plus executor), and serving."""
    server = start_server("--selector", selector, "--quiet", "--blocking-threads", str(BLOCKING_THREADS),
                          root=build_root(tmp_path, CHURN_FILE_BYTES))
    process = psutil.Process(server.pid)
    check_still_serving(server)
    hold_open_in_cache(server)
    baseline_fds = settle(process)
    failures = []

    def run_clients(first):
        try:
            for number in range(first, CHURN_CLIENTS, CHURN_THREADS):
                CHURN_BEHAVIOURS[number % len(CHURN_BEHAVIOURS)](server)
        except Exception as error:  # reported below, with the client that failed
            failures.append(f"client {number}: {error!r}")

    threads = [threading.Thread(target=run_clients, args=(first,)) for first in range(CHURN_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert server.process.poll() is None
    settle(process, baseline_fds)
    # One loop thread and the executor's pool: no thread per connection, none leaked.
    assert process.num_threads() <= 1 + BLOCKING_THREADS
    check_still_serving(server)


# -- slowloris ----------------------------------------------------------------------------------

SLOW_CLIENTS = 200


def test_slowloris_crowd_gets_408_while_others_are_served(start_server, selector):
    """200 clients each sending one byte of a head every 0.2 s, with
    --header-timeout 1: the timeout runs from the first byte, so every one gets
    408 (or is closed) however it trickles, and a normal client is served while
    the crowd is connected."""
    server = start_server("--selector", selector, "--quiet", "--header-timeout", "1")
    trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000  # never ends within the test
    sockets = []
    received = {}  # socket -> bytes read so far
    try:
        for _ in range(SLOW_CLIENTS):
            sock = server.connect()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            sockets.append(sock)
            received[sock] = b""
        pending = set(sockets)  # not yet closed by the server
        sent = 0
        served_during_attack = False
        deadline = time.monotonic() + 30
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} slow clients were never answered"
            for sock in list(pending):
                try:
                    sock.send(trickle[sent:sent + 1])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass  # answered or closed already: the reads below tell
            sent += 1
            if sent == 2:
                # The crowd is connected and trickling: a normal client is still served.
                check_still_serving(server)
                served_during_attack = True
            ready_until = time.monotonic() + 0.2
            while pending and time.monotonic() < ready_until:
                readable, _, _ = select.select(list(pending), [], [], max(ready_until - time.monotonic(), 0))
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if data:
                        received[sock] += data
                    else:
                        pending.discard(sock)
        assert served_during_attack
        answers = [received[sock] for sock in sockets]
        for answer in answers:
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
            if answer:
                assert b"\r\nConnection: close\r\n" in answer.partition(b"\r\n\r\n")[0] + b"\r\n"
        assert any(answers), "no slow client got a 408"
    finally:
        for sock in sockets:
            sock.close()
    check_still_serving(server)
