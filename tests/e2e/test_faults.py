"""Faults under a running server: files that change under it, a slow disk, a jumping clock.

Each test starts the real server, makes something go wrong while it works,
and checks what clients get: never bytes that disagree with the head they came
with (Content-Length, Content-Range, ETag), and a server that goes on serving.
Each docstring says "Fault: ... Server: ..."; `scripts/faults.py` builds
the table in docs/reliability.md from them.

Two kinds of fault are injected from outside the package, by a sitecustomize
module the test writes and the server's interpreter runs at start-up (see
support.servers.sitecustomize_env): a disk that does not answer for some paths (a
wrapper around ``files.resolve`` that waits for a gate file the test creates),
and a wall clock that jumps (``time.time`` offset by a day on a signal). Both
are fault injection: the package itself is run unchanged.

Faults covered elsewhere, not repeated here (tests/e2e/test_resource_limits.py):
thousands of clients that reset mid-response (test_resets_and_half_closes_leak_nothing),
the descriptor limit exhausted and recovered
(test_out_of_descriptors_pauses_accepting_without_spinning), and a client that
stops reading (test_send_timeout_drops_a_client_that_stops_reading).

Nothing depends on timing to pass: waits are for conditions, with generous
deadlines. The one "nothing arrives" check (a request queued behind a blocked
executor) cannot be answered by a correct server before the test opens the gate.
"""

import email.utils
import os
import random
import re
import select
import signal
import socket
import time

import psutil
import pytest
from support.checks import IMF_FIXDATE
from support.clients import RawClient, get, read_head, request_once
from support.environment import BECOME_NOBODY_CODE, NOBODY_UID, REPO, import_script, wait_until, world_traversable
from support.servers import sitecustomize_env

BIG_BYTES = 24 * 1024 * 1024
# Where the truncation test cuts the file: a multiple of the page size and of
# the portable path's 256 KiB chunk, and far beyond what can be in flight when
# it happens (64 KiB read + the client's tiny window + at most 4 MiB of server
# send buffer), so the server's offset is always below it.
TRUNCATED_BYTES = 12 * 1024 * 1024
FIRST_READ_BYTES = 64 * 1024
SEND_PATHS = {"sendfile": [], "portable": ["--no-sendfile"]}


@pytest.fixture(scope="module")
def big_content():
    """24 MiB of random bytes (seeded): a byte from the wrong place never looks right."""
    return random.Random(24).randbytes(BIG_BYTES)


def write(path, data):
    with open(path, "wb") as file:
        file.write(data)


def stat_etag(path):
    """The ETag the server makes for a file: nginx's "mtime-size" in hex."""
    info = os.stat(path)
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


def request(server, path, extra=""):
    """One request on a fresh connection: (status, headers, body)."""
    return request_once(server, get(path, extra=extra))


def start_slow_download(server, path):
    """Ask for ``path`` (then close) with a tiny receive window and read the head
    and the first 64 KiB: the response is in flight and the server holds the file open.
    Returns (socket, headers, the body bytes read so far)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
    sock.settimeout(30)
    sock.connect((server.host, server.port))
    sock.sendall(get(path, extra="Connection: close\r\n"))  # so the end of the body is EOF
    status, headers, body = read_head(sock)
    assert status == 200, headers
    body = bytearray(body)
    while len(body) < FIRST_READ_BYTES:
        data = sock.recv(FIRST_READ_BYTES - len(body))
        assert data, "closed before the first 64 KiB"
        body += data
    return sock, headers, body


def finish_download(sock, body, limit):
    """Read the rest until the server closes (or ``limit`` bytes): the window
    may open wide now, the fault has happened."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    try:
        while len(body) < limit:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            body += data
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return bytes(body)


def logged_body_bytes(server, path):
    """The body bytes the access log says were sent for GET ``path`` (200)."""
    pattern = re.compile(rf'"GET {re.escape(path)} HTTP/1\.1" 200 (\d+)')
    line = server.wait_for_log(lambda text: pattern.search(text) is not None, timeout=10)
    return int(pattern.search(line).group(1))


def assert_still_serving(server, path, expected_body):
    status, _, body = request(server, path)
    assert (status, body) == (200, expected_body)
    assert server.process.poll() is None


# -- a large file changes while it is being sent -------------------------------------------------


