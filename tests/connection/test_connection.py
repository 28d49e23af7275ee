"""The connection's state machine, one state's handler at a time.

Each test builds a Connection on a ConnectionContext of fakes (support.fakes):
a socket whose peer is the test, a reactor whose clock and timers move only
when the test advances them, an executor whose jobs complete only when the
test completes them, a handler that answers by target, and logs that record.
No server, no real reactor, no thread; where the kernel itself is the point
(sendfile, peeking at a socket on shutdown) a real socket pair stands in.

The settings are Config's defaults: header timeout 10 s, keep-alive 15 s,
send 60 s, linger 5 s.
"""

import errno
import os
import socket

import pytest
from support.clients import get
from support.fakes import FakeAccessLog, FakeErrorLog, FakeExecutor, FakeHandler, FakeReactor, FakeSocket

from reactor_http.config import Config
from reactor_http.connection import connection as connection_module
from reactor_http.connection import writer as writer_module
from reactor_http.connection.connection import (
    LINGER_MAX_BYTES,
    LINGER_READS_PER_EVENT,
    MAX_BATCH_BYTES,
    RECV_BYTES,
    Connection,
)
from reactor_http.connection.context import ConnectionContext
from reactor_http.connection.states import TRANSITIONS, WAITS, State
from reactor_http.connection.writer import CHUNK_BYTES, read_chunk
from reactor_http.http1.responses import FileBody, HeadRenderer, Response, error_response
from reactor_http.loop.reactor import EVENT_READ, EVENT_WRITE

CLIENT = "192.0.2.7"
TEXT = "Content-Type: text/plain\r\n"
BIG = b"x" * 5000


# -- what the fake handler answers, by target -----------------------------------------------------


def load(name):
    """The job the disk routes ask for (the fake executor never runs it: the test completes it)."""
    raise AssertionError("completed by hand")


def needs_disk(request, exchange):
    exchange.run_blocking(load, (request.target,), lambda value: Response(200, TEXT, value))
    return None


def needs_disk_twice(request, exchange):
    def first_done(first):
        exchange.run_blocking(load, ("second",), lambda second: Response(200, TEXT, first + b"+" + second))
        return None
    exchange.run_blocking(load, ("first",), first_done)
    return None


def raises(*args):
    raise RuntimeError("boom")


def then_raises(request, exchange):
    exchange.run_blocking(load, ("first",), raises)
    return None


ROUTES = {
    "/disk": needs_disk,
    "/twice": needs_disk_twice,
    "/boom": raises,
    "/then-raises": then_raises,
    "/big": lambda request, exchange: Response(200, TEXT, BIG),
    "/missing": lambda request, exchange: error_response(404),
    "/closing": lambda request, exchange: Response(200, TEXT, b"bye", close=True),
}


class FileRoute:
    """Answers ``status`` with a FileBody over ``path`` (shrunk to
    ``shrink_to`` once opened, if given), and keeps the bodies it made."""

    def __init__(self, path, shrink_to=None, status=200):
        self.path = path
        self.shrink_to = shrink_to
        self.status = status
        self.bodies = []

    def __call__(self, request, exchange):
        size = os.path.getsize(self.path)
        body = FileBody.region(os.open(self.path, os.O_RDONLY), 0, size)
        self.bodies.append(body)
        if self.shrink_to is not None:
            os.truncate(self.path, self.shrink_to)
        return Response(self.status, "Content-Type: application/octet-stream\r\n", file=body)

    def close(self):
        for body in self.bodies:
            body.close()


# -- the rig ------------------------------------------------------------------------------------------


class Rig:
    """A started Connection on fakes, and the ways to drive it."""

    def __init__(self, routes=None, sock=None, use_sendfile=False, read_on_loop=False):
        self.sock = sock if sock is not None else FakeSocket()
        self.reactor = FakeReactor()
        self.executor = FakeExecutor()
        self.handler = FakeHandler({**ROUTES, **(routes or {})})
        self.access_log = FakeAccessLog()
        self.error_log = FakeErrorLog()
        self.forgotten = []
        self.context = ConnectionContext(self.reactor, self.executor, Config(), self.handler, self.access_log,
                                         self.error_log, HeadRenderer(), use_sendfile=use_sendfile,
                                         forget=self.forgotten.append, read_chunks_on_loop=read_on_loop)
        self.connection = Connection(self.context, self.sock, CLIENT)
        self.connection.start()

    @property
    def state(self):
        return self.connection.state

    @property
    def interest(self):
        return self.reactor.interest(self.sock)

    def arrive(self, *items):
        """Each item (bytes, b"" for end of file, or an exception) arrives, and
        the reactor reports the socket readable, once per item."""
        for item in items:
            self.sock.incoming.append(item)
            self.reactor.fire(self.sock, EVENT_READ)

    def writable(self):
        self.reactor.fire(self.sock, EVENT_WRITE)

    def log(self, *lines):
        """The access-log lines expected: (request line, status, body bytes) each."""
        return [(CLIENT, *line) for line in lines]

    def responses(self):
        return parse_responses(self.sock.sent)


