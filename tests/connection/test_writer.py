"""The Writer alone: a queue of rendered bytes and at most one file body,
flushed with ``send`` (a FakeSocket that records each call) or ``sendfile``
(a real socket pair), chunk by chunk on the portable path."""

import os
import socket

import pytest
from support.fakes import FakeSocket

from reactor_http.connection import writer as writer_module
from reactor_http.connection.writer import (
    CHUNK_BYTES,
    ChunkBudget,
    FileChanged,
    Flushed,
    Writer,
    read_cached_chunk,
    read_chunk,
)
from reactor_http.http1.responses import FileBody

MSG_MORE = getattr(socket, "MSG_MORE", 0)
CONTENT = bytes(range(256)) * 4  # 1 KiB, every byte different from its neighbours


class RecordingBody(FileBody):
    """A FileBody that records each close that really closed its descriptor."""

    def __init__(self, fd, pieces):
        super().__init__(fd, pieces)
        self.closed_fds = []

    def close(self):
        if self.fd >= 0:
            self.closed_fds.append(self.fd)
        super().close()


@pytest.fixture
def path(tmp_path):
    """A file holding CONTENT."""
    path = tmp_path / "content.bin"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture
def open_body(path, request):
    """open_body(pieces) -> a RecordingBody over the file, closed after the test if still open."""
    def make(pieces):
        body = RecordingBody(os.open(path, os.O_RDONLY), pieces)
        request.addfinalizer(body.close)
        return body
    return make