def fetch_until_closed(server, path):
    """GET ``path`` with Connection: close and read until the server closes:
    (status, headers, body), where the body may be shorter than Content-Length
    if the server had to cut it short."""
    sock = server.connect(timeout=30)
    try:
        sock.sendall(get(path, extra="Connection: close\r\n"))
        status, headers, body = read_head(sock)
        return status, headers, finish_download(sock, bytearray(body), 1 << 40)
    finally:
        sock.close()


def poll_large(server, path, classify, final, timeout=30):
    """Fetch ``path`` until ``classify(status, headers, body)`` names the
    ``final`` state; every answer must be classified (an unexpected answer
    fails inside classify). Returns the states seen, in order."""
    deadline = time.monotonic() + timeout
    seen = []
    while not seen or seen[-1] != final:
        assert time.monotonic() < deadline, f"{path} never reached {final}: {seen}"
        seen.append(classify(*fetch_until_closed(server, path)))
        time.sleep(0.05)
    first_final = seen.index(final)
    assert set(seen[first_final:]) == {final}, seen
    return seen


# The cache keeps a large file open, as nginx's open_file_cache does, and sends
# each response from a duplicate of that descriptor: within --cache-valid of
# the last look at the disk, new requests still get the file that was opened.
# A server that opened the path afresh for each response would answer with
# the new state at once; either way no body may disagree with its head.
CACHE_VALID = "0.5"


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_large_file_deleted_while_being_sent(start_server, tmp_path, big_content, send_path):
    """Fault: a 24 MiB file is deleted while a slow client downloads it.
    Server: sends the whole original file (its open descriptor keeps the inode)
    and logs a complete 200; new requests get the whole original too until
    --cache-valid passes, then 404."""
    write(tmp_path / "big.bin", big_content)
    write(tmp_path / "small.txt", b"still here\n")
    server = start_server("--cache-valid", CACHE_VALID, *SEND_PATHS[send_path], root=str(tmp_path))
    sock, headers, body = start_slow_download(server, "/big.bin")
    assert headers["content-length"] == str(BIG_BYTES)
    os.unlink(tmp_path / "big.bin")
    received = finish_download(sock, body, BIG_BYTES + 1)
    assert len(received) == BIG_BYTES
    assert received == big_content
    assert logged_body_bytes(server, "/big.bin") == BIG_BYTES

    def classify(status, headers, body):
        if status == 200:
            assert (headers["content-length"], body) == (str(BIG_BYTES), big_content)
            return "original"
        assert (status, body) == (404, b"404 Not Found\n")
        return "gone"
    poll_large(server, "/big.bin", classify, "gone")
    assert_still_serving(server, "/small.txt", b"still here\n")


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_large_file_replaced_by_rename_while_being_sent(start_server, tmp_path, big_content, send_path):
    """Fault: a new version is renamed over a 24 MiB file while a slow client
    downloads it (how a deploy publishes atomically).
    Server: the download in flight gets the whole old file; new requests get
    the whole old file with its old ETag until --cache-valid passes, then the
    new one with its own Content-Length and ETag, and never the old again."""
    write(tmp_path / "big.bin", big_content)
    server = start_server("--cache-valid", CACHE_VALID, *SEND_PATHS[send_path], root=str(tmp_path))
    sock, headers, body = start_slow_download(server, "/big.bin")
    old_etag = headers["etag"]
    new_content = big_content[::-1][:BIG_BYTES - 12345]  # different bytes, a different size
    write(tmp_path / "big.bin.new", new_content)
    new_etag = stat_etag(tmp_path / "big.bin.new")
    assert new_etag != old_etag
    os.rename(tmp_path / "big.bin.new", tmp_path / "big.bin")
    received = finish_download(sock, body, BIG_BYTES + 1)
    assert len(received) == BIG_BYTES
    assert received == big_content

    def classify(status, headers, body):
        assert status == 200
        if headers["etag"] == old_etag:
            assert (headers["content-length"], body) == (str(BIG_BYTES), big_content)
            return "old"
        assert headers["etag"] == new_etag
        assert (headers["content-length"], body) == (str(len(new_content)), new_content)
        return "new"
    poll_large(server, "/big.bin", classify, "new")
    assert server.process.poll() is None