def parse_responses(data):
    """[(status, headers with lower-case names, body)] of every response in
    ``data``, bodies framed by Content-Length (the last may be cut short)."""
    responses = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, _, value in (field.partition(": ") for field in fields)}
        length = int(headers.get("content-length", "0"))
        responses.append((int(status_line.split(" ")[1]), headers, data[:length]))
        data = data[length:]
    return responses


def statuses(rig):
    return [status for status, _, _ in rig.responses()]


def bodies(rig):
    return [body for _, _, body in rig.responses()]


def head_length(data):
    return data.index(b"\r\n\r\n") + 4


@pytest.fixture
def socket_pair():
    """(the connection's non-blocking end, the client's non-blocking end)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def drain(sock):
    """Everything the socket holds now."""
    data = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


# -- the tables -----------------------------------------------------------------------------------


def test_readiness_handlers_are_looked_up_from_waits_by_state():
    for state, wait in WAITS.items():
        assert connection_module._ON_READABLE[state].__name__ == (wait.on_readable or "_ignore"), state
        assert connection_module._ON_WRITABLE[state].__name__ == (wait.on_writable or "_ignore"), state


def test_readiness_a_state_never_asked_for_is_ignored():
    rig = Rig()
    for state, wait in WAITS.items():
        for mask, handler in ((EVENT_READ, wait.on_readable), (EVENT_WRITE, wait.on_writable)):
            if handler is None:
                rig.connection.state = state
                rig.connection.on_ready(mask)  # a stale event, reported before the interest changed
                assert (rig.state, rig.sock.recv_calls, rig.sock.sends) == (state, 0, []), (state, mask)
    assert rig.error_log.entries == []


def test_enter_refuses_a_move_not_in_transitions():
    rig = Rig()
    for old in State:
        for new in State:
            rig.connection.state = old
            if (old, new) in TRANSITIONS:
                rig.connection._enter(new)
                assert rig.state is new
            else:
                with pytest.raises(RuntimeError, match="illegal connection transition"):
                    rig.connection._enter(new)
                assert rig.state is old


# -- IDLE and READING_REQUEST ----------------------------------------------------------------------


def test_a_client_that_says_nothing_is_held_for_the_header_timeout():
    rig = Rig()
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    rig.reactor.advance(9.9)
    assert rig.state is State.IDLE
    rig.reactor.advance(0.2)
    assert (rig.state, rig.sock.closed, rig.forgotten) == (State.CLOSED, True, [rig.connection])
    assert (rig.sock.sends, rig.access_log.lines, rig.interest) == ([], [], 0)


@pytest.mark.parametrize("earlier, idle", [(b"", 3), (get("/first"), 14)], ids=["new", "kept-alive"])
def test_a_partial_head_is_timed_from_its_first_byte(earlier, idle):
    """The header timeout starts at the head's first byte (not at accept, not
    at the end of the keep-alive wait) and later bytes do not restart it."""
    rig = Rig()
    if earlier:
        rig.arrive(earlier)
    answered = len(rig.sock.sends)
    rig.reactor.advance(idle)
    rig.arrive(b"GET /slow HTTP/1.1\r\nHo")
    assert (rig.state, rig.interest) == (State.READING_REQUEST, EVENT_READ)
    rig.reactor.advance(5)
    rig.arrive(b"st: x\r\nX-Trickle: 1\r\n")  # a byte every few seconds buys no time
    rig.reactor.advance(4.9)
    assert (rig.state, len(rig.sock.sends)) == (State.READING_REQUEST, answered)
    rig.reactor.advance(0.2)
    status, headers, body = rig.responses()[-1]
    assert (status, headers["connection"]) == (408, "close")
    assert rig.state is State.LINGERING
    assert rig.access_log.lines[-1] == (CLIENT, "GET /slow HTTP/1.1", 408, len(body))


def test_a_whole_request_is_answered_in_one_send_then_keep_alive():
    rig = Rig()
    rig.arrive(get("/a"))
    assert len(rig.sock.sends) == 1
    assert [(status, body) for status, _, body in rig.responses()] == [(200, b"/a")]
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    assert rig.access_log.lines == rig.log(("GET /a HTTP/1.1", 200, 2))
    rig.reactor.advance(14.9)
    assert rig.state is State.IDLE
    rig.reactor.advance(0.2)  # the keep-alive timeout
    assert (rig.state, rig.sock.closed, rig.sock.shut) == (State.CLOSED, True, [])
    assert rig.access_log.lines == rig.log(("GET /a HTTP/1.1", 200, 2))


@pytest.mark.parametrize("end", [b"", ConnectionResetError()], ids=["eof", "reset"])
def test_a_client_that_leaves_is_closed_quietly(end):
    rig = Rig()
    rig.arrive(get("/a"), end)
    assert (rig.state, rig.sock.closed, rig.forgotten) == (State.CLOSED, True, [rig.connection])
    assert rig.error_log.entries == []


def test_pipelined_requests_answered_from_memory_go_out_in_one_send():
    rig = Rig()
    rig.arrive(get("/a") + get("/b") + get("/c"))
    assert len(rig.sock.sends) == 1
    assert bodies(rig) == [b"/a", b"/b", b"/c"]
    assert rig.access_log.lines == rig.log(*((f"GET /{name} HTTP/1.1", 200, 2) for name in "abc"))
    assert rig.state is State.IDLE


def test_a_batch_of_answers_is_bounded_however_many_requests_ask():
    """A few dozen bytes of request can ask for 5,000 of answer: a batch is
    sent once it holds MAX_BATCH_BYTES, and the next requests are answered
    after, so one read of pipelined requests cannot make the server hold
    their answers all at once."""
    rig = Rig()
    count = 3 * MAX_BATCH_BYTES // len(BIG) + 5
    rig.arrive(get("/big") * count)
    assert bodies(rig) == [BIG] * count
    assert len(rig.sock.sends) >= 3
    one_answer = len(rig.sock.sent) // count  # all alike: the head and BIG
    assert max(len(data) for data, _ in rig.sock.sends) < MAX_BATCH_BYTES + one_answer
    assert rig.state is State.IDLE


def test_a_batch_goes_out_when_the_next_request_is_incomplete():
    """The answers go out as soon as the requests after them run out mid-head;
    the half-received request is answered when the rest arrives."""
    rig = Rig()
    rig.arrive(get("/a") * 3 + get("/b")[:10])
    assert (len(rig.sock.sends), bodies(rig)) == (1, [b"/a"] * 3)
    assert rig.state is State.READING_REQUEST
    rig.arrive(get("/b")[10:])
    assert (len(rig.sock.sends), bodies(rig)) == (2, [b"/a"] * 3 + [b"/b"])
    assert rig.state is State.IDLE


# -- WAITING_EXECUTOR ----------------------------------------------------------------------------------


def test_a_handler_that_needs_the_disk_waits_without_reading_on():
    rig = Rig()
    rig.arrive(get("/disk") + get("/a"))
    assert (rig.state, rig.interest, rig.sock.sends) == (State.WAITING_EXECUTOR, 0, [])
    assert [request.target for request in rig.handler.requests] == ["/disk"]  # not reading is the backpressure
    [job] = rig.executor.jobs
    assert (job.function, job.args) == (load, ("/disk",))
    rig.reactor.advance(3600)  # nothing the client does is awaited: no timeout
    assert rig.state is State.WAITING_EXECUTOR
    job.complete(b"from the disk")
    assert bodies(rig) == [b"from the disk", b"/a"]
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    assert rig.access_log.lines == rig.log(("GET /disk HTTP/1.1", 200, 13), ("GET /a HTTP/1.1", 200, 2))


def test_a_continuation_may_chain_a_second_job():
    rig = Rig()
    rig.arrive(get("/twice"))
    rig.executor.jobs[0].complete(b"one")
    assert (rig.state, rig.interest, rig.sock.sends) == (State.WAITING_EXECUTOR, 0, [])
    [second] = rig.executor.jobs
    assert second.args == ("second",)
    second.complete(b"two")
    assert bodies(rig) == [b"one+two"]
    assert rig.state is State.IDLE


def test_an_answer_whose_job_completes_after_the_close_is_released(big_file):
    path, route = big_file

    def file_after_the_disk(request, exchange):
        exchange.run_blocking(load, (), lambda value: route(request, exchange))
        return None
    rig = Rig({"/late": file_after_the_disk})
    rig.arrive(get("/late"))
    rig.connection.close()  # the server stopped at once while the job ran
    rig.executor.jobs[0].complete(None)
    assert (route.bodies[0].fd, rig.sock.sends, rig.access_log.lines) == (-1, [], [])
    assert rig.error_log.entries == []


# -- WRITING -------------------------------------------------------------------------------------------


def test_a_full_socket_waits_for_writability_and_progress_restarts_the_send_timeout():
    rig = Rig()
    rig.sock.send_limit = 500
    rig.arrive(get("/big"))
    assert (rig.state, rig.interest) == (State.WRITING, EVENT_WRITE)
    for _ in range(3):
        rig.reactor.advance(59)  # each send that makes progress starts the 60 s again
        rig.writable()
        assert (rig.state, rig.interest) == (State.WRITING, EVENT_WRITE)
    rig.sock.send_limit = None
    rig.writable()
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    assert bodies(rig) == [BIG]
    assert rig.access_log.lines == rig.log(("GET /big HTTP/1.1", 200, len(BIG)))


def test_a_client_that_stops_reading_is_closed_after_the_send_timeout():
    rig = Rig()
    rig.sock.send_limit = 500
    rig.arrive(get("/big"))
    rig.reactor.advance(59.9)
    assert rig.state is State.WRITING
    rig.reactor.advance(0.2)
    assert (rig.state, rig.sock.closed, rig.error_log.entries) == (State.CLOSED, True, [])
    body_sent = 500 - head_length(rig.sock.sent)
    assert rig.access_log.lines == rig.log(("GET /big HTTP/1.1", 200, body_sent))


# -- WAITING_CHUNK: the portable path ---------------------------------------------------------------


@pytest.fixture
def big_file(tmp_path):
    """A file of two chunks and a bit, and its route."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * CHUNK_BYTES + 1000))
    route = FileRoute(path)
    yield path, route
    route.close()


