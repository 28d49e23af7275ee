"""The HTTP/1.1 request parser, sans-I/O: bytes in, requests (or a ProtocolError) out.

It never touches a socket, a selector or a file; the connection feeds it what
``recv`` returned and asks for the next request. Because it keeps everything it
has not yet consumed, a request split across any number of reads, down to one
byte per read, parses exactly as if it had arrived in one piece, and bytes after
a request (the next pipelined request) are left untouched for the next call.

Every way a head can be wrong raises ProtocolError carrying the status the
client should get. Any other exception escaping this module is a bug.

The grammar, from RFC 9112 (messages) and RFC 9110 (semantics):

    request-line   = method SP request-target SP HTTP-version       ; 9112 §3
    HTTP-version   = "HTTP" "/" DIGIT "." DIGIT                      ; 9112 §2.3
    field-line     = field-name ":" OWS field-value OWS              ; 9112 §5
    field-name     = token                                           ; 9110 §5.1
    token          = 1*tchar                                         ; 9110 §5.6.2
    tchar          = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "."
                   / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    field-value    = *( VCHAR / obs-text / SP / HTAB )  ; in effect   9110 §5.5
    OWS            = *( SP / HTAB )

Policies where the RFC leaves a choice, all chosen to be strict because a
server that is lenient where a proxy in front of it is strict (or the reverse)
is how request smuggling happens:

- Lines end in CRLF. A bare LF is rejected (400) rather than accepted as RFC
  9112 §2.2 permits ("MAY recognize"); a bare CR is rejected as §2.2 allows.
- Empty lines before the request line are skipped (9112 §2.2 SHOULD), up to
  MAX_EMPTY_LINES of them: more is a client spending our time, not a robust
  one, and gets 400.
- Exactly one SP between the parts of the request line (9112 §3 allows no
  lenient whitespace parsing we would want to rely on).
- obs-fold continuation lines are rejected with 400 (9112 §5.2 allows that).
- Whitespace between a field name and its colon is rejected (9112 §5.1 MUST).
- Control characters (NUL, DEL, ...) in a field value are rejected (9110 §5.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .bodies import ChunkedBody, LengthBody
from .errors import ProtocolError

__all__ = ["ProtocolError", "Request", "RequestParser"]

# The request line, checked in one regular-expression match. The target may
# hold any visible ASCII character; the static layer decides what it means.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(_TOKEN + r" ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_ANY_VERSION = re.compile(r"[^ ]+ [^ ]+ HTTP/([0-9])\.[0-9]")

# The whole header section (every field line with its CRLF) in one match: a C
# loop over the bytes instead of a Python loop over the lines. The value class
# has no CR or LF, the name class no colon, so the match cannot backtrack.
_HEADER_SECTION = re.compile(r"(?:" + _TOKEN + r":[\t\x20-\x7e\x80-\xff]*\r\n)*")
_FIELD_NAME = re.compile(_TOKEN)
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

# Host = uri-host [ ":" port ] (RFC 9110 §7.2); uri-host is an IP-literal in
# brackets or a reg-name (RFC 3986 §3.2.2).
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")

# Fields that may appear once only; a second copy is an error, not a list.
_SINGLETON_FIELDS = frozenset(("host", "content-length"))

# Policy: how many empty lines may come before a request line. RFC 9112 §2.2
# asks a server to ignore "at least one"; old clients sent one or two after a
# body. A stream of nothing but CRLF would otherwise be read until the header
# timeout, costing the loop thread its CPU for all that time.
MAX_EMPTY_LINES = 16
_EMPTY_LINES = re.compile(rb"(?:\r\n)+")

# Transfer codings we can frame (RFC 9112 §7); the last one must be chunked.
_KNOWN_CODINGS = frozenset(("chunked", "gzip", "x-gzip", "deflate", "compress", "identity"))


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """One parsed request, never changed once made: the same head bytes may
    give the same Request to many connections (see fast_path.HeadMemo).

    Field names are lower-case; a field sent more than once has its values
    joined with ", " (RFC 9110 §5.3). ``eq=False`` keeps the default identity
    hash, which is what the fast path's memo of answers is keyed on."""

    method: str                  # "GET"
    target: str                  # "/index.html?x=1", as sent
    version: str                 # "HTTP/1.1"
    headers: dict[str, str]      # {"host": "example.com", ...}; never changed
    keep_alive: bool             # may the connection stay open after it?
    request_line: str
    content_length: int | None = None  # the body's length, if framed by Content-Length
    chunked: bool = False        # is the body framed by chunked coding?
    # "Expect: 100-continue" with a body: the client waits for our answer
    # before sending the body, so the request is handed out before it, and
    # its body is never read (the connection closes after the answer).
    expects_continue: bool = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<Request {self.request_line!r}>"