@pytest.mark.parametrize("send_path", SEND_PATHS)
def test_large_file_truncated_while_being_sent(start_server, tmp_path, big_content, send_path):
    """Fault: a 24 MiB file is truncated to 12 MiB while a slow client downloads it.
    Server: sends the original bytes up to the new end, then closes the
    connection short of Content-Length (never pads, never sends other bytes),
    logs "file shrank" and the bytes sent; until --cache-valid passes new
    responses end short the same way, then the file is served whole at its new size."""
    write(tmp_path / "big.bin", big_content)
    server = start_server("--cache-valid", CACHE_VALID, *SEND_PATHS[send_path], root=str(tmp_path))
    sock, headers, body = start_slow_download(server, "/big.bin")
    assert headers["content-length"] == str(BIG_BYTES)
    os.truncate(tmp_path / "big.bin", TRUNCATED_BYTES)
    received = finish_download(sock, body, BIG_BYTES + 1)
    # The client can tell: the connection ended before Content-Length bytes
    # (RFC 9112 §8: an incomplete message). What did arrive is the file's.
    assert len(received) == TRUNCATED_BYTES
    assert received == big_content[:TRUNCATED_BYTES]
    wait_until(lambda: "file shrank while being sent" in "".join(server.stderr_lines), 10,
               lambda: f"no 'file shrank' in stderr: {''.join(server.stderr_lines)[-1000:]}")
    # The access log records the interrupted response with the bytes that went
    # out, on both send paths, as it does for a client that stops reading.
    assert logged_body_bytes(server, "/big.bin") == TRUNCATED_BYTES

    def classify(status, headers, body):
        assert status == 200
        assert body == big_content[:TRUNCATED_BYTES]
        if headers["content-length"] == str(BIG_BYTES):
            return "cut short"  # the old length from the cache: the bytes there are, then close
        assert headers["content-length"] == str(TRUNCATED_BYTES)
        return "whole"
    poll_large(server, "/big.bin", classify, "whole")


# -- a small cached file changes in place ---------------------------------------------------------


def rewrite_in_place(path, data, mtime):
    """Overwrite a file's bytes through the same inode (no rename), then date it."""
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate(len(data))
    os.utime(path, (mtime, mtime))


def poll_versions(server, path, versions, until_version, timeout=20):
    """Fetch ``path`` (whole and a range, alternately, on one connection) until
    ``until_version`` has been seen three times. Every response must be one
    whole version (body, Content-Length and ETag of the same version) or its
    exact slice; returns the list of version names seen, in order."""
    seen = []
    client = RawClient(server.connect())
    deadline = time.monotonic() + timeout
    try:
        while seen.count(until_version) < 3:
            assert time.monotonic() < deadline, f"{until_version} never served; saw {seen}"
            ranged = len(seen) % 2 == 1
            status, headers, body = client.request(get(path, extra="Range: bytes=10-99\r\n" if ranged else ""))
            matches = [name for name, (data, etag) in versions.items() if headers.get("etag") == etag]
            assert len(matches) == 1, f"ETag {headers.get('etag')} is no version's: {versions}"
            data, _ = versions[matches[0]]
            if ranged:
                assert status == 206 and headers["content-range"] == f"bytes 10-99/{len(data)}"
                assert body == data[10:100]
            else:
                assert status == 200 and body == data
            assert int(headers["content-length"]) == len(body)
            seen.append(matches[0])
            time.sleep(0.02)
    finally:
        client.close()
    return seen


def test_small_cached_file_rewritten_in_place(start_server, tmp_path):
    """Fault: a 3000-byte cached file is rewritten in place (same inode, new
    bytes, new size and date) while a client keeps asking for it.
    Server: answers the old version whole and self-consistent until
    --cache-valid has passed, then the new one; every body, whole or ranged,
    matches its own Content-Length and ETag, and the old version never comes
    back once the new one is served."""
    path = tmp_path / "page.txt"
    old = random.Random(1).randbytes(3000)
    new = random.Random(2).randbytes(5000)
    write(path, old)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    versions = {"old": (old, stat_etag(path))}

    # With a long --cache-valid the old version is still what is served after
    # the change: the cache is really in the path, and what it serves is whole.
    patient = start_server("--cache-valid", "3600", root=str(tmp_path))
    assert poll_versions(patient, "/page.txt", versions, "old") == ["old"] * 3
    rewrite_in_place(path, new, 1_700_000_100)
    versions["new"] = (new, stat_etag(path))
    assert poll_versions(patient, "/page.txt", versions, "old") == ["old"] * 3

    # With a short one the new version replaces it, and for good.
    rewrite_in_place(path, old, 1_700_000_000)
    eager = start_server("--cache-valid", "0.3", root=str(tmp_path))
    assert poll_versions(eager, "/page.txt", versions, "old") == ["old"] * 3
    rewrite_in_place(path, new, 1_700_000_100)
    seen = poll_versions(eager, "/page.txt", versions, "new")
    first_new = seen.index("new")
    assert set(seen[first_new:]) == {"new"}, seen
    assert set(seen[:first_new]) <= {"old"}, seen