@pytest.fixture
def socket_pair():
    """(the writer's non-blocking end, the reader's end)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(10)
    yield ours, theirs
    ours.close()
    theirs.close()


def finish_portably(writer):
    """Flush on the portable path, reading each chunk as the executor would, until done."""
    for _ in range(1000):
        flushed = writer.flush()
        if flushed is Flushed.DONE:
            return
        assert flushed is Flushed.NEED_CHUNK
        job = writer.chunk_job()
        assert writer.chunk_arrived()
        writer.take_chunk(read_chunk(*job))
    raise AssertionError("the writer never finished")


def received(sock, count):
    data = b""
    while len(data) < count:
        data += sock.recv(count - len(data))
    return data


# -- bytes -------------------------------------------------------------------------------------


def test_a_batch_is_joined_into_one_send():
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False)
    for answer in (b"first ", b"second ", b"third"):
        writer.add(answer)
    assert writer.pending
    assert writer.flush() is Flushed.DONE
    assert sock.sends == [(b"first second third", 0)]
    assert (writer.bytes_queued, writer.bytes_sent, writer.pending) == (18, 18, False)


class TypeRecordingSocket(FakeSocket):
    """Records the type of what each send is given: a copy, or a view."""

    def __init__(self):
        super().__init__()
        self.given = []

    def send(self, data, flags=0):
        self.given.append(type(data))
        return super().send(data, flags)


def test_partial_sends_continue_from_a_view_of_what_is_left():
    sock = TypeRecordingSocket()
    sock.send_limit = 4
    writer = Writer(sock, use_sendfile=False)
    writer.add(b"0123456789")
    assert writer.flush() is Flushed.BLOCKED
    assert writer.flush() is Flushed.BLOCKED
    writer.add(b"ab")  # queued while the rest waits: it goes after the rest
    sock.send_limit = None
    assert writer.flush() is Flushed.DONE
    assert [data for data, _ in sock.sends] == [b"0123", b"4567", b"89ab"]
    assert sock.given[:2] == [bytes, memoryview]  # the rest is not copied per send
    assert writer.bytes_sent == 12


def test_a_full_socket_blocks_and_a_gone_peer_raises():
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False)
    writer.add(b"answer")
    sock.send_limit = 0  # the buffer is full: not a byte taken
    assert writer.flush() is Flushed.BLOCKED
    assert (sock.sends, writer.bytes_sent) == ([], 0)
    sock.send_limit = None
    sock.send_error = ConnectionResetError()
    with pytest.raises(ConnectionResetError):
        writer.flush()


# -- the head before a file: MSG_MORE ------------------------------------------------------------


@pytest.mark.parametrize("use_flags, with_file, flags", [
    (True, True, MSG_MORE),   # file bytes follow: let Linux fill the packet
    (True, False, 0),         # nothing follows
    (False, True, 0),         # a TLS socket takes no flags
])
def test_msg_more_only_when_a_file_follows_and_flags_are_allowed(open_body, use_flags, with_file, flags):
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False, use_flags=use_flags)
    writer.add(b"HEAD\r\n\r\n")
    if with_file:
        writer.add_file(open_body([(0, 10)]))
    writer.flush()
    assert sock.sends[0] == (b"HEAD\r\n\r\n", flags)


def test_use_tls_turns_off_flags_and_sendfile(open_body):
    writer = Writer(FakeSocket(), use_sendfile=True)
    tls_socket = FakeSocket()
    writer.use_tls(tls_socket)
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(open_body([(0, 10)]))
    assert writer.flush() is Flushed.NEED_CHUNK  # read and encrypted, never sendfile'd
    assert tls_socket.sends == [(b"HEAD\r\n\r\n", 0)]


# -- file bodies -------------------------------------------------------------------------------

MULTIPART = [b"--part 1\r\n", (0, 5), b"\r\n--part 2\r\n", (500, 7), b"\r\n--end--\r\n"]
MULTIPART_BYTES = b"--part 1\r\n" + CONTENT[:5] + b"\r\n--part 2\r\n" + CONTENT[500:507] + b"\r\n--end--\r\n"


def test_multipart_pieces_in_order_on_the_portable_path(open_body):
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False)
    body = open_body(MULTIPART)
    fd = body.fd
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(body)
    assert writer.holds_file
    finish_portably(writer)
    assert sock.sent == b"HEAD\r\n\r\n" + MULTIPART_BYTES
    assert body.closed_fds == [fd]  # one descriptor for every region, closed once
    assert not writer.holds_file
    writer.close()
    assert body.closed_fds == [fd]
    assert writer.bytes_sent == writer.bytes_queued == 8 + len(MULTIPART_BYTES)


def test_multipart_pieces_in_order_with_sendfile(open_body, socket_pair):
    ours, theirs = socket_pair
    writer = Writer(ours, use_sendfile=True)
    body = open_body(MULTIPART)
    fd = body.fd
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(body)
    assert writer.flush() is Flushed.DONE
    assert received(theirs, 8 + len(MULTIPART_BYTES)) == b"HEAD\r\n\r\n" + MULTIPART_BYTES
    assert body.closed_fds == [fd]


def test_the_descriptor_stays_open_until_the_last_piece_is_sent(open_body):
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False)
    body = open_body(MULTIPART)
    writer.add_file(body)
    assert writer.flush() is Flushed.NEED_CHUNK  # the first part head went out; the region is next
    writer.take_chunk(read_chunk(*writer.chunk_job()))
    assert writer.chunk_arrived()
    sock.send_limit = 3
    assert writer.flush() is Flushed.BLOCKED
    assert body.closed_fds == []
    sock.send_limit = None
    finish_portably(writer)
    assert len(body.closed_fds) == 1


def test_the_portable_path_reads_chunks_of_at_most_chunk_bytes(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * CHUNK_BYTES + 100))
    fd = os.open(path, os.O_RDONLY)
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False)
    writer.add_file(FileBody.region(fd, 50, 2 * CHUNK_BYTES + 30))
    jobs = []
    while writer.flush() is Flushed.NEED_CHUNK:
        jobs.append(writer.chunk_job())
        writer.chunk_arrived()
        writer.take_chunk(read_chunk(*jobs[-1]))
    assert [(job[0], job[2], len(job[1])) for job in jobs] == [
        (fd, 50, CHUNK_BYTES), (fd, 50 + CHUNK_BYTES, CHUNK_BYTES), (fd, 50 + 2 * CHUNK_BYTES, 30)]
    assert len({id(job[1].obj) for job in jobs}) == 1  # every chunk into the body's one buffer
    assert sock.sent == path.read_bytes()[50:80 + 2 * CHUNK_BYTES]


# -- closing -------------------------------------------------------------------------------------


def test_close_while_a_chunk_is_read_leaves_the_descriptor_to_the_job(open_body):
    """The executor is reading from the descriptor: closing it now could let
    a new socket take its number, and the job would read that instead."""
    writer = Writer(FakeSocket(), use_sendfile=False)
    body = open_body([(0, 100)])
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(body)
    assert writer.flush() is Flushed.NEED_CHUNK
    job = writer.chunk_job()
    writer.close()
    assert body.closed_fds == []
    assert read_chunk(*job) == 100 and job[1] == CONTENT[:100]  # still the file's descriptor
    assert writer.chunk_arrived() is False  # closed meanwhile: drop the chunk
    assert len(body.closed_fds) == 1
    assert not writer.pending


def test_close_with_no_job_pending_closes_the_descriptor_at_once(open_body):
    writer = Writer(FakeSocket(), use_sendfile=False)
    body = open_body([(0, 100)])
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(body)
    writer.close()
    assert len(body.closed_fds) == 1
    assert not writer.pending


# -- the file shrank -----------------------------------------------------------------------------


def test_a_zero_byte_sendfile_means_the_file_shrank(open_body, socket_pair):
    ours, theirs = socket_pair
    writer = Writer(ours, use_sendfile=True)
    writer.add(b"HEAD\r\n\r\n")
    writer.add_file(open_body([(len(CONTENT) - 10, 20)]))  # 10 bytes past the end
    with pytest.raises(FileChanged):
        writer.flush()
    assert received(theirs, 18) == b"HEAD\r\n\r\n" + CONTENT[-10:]
    assert writer.bytes_sent == 18


def test_an_empty_chunk_means_the_file_shrank(open_body):
    writer = Writer(FakeSocket(), use_sendfile=False)
    writer.add_file(open_body([(0, 100)]))
    assert writer.flush() is Flushed.NEED_CHUNK
    writer.chunk_job()
    assert writer.chunk_arrived()
    with pytest.raises(FileChanged):
        writer.take_chunk(0)


# -- reading on the loop -------------------------------------------------------------------------


def test_with_read_on_loop_a_cached_file_needs_no_executor(tmp_path):
    """A file the page cache holds (just written) is read by the writer itself:
    flush never says NEED_CHUNK, and the budget is given back at the end."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * CHUNK_BYTES + 100))
    fd = os.open(path, os.O_RDONLY)
    if read_cached_chunk(fd, memoryview(bytearray(1)), 0) is None:
        os.close(fd)
        pytest.skip("no preadv2(RWF_NOWAIT) here: every chunk goes to the executor")
    sock = FakeSocket()
    budget = ChunkBudget()
    writer = Writer(sock, use_sendfile=False, budget=budget, read_on_loop=True)
    writer.add_file(FileBody.region(fd, 50, 2 * CHUNK_BYTES + 30))
    assert writer.flush() is Flushed.DONE
    assert sock.sent == path.read_bytes()[50:80 + 2 * CHUNK_BYTES]
    assert budget.lent == 0


def test_read_on_loop_falls_back_to_the_executor_when_the_disk_must_wait(open_body, monkeypatch):
    """EAGAIN from preadv2(RWF_NOWAIT) (the bytes are not in memory): the
    chunk goes to the executor, into the same buffer."""
    monkeypatch.setattr(writer_module, "read_cached_chunk", lambda fd, buffer, offset: None)
    sock = FakeSocket()
    writer = Writer(sock, use_sendfile=False, read_on_loop=True)
    writer.add_file(open_body([(0, 100)]))
    assert writer.flush() is Flushed.NEED_CHUNK
    finish_portably(writer)
    assert sock.sent == CONTENT[:100]
