"""The write path: what a connection still has to send, and the system calls that send it.

A Writer holds, in order: answers rendered to bytes (a batch of them, when
pipelined requests were answered from memory), then at most one file body (an
open descriptor and the regions of it to send). ``flush`` sends as much as the
socket takes without blocking, and says why it stopped:

- DONE: everything queued has gone to the kernel;
- BLOCKED: the kernel's send buffer is full; flush again when writable;
- NEED_CHUNK: the portable path (no ``sendfile``: ``--no-sendfile``, or TLS,
  which must encrypt what it sends) needs the next chunk of the file read on
  the executor. ``chunk_job`` says what to read; ``take_chunk`` hands it over.

On the portable path a file's bytes pass through memory: each file body gets
one buffer, which every chunk of it is read into in turn, and a client that
reads slowly holds it until the body is sent. So the buffer's size comes from
one ChunkBudget shared by every connection: a full CHUNK_BYTES while the
buffers held in all fit in the budget, MIN_CHUNK_BYTES once they do not. A
thousand slow readers then hold the budget and 16 KiB each (nginx, with
sendfile off, holds its two 32 KiB output buffers), not 256 KiB each.

Reading a chunk needs the disk only when the page cache does not hold it. So
the writer first tries to read it itself, on the loop thread, with
``preadv2(RWF_NOWAIT)`` (Linux 4.14): the kernel copies what it holds in
memory, and fails with EAGAIN instead of waiting for the disk. Only then does
the chunk go to the executor: a hot file costs no thread hand-off, no
wake-up and no contention for the GIL, and a cold one still never stalls the
loop. (nginx's thread pools do the same with their reads.)

Writes try to send at once and wait for writability only for the remainder, as
asyncio's selector transports do. A batch goes out in one ``send``; a head
followed by a file goes out with MSG_MORE, so Linux can put the head and the
first bytes of the file in one packet.

If the file turns out shorter than the head announced (truncated while being
sent), ``flush`` raises FileChanged: the connection must close rather than send
a body that does not match its Content-Length.
"""

from __future__ import annotations

import enum
import errno
import os
import socket
from typing import TYPE_CHECKING

from .tls import WANT_ERRORS

if TYPE_CHECKING:
    from ..http1.responses import FileBody

# The portable send path reads a file in chunks of this size on the executor...
CHUNK_BYTES = 256 * 1024
# ...or of this size, once the chunks held by every connection together fill
# the budget (PORTABLE_BUFFER_BYTES, the ConnectionContext's chunk_budget).
MIN_CHUNK_BYTES = 16 * 1024
PORTABLE_BUFFER_BYTES = 16 * 1024 * 1024
# sendfile is asked for at most this much per call, so one fast reader on a
# huge file cannot keep the loop thread from everyone else for long.
SENDFILE_BYTES = 4 * 1024 * 1024

# preadv2's "do not wait for the disk" flag, where the platform has it.
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None

# Sending the head with MSG_MORE tells Linux that file bytes follow.
_MSG_MORE = getattr(socket, "MSG_MORE", 0)

# "Try again when the socket is ready": a TLS socket says it with its own errors.
WOULD_BLOCK: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError, *WANT_ERRORS)


class Flushed(enum.Enum):
    DONE = "done"
    BLOCKED = "blocked"
    NEED_CHUNK = "need-chunk"


class FileChanged(Exception):
    """The file ended before the length its head announced."""


class ChunkBudget:
    """The file bytes held in memory by the portable path, across all the
    connections of a server. Loop thread only."""

    __slots__ = ("total", "lent")

    def __init__(self, total: int = PORTABLE_BUFFER_BYTES):
        self.total = total
        self.lent = 0

    def lend(self, wanted: int) -> int:
        """How much of ``wanted`` bytes a chunk may hold: all, while the
        budget has room, else MIN_CHUNK_BYTES at most (progress for everyone)."""
        granted = wanted if self.lent + wanted <= self.total else min(wanted, MIN_CHUNK_BYTES)
        self.lent += granted
        return granted

    def give_back(self, size: int) -> None:
        self.lent -= size