def test_same_size_rewrite_within_a_second_changes_the_etag(start_server, tmp_path):
    """Fault: a small file is rewritten in place with other bytes of the same
    size, within the same second of modification time.
    Server: gives the new bytes a new ETag (a strong validator changes
    whenever the representation data does, RFC 9110 §8.8.1): the ETag carries
    the modification time in nanoseconds, so If-None-Match and If-Range never
    match bytes the client has not seen."""
    path = tmp_path / "page.txt"
    old = random.Random(3).randbytes(3000)
    new = random.Random(4).randbytes(3000)
    write(path, old)
    os.utime(path, ns=(1_700_000_000_100_000_000, 1_700_000_000_100_000_000))
    server = start_server("--cache-valid", "0.3", root=str(tmp_path))
    status, headers, body = request(server, "/page.txt")
    assert (status, body) == (200, old)
    old_etag = headers["etag"]
    rewrite_in_place(path, new, 0)
    os.utime(path, ns=(1_700_000_000_600_000_000, 1_700_000_000_600_000_000))

    def new_version_served():
        response = request(server, "/page.txt")
        return response if response[2] == new else None
    status, headers, body = wait_until(new_version_served, 20, "the new bytes were never served")
    assert headers["etag"] != old_etag, "new bytes under the old ETag"


# -- permission denied after caching ----------------------------------------------------------------


def nobody_server(start_server, base, root, *flags):
    """The server running as user nobody (root reads every file, whatever its
    mode), from files owned by root; skipped where that cannot be arranged."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to serve as nobody files whose mode then forbids reading")
    if not world_traversable(os.path.join(REPO, "reactor_http")):
        pytest.skip(f"user nobody cannot reach the package in {REPO}")
    env = sitecustomize_env(os.path.join(base, "become-nobody"), BECOME_NOBODY_CODE)
    server = start_server(*flags, root=root, env=env)
    assert psutil.Process(server.pid).uids().effective == NOBODY_UID
    return server


def poll_until(server, path, wanted_status, allowed, timeout=20):
    """Fetch ``path`` until it answers ``wanted_status``; every answer on the way
    must be one of ``allowed`` (status -> exact body, or None for any error text)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        status, headers, body = request(server, path)
        assert status in allowed, (path, status, body[:100], seen)
        expected = allowed[status]
        if expected is None:
            assert body.startswith(f"{status} ".encode()), body[:100]
        else:
            assert body == expected, (path, status)
        seen.append(status)
        if status == wanted_status:
            return seen
        assert time.monotonic() < deadline, f"{path} never answered {wanted_status}: {seen}"
        time.sleep(0.05)


def test_permission_denied_after_caching(start_server, world_readable_tmp):
    """Fault: a small and a large file are made unreadable (mode 000) while the
    server, running as nobody, has them cached (the small one's bytes, the
    large one's open descriptor); then readable again.
    Server: serves each whole from its cache entry until --cache-valid passes,
    then answers 403, and never the file again until chmod 644, after which
    both are served again."""
    root = os.path.join(world_readable_tmp, "root")
    os.mkdir(root)
    os.chmod(root, 0o755)
    small = random.Random(5).randbytes(2000)
    big = random.Random(6).randbytes(1024 * 1024)
    for name, data in (("small.bin", small), ("big.bin", big)):
        write(os.path.join(root, name), data)
        os.chmod(os.path.join(root, name), 0o644)
    server = nobody_server(start_server, world_readable_tmp, root, "--cache-valid", "0.5")
    assert request(server, "/small.bin")[::2] == (200, small)
    assert request(server, "/big.bin")[::2] == (200, big)

    for name in ("small.bin", "big.bin"):
        os.chmod(os.path.join(root, name), 0o000)
    denied = b"403 Forbidden: permission denied\n"
    for path, data in (("/small.bin", small), ("/big.bin", big)):
        seen = poll_until(server, path, 403, {200: data, 403: denied})
        assert 200 not in seen[seen.index(403):]
    for path in ("/small.bin", "/big.bin"):  # and it stays refused
        assert request(server, path)[::2] == (403, denied)

    for name in ("small.bin", "big.bin"):
        os.chmod(os.path.join(root, name), 0o644)
    poll_until(server, "/big.bin", 200, {200: big, 403: None})
    poll_until(server, "/small.bin", 200, {200: small, 403: None})
    assert server.process.poll() is None