class RequestParser:
    """Incremental parser for a stream of request heads on one connection."""

    __slots__ = ("buffer", "_checked_to", "_line_end", "_body_reader", "_body_owner", "_memo", "_empty_lines",
                 "max_request_line", "max_header_bytes", "max_header_count", "max_body")

    # The body readers, one per framing. A subclass may swap them (the tests
    # do, to collect the bytes a reader would discard).
    length_body = LengthBody
    chunked_body = ChunkedBody

    def __init__(self, max_request_line: int = 8192, max_header_bytes: int = 16384,
                 max_header_count: int = 100, max_body: int = 1024 * 1024, memo=None):
        # The bytes received and not yet consumed by a request. Others may
        # read it (the connection asks whether it is empty); only the parser
        # changes it.
        self.buffer = bytearray()
        self._memo = memo  # a fast_path.HeadMemo shared with other parsers, or None
        self._body_reader: LengthBody | ChunkedBody | None = None  # a body still being read
        self._body_owner: Request | None = None   # its request, if not handed out yet
        self._checked_to = 0  # bytes before this offset hold no bare LF and no CRLFCRLF
        self._line_end = -1   # offset of the request line's CRLF, once seen
        self._empty_lines = 0  # skipped since the last request
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body = max_body          # larger bodies get 413

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        self.buffer += data

    def clear(self) -> None:
        """Drop everything buffered: it will never be read (the connection is
        closing)."""
        del self.buffer[:]
        self._body_reader = self._body_owner = None
        self._checked_to = 0
        self._line_end = -1

    @property
    def buffered(self) -> int:
        """How many received bytes have not been consumed by a request yet."""
        return len(self.buffer)

    def first_line(self) -> str:
        """The start of what is buffered, up to the first line end, for logs."""
        return bytes(self.buffer[:200]).split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1")

    def next_request(self) -> Request | None:
        """Return the next complete Request, or None when more bytes are needed.

        A request is complete once its body (if any) has been read, except
        that a request with "Expect: 100-continue" is returned as soon as its
        head is (``expects_continue``): the client waits for an answer.
        Raises ProtocolError for a request that can never become valid.
        """
        buffer = self.buffer
        if not buffer:
            return None  # Performance: the common case after the last request of a read
        if self._body_reader is not None:
            try:
                if not self._body_reader.consume(self.buffer):
                    return None
            except ProtocolError as error:
                owner = self._body_owner
                if owner is not None:
                    error.method, error.request_line = owner.method, owner.request_line
                raise
            self._body_reader = None
            request, self._body_owner = self._body_owner, None
            if request is not None:
                return request
        if buffer.startswith(b"\r\n"):
            self._skip_empty_lines()
        # Bytes before _checked_to were searched on an earlier call; only an end
        # that overlaps the new bytes can be new, so the search is linear overall.
        checked_to = self._checked_to
        end = buffer.find(b"\r\n\r\n", checked_to - 3 if checked_to > 3 else 0)
        if end < 0:
            self._check_incomplete_head()
            return None
        head_bytes = bytes(buffer[:end + 2])
        memo = self._memo
        request = memo.get(head_bytes) if memo is not None else None
        if request is None:
            head = head_bytes.decode("latin-1")  # latin-1: bytes <-> str, lossless
            # Parse before consuming: after an error the bad head stays in the
            # buffer, so first_line() can still show it in the access log.
            try:
                request = self._parse_head(head)
            except ProtocolError as error:
                request_line = head[:head.find("\r\n")]
                error.method, error.request_line = request_line.partition(" ")[0], request_line
                raise
            if memo is not None:
                memo.put(head_bytes, request)
        del buffer[:end + 4]  # O(1): bytearray drops a prefix by moving its start
        self._checked_to = 0
        self._line_end = -1
        self._empty_lines = 0
        if request.chunked or request.content_length:
            return self._start_body(request)
        return request

    def _start_body(self, request: Request) -> Request | None:
        """Begin reading a request's body. Return the request if it can be
        handed out now, or None while its body is still arriving."""
        reader: LengthBody | ChunkedBody
        length = request.content_length or 0
        if request.chunked:
            reader = self.chunked_body(self.max_body, self.max_header_bytes)
        elif length > self.max_body:
            raise ProtocolError(413, "request body too large", request.method, request.request_line)
        else:
            reader = self.length_body(length)
        self._body_reader = reader
        if request.expects_continue:
            # The client waits for our answer before it sends the body, and
            # our answer will be final (nothing here accepts a body), so the
            # body is never read: the connection closes after the response
            # (RFC 9110 §10.1.1).
            return request
        self._body_owner = request
        return self.next_request()  # reads what has arrived of the body

    def _skip_empty_lines(self):
        buffer = self.buffer
        end = _EMPTY_LINES.match(buffer).end()  # called only when the buffer starts with CRLF
        self._empty_lines += end // 2
        if self._empty_lines > MAX_EMPTY_LINES:
            raise ProtocolError(400, "too many empty lines before the request line")
        del buffer[:end]
        self._checked_to = 0  # offsets into the old buffer mean nothing now
        self._line_end = -1

    def _check_incomplete_head(self):
        """Fail early on a head that is already too long or malformed, so that a
        client cannot hold the connection with it until the header timeout."""
        buffer = self.buffer
        # Look for a bare LF or CR (and the request line's end) in the bytes
        # not yet checked. Starting one byte back lets us see the CR before an
        # LF that begins the new bytes; an LF already checked at that position
        # is skipped. Each byte is checked once, so a head sent one byte at a
        # time still costs linear time.
        start = max(self._checked_to - 1, 0)
        if self._checked_to and buffer[start:start + 1] == b"\n":
            start += 1
        region = buffer[start:]
        crlf_count = region.count(b"\r\n")
        if region.count(b"\n") != crlf_count:
            raise ProtocolError(400, "line ends in a bare LF; CRLF is required")
        # Likewise a CR not followed by LF (a trailing CR may still get its LF):
        # otherwise "\r\n\r\r\n" would wait for an end that never comes.
        if region.count(b"\r") - region.endswith(b"\r") != crlf_count:
            raise ProtocolError(400, "bare CR; CRLF is required")
        if self._line_end < 0:
            found = region.find(b"\r\n")
            if found >= 0:
                self._line_end = start + found
        # A trailing CR may begin the CRLF that ends what precedes it, so it
        # does not count against a limit yet: a line of exactly the limit passes.
        received = len(buffer) - buffer.endswith(b"\r")
        if self._line_end < 0:
            if received > self.max_request_line:
                raise ProtocolError(414, "request line too long")
        elif self._line_end > self.max_request_line:
            raise ProtocolError(414, "request line too long")
        # The section so far is every byte after the request line's CRLF, as
        # _parse_head counts it (field lines with their CRLFs): it can only grow.
        elif received - (self._line_end + 2) > self.max_header_bytes:
            raise ProtocolError(431, "request header section too large")
        self._checked_to = len(buffer)

    def _parse_head(self, head):
        # head is the request line and field lines, each ending in CRLF.
        line_end = head.find("\r\n")
        request_line = head[:line_end]
        if line_end > self.max_request_line:
            raise ProtocolError(414, "request line too long")
        section = head[line_end + 2:]
        if len(section) > self.max_header_bytes:
            raise ProtocolError(431, "request header section too large")

        match = _REQUEST_LINE.fullmatch(request_line)
        if match is None:
            version = _ANY_VERSION.fullmatch(request_line)
            if version is not None and version.group(1) != "1":
                raise ProtocolError(505, "only HTTP/1.x is supported")
            raise ProtocolError(400, "malformed request line")
        target, major, minor = match.groups()
        if major != "1":
            raise ProtocolError(505, "only HTTP/1.x is supported")
        method = request_line[:match.start(1) - 1]

        if _HEADER_SECTION.fullmatch(section) is None:
            raise ProtocolError(400, _describe_bad_field(section))
        lines = section.split("\r\n")
        lines.pop()  # the empty string after the last CRLF
        if len(lines) > self.max_header_count:
            raise ProtocolError(431, "too many header fields")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            name = name.lower()
            value = value.strip(" \t")
            if name in headers:
                if name in _SINGLETON_FIELDS:
                    raise ProtocolError(400, f"more than one {name} field")
                headers[name] = headers[name] + ", " + value
            else:
                headers[name] = value

        # HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); 1.0 may omit it.
        host = headers.get("host")
        if host is None:
            if minor != "0":
                raise ProtocolError(400, "missing Host field")
        elif _HOST.fullmatch(host) is None:
            raise ProtocolError(400, "malformed Host field")

        content_length, chunked = _body_framing(headers, minor)
        expect = headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            raise ProtocolError(417, "the only expectation supported is 100-continue")
        connection = headers.get("connection")
        if minor == "0":
            # HTTP/1.0 closes unless the client asked to keep it (RFC 9112 §9.3).
            keep_alive = connection is not None and "keep-alive" in _tokens(connection)
        else:
            keep_alive = connection is None or "close" not in _tokens(connection)
        # A 100-continue expectation in an HTTP/1.0 request MUST be ignored
        # (RFC 9110 §10.1.1): its body is read like any other.
        expects_continue = expect is not None and (chunked or bool(content_length)) and minor != "0"
        return Request(method, target, "HTTP/1." + minor, headers, keep_alive, request_line,
                       content_length, chunked, expects_continue)


