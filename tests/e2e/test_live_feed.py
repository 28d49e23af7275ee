"""The live page's feed (--dashboard-path PATH/events) and --slow-callback-ms, over real sockets.

The feed is a response that never ends by itself: Server-Sent Events, one
"history" event and then a "tick" a second. These tests read it as a
browser's EventSource would, raw: its head (no Content-Length, Connection:
close), its events and their JSON; then a hundred feeds at once beside a
client that never reads, the server still serving; access as the status
page's; a stop with feeds open. The browser itself is in test_live_page.py.

Nothing waits for time to pass in order to pass: each test waits (with a
generous bound) for events that must come.
"""

import json
import signal
import socket

import psutil
import pytest
from support.clients import RawClient, get, request_once
from support.environment import demo_bytes, wait_until
from support.servers import wait_for_exit

PAGE = "/_reactor"


def open_feed(server, receive_buffer=None):
    """A raw socket that asked for the feed and read its head: (socket, head text, bytes after it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(20)
    sock.connect((server.host, server.port))
    sock.sendall(get(PAGE + "/events"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before the head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head.decode("latin-1"), rest


class FeedReader:
    """Reads events off a feed socket: (name, data) pairs."""

    def __init__(self, sock, already=b""):
        self.sock = sock
        self.buffer = already
        self.events = []
        self.retry = None

    def read_until(self, count, timeout=30):
        """Read until ``count`` events have arrived in all; returns them."""
        self.sock.settimeout(timeout)
        while len(self.events) < count:
            while b"\n\n" in self.buffer:
                block, _, self.buffer = self.buffer.partition(b"\n\n")
                self._take(block.decode("utf-8"))
            if len(self.events) >= count:
                break
            chunk = self.sock.recv(65536)
            assert chunk, f"the feed ended after {len(self.events)} events"
            self.buffer += chunk
        return self.events

    def _take(self, block):
        fields = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "retry" in fields:
            self.retry = int(fields["retry"])
        if "event" in fields:
            self.events.append((fields["event"], json.loads(fields["data"])))


def status_document(server):
    return json.loads(request_once(server, get("/_status"))[2])


def test_the_feed_head_then_history_then_a_tick_a_second(start_server):
    server = start_server("--dashboard-path", PAGE)
    for _ in range(3):
        assert request_once(server, get("/"))[0] == 200
    sock, head, rest = open_feed(server)
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    fields = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert fields["content-type"] == "text/event-stream"
    assert fields["cache-control"] == "no-store"
    assert fields["connection"] == "close"        # its content ends when the connection does
    assert "content-length" not in fields and "transfer-encoding" not in fields
    reader = FeedReader(sock, rest)
    events = reader.read_until(3)
    assert reader.retry == 2000
    assert [name for name, _ in events] == ["history", "tick", "tick"]
    assert isinstance(events[0][1], list)
    (snapshot,) = events[2][1]  # one worker
    assert snapshot["worker"] == 0 and snapshot["pid"] == server.pid
    assert snapshot["responses"] >= 3
    assert snapshot["connections"]["streaming"] + snapshot["connections"]["writing"] == 1  # this feed
    assert snapshot["process"]["threads"] >= 2 and snapshot["process"]["open_fds"] > 3
    assert events[2][1][0]["time"] > events[1][1][0]["time"]
    sock.close()


def test_a_page_opened_later_gets_the_ticks_it_missed(start_server):
    server = start_server("--dashboard-path", PAGE)
    first, _, rest = open_feed(server)
    FeedReader(first, rest).read_until(4)  # history, then three ticks have happened
    second, _, rest = open_feed(server)
    name, history = FeedReader(second, rest).read_until(1)[0]
    assert name == "history" and len(history) >= 3
    first.close()
    second.close()


def test_a_hundred_feeds_and_one_that_never_reads(start_server):
    """A hundred clients each get every tick, while one more never reads a
    byte; the server goes on serving files, holds them all on its one loop
    thread, and when they leave its connections are back where they were,
    its memory not grown by more than a few MiB."""
    server = start_server("--dashboard-path", PAGE, "--status-path", "/_status")
    process = psutil.Process(server.pid)
    stalled, _, _ = open_feed(server, receive_buffer=4096)
    feeds = [open_feed(server) for _ in range(100)]
    resident_before = process.memory_info().rss
    readers = [FeedReader(sock, rest) for sock, _, rest in feeds]
    for reader in readers:
        reader.read_until(3)  # history and two ticks, every one
    assert request_once(server, get("/"))[::2] == (200, demo_bytes("index.html"))
    by_state = status_document(server)["connections"]["by_state"]
    assert by_state["streaming"] + by_state["writing"] == 101
    for reader in readers:
        reader.read_until(6)
    grown = process.memory_info().rss - resident_before
    assert grown < 8 * 1024 * 1024, grown
    threads = process.num_threads()
    assert threads <= 2 + 8 + 1, threads  # the loop, the executor, perhaps one more: none per feed
    for sock, _, _ in feeds:
        sock.close()
    stalled.close()
    wait_until(lambda: status_document(server)["connections"]["open"] == 1, 20,
               "the feeds' connections were not all closed")


@pytest.mark.parametrize("target, status", [(PAGE, 403), (PAGE + "/events", 403), (PAGE + "/live.js", 403)])
def test_only_status_allow_addresses(start_server, target, status):
    server = start_server("--dashboard-path", PAGE, "--status-allow", "10.0.0.0/8")
    assert request_once(server, get(target))[0] == status


def test_the_page_its_files_and_nothing_else(start_server):
    server = start_server("--dashboard-path", PAGE)
    status, headers, body = request_once(server, get(PAGE))
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b'src="/_reactor/live.js"' in body and b'href="/_reactor/live.css"' in body
    assert b"http://" not in body and b"https://" not in body  # nothing from elsewhere
    status, headers, body = request_once(server, get(PAGE + "/live.js"))
    assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert b"EventSource" in body
    assert request_once(server, get(PAGE + "/live.css"))[1]["content-type"] == "text/css; charset=utf-8"
    assert request_once(server, get(PAGE + "/nothing"))[0] == 404
    assert request_once(server, get(PAGE + "x"))[0] == 404  # another path: the site's 404
    status, headers, _ = request_once(server, b"POST /_reactor HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    status, headers, body = request_once(server, b"HEAD /_reactor/events HTTP/1.1\r\nHost: x\r\n\r\n",
                                         head_request=True)
    assert (status, headers["content-type"], body) == (200, "text/event-stream", b"")


def test_a_stop_with_feeds_open_does_not_wait_for_them(start_server):
    server = start_server("--dashboard-path", PAGE)
    feeds = [open_feed(server) for _ in range(3)]
    for sock, _, rest in feeds:
        FeedReader(sock, rest).read_until(2)
    server.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(server, timeout=20) == 0
    assert "shutdown timeout" not in "".join(server.stderr_lines)
    for sock, _, _ in feeds:
        sock.close()


def test_slow_callbacks_are_logged_when_file_work_blocks_the_loop(start_server):
    """--slow-callback-ms names the callback that held the loop: with the
    file work on the loop thread and a slow disk, the connection's readiness
    callback; with the same disk behind the executor, nothing."""
    flags = ("--slow-callback-ms", "20", "--disk-delay", "50ms", "--cache-bytes", "0")
    blocking = start_server(*flags, "--file-work-on-loop")
    assert request_once(blocking, get("/"))[0] == 200
    line = wait_until(lambda: next((text for text in blocking.stderr_lines if "slow callback" in text), None),
                      10, "no slow callback was logged")
    assert "Connection.on_ready of <Connection from 127.0.0.1" in line and "held the loop for" in line
    held = float(line.rsplit("for ", 1)[1].split(" ms")[0])
    assert held >= 20
    executor = start_server(*flags)
    client = RawClient(executor.connect())
    for _ in range(3):
        assert client.request(get("/"))[0] == 200
    client.close()
    assert not [text for text in executor.stderr_lines if "slow callback" in text]