# -- a directory becomes a file, a file a directory -------------------------------------------------


def test_directory_and_file_swapped_at_the_same_path(start_server, tmp_path):
    """Fault: a directory is replaced by a file of the same name, and a small
    and a large file are replaced by directories, while their answers are cached.
    Server: answers what the path was (from the cache) until --cache-valid
    passes, then what it is: a file where the directory was (and 404 for the
    slash form), a 301 to the slash form where a file was; never a byte of
    anything else."""
    index = b"<p>the directory's index</p>\n"
    as_file = random.Random(7).randbytes(1500)
    big = random.Random(8).randbytes(300 * 1024)
    (tmp_path / "thing").mkdir()
    write(tmp_path / "thing" / "index.html", index)
    write(tmp_path / "big", big)
    server = start_server("--cache-valid", "0.3", root=str(tmp_path))
    redirect = b"301 Moved Permanently\n"
    assert request(server, "/thing/")[::2] == (200, index)
    assert request(server, "/thing")[::2] == (301, redirect)
    assert request(server, "/big")[::2] == (200, big)

    # The directory becomes a file; the large file becomes a directory.
    os.rename(tmp_path / "thing", tmp_path / "thing.was-a-directory")
    write(tmp_path / "thing", as_file)
    os.rename(tmp_path / "big", tmp_path / "big.was-a-file")
    (tmp_path / "big").mkdir()
    write(tmp_path / "big" / "index.html", index)
    poll_until(server, "/thing", 200, {301: redirect, 200: as_file})
    poll_until(server, "/thing/", 404, {200: index, 404: b"404 Not Found\n"})
    # Until then the cached large file is sent whole from its open descriptor
    # (a server that reopened the path would find a directory: 403, never its bytes).
    seen = poll_until(server, "/big", 301, {200: big, 403: b"403 Forbidden: not a regular file\n",
                                            301: redirect})
    assert set(seen[seen.index(301):]) == {301}
    assert request(server, "/big/")[::2] == (200, index)

    # And back: the small file becomes a directory again.
    os.unlink(tmp_path / "thing")
    os.rename(tmp_path / "thing.was-a-directory", tmp_path / "thing")
    poll_until(server, "/thing/", 200, {404: b"404 Not Found\n", 200: index})
    poll_until(server, "/thing", 301, {200: as_file, 301: redirect})
    stderr = "".join(server.stderr_lines)
    assert "unexpected error" not in stderr, stderr


# -- a slow disk saturates the executor ---------------------------------------------------------------

# Fault injection: files.resolve, run by the executor's threads, does not
# return for paths under /slow/ until the gate file exists, as a disk that
# hangs would; it says on stderr when such a job starts.
SLOW_DISK_CODE = """
import os
import sys
import time
import reactor_http.static.files as files

_resolve = files.resolve
_GATE = os.environ["SLOW_DISK_GATE"]


def resolve(root, segments, *args, **kwargs):
    if segments and segments[0] == "slow":
        sys.stderr.write("slow-disk: blocked on /" + "/".join(segments) + "\\n")
        sys.stderr.flush()
        while not os.path.exists(_GATE):
            time.sleep(0.01)
    return _resolve(root, segments, *args, **kwargs)


files.resolve = resolve
"""

BLOCKING_THREADS = 2
SLOW_REQUESTS = 6


def blocked_jobs(server):
    return "".join(server.stderr_lines).count("slow-disk: blocked on")