def _tokens(value):
    """The comma-separated, case-insensitive tokens of a list field."""
    return {token.strip(" \t").lower() for token in value.split(",")}


def _body_framing(headers, minor):
    """How the body is framed: (content_length or None, chunked), after
    checking the framing (RFC 9112 §6). Raises ProtocolError for framing that
    a proxy in front of us might read differently."""
    transfer_encoding = headers.get("transfer-encoding")
    content_length = headers.get("content-length")
    if transfer_encoding is not None:
        # Both present is the classic smuggling vector (RFC 9112 §6.3 allows
        # treating it as an error, and we do).
        if content_length is not None:
            raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
        codings = [coding.strip(" \t").lower() for coding in transfer_encoding.split(",")]
        if any(coding not in _KNOWN_CODINGS for coding in codings):
            raise ProtocolError(400, "unknown transfer coding")
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            raise ProtocolError(400, "the last transfer coding must be chunked, once")
        if minor == "0":
            # HTTP/1.0 has no chunked coding: its framing is faulty (9112 §6.1).
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        return None, True
    if content_length is not None:
        # 1*DIGIT, nothing else: no sign, no space, no list (RFC 9110 §8.6).
        # 18 digits is far beyond any body we accept and cannot overflow.
        if not (content_length.isdigit() and content_length.isascii() and len(content_length) <= 18):
            raise ProtocolError(400, "malformed Content-Length")
        return int(content_length), False
    return None, False


def _describe_bad_field(section):
    """Say which field line broke the grammar (only called on the error path)."""
    for line in section.split("\r\n")[:-1]:
        if line[:1] in (" ", "\t"):
            return "obsolete line folding (obs-fold) is not allowed"
        name, colon, value = line.partition(":")
        if not colon:
            return "header field line without a colon"
        if name[-1:] in (" ", "\t"):
            return "whitespace between field name and colon"
        if _FIELD_NAME.fullmatch(name) is None:
            return "invalid character in field name"
        if _FIELD_VALUE.fullmatch(value) is None:
            return "invalid character in field value"
    return "malformed header section"
