"""Feeding the request parser: three ways, in pieces, and with a parser that keeps the bodies it frames.

The parser never keeps a body: its readers drop body bytes in one place,
``discard``. The readers here override it to collect them, and
CollectingParser makes those readers, so a test can check exactly which bytes
a body had, and (with ``buffered``) where the next request starts.

Plain asserts and no pytest, so that scripts/fuzz_parser.py can use the
CollectingParser as well.
"""

import dataclasses

from reactor_http.http1.bodies import ChunkedBody, LengthBody
from reactor_http.http1.parser import ProtocolError, Request, RequestParser

# A complete request fed after the one under test: it must be left untouched
# in the buffer, and then parse on its own.
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: next.example\r\n\r\n"


def head(request_line, *field_lines):
    """Bytes of a request head from its lines."""
    return b"".join(line + b"\r\n" for line in (request_line, *field_lines)) + b"\r\n"


def fields_of(request):
    """Every field of a Request (and has_body), for comparing two parses."""
    return tuple(getattr(request, field.name) for field in dataclasses.fields(request)) + (request.has_body,)


# -- keeping the bodies --------------------------------------------------------

class CollectingLengthBody(LengthBody):
    """A LengthBody that keeps what it discards."""

    __slots__ = ("collected",)

    def __init__(self, length):
        super().__init__(length)
        self.collected = bytearray()

    def discard(self, buffer, count):
        self.collected += buffer[:count]
        super().discard(buffer, count)


class CollectingChunkedBody(ChunkedBody):
    """A ChunkedBody that keeps the chunk data it discards: the decoded body."""

    __slots__ = ("collected",)

    def __init__(self, max_body, max_trailer_bytes):
        super().__init__(max_body, max_trailer_bytes)
        self.collected = bytearray()

    def discard(self, buffer, count):
        self.collected += buffer[:count]
        super().discard(buffer, count)


class CollectingParser(RequestParser):
    """A RequestParser whose body readers keep the bytes they frame.

    ``bodies`` holds one bytearray per body begun, in order; a request whose
    ``has_body`` is false begins none. The body of an "Expect: 100-continue"
    request is handed out empty and fills as the parser reads on."""

    __slots__ = ("bodies",)

    def __init__(self, **options):
        super().__init__(**options)
        self.bodies = []

    # The parser makes its readers with self.length_body(length) and
    # self.chunked_body(max_body, max_trailer_bytes): as methods, these can
    # also note where each reader's bytes go.
    def length_body(self, length):
        return self._begin(CollectingLengthBody(length))

    def chunked_body(self, max_body, max_trailer_bytes):
        return self._begin(CollectingChunkedBody(max_body, max_trailer_bytes))

    def _begin(self, reader):
        self.bodies.append(reader.collected)
        return reader

    def body_of(self, request):
        """The body of ``request``, the request this parser handed out last:
        its bytes, or None if it has no body."""
        return self.bodies[-1] if request.has_body else None


# -- feeding -------------------------------------------------------------------

def check_next_request_follows(parser):
    """The bytes left after the request under test are exactly NEXT_REQUEST."""
    assert parser.buffered == len(NEXT_REQUEST), parser.buffered
    after = parser.next_request()
    assert (after.target, after.headers) == ("/next", {"host": "next.example"}), after
    assert parser.buffered == 0, parser.buffered


def parse_three_ways(data, collect_bodies=False, **options):
    """Parse one complete request (head and any body) fed whole, one byte at a
    time (nothing may come out before the last byte), and followed by
    NEXT_REQUEST (which must be left untouched, then parse); check that the
    three agree and return the Request.

    With ``collect_bodies`` each parse uses a CollectingParser, which must
    begin exactly one body if the request has one and none otherwise; the
    three bodies must agree too, and the return value is (Request, its body's
    bytes or None). ``options`` are the parser's limits."""
    parser_class = CollectingParser if collect_bodies else RequestParser
    ways = [("whole", [data], False),
            ("one byte at a time", [data[index:index + 1] for index in range(len(data))], False),
            ("followed by the next request", [data + NEXT_REQUEST], True)]
    results = []
    for way, reads, followed in ways:
        parser = parser_class(**options)
        for index, read in enumerate(reads):
            parser.feed(read)
            request = parser.next_request()
            if index < len(reads) - 1:
                assert request is None, f"a request came out after byte {index}"
        assert isinstance(request, Request), f"fed {way}: {request!r}"
        body = None
        if collect_bodies:
            assert len(parser.bodies) == request.has_body, (way, request, parser.bodies)
            body = parser.body_of(request)
            body = None if body is None else bytes(body)
        if followed:
            check_next_request_follows(parser)
        else:
            assert parser.buffered == 0, (way, parser.buffered)
            assert parser.next_request() is None, way
        results.append((way, request, fields_of(request), body))
    _, request, fields, body = results[0]
    for way, _, other_fields, other_body in results[1:]:
        assert (other_fields, other_body) == (fields, body), f"fed {way}"
    return (request, body) if collect_bodies else request


def _protocol_error(parser):
    """The ProtocolError the parser's next_request raises (it must raise one)."""
    try:
        request = parser.next_request()
    except ProtocolError as error:
        return error
    raise AssertionError(f"no ProtocolError; next_request() gave {request!r}")


def error_three_ways(data, status, collect_bodies=False, **options):
    """Check that data fed whole, one byte at a time, and followed by
    NEXT_REQUEST raises ProtocolError(status). Returns the index of the byte on
    whose arrival the byte-by-byte parse failed."""
    parser_class = CollectingParser if collect_bodies else RequestParser
    for fed in (data, data + NEXT_REQUEST):
        parser = parser_class(**options)
        parser.feed(fed)
        error = _protocol_error(parser)
        assert error.status == status, (error.status, error.detail)

    bytewise = parser_class(**options)
    for index in range(len(data)):
        bytewise.feed(data[index:index + 1])
        try:
            request = bytewise.next_request()
        except ProtocolError as error:
            assert error.status == status, (error.status, error.detail)
            return index
        assert request is None, f"a request came out after byte {index}"
    raise AssertionError("feeding byte by byte never raised")


def split_at(data, cuts):
    """data cut into pieces at the given offsets (those outside it ignored)."""
    points = sorted(set(cut for cut in cuts if 0 < cut < len(data)))
    return [data[start:end] for start, end in zip([0] + points, points + [len(data)], strict=True)]


def feed_in_chunks(parser, chunks, requests=None):
    """Feed chunks one at a time, draining every complete request after each,
    as a connection does. Returns the requests, appended to ``requests`` if
    given (which keeps those that came before a ProtocolError: it propagates).
    Each request must consume bytes, so the draining loop provably ends."""
    requests = [] if requests is None else requests
    for chunk in chunks:
        parser.feed(chunk)
        while True:
            before = parser.buffered
            request = parser.next_request()
            if request is None:
                break
            assert isinstance(request, Request), request
            assert parser.buffered < before, (request, before, parser.buffered)
            requests.append(request)
    return requests


def mutate_bytes(draw, data, byte_strategy):
    """Insert, delete or replace one to three bytes of ``data`` (a bytearray,
    changed in place), as a Hypothesis ``draw`` chooses: the near-misses of a
    valid request that reach checks random bytes never get past."""
    from hypothesis import strategies as st  # only the property tests need it

    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        byte = draw(byte_strategy)
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert":
            data.insert(position, byte)
        elif position < len(data):
            if action == "delete":
                del data[position]
            else:
                data[position] = byte
