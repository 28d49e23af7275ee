"""Responses as data: what to send, decided before anything is sent.

A Response is a value: a status, the header lines that describe the content,
and the content itself, as bytes in memory, or as a FileBody (an open file and
the regions of it to send, which the connection hands to ``os.sendfile``). The
connection adds the fields that depend on the connection and the moment (Date,
Server, Connection) when it renders the head with a HeadRenderer.

Nobody changes a Response once it is made (see fast_path.py for the one
exception and why it is safe): a HEAD request gets the same Response as a GET,
and the connection renders it without its body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .dates import format_http_date

if TYPE_CHECKING:
    from .fast_path import WireCache

SERVER_NAME = "reactor_http"

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# Statuses whose responses never carry content (RFC 9110 §6.4.1, §15.4.5).
NO_CONTENT_STATUSES = frozenset((204, 304))

# A piece of a file body: a region of the file, (offset, length), or bytes of
# our own between regions (the part heads of a multipart/byteranges body).
Piece = tuple[int, int] | bytes


class FileBody:
    """Content sent from an open file: the descriptor, which this object owns
    (``close`` it once sent or dropped), and the pieces to send, in order.

    One descriptor serves every region, since ``os.sendfile`` and
    ``os.pread`` take an explicit offset: a multipart answer of sixteen ranges
    costs one descriptor, not sixteen."""

    __slots__ = ("fd", "pieces", "length", "_on_close")

    def __init__(self, fd: int, pieces: Sequence[Piece], on_close: Callable[[], object] | None = None):
        self.fd = fd
        self.pieces = tuple(pieces)
        self.length = sum(len(piece) if isinstance(piece, bytes) else piece[1] for piece in self.pieces)
        self._on_close = on_close  # told once the descriptor is closed (the pool it came from)

    @classmethod
    def region(cls, fd: int, offset: int, length: int) -> FileBody:
        """``length`` bytes of the file from ``offset``."""
        return cls(fd, ((offset, length),))

    def close(self) -> None:
        """Close the descriptor (safe to repeat)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close()


class EventStream(Protocol):
    """The content of a response that never ends by itself: a stream of
    events (Server-Sent Events, server/dashboard.py), sent as they come for as
    long as the client stays. Its head has no Content-Length: the content
    ends when the connection does (RFC 9112 §6.3, the last rule), so such a
    response always says Connection: close. The connection holds it in the
    STREAMING state (connection/states.py)."""

    def attach(self, notify: Callable[[], object]) -> None:
        """The connection will send what ``take`` returns; ``notify()`` (on
        the loop thread) says there is something to take."""

    def take(self) -> bytes:
        """The bytes waiting to be sent (b"" for none). The stream keeps a
        bounded amount waiting, however slowly the client reads."""
        ...

    def detach(self) -> None:
        """The connection has closed: the stream holds nothing for it any more."""


class Response:
    """A response plan.

    ``fields`` is the rendered header lines ("Name: value\\r\\n" each) that
    describe the content. The content is ``body`` (bytes sent with the head)
    or ``file`` (a FileBody), or ``stream`` (an EventStream: content without
    an end, and without a Content-Length). ``content_length`` is the length
    the head announces, for HEAD too, which announces it without sending it.
    ``close`` asks the connection to close once the response is sent.
    """

    __slots__ = ("status", "fields", "body", "file", "content_length", "close", "wire", "stream")

    def __init__(self, status: int, fields: str = "", body: bytes = b"", file: FileBody | None = None,
                 content_length: int | None = None, close: bool = False, stream: EventStream | None = None):
        self.status = status
        self.fields = fields
        self.body = body
        self.file = file
        if content_length is None:
            content_length = len(body) + (file.length if file is not None else 0)
        self.content_length = content_length
        self.stream = stream
        self.close = close or stream is not None  # a stream ends with its connection
        # Set once by fast_path.AnswerMemo.remember, for a response that will
        # be given again: the bytes last rendered for it.
        self.wire: WireCache | None = None

    def release(self) -> None:
        """Close the file this plan holds, if any (its content will not be sent)."""
        if self.file is not None:
            self.file.close()

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def error_response(status: int, detail: str | None = None, extra_fields: str = "",
                   close: bool = False) -> Response:
    """A short plain-text error response, e.g. "404 Not Found"."""
    reason = REASONS[status]
    text = f"{status} {reason}\n" if detail is None else f"{status} {reason}: {detail}\n"
    fields = ("Content-Type: text/plain; charset=utf-8\r\n"
              "X-Content-Type-Options: nosniff\r\n" + extra_fields)
    return Response(status, fields, text.encode("utf-8"), close=close)


class HeadRenderer:
    """Renders status line and header fields into bytes, with a Date value
    built once a second rather than once a request.

    ``extra_fields`` are lines every response carries (--header, and CORS's
    Access-Control-Allow-Origin): they ride along with Server and Date, so
    they cost nothing per request."""

    __slots__ = ("_date_second", "_date_fields", "_extra_fields")

    def __init__(self, extra_fields: str = ""):
        self._date_second = -1
        self._date_fields = ""
        self._extra_fields = extra_fields

    def date_fields(self) -> str:
        """The Server and Date lines (and the extra fields), rebuilt when the second changes."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_fields = (f"Server: {SERVER_NAME}\r\nDate: {format_http_date(now)}\r\n"
                                 f"{self._extra_fields}")
        return self._date_fields

    def render(self, response: Response, connection_field: str, head_only: bool = False) -> bytes:
        """The head (status line, Server, Date, content fields, Content-Length,
        an optional Connection field, blank line) and, unless ``head_only``,
        the in-memory body, as one bytes object."""
        status = response.status
        if status in NO_CONTENT_STATUSES or response.stream is not None:
            # 204 and 304 carry no Content-Length (RFC 9110 §8.6); a stream's
            # content ends with the connection (RFC 9112 §6.3).
            length = ""
        else:
            length = f"Content-Length: {response.content_length}\r\n"
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                f"{self.date_fields()}{response.fields}{length}{connection_field}\r\n").encode("latin-1")
        if head_only or not response.body:
            return head
        return head + response.body