def test_the_portable_path_reads_each_chunk_on_the_executor(big_file):
    path, route = big_file
    content = path.read_bytes()
    rig = Rig({"/file": route})
    rig.arrive(get("/file"))
    for offset, length in ((0, CHUNK_BYTES), (CHUNK_BYTES, CHUNK_BYTES), (2 * CHUNK_BYTES, 1000)):
        assert (rig.state, rig.interest) == (State.WAITING_CHUNK, 0)
        [job] = rig.executor.jobs
        fd, buffer, at = job.args
        assert (job.function, fd, at, len(buffer)) == (read_chunk, route.bodies[0].fd, offset, length)
        job.run()
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    assert bodies(rig) == [content]
    assert route.bodies[0].fd == -1  # closed once sent
    assert rig.access_log.lines == rig.log(("GET /file HTTP/1.1", 200, len(content)))


def test_chunks_the_page_cache_holds_are_read_on_the_loop(big_file):
    """With reading on the loop allowed (the server's default), a file just
    written (in the page cache) is sent with no executor job at all."""
    path, route = big_file
    fd = os.open(path, os.O_RDONLY)
    try:
        if writer_module.read_cached_chunk(fd, memoryview(bytearray(1)), 0) is None:
            pytest.skip("no preadv2(RWF_NOWAIT) here: every chunk goes to the executor")
    finally:
        os.close(fd)
    rig = Rig({"/file": route}, read_on_loop=True)
    rig.arrive(get("/file"))
    assert rig.executor.jobs == []
    assert (rig.state, rig.interest) == (State.IDLE, EVENT_READ)
    assert bodies(rig) == [path.read_bytes()]
    assert route.bodies[0].fd == -1
    assert rig.context.chunk_budget.lent == 0  # the body's buffer given back once it was sent