def read_chunk(fd: int, buffer: memoryview, offset: int) -> int:
    """The executor's job on the portable path: fill ``buffer`` with the
    file's bytes from ``offset``. Returns how many it read (0 at the end of
    the file; fewer than asked near it)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    data = os.pread(fd, len(buffer), offset)  # a platform without preadv: one copy more
    buffer[:len(data)] = data
    return len(data)


def read_cached_chunk(fd: int, buffer: memoryview, offset: int) -> int | None:
    """read_chunk on the loop thread, if the page cache holds the bytes:
    the count read, or None where the disk would have to be waited for (or
    the platform cannot say so without waiting)."""
    global _RWF_NOWAIT
    if _RWF_NOWAIT is None:
        return None
    try:
        return os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            _RWF_NOWAIT = None  # a kernel or file system without it: the executor reads every chunk
            return None
        raise


class Writer:
    """One connection's output queue. Loop thread only."""

    __slots__ = ("sock", "use_sendfile", "use_flags", "read_on_loop", "add", "bytes_sent", "_queued", "_batch",
                 "_out", "_file", "_index", "_offset", "_remaining", "_budget", "_lent", "_buffer",
                 "_chunk_pending", "_closed")

    def __init__(self, sock: socket.socket, use_sendfile: bool, use_flags: bool = True,
                 budget: ChunkBudget | None = None, read_on_loop: bool = False):
        self.sock = sock
        self.use_sendfile = use_sendfile
        self.use_flags = use_flags       # send() flags such as MSG_MORE (not on a TLS socket)
        # Whether the portable path may read chunks the page cache holds
        # itself (read_cached_chunk), rather than always on the executor.
        self.read_on_loop = read_on_loop
        self.bytes_sent = 0              # every byte handed to the kernel, ever
        self._queued = 0                 # every byte queued and flushed at least once, files' included
        self._batch: list[bytes] = []    # rendered answers not yet joined for sending
        # add(data): queue bytes (a rendered answer); they are joined with the
        # others when flushed, so a batch goes out in one send. Performance:
        # the list's own method, with no Python frame of ours around it.
        self.add = self._batch.append
        self._out: bytes | memoryview = b""  # bytes being sent now
        self._file: FileBody | None = None  # the file body queued last, owned until sent
        self._index = 0                  # its piece being sent
        self._offset = 0                 # where in the file the current region is up to
        self._remaining = 0              # and how much of it is left
        self._budget = budget if budget is not None else ChunkBudget()
        self._lent = 0                   # the budget held by the file body's chunk buffer
        self._buffer: bytearray | None = None  # that buffer: every chunk of the body is read into it
        self._chunk_pending = False      # the executor is reading a chunk from its descriptor
        self._closed = False

    def use_tls(self, sock: socket.socket) -> None:
        """The socket is now a TLS one: no flags, and no sendfile (it would
        bypass the encryption)."""
        self.sock = sock
        self.use_sendfile = False
        self.use_flags = False

    @property
    def pending(self) -> bool:
        """Whether anything is queued and not yet sent."""
        return bool(self._batch or self._out or self._file is not None)

    @property
    def holds_file(self) -> bool:
        return self._file is not None

    @property
    def bytes_queued(self) -> int:
        """Every byte ever queued, files' included (so ``bytes_queued -
        bytes_sent`` is what is still to send)."""
        return self._queued + sum(map(len, self._batch))

    def add_file(self, body: FileBody) -> None:
        """Queue a file body after what is queued; the writer now owns its
        descriptor. Nothing may be queued after it until it is sent."""
        self._file = body
        self._index = -1  # flush loads the first piece once what is queued before it is sent
        self._remaining = 0
        self._queued += body.length

    def flush(self) -> Flushed:
        """Send what the socket takes now. Raises the peer's ConnectionError
        or TimeoutError, and FileChanged."""
        batch = self._batch
        if batch:
            joined = b"".join(batch)  # one answer: that very bytes object (CPython does not copy it)
            batch.clear()
            self._queued += len(joined)
            self._out = b"".join((self._out, joined)) if self._out else joined
        sock = self.sock
        try:
            while True:
                out = self._out
                if out:
                    flags = _MSG_MORE if self.use_flags and self._file is not None else 0
                    sent = sock.send(out, flags)
                    self.bytes_sent += sent
                    if sent < len(out):
                        self._out = memoryview(out)[sent:]
                        return Flushed.BLOCKED
                    self._out = b""
                body = self._file
                if body is None:
                    return Flushed.DONE
                if self._remaining == 0:
                    self._index += 1
                    self._load_piece()
                    continue
                if not self.use_sendfile:
                    if self.read_on_loop and self._read_cached():
                        continue
                    return Flushed.NEED_CHUNK
                sent = os.sendfile(sock.fileno(), body.fd, self._offset, min(self._remaining, SENDFILE_BYTES))
                if sent == 0:
                    raise FileChanged("the file shrank while being sent")
                self._offset += sent
                self._remaining -= sent
                self.bytes_sent += sent
        except WOULD_BLOCK:
            return Flushed.BLOCKED

    def _load_piece(self) -> None:
        """Make the file body's piece at ``_index`` the current one: bytes go
        to ``_out``, a region to ``_offset``/``_remaining``. Past the last
        piece, the file is done with: close it now."""
        body = self._file
        assert body is not None
        if self._index >= len(body.pieces):
            body.close()
            self._file = None
            self._give_back()  # its chunk buffer, if it had one
            return
        piece = body.pieces[self._index]
        if isinstance(piece, bytes):
            self._out = piece
            self._remaining = 0
        else:
            self._offset, self._remaining = piece

    # -- the portable path --------------------------------------------------------

    def _chunk_space(self) -> memoryview:
        """Where the next chunk goes: the body's buffer (made, from the
        budget, for its first chunk), no longer than what is left to send."""
        buffer = self._buffer
        if buffer is None:
            self._lent = self._budget.lend(min(self._remaining, CHUNK_BYTES))
            buffer = self._buffer = bytearray(self._lent)
        return memoryview(buffer)[:min(self._remaining, len(buffer))]

    def _read_cached(self) -> bool:
        """Read the next chunk here if the page cache holds it (see the top
        of this module); False if the executor must read it."""
        assert self._file is not None
        count = read_cached_chunk(self._file.fd, self._chunk_space(), self._offset)
        if count is None:
            return False
        self.take_chunk(count)
        return True

    def chunk_job(self) -> tuple[int, memoryview, int]:
        """The arguments of ``read_chunk`` for the next chunk (after
        NEED_CHUNK): the file, the buffer to fill, the offset. The buffer is
        the executor's until ``chunk_arrived``: nothing here touches it."""
        assert self._file is not None
        self._chunk_pending = True
        return self._file.fd, self._chunk_space(), self._offset

    def chunk_arrived(self) -> bool:
        """A chunk job ended. Returns False if the writer was closed meanwhile
        (its descriptor is closed now, no job using it any more)."""
        self._chunk_pending = False
        if self._closed:
            self._release_file()
            self._give_back()
            return False
        return True

    def take_chunk(self, count: int) -> None:
        """Queue the ``count`` bytes just read into the buffer; ``flush``
        sends them. Raises FileChanged for none: the file ended early."""
        if not count:
            raise FileChanged("the file shrank while being sent")
        assert self._buffer is not None
        self._out = memoryview(self._buffer)[:count]
        self._offset += count
        self._remaining -= count

    # -- the end -------------------------------------------------------------------

    def close(self) -> None:
        """Drop whatever is queued and release the file."""
        self._closed = True
        self._batch.clear()
        self._out = b""
        # Discussion: while an executor job reads from the file descriptor, it
        # must not be closed: the number could be reused at once by a new
        # socket, and the job would read from that instead. The job's
        # completion closes it (chunk_arrived).
        if not self._chunk_pending:
            self._release_file()
            self._give_back()

    def _give_back(self) -> None:
        self._buffer = None
        if self._lent:
            self._budget.give_back(self._lent)
            self._lent = 0

    def _release_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