def test_slow_disk_saturates_the_executor_while_cached_files_are_served(start_server, tmp_path):
    """Fault: the disk hangs for every file under /slow/, so six requests for
    distinct uncached large files fill both executor threads and queue behind them.
    Server: while they wait, the loop still answers a cached file from memory
    and everything that needs no disk (OPTIONS, 405, 400); a request that needs
    the disk waits in the queue; once the disk answers, every waiting request
    gets its whole file, in order, and the server goes on."""
    root = tmp_path / "root"
    (root / "slow").mkdir(parents=True)
    slow_files = {f"/slow/{number}.bin": random.Random(number).randbytes(100 * 1024 + number)
                  for number in range(SLOW_REQUESTS)}
    for url, data in slow_files.items():
        write(root / url.lstrip("/"), data)
    write(root / "cached.txt", b"from the cache\n")
    write(root / "uncached.txt", b"needs the disk\n")
    gate = tmp_path / "gate"
    env = sitecustomize_env(str(tmp_path / "slow-disk"), SLOW_DISK_CODE)
    env["SLOW_DISK_GATE"] = str(gate)
    server = start_server("--blocking-threads", str(BLOCKING_THREADS), "--cache-valid", "3600",
                          root=str(root), env=env)
    cached = RawClient(server.connect())
    assert cached.request(get("/cached.txt"))[::2] == (200, b"from the cache\n")

    waiting = {}
    try:
        for url in slow_files:
            waiting[url] = RawClient(server.connect())
            waiting[url].send(get(url))
        # Both executor threads are now stuck in the disk; the other jobs queue.
        wait_until(lambda: blocked_jobs(server) == BLOCKING_THREADS, 10,
                   lambda: f"stderr: {''.join(server.stderr_lines)}")
        disk_queue = RawClient(server.connect())
        disk_queue.send(get("/uncached.txt"))

        # The loop answers at once what it can answer without the disk.
        for _ in range(3):
            assert cached.request(get("/cached.txt"))[::2] == (200, b"from the cache\n")
        assert cached.request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 204
        assert cached.request(b"DELETE /cached.txt HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 405
        other = RawClient(server.connect())
        status, _, _ = other.request(b"GET /no spaces HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400
        other.close()

        # Order of events: those answers came while every disk job still waits.
        # (No correct server can answer these before the gate opens.)
        assert blocked_jobs(server) == BLOCKING_THREADS
        pending = [client.sock for client in waiting.values()] + [disk_queue.sock]
        readable, _, _ = select.select(pending, [], [], 0.2)
        assert readable == [], "a request that needs the disk was answered while the disk hung"

        gate.touch()  # the disk answers again
        for url, client in waiting.items():
            assert client.read_response()[::2] == (200, slow_files[url])
        assert disk_queue.read_response()[::2] == (200, b"needs the disk\n")
        assert blocked_jobs(server) == SLOW_REQUESTS
    finally:
        for client in waiting.values():
            client.close()
        cached.close()
    assert server.process.poll() is None


# -- the wall clock jumps -----------------------------------------------------------------------------

# Fault injection: time.time() (the wall clock: Date, the access log) jumps by
# a day forward on SIGRTMIN and to a day behind on SIGRTMIN+1 (the server
# keeps SIGUSR1 for its status), as when an
# administrator or NTP steps the clock; time.monotonic is left alone, as the
# kernel leaves CLOCK_MONOTONIC alone when CLOCK_REALTIME is set.
CLOCK_JUMP_CODE = """
import signal
import sys
import time

_real_time = time.time
_offset = [0.0]


def jumped_time():
    return _real_time() + _offset[0]


def jump(signum, frame):
    _offset[0] = 86400.0 if signum == signal.SIGRTMIN else -86400.0
    sys.stderr.write(f"clock-jump: wall clock now {_offset[0]:+.0f} s\\n")
    sys.stderr.flush()


time.time = jumped_time
signal.signal(signal.SIGRTMIN, jump)
signal.signal(signal.SIGRTMIN + 1, jump)
"""


def site_with_page(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write(root / "page.txt", b"page\n")
    return str(root)


def jump_clock(server, signum, offset_text):
    server.process.send_signal(signum)
    wait_until(lambda: f"clock-jump: wall clock now {offset_text} s" in "".join(server.stderr_lines), 10,
               lambda: f"the clock did not jump: {''.join(server.stderr_lines)}")


def date_offset(headers):
    """How far the response's Date is from this process's wall clock, in seconds."""
    assert IMF_FIXDATE.fullmatch(headers["date"]), headers["date"]
    return email.utils.parsedate_to_datetime(headers["date"]).timestamp() - time.time()


def test_the_reactor_clock_is_monotonic():
    """Timers and the cache run on time.monotonic, which no one can set: the
    wall clock is read only for the Date field and the access log."""
    from reactor_http.loop.reactor import Reactor
    reactor = Reactor()
    try:
        assert reactor.clock is time.monotonic
    finally:
        reactor.close()


def test_wall_clock_jumps_forward_a_day(start_server, tmp_path):
    """Fault: the wall clock jumps a day forward while a keep-alive connection
    is idle and another has sent half a request head.
    Server: Date moves a day ahead and stays a valid IMF-fixdate; neither
    connection times out early (their deadlines are on the monotonic clock):
    both go on to be served."""
    root = site_with_page(tmp_path)
    env = sitecustomize_env(str(tmp_path / "clock"), CLOCK_JUMP_CODE)
    server = start_server("--keepalive-timeout", "60", "--header-timeout", "60", root=root, env=env)
    idle = RawClient(server.connect())
    status, headers, body = idle.request(get("/page.txt"))
    assert (status, body) == (200, b"page\n") and abs(date_offset(headers)) < 120
    half = RawClient(server.connect())
    half.send(b"GET /page.txt HTTP/1.1\r\nHo")
    # Both connections are accepted, so both have deadlines, before the jump.
    wait_until(lambda: len(server_connections(server)) == 2, 10, "the server never accepted both")

    jump_clock(server, signal.SIGRTMIN, "+86400")
    # A request on a third connection makes the loop turn and run due timers:
    # a deadline on the wall clock would now be a day overdue.
    status, headers, body = request(server, "/page.txt")
    assert (status, body) == (200, b"page\n")
    assert 86400 - 120 < date_offset(headers) < 86400 + 120
    status, headers, body = idle.request(get("/page.txt"))
    assert (status, body) == (200, b"page\n")
    half.send(b"st: x\r\n\r\n")
    assert half.read_response()[::2] == (200, b"page\n")
    idle.close()
    half.close()


def server_connections(server):
    process = psutil.Process(server.pid)
    list_connections = getattr(process, "net_connections", None) or process.connections
    return [connection for connection in list_connections(kind="inet")
            if connection.status == psutil.CONN_ESTABLISHED]


def test_wall_clock_jumps_back_a_day(start_server, tmp_path):
    """Fault: the wall clock jumps a day back while a keep-alive connection is
    idle and another has sent half a request head, and a cached file changes.
    Server: Date moves a day back and stays valid; the keep-alive and header
    timeouts still fire (EOF and 408), and --cache-valid still expires, so
    the changed file is served."""
    root = site_with_page(tmp_path)
    env = sitecustomize_env(str(tmp_path / "clock"), CLOCK_JUMP_CODE)
    server = start_server("--keepalive-timeout", "1", "--header-timeout", "1", "--cache-valid", "0.5",
                          root=root, env=env)
    idle = RawClient(server.connect())
    assert idle.request(get("/page.txt"))[::2] == (200, b"page\n")
    half = RawClient(server.connect())
    half.send(b"GET /page.txt HTTP/1.1\r\nHo")
    jump_clock(server, signal.SIGRTMIN + 1, "-86400")

    # Deadlines on the wall clock would now be a day away.
    assert idle.is_closed_by_peer(timeout=15)
    status, headers, _ = half.read_response()
    assert (status, headers["connection"]) == (408, "close")
    assert -86400 - 120 < date_offset(headers) < -86400 + 120

    rewrite_in_place(os.path.join(root, "page.txt"), b"page, changed\n", time.time())
    wait_until(lambda: request(server, "/page.txt")[2] == b"page, changed\n", 20,
               "the cache never expired after the clock went back")
    idle.close()
    half.close()


# -- the table in docs/reliability.md --------------------------------------------------------------


def test_the_fault_table_has_a_row_for_every_fault_test():
    """scripts/faults.py builds the table from the docstrings here: every test
    that names its fault has a row, and every test the table refers to exists."""
    faults = import_script("faults")
    rows = [test for test, _, _ in faults.fault_rows()]
    described = {f"tests/e2e/test_faults.py::{name}" for name, function in globals().items()
                 if name.startswith("test_") and "Fault: " in (function.__doc__ or "")}
    assert described and described <= set(rows)
    for test in rows:
        path, name = test.split("::")
        with open(os.path.join(REPO, path), encoding="utf-8") as file:
            assert f"def {name}(" in file.read(), test