def test_a_file_that_shrinks_on_the_portable_path_closes_the_connection(big_file):
    path, route = big_file
    rig = Rig({"/file": route})
    rig.arrive(get("/file"))
    rig.executor.jobs[0].run()
    os.truncate(path, CHUNK_BYTES + 10)
    rig.executor.run_all()  # ten bytes, then nothing where the head promised more
    assert (rig.state, rig.sock.closed, route.bodies[0].fd) == (State.CLOSED, True, -1)
    [(message, error)] = rig.error_log.entries
    assert "file shrank" in message and error is None
    assert rig.access_log.lines == rig.log(("GET /file HTTP/1.1", 200, CHUNK_BYTES + 10))


def test_a_chunk_read_that_fails_closes_the_connection_without_a_500(big_file):
    path, route = big_file
    rig = Rig({"/file": route})
    rig.arrive(get("/file"))
    rig.executor.jobs[0].run()
    failure = OSError(errno.EIO, "the disk failed")
    rig.executor.jobs[0].fail(failure)
    assert (rig.state, rig.sock.closed, route.bodies[0].fd) == (State.CLOSED, True, -1)
    assert statuses(rig) == [200]
    assert len(rig.sock.sent) == head_length(rig.sock.sent) + CHUNK_BYTES  # no byte after the first chunk
    assert rig.error_log.errors == [failure]
    assert rig.access_log.lines == rig.log(("GET /file HTTP/1.1", 200, CHUNK_BYTES))


