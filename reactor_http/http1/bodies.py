"""Request body framing (RFC 9112 §6-7): where a body ends, so the next request starts at the right byte.

No method this server serves uses a request body, but a client may still send
one (a POST that will get 405, a GET with a body), and on a persistent
connection the bytes after it are the next request. Reading the body's length
correctly, and refusing anything ambiguous, is what stops a body from being
taken for a request: the heart of request smuggling.

Two readers, one per framing, each with ``consume(buffer)``: eat body bytes
from the front of the connection's buffer, return True once the body is
complete, raise ProtocolError if the framing is broken or the body too large.
The body's bytes leave the buffer in one place, ``discard``, which a subclass
may override to keep them (the tests do, to compare bodies with h11's).
"""

from __future__ import annotations

import re

from .errors import ProtocolError

# chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF     (RFC 9112 §7.1)
# chunk-size     = 1*HEXDIG
# chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
# chunk-ext-val  = token / quoted-string
# 16 hex digits is 2**64: anything longer is an overflow attempt, not a size.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})"
    rb"(?:[ \t]*;[ \t]*" + _TOKEN.encode() + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN.encode() + rb"|"
    + _QUOTED_STRING.encode() + rb"))?)*")
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*")

# The longest chunk-size line (size and extensions) we read before deciding
# it is an attack; nginx and node allow a few KiB as well.
MAX_CHUNK_LINE = 4096

# Policy: a body of more chunks than this (or than one per KiB of the body
# limit, if that is more) is refused. Each chunk costs a few microseconds of
# Python to frame: without a bound, a 1 MiB body in one-byte chunks holds the
# loop for over a second, where real clients send chunks of kilobytes.
MAX_CHUNKS = 4096

# The common chunk-size line, a size and CRLF with no extension, matched in
# place at the front of the buffer (Performance: no line is cut out of it).
_PLAIN_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")


class LengthBody:
    """A body of exactly Content-Length bytes."""

    __slots__ = ("remaining",)

    def __init__(self, length: int):
        self.remaining = length

    def consume(self, buffer: bytearray) -> bool:
        take = min(self.remaining, len(buffer))
        if take:
            self.discard(buffer, take)
            self.remaining -= take
        return self.remaining == 0

    def discard(self, buffer: bytearray, count: int) -> None:
        """Drop ``count`` body bytes from the front of the buffer."""
        del buffer[:count]


class ChunkedBody:
    """A chunked body: chunks, a last chunk of size 0, optional trailer fields."""

    __slots__ = ("max_body", "max_trailer_bytes", "max_chunks", "total", "chunks", "_state", "_chunk_left",
                 "_trailer_bytes", "_scanned")

    SIZE_LINE, DATA, DATA_END, TRAILERS, DONE = range(5)

    def __init__(self, max_body: int, max_trailer_bytes: int):
        self.max_body = max_body
        self.max_trailer_bytes = max_trailer_bytes
        self.max_chunks = max(MAX_CHUNKS, max_body // 1024)
        self.total = 0
        self.chunks = 0
        self._state = self.SIZE_LINE
        self._chunk_left = 0
        self._trailer_bytes = 0
        # How much of a partial line at the front of the buffer was already
        # searched for its end: each byte is searched once, so a line sent one
        # byte at a time costs linear, not quadratic, time.
        self._scanned = 0

    def consume(self, buffer: bytearray) -> bool:
        while True:
            state = self._state
            if state == self.SIZE_LINE:
                plain = _PLAIN_SIZE_LINE.match(buffer)
                if plain is not None:
                    size = int(plain.group(1), 16)
                    del buffer[:plain.end()]
                    self._scanned = 0
                else:
                    line = _take_line(buffer, MAX_CHUNK_LINE, "chunk size line", self._scanned)
                    if line is None:
                        self._scanned = len(buffer)
                        return False
                    self._scanned = 0
                    match = _CHUNK_LINE.fullmatch(line)
                    if match is None:
                        raise ProtocolError(400, "malformed chunk size line")
                    size = int(match.group(1), 16)
                self.chunks += 1
                if self.chunks > self.max_chunks:
                    raise ProtocolError(400, "too many chunks in the body")
                self.total += size
                if self.total > self.max_body:
                    raise ProtocolError(413, "request body too large")
                if size == 0:
                    self._state = self.TRAILERS
                else:
                    self._chunk_left = size
                    self._state = self.DATA
            elif state == self.DATA:
                take = min(self._chunk_left, len(buffer))
                if take == 0:
                    return False
                self.discard(buffer, take)
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._state = self.DATA_END
            elif state == self.DATA_END:
                if len(buffer) < 2:
                    if buffer[:1] not in (b"", b"\r"):
                        raise ProtocolError(400, "chunk data not followed by CRLF")
                    return False
                if buffer[:2] != b"\r\n":
                    raise ProtocolError(400, "chunk data not followed by CRLF")
                del buffer[:2]
                self._state = self.SIZE_LINE
            elif state == self.TRAILERS:
                line = _take_line(buffer, self.max_trailer_bytes - self._trailer_bytes + 2, "trailer section",
                                  self._scanned)
                if line is None:
                    self._scanned = len(buffer)
                    return False
                self._scanned = 0
                if not line:
                    self._state = self.DONE
                    return True
                # Trailer fields are checked like header fields, then dropped:
                # nothing here needs them, and merging them into the header
                # fields would let a body change the request (RFC 9110 §6.5.2).
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > self.max_trailer_bytes:
                    raise ProtocolError(431, "trailer section too large")
                if _TRAILER_LINE.fullmatch(line) is None:
                    raise ProtocolError(400, "malformed trailer field")
            else:
                return True

    def discard(self, buffer: bytearray, count: int) -> None:
        """Drop ``count`` bytes of chunk data from the front of the buffer."""
        del buffer[:count]


def _take_line(buffer, limit, what, scanned=0):
    """Remove and return one CRLF-terminated line (without CRLF) from the
    buffer, or None if it has not all arrived yet. The first ``scanned`` bytes
    were searched on an earlier call and hold no LF."""
    # Start one byte back: a CR at the end of the old bytes may pair with an LF
    # at the start of the new ones.
    end = buffer.find(b"\r\n", max(scanned - 1, 0), limit + 2)
    if end < 0:
        if buffer.find(b"\n", scanned, limit + 2) >= 0:
            raise ProtocolError(400, f"bare LF in the {what}; CRLF is required")
        # A trailing CR may begin the line's CRLF, so it does not count against
        # the limit yet: a line of exactly the limit passes however it arrives.
        if len(buffer) - buffer.endswith(b"\r") > limit:
            raise ProtocolError(400 if what != "trailer section" else 431, f"{what} too long")
        return None
    line = bytes(buffer[:end])
    if b"\r" in line or b"\n" in line:
        raise ProtocolError(400, f"bare CR or LF in the {what}")
    del buffer[:end + 2]
    return line
