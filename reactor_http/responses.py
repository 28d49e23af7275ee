"""Response plans: what to send, decided before anything is sent.

A Response is data: a status, the header lines that describe the content, and
a body source, either bytes in memory or a region of an open file that the
connection will hand to ``os.sendfile``. The connection adds the fields that
depend on the connection (Date, Server, Connection) when it renders the head.
"""

import os
import time
from email.utils import formatdate

SERVER_NAME = "reactor_http"

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
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
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# Statuses whose responses never carry content (RFC 9110 §6.4.1).
_NO_CONTENT_STATUSES = frozenset((204, 304))


class FileBody:
    """A region of an open file to send: the connection owns ``fd`` and closes it."""

    __slots__ = ("fd", "offset", "remaining")

    def __init__(self, fd, offset, length):
        self.fd = fd
        self.offset = offset
        self.remaining = length

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Response:
    """A response plan.

    ``fields`` is the rendered header lines ("Name: value\r\n" each) that
    describe the content. The body is ``body`` (bytes sent with the head),
    then ``file`` (a FileBody), then each item of ``parts`` in turn (bytes or
    FileBody: a multipart/byteranges body over a large file). ``content_length``
    is the length the head announces: for HEAD it is announced but not sent.
    ``close`` asks the connection to close once the response is sent.
    """

    __slots__ = ("status", "fields", "body", "file", "parts", "content_length", "close", "wire")

    def __init__(self, status, fields="", body=b"", file=None, content_length=None, close=False,
                 parts=None, wire=None):
        self.status = status
        self.fields = fields
        self.body = body
        self.file = file
        self.parts = parts
        if content_length is None:
            content_length = len(body) + (file.remaining if file is not None else 0)
        self.content_length = content_length
        self.close = close
        # A WireCache shared by every response made from the same plan (see
        # static.py), so the same bytes are not rendered again each request.
        self.wire = wire

    def without_body(self):
        """The same response for a HEAD request: same head, nothing after it."""
        self.release()
        self.body = b""
        return self

    def release(self):
        """Close any file this plan holds (its body will not be sent)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.parts is not None:
            for part in self.parts:
                if isinstance(part, FileBody):
                    part.close()
            self.parts = None


class WireCache:
    """The bytes last sent for a plan: head and body, as rendered in one
    second (the Date field) with one Connection field. Loop thread only."""

    __slots__ = ("second", "connection_field", "data")

    def __init__(self):
        self.second = None
        self.connection_field = None
        self.data = b""


def error_response(status, detail=None, extra_fields="", close=False):
    """A short plain-text error response, e.g. "404 Not Found"."""
    reason = REASONS[status]
    text = f"{status} {reason}\n" if detail is None else f"{status} {reason}: {detail}\n"
    body = text.encode("utf-8")
    fields = ("Content-Type: text/plain; charset=utf-8\r\n"
              "X-Content-Type-Options: nosniff\r\n" + extra_fields)
    return Response(status, fields, body, close=close)


class HeadRenderer:
    """Renders status line and header fields into bytes, with a Date value
    built once a second rather than once a request.

    ``extra_fields`` are lines every response carries (--header, and CORS's
    Access-Control-Allow-Origin): they ride along with Server and Date, so
    they cost nothing per request."""

    __slots__ = ("_date_second", "_date_fields", "_extra_fields")

    def __init__(self, extra_fields=""):
        self._date_second = None
        self._date_fields = ""
        self._extra_fields = extra_fields

    def date_fields(self):
        """The Server and Date lines (and the extra fields), rebuilt when the second changes."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_fields = (f"Server: {SERVER_NAME}\r\nDate: {formatdate(now, usegmt=True)}\r\n"
                                 f"{self._extra_fields}")
        return self._date_fields

    def wire_bytes(self, response, connection_field):
        """Head and in-memory body, as one bytes object for one send(),
        reused from the response's WireCache while the second and the
        Connection field are the same."""
        wire = response.wire
        if wire is not None and wire.second == int(time.time()) and wire.connection_field == connection_field:
            return wire.data
        head = self.render(response, connection_field)
        data = head + response.body if response.body else head
        if wire is not None:
            wire.second, wire.connection_field, wire.data = self._date_second, connection_field, data
        return data

    def render(self, response, connection_field):
        """The head bytes: status line, Server, Date, content fields,
        Content-Length, an optional Connection field, blank line."""
        status = response.status
        if status in _NO_CONTENT_STATUSES:
            length = ""
        else:
            length = f"Content-Length: {response.content_length}\r\n"
        head = (f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                f"{self.date_fields()}{response.fields}{length}{connection_field}\r\n")
        return head.encode("latin-1")