def test_closing_while_a_chunk_is_read_leaves_the_descriptor_to_the_job(big_file):
    path, route = big_file
    rig = Rig({"/file": route})
    rig.arrive(get("/file"))
    [job] = rig.executor.jobs
    rig.connection.close()  # as the server does when it stops at once
    assert route.bodies[0].fd >= 0  # the job reads from it: it must not be reused yet
    sent = rig.sock.sent
    job.run()
    assert (route.bodies[0].fd, rig.sock.sent, rig.executor.jobs) == (-1, sent, [])
    assert rig.access_log.lines == rig.log(("GET /file HTTP/1.1", 200, 0))
    assert rig.error_log.entries == []


# -- the sendfile path, over a real socket pair ----------------------------------------------------


def test_the_sendfile_path_sends_the_file_as_the_socket_takes_it(tmp_path, socket_pair):
    ours, theirs = socket_pair
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * 1024 * 1024))  # larger than a socket pair's buffer
    route = FileRoute(path)
    rig = Rig({"/file": route}, sock=ours, use_sendfile=True)
    theirs.sendall(get("/file"))
    rig.reactor.fire(ours, EVENT_READ)
    received = b""
    waits = 0
    while rig.state is State.WRITING:
        assert rig.interest == EVENT_WRITE
        waits += 1
        received += drain(theirs)
        rig.writable()
    received += drain(theirs)
    assert waits > 0 and rig.executor.submitted == 0
    assert [body for _, _, body in parse_responses(received)] == [path.read_bytes()]
    assert (rig.state, route.bodies[0].fd) == (State.IDLE, -1)


def test_a_file_that_shrinks_under_sendfile_closes_the_connection(tmp_path, socket_pair):
    ours, theirs = socket_pair
    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom(1000))
    route = FileRoute(path, shrink_to=400)
    rig = Rig({"/file": route}, sock=ours, use_sendfile=True)
    theirs.sendall(get("/file"))
    rig.reactor.fire(ours, EVENT_READ)
    assert (rig.state, ours.fileno(), route.bodies[0].fd) == (State.CLOSED, -1, -1)
    received = drain(theirs)
    assert len(received) == head_length(received) + 400
    assert "file shrank" in rig.error_log.entries[0][0]
    assert rig.access_log.lines == rig.log(("GET /file HTTP/1.1", 200, 400))


# -- after the last answer: keep-alive, close, or linger (http1/persistence.py) ---------------------

ENDINGS = {
    "http/1.1": (get("/a"), None, "keep-alive"),
    "http/1.1 close": (get("/a", extra="Connection: close\r\n"), "close", "close"),
    "http/1.0": (b"GET /a HTTP/1.0\r\n\r\n", "close", "close"),
    "http/1.0 keep-alive": (b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", "keep-alive"),
    "close with bytes unread": (get("/a", extra="Connection: close\r\n") + b"GET /b", "close", "linger"),
    "close after an error": (get("/missing", extra="Connection: close\r\n"), "close", "linger"),
    "the answer closes": (get("/closing"), "close", "linger"),
    "unparseable": (b"GET /a HTTP/1.1\r\nNo colon here\r\n\r\n", "close", "linger"),
}
AFTER = {
    # ending: (state, socket closed, shutdown calls, interest)
    "keep-alive": (State.IDLE, False, [], EVENT_READ),
    "close": (State.CLOSED, True, [], 0),
    "linger": (State.LINGERING, False, [socket.SHUT_WR], EVENT_READ),
}


@pytest.mark.parametrize("case", ENDINGS)
def test_what_follows_the_last_answer(case):
    data, connection_field, ending = ENDINGS[case]
    rig = Rig()
    rig.arrive(data)
    [(_, headers, _)] = rig.responses()
    assert headers.get("connection") == connection_field
    assert (rig.state, rig.sock.closed, rig.sock.shut, rig.interest) == AFTER[ending]
    assert len(rig.access_log.lines) == 1


@pytest.fixture
def lingering():
    rig = Rig()
    rig.arrive(get("/missing", extra="Connection: close\r\n"))
    assert rig.state is State.LINGERING
    return rig


def test_lingering_drops_what_arrives_until_the_client_closes(lingering):
    sent = lingering.sock.sent
    lingering.arrive(b"the rest of a body", b"GET /more HTTP/1.1\r\n\r\n")
    assert (lingering.state, lingering.sock.sent) == (State.LINGERING, sent)
    lingering.arrive(b"")
    assert (lingering.state, lingering.sock.closed) == (State.CLOSED, True)
    assert lingering.handler.requests == [lingering.handler.requests[0]]  # nothing more was answered
    assert lingering.error_log.entries == []


def test_lingering_ends_at_the_linger_timeout(lingering):
    lingering.reactor.advance(4.9)
    assert lingering.state is State.LINGERING
    lingering.reactor.advance(0.2)
    assert lingering.state is State.CLOSED


def test_lingering_reads_a_bounded_amount_per_event_and_in_all(lingering):
    chunks = LINGER_MAX_BYTES // RECV_BYTES
    lingering.sock.incoming.extend([b"x" * RECV_BYTES] * chunks)
    events = 0
    while lingering.sock.incoming:
        lingering.reactor.fire(lingering.sock, EVENT_READ)
        events += 1
    assert events == chunks // LINGER_READS_PER_EVENT
    assert lingering.state is State.LINGERING  # exactly LINGER_MAX_BYTES: not over yet
    lingering.arrive(b"x")
    assert lingering.state is State.CLOSED


# -- the guard: one door in, and what an unexpected error costs ---------------------------------------


def test_a_handler_that_raises_gets_a_500_after_the_answers_before_it():
    rig = Rig()
    rig.arrive(get("/a") + get("/boom") + get("/never"))
    assert len(rig.sock.sends) == 1
    [(ok, _, _), (failed, headers, _)] = rig.responses()
    assert (ok, failed, headers["connection"]) == (200, 500, "close")
    assert [request.target for request in rig.handler.requests] == ["/a", "/boom"]
    assert rig.state is State.LINGERING
    [error] = rig.error_log.errors
    assert isinstance(error, RuntimeError) and str(error) == "boom"
    assert [line[1:3] for line in rig.access_log.lines] == [("GET /a HTTP/1.1", 200), ("GET /boom HTTP/1.1", 500)]


def test_an_answer_that_cannot_be_rendered_gets_a_500_and_its_file_closed(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"content")
    route = FileRoute(path, status=299)  # a status with no reason phrase: rendering raises
    rig = Rig({"/unrenderable": route})
    rig.arrive(get("/unrenderable"))
    assert statuses(rig) == [500]
    [error] = rig.error_log.errors
    assert isinstance(error, KeyError)
    assert route.bodies[0].fd == -1
    assert [line[1:3] for line in rig.access_log.lines] == [("GET /unrenderable HTTP/1.1", 500)]


@pytest.mark.parametrize("target, end", [
    ("/then-raises", lambda job: job.complete(b"value")),         # the continuation raises
    ("/disk", lambda job: job.fail(RuntimeError("boom"))),        # the job itself raised
])
def test_a_failure_after_the_executor_gets_a_500(target, end):
    rig = Rig()
    rig.arrive(get(target))
    end(rig.executor.jobs[0])
    [(status, headers, _)] = rig.responses()
    assert (status, headers["connection"], rig.state) == (500, "close", State.LINGERING)
    [error] = rig.error_log.errors
    assert str(error) == "boom"
    assert [line[1:3] for line in rig.access_log.lines] == [(f"GET {target} HTTP/1.1", 500)]


@pytest.mark.parametrize("error, logged", [
    (OSError(errno.EBADF, "a descriptor of ours went bad"), 1),  # our bug: the guard logs it
    (ConnectionResetError(), 0),                                  # the client left: not a bug
])
def test_a_failure_while_writing_closes_without_a_500(error, logged):
    rig = Rig()
    rig.sock.send_limit = 500
    rig.arrive(get("/big"))
    rig.sock.send_error = error
    rig.writable()
    assert (rig.state, rig.sock.closed) == (State.CLOSED, True)
    assert len(rig.sock.sent) == 500  # no 500 after the half-sent answer
    assert len(rig.error_log.entries) == logged
    body_sent = 500 - head_length(rig.sock.sent)
    assert rig.access_log.lines == rig.log(("GET /big HTTP/1.1", 200, body_sent))


def test_when_the_500_cannot_be_sent_either_the_connection_closes():
    rig = Rig()
    rig.sock.send_error = RuntimeError("send broke")
    rig.arrive(get("/boom"))
    assert (rig.state, rig.sock.closed, rig.sock.sends) == (State.CLOSED, True, [])
    assert [str(error) for error in rig.error_log.errors] == ["boom", "send broke"]
    assert rig.access_log.lines == rig.log(("GET /boom HTTP/1.1", 500, 0))


@pytest.mark.parametrize("partial_head, after", [
    (b"", (State.CLOSED, [])),                                  # idle: nothing awaited, close
    (b"GET /slow HTTP/1.1\r\n", (State.LINGERING, [500])),        # a request awaits its answer
])
def test_a_failure_in_the_deadline_check_is_contained(monkeypatch, partial_head, after):
    monkeypatch.setattr(Connection, "_on_timeout", raises)
    rig = Rig()
    if partial_head:
        rig.arrive(partial_head)
    rig.reactor.advance(10.1)
    assert (rig.state, statuses(rig)) == after
    assert [str(error) for error in rig.error_log.errors] == ["boom"]


# -- the server stopping ------------------------------------------------------------------------


def stopping_rig(socket_pair, before):
    """A connection on a real socket (on_shutdown peeks at the kernel's
    buffer), brought to a state by ``before(rig, client end)``, then told
    that the server stops."""
    ours, theirs = socket_pair
    rig = Rig(sock=ours)
    before(rig, theirs)
    rig.context.stopping = True
    rig.connection.on_shutdown()
    return rig


def idle(rig, client):
    pass


def request_waiting_unread(rig, client):
    client.sendall(get("/a"))  # arrived, but the loop has not read it yet


def waiting_for_the_disk(rig, client):
    client.sendall(get("/disk"))
    rig.reactor.fire(rig.sock, EVENT_READ)


def mid_head(rig, client):
    client.sendall(b"GET /a HTTP/1.1\r\n")
    rig.reactor.fire(rig.sock, EVENT_READ)


def mid_handshake(rig, client):
    rig.connection.state = State.HANDSHAKE_WANT_READ


@pytest.mark.parametrize("before, state", [
    (idle, State.CLOSED),
    (mid_handshake, State.CLOSED),
    (request_waiting_unread, State.IDLE),      # answered, with Connection: close
    (waiting_for_the_disk, State.WAITING_EXECUTOR),
    (mid_head, State.READING_REQUEST),
])
def test_on_shutdown_closes_only_what_is_idle(socket_pair, before, state):
    rig = stopping_rig(socket_pair, before)
    assert rig.state is state
    assert rig.error_log.entries == []


@pytest.mark.parametrize("before, finish", [
    (request_waiting_unread, lambda rig, client: rig.reactor.fire(rig.sock, EVENT_READ)),
    (waiting_for_the_disk, lambda rig, client: rig.executor.jobs[0].complete(b"from the disk")),
    (mid_head, lambda rig, client: (client.sendall(b"Host: x\r\n\r\n"), rig.reactor.fire(rig.sock, EVENT_READ))),
])
def test_a_request_in_hand_when_the_server_stops_is_answered_with_close(socket_pair, before, finish):
    rig = stopping_rig(socket_pair, before)
    finish(rig, socket_pair[1])
    [(status, headers, _)] = parse_responses(drain(socket_pair[1]))
    assert (status, headers["connection"]) == (200, "close")
    assert rig.state is State.LINGERING  # the client wanted keep-alive: it may be sending more
    assert len(rig.access_log.lines) == 1


def test_a_failure_in_the_shutdown_step_is_contained(socket_pair, monkeypatch):
    monkeypatch.setattr(Connection, "_stop_if_idle", raises)
    rig = stopping_rig(socket_pair, idle)
    assert (rig.state, rig.forgotten) == (State.CLOSED, [rig.connection])
    assert [str(error) for error in rig.error_log.errors] == ["boom"]


# -- STREAMING: a response without an end (the live page's feed) -----------------------------------


class FakeStream:
    """An EventStream the test feeds: ``push`` adds an event (the newest
    waiting one replaces an older, as the live feed's does) and notifies."""

    def __init__(self):
        self.notify = None
        self.waiting = b""
        self.detached = False
        self.replaced = 0

    def attach(self, notify):
        self.notify = notify

    def push(self, event):
        if self.waiting:
            self.replaced += 1
        self.waiting = event
        if self.notify is not None:
            self.notify()

    def take(self):
        data, self.waiting = self.waiting, b""
        return data

    def detach(self):
        self.detached = True
        self.notify = None


@pytest.fixture
def streaming():
    """A Rig whose /events answers with a FakeStream, already streaming."""
    stream = FakeStream()
    fields = "Content-Type: text/event-stream\r\n"
    rig = Rig({"/events": lambda request, exchange: Response(200, fields, stream=stream)})
    rig.arrive(get("/events"))
    return rig, stream


def test_a_stream_head_says_close_and_no_length_then_waits_in_streaming(streaming):
    rig, stream = streaming
    head = rig.sock.sent.decode("latin-1")
    assert head.startswith("HTTP/1.1 200 OK\r\n") and head.endswith("\r\n\r\n")
    assert "Content-Length" not in head and "Connection: close\r\n" in head
    assert (rig.state, rig.interest) == (State.STREAMING, EVENT_READ)
    assert rig.connection._deadline is None  # a stream lives as long as its client stays
    assert rig.access_log.lines == []       # logged when it ends, with every byte it sent


def test_each_event_is_sent_as_it_comes(streaming):
    rig, stream = streaming
    before = len(rig.sock.sent)
    for number in range(3):
        stream.push(b"event: tick\ndata: %d\n\n" % number)
        assert rig.state is State.STREAMING
    assert rig.sock.sent[before:] == b"event: tick\ndata: 0\n\nevent: tick\ndata: 1\n\nevent: tick\ndata: 2\n\n"


def test_a_client_that_stops_reading_holds_one_event_and_is_closed_by_the_send_timeout(streaming):
    """The socket is full: the connection waits in WRITING; every later event
    replaces the one waiting in the stream (memory stays one event), and the
    send timeout closes the connection and detaches the stream."""
    rig, stream = streaming
    rig.sock.send_limit = 0
    for number in range(100):
        stream.push(b"data: %d\n\n" % number + b"x" * 1000)
        rig.reactor.advance(1)  # the socket stays full; the 60 s send timeout runs
        if rig.state is State.CLOSED:
            break
    assert rig.state is State.CLOSED and stream.detached
    assert rig.connection._writer.bytes_queued - rig.connection._writer.bytes_sent <= 1100  # the first event
    assert 55 <= stream.replaced <= 61 and stream.notify is None
    ((client, line, status, body_bytes),) = rig.access_log.lines
    assert (line, status, body_bytes) == ("GET /events HTTP/1.1", 200, 0)


def test_a_slow_reader_gets_the_newest_event_once_the_socket_drains(streaming):
    rig, stream = streaming
    rig.sock.send_limit = 0
    stream.push(b"data: 1\n\n")
    assert rig.state is State.WRITING
    stream.push(b"data: 2\n\n")
    stream.push(b"data: 3\n\n")
    rig.sock.send_limit = None
    rig.writable()
    assert rig.sock.sent.endswith(b"data: 1\n\ndata: 3\n\n")
    assert rig.state is State.STREAMING


def test_the_client_leaving_ends_the_stream_and_logs_its_bytes(streaming):
    rig, stream = streaming
    stream.push(b"data: 12345\n\n")
    rig.arrive(b"ignored input", b"")
    assert rig.state is State.CLOSED and stream.detached and rig.forgotten == [rig.connection]
    assert rig.access_log.lines == rig.log(("GET /events HTTP/1.1", 200, len(b"data: 12345\n\n")))


def test_a_stream_closes_when_the_server_stops(streaming):
    rig, stream = streaming
    rig.connection.on_shutdown()
    assert rig.state is State.CLOSED and stream.detached


def test_a_head_request_for_a_stream_sends_the_head_alone():
    stream = FakeStream()
    rig = Rig({"/events": lambda request, exchange: Response(200, TEXT, stream=stream)})
    rig.arrive(b"HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert stream.notify is None  # never attached
    assert b"Content-Length" not in rig.sock.sent and rig.state is not State.STREAMING


def test_a_stream_still_being_sent_when_the_server_stops_ends_once_sent(streaming):
    """A slow reader is in WRITING when the server begins to stop: it is not
    idle, so it is let finish what is queued; then the stream ends there,
    rather than wait for events that would hold the stop until its timeout."""
    rig, stream = streaming
    rig.sock.send_limit = 0
    stream.push(b"data: 1\n\n")
    assert rig.state is State.WRITING
    rig.context.stopping = True
    rig.connection.on_shutdown()
    assert rig.state is State.WRITING
    rig.sock.send_limit = None
    rig.writable()
    assert rig.state is State.CLOSED and stream.detached
    assert rig.sock.sent.endswith(b"data: 1\n\n")
