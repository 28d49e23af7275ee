"""Unit tests for request-body framing (reactor_http.http1.bodies, through the parser).

Where a body ends is where the next request starts: reading it one byte
short or long turns body bytes into a request (request smuggling). So every
body here is fed three ways, like the head tests: whole, one byte at a time
(the request must come out on the last byte and not before), and followed by
the next pipelined request, which must then parse on its own.
"""

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.parsing import (
    NEXT_REQUEST,
    CollectingChunkedBody,
    CollectingLengthBody,
    CollectingParser,
    check_next_request_follows,
    error_three_ways,
    feed_in_chunks,
    fields_of,
    head,
    parse_three_ways,
    split_at,
)

from reactor_http.http1.bodies import MAX_CHUNK_LINE
from reactor_http.http1.parser import RequestParser

CHUNKED_HEAD = head(b"POST /upload HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")
CHUNKED_HEADERS = {"host": "a", "transfer-encoding": "chunked"}

# Fed three ways with a parser that keeps the body it frames: (request, body bytes or None).
parse_with_body = functools.partial(parse_three_ways, collect_bodies=True)


def with_length(body, *field_lines, version=b"HTTP/1.1"):
    """A POST whose body is framed by Content-Length."""
    return head(b"POST /upload " + version, b"Host: a", b"Content-Length: %d" % len(body), *field_lines) + body


# -- Content-Length ------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"x",
    b"hello",
    b"\r\n",
    b"\r\n\r\n",
    b"\x00\xff" * 100,
    # A body that looks like a request is still body: the framing says so.
    b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"0\r\n\r\n",
])
def test_content_length_body_is_read_exactly(body):
    """A Content-Length body is exactly that many bytes (RFC 9112 §6.2), and
    the next request starts at the byte after it."""
    request, kept = parse_with_body(with_length(body))
    assert kept == body
    assert (request.content_length, request.chunked, request.has_body) == (len(body), False, True)
    assert request.expects_continue is False


def test_content_length_on_any_method_and_on_http_1_0():
    """A GET or an HTTP/1.0 request may carry a Content-Length body too; it is
    framed the same way."""
    request, body = parse_with_body(head(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 3") + b"abc")
    assert (request.method, body) == ("GET", b"abc")
    request, body = parse_with_body(with_length(b"old", version=b"HTTP/1.0"))
    assert (request.version, body) == ("HTTP/1.0", b"old")


def test_content_length_with_leading_zeros():
    """Content-Length is 1*DIGIT, so leading zeros are allowed (RFC 9110 §8.6)."""
    request, body = parse_with_body(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 0003") + b"abc")
    assert (request.content_length, body) == (3, b"abc")


@pytest.mark.parametrize("data", [
    with_length(b"hello"),
    CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n",
    CHUNKED_HEAD + b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
])
def test_the_parser_frames_bodies_as_the_collecting_parser_does(data):
    """The tests here read bodies through support.parsing's CollectingParser;
    the parser the server runs frames the same bytes the same way, three ways,
    and a Request has no place to keep a body at all."""
    request = parse_three_ways(data)
    collected_request, _ = parse_with_body(data)
    assert fields_of(request) == fields_of(collected_request)
    assert not hasattr(request, "body")


def test_a_request_without_a_body_has_no_body_bytes():
    """No body is begun for a request that has none (not even an empty one),
    and Content-Length: 0 means no body at all."""
    assert parse_with_body(head(b"GET / HTTP/1.1", b"Host: a"))[1] is None
    request, body = parse_with_body(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 0"))
    assert (request.has_body, body, request.content_length) == (False, None, 0)


def test_pipelined_requests_with_bodies_come_out_in_order():
    """Requests with both framings and without a body, in one feed, come out
    one per call, each body exactly its own."""
    stream = (with_length(b"first body")
              + CHUNKED_HEAD + b"6\r\nsecond\r\n0\r\n\r\n"
              + head(b"GET /third HTTP/1.1", b"Host: a")
              + with_length(b""))
    parser = CollectingParser()
    parser.feed(stream)
    seen = []
    for _ in range(4):
        request = parser.next_request()
        seen.append((request.target, parser.body_of(request)))
    assert seen == [("/upload", b"first body"), ("/upload", b"second"), ("/third", None), ("/upload", None)]
    assert parser.bodies == [b"first body", b"second"]
    assert parser.next_request() is None
    assert parser.buffered == 0


def test_incomplete_length_body_returns_none_until_complete():
    """Until the last body byte arrives there is no request; the body bytes
    already received are consumed, not kept in the buffer."""
    parser = RequestParser()
    parser.feed(with_length(b"0123456789")[:-4])
    assert parser.next_request() is None
    assert parser.buffered == 0
    parser.feed(b"678")
    assert parser.next_request() is None
    parser.feed(b"9" + NEXT_REQUEST)
    assert parser.next_request().content_length == 10
    check_next_request_follows(parser)


# -- chunked -------------------------------------------------------------------

@pytest.mark.parametrize("encoded, decoded", [
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n", b"hello world"),
    # Sizes are hex, either case (RFC 9112 §7.1; RFC 5234 HEXDIG is case-insensitive).
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    (b"1F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n", b"x" * 31),
    (b"1f\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n", b"x" * 31),
    # Leading zeros, up to 16 digits in all.
    (b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", b"hello"),
    # Chunk data is opaque: CRLFs and a last-chunk look-alike inside it are data.
    (b"9\r\n0\r\n\r\nab\r\n\r\n0\r\n\r\n", b"0\r\n\r\nab\r\n"),
    (b"1\r\n\x00\r\n1\r\n\xff\r\n0\r\n\r\n", b"\x00\xff"),
])
def test_chunked_body_is_decoded(encoded, decoded):
    """Chunks are concatenated; the request ends after the last chunk and the
    empty line (RFC 9112 §7.1)."""
    request, body = parse_with_body(CHUNKED_HEAD + encoded)
    assert body == decoded
    assert (request.chunked, request.content_length, request.has_body) == (True, None, True)
    assert request.headers == CHUNKED_HEADERS


@pytest.mark.parametrize("size_line", [
    b"5;name",
    b"5;name=value",
    b"5;name=\"quoted value\"",
    b"5;name=\"\"",
    b"5;name=\"a \\\"quoted\\\" \\\\ pair\"",
    b"5;name=\"obs-text \x80\xff\"",
    b"5;a;b=1;c=\"2\"",
    b"5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
    # BWS around ";" and "=" (RFC 9112 §7.1.1).
    b"5 ;name",
    b"5\t;\tname",
    b"5 ; a = b ; c = \"d\"",
    b"5\t;\ta\t=\t\"x\"",
])
def test_chunk_extensions_are_accepted_and_ignored(size_line):
    """chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ])
    (RFC 9112 §7.1.1): well-formed extensions are skipped, on any chunk."""
    _, body = parse_with_body(CHUNKED_HEAD + size_line + b"\r\nhello\r\n0" + size_line[1:] + b"\r\n\r\n")
    assert body == b"hello"


@pytest.mark.parametrize("trailer_lines", [
    [b"X-Checksum: abc"],
    [b"X-Checksum: abc", b"X-Other:", b"X-Third:  spaced value  "],
    [b"X-Obs-Text: \x80\xff"],
    # Framing fields in the trailer are dropped, never applied (RFC 9110 §6.5.1).
    [b"Content-Length: 100", b"Transfer-Encoding: chunked", b"Host: evil"],
])
def test_trailer_fields_are_checked_and_dropped(trailer_lines):
    """Trailer fields are accepted but not merged into the header fields: a
    body must not change the request (RFC 9110 §6.5.2)."""
    trailer = b"".join(line + b"\r\n" for line in trailer_lines)
    request, body = parse_with_body(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n" + trailer + b"\r\n")
    assert body == b"abc"
    assert request.headers == CHUNKED_HEADERS


@pytest.mark.parametrize("field_lines", [
    [b"Transfer-Encoding: Chunked"],
    [b"Transfer-Encoding: gzip, chunked"],
    [b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: identity ,\tchunked"],
])
def test_transfer_coding_lists_ending_in_chunked_are_framed_as_chunked(field_lines):
    """The framing is chunked when chunked is the final coding (RFC 9112 §6.1);
    other codings are only names to the framing layer."""
    data = head(b"POST / HTTP/1.1", b"Host: a", *field_lines) + b"4\r\nbody\r\n0\r\n\r\n"
    request, body = parse_with_body(data)
    assert (request.chunked, body) == (True, b"body")


@given(body=st.binary(max_size=300), data=st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_and_any_split_give_the_same_body(body, data):
    """However a body is cut into chunks, and however the encoded bytes are
    cut into reads, the body comes out the same and the next request follows."""
    cuts = data.draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=8))
    pieces = [piece for piece in split_at(body, cuts) if piece]
    extension = data.draw(st.sampled_from([b"", b";x", b" ; x = \"y\""]))
    encoded = b"".join(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece) for piece in pieces)
    trailer = data.draw(st.sampled_from([b"", b"X-Sum: 1\r\n"]))
    stream = CHUNKED_HEAD + encoded + b"0\r\n" + trailer + b"\r\n" + NEXT_REQUEST
    reads = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=30))
    parser = CollectingParser()
    requests = feed_in_chunks(parser, split_at(stream, reads))
    assert [request.target for request in requests] == ["/upload", "/next"]
    assert parser.bodies == [body]
    assert parser.buffered == 0


# -- framing errors ------------------------------------------------------------

# Each bad chunked body comes with the smallest repair that makes it valid, so
# a test proves the exact defect is what is refused.
@pytest.mark.parametrize("bad, repaired", [
    # chunk-size = 1*HEXDIG; more than 16 digits is an overflow attempt, whatever its value.
    (b"00000000000000005\r\nhello\r\n0\r\n\r\n", b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
    (b"00000000000000000\r\n\r\n", b"0000000000000000\r\n\r\n"),
    # Not hex, or hex with decoration int() would accept.
    (b"0x5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"-1\r\nh\r\n0\r\n\r\n", b"1\r\nh\r\n0\r\n\r\n"),
    (b"+5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5_0\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"g\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    # Whitespace is allowed only around ";" and "=" (BWS), not around the size.
    (b" 5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5 \r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\t\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5;a \r\nhello\r\n0\r\n\r\n", b"5;a\r\nhello\r\n0\r\n\r\n"),
    (b"0 \r\n\r\n", b"0\r\n\r\n"),
    # Malformed extensions.
    (b"5;\r\nhello\r\n0\r\n\r\n", b"5;a\r\nhello\r\n0\r\n\r\n"),
    (b"5;=x\r\nhello\r\n0\r\n\r\n", b"5;a=x\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\r\nhello\r\n0\r\n\r\n", b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    (b"5;a b\r\nhello\r\n0\r\n\r\n", b"5;a;b\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=b c\r\nhello\r\n0\r\n\r\n", b"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"),
    (b"5,a\r\nhello\r\n0\r\n\r\n", b"5;a\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"b\r\nhello\r\n0\r\n\r\n", b"5;a=\"b\"\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", b"5;a=\"b\";c\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"b\\\"\r\nhello\r\n0\r\n\r\n", b"5;a=\"b\\\\\"\r\nhello\r\n0\r\n\r\n"),
    (b"5;a\x00b\r\nhello\r\n0\r\n\r\n", b"5;ab\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", b"5;a=\"_\"\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n", b"5;a=\"_\"\r\nhello\r\n0\r\n\r\n"),
    (b"5;\x80\r\nhello\r\n0\r\n\r\n", b"5;a\r\nhello\r\n0\r\n\r\n"),
    # Chunk data must be followed by CRLF: too much data, or a wrong line end.
    (b"5\r\nhelloX\r\n0\r\n\r\n", b"6\r\nhelloX\r\n0\r\n\r\n"),
    (b"3\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello\r0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello\n\r0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    # Bare LF or bare CR in the chunk lines (RFC 9112 §2.2: we require CRLF).
    (b"5\nhello\n0\n\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello\r\n0\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r\nhello\r\n0\r\n\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (b"5\r;a\r\nhello\r\n0\r\n\r\n", b"5;a\r\nhello\r\n0\r\n\r\n"),
    (b"5;a=\"\r\"\r\nhello\r\n0\r\n\r\n", b"5;a=\"_\"\r\nhello\r\n0\r\n\r\n"),
    # Trailer fields follow the header field grammar (RFC 9112 §7.1.2, §5).
    (b"0\r\nX: a\n\r\n", b"0\r\nX: a\r\n\r\n"),
    (b"0\r\nX: a\rb\r\n\r\n", b"0\r\nX: ab\r\n\r\n"),
    (b"0\r\nX: a\r\n folded\r\n\r\n", b"0\r\nX: a folded\r\n\r\n"),
    (b"0\r\n X: a\r\n\r\n", b"0\r\nX: a\r\n\r\n"),
    (b"0\r\nX : a\r\n\r\n", b"0\r\nX: a\r\n\r\n"),
    (b"0\r\nno colon\r\n\r\n", b"0\r\nno: colon\r\n\r\n"),
    (b"0\r\n: empty name\r\n\r\n", b"0\r\nn: empty name\r\n\r\n"),
    (b"0\r\nX(: a\r\n\r\n", b"0\r\nX: a\r\n\r\n"),
    (b"0\r\nX: \x00\r\n\r\n", b"0\r\nX: _\r\n\r\n"),
    (b"0\r\nX: \x7f\r\n\r\n", b"0\r\nX: _\r\n\r\n"),
    (b"0\r\nX: \x1b\r\n\r\n", b"0\r\nX: _\r\n\r\n"),
])
def test_malformed_chunked_body_is_400(bad, repaired):
    """Chunked framing outside RFC 9112 §7.1 is a 400, however it arrives;
    the same body with that one defect repaired parses."""
    parse_with_body(CHUNKED_HEAD + repaired)
    error_three_ways(CHUNKED_HEAD + bad, 400)


@pytest.mark.parametrize("data", [
    CHUNKED_HEAD + b"5\n",
    CHUNKED_HEAD + b"5;a=b\n",
    CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX: a\n",
    CHUNKED_HEAD + b"5\r\nhello\n",
    CHUNKED_HEAD + b"5\r\nhelloX",
    CHUNKED_HEAD + b"5\r\nhello\rX",
])
def test_bad_line_end_in_a_body_fails_on_the_byte_that_shows_it(data):
    """A bare LF (or a byte where the CRLF after chunk data belongs) is refused
    on arrival: the parser does not wait for more bytes that cannot help."""
    assert error_three_ways(data, 400) == len(data) - 1


@pytest.mark.parametrize("field_lines, body", [
    # HTTP/1.0 has no chunked coding (RFC 9112 §6.1: faulty framing).
    ([b"Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    ([b"Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n"),
])
def test_transfer_encoding_in_http_1_0_is_400(field_lines, body):
    """An HTTP/1.0 request with Transfer-Encoding is refused rather than
    guessed at (RFC 9112 §6.1)."""
    error_three_ways(head(b"POST / HTTP/1.0", *field_lines) + body, 400)
    parse_with_body(head(b"POST / HTTP/1.1", b"Host: a", *field_lines) + body)


@pytest.mark.parametrize("field_lines, body", [
    # CL.TE and TE.CL, the classic smuggling pair: whichever one a proxy in
    # front of us believed, the other would see a different request.
    ([b"Content-Length: 6", b"Transfer-Encoding: chunked"], b"0\r\n\r\nX"),
    ([b"Transfer-Encoding: chunked", b"Content-Length: 4"], b"5\r\nhello\r\n0\r\n\r\n"),
    ([b"Content-Length: 0", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    ([b"Content-Length: 5", b"Transfer-Encoding: identity"], b"hello"),
])
def test_both_content_length_and_transfer_encoding_is_400(field_lines, body):
    """Content-Length together with Transfer-Encoding is refused (RFC 9112
    §6.3 allows it, and it closes the smuggling door)."""
    error_three_ways(head(b"POST / HTTP/1.1", b"Host: a", *field_lines) + body, 400)


# -- limits --------------------------------------------------------------------

def test_content_length_of_exactly_max_body_passes():
    """max_body is inclusive."""
    _, body = parse_with_body(with_length(b"b" * 10), max_body=10)
    assert body == b"b" * 10


def test_content_length_over_max_body_is_413_before_the_body():
    """A Content-Length over max_body is a 413 as soon as the head is complete:
    the body is never waited for (RFC 9110 §15.5.14)."""
    head_only = head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 11")
    error_three_ways(head_only, 413, max_body=10)
    # 18 digits is the longest Content-Length accepted at all: still a 413.
    error_three_ways(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: " + b"9" * 18), 413)


def test_chunked_body_of_exactly_max_body_passes():
    """The chunked total may reach max_body, spread over several chunks."""
    _, body = parse_with_body(CHUNKED_HEAD + b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", max_body=10)
    assert body == b"abcdefghij"


@pytest.mark.parametrize("accepted, refused_size_line", [
    (b"4\r\nabcd\r\n", b"7\r\n"),
    (b"4\r\nabcd\r\n6\r\nefghij\r\n", b"1\r\n"),
    (b"", b"b\r\n"),
    (b"", b"0000000000000b;x=y\r\n"),
    (b"", b"ffffffffffffffff\r\n"),  # the largest size we read: 2**64 - 1
])
def test_chunked_body_over_max_body_is_413_at_the_size_line(accepted, refused_size_line):
    """The chunk that would take the total over max_body is refused when its
    size line arrives (on the LF that ends it), before any of its data."""
    data = CHUNKED_HEAD + accepted + refused_size_line
    assert error_three_ways(data, 413, max_body=10) == len(data) - 1
    error_three_ways(data + b"x" * 11 + b"\r\n0\r\n\r\n", 413, max_body=10)


def test_chunk_size_line_of_exactly_the_maximum_passes():
    """A size line (with extensions) of MAX_CHUNK_LINE bytes passes, also when
    its CR arrives before its LF; one byte more is a 400."""
    line = b"5;" + b"e" * (MAX_CHUNK_LINE - 2)
    _, body = parse_with_body(CHUNKED_HEAD + line + b"\r\nhello\r\n0\r\n\r\n")
    assert body == b"hello"
    error_three_ways(CHUNKED_HEAD + line + b"e\r\nhello\r\n0\r\n\r\n", 400)


def test_unterminated_chunk_size_line_fails_at_the_limit():
    """A size line that never ends fails on the byte that takes it over
    MAX_CHUNK_LINE, not at some later timeout."""
    data = CHUNKED_HEAD + b"5;" + b"e" * (2 * MAX_CHUNK_LINE)
    assert error_three_ways(data, 400) == len(CHUNKED_HEAD) + MAX_CHUNK_LINE


# The trailer section is held to the header limit, counted the same way:
# field lines with their CRLFs.
TRAILER_LIMITS = {"max_header_bytes": 64}


def trailer_of_length(length):
    """Trailer field lines (CRLFs included) totalling length bytes."""
    lines = b"A: 1\r\nX: " + b"v" * (length - len(b"A: 1\r\nX: \r\n")) + b"\r\n"
    assert len(lines) == length
    return lines


def test_trailer_section_of_exactly_the_limit_passes():
    """max_header_bytes of trailer fields pass."""
    _, body = parse_with_body(CHUNKED_HEAD + b"0\r\n" + trailer_of_length(64) + b"\r\n", **TRAILER_LIMITS)
    assert body == b""


def test_trailer_section_one_byte_over_the_limit_is_431():
    """One byte over is a 431, like an oversized header section (RFC 6585 §5)."""
    error_three_ways(CHUNKED_HEAD + b"0\r\n" + trailer_of_length(65) + b"\r\n", 431, **TRAILER_LIMITS)


def test_unterminated_trailer_line_is_431_without_waiting_for_its_end():
    """A trailer line that never ends fails once it cannot fit."""
    data = CHUNKED_HEAD + b"0\r\nX: " + b"v" * 200
    failed_at = error_three_ways(data, 431, **TRAILER_LIMITS)
    trailer_start = len(CHUNKED_HEAD) + len(b"0\r\n")
    # Within the limit plus the CRLF a complete line could still end with.
    assert trailer_start + 64 <= failed_at <= trailer_start + 64 + 2


def test_incomplete_bodies_keep_the_buffer_small():
    """Body bytes are consumed as they arrive: feeding 900 KiB in pieces keeps
    .buffered near zero (a partial chunk-size line at most), and nothing
    keeps them, so a large body costs no memory."""
    body = bytes(range(256)) * (900 * 4)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[start:start + 5000]), body[start:start + 5000])
                       for start in range(0, len(body), 5000)) + b"0\r\n\r\n"
    for data in (with_length(body), CHUNKED_HEAD + chunked):
        parser = RequestParser()
        largest_left = 0
        requests = []
        for start in range(0, len(data), 4093):  # a prime, so pieces split size lines too
            parser.feed(data[start:start + 4093])
            request = parser.next_request()
            if request is None:
                largest_left = max(largest_left, parser.buffered)
            else:
                requests.append(request)
        assert len(requests) == 1 and not hasattr(requests[0], "body")  # a Request has no place for one
        assert largest_left <= len(b"1388\r")  # at most a partial size line
        assert parser.buffered == 0


def test_incomplete_chunked_body_returns_none_until_the_last_line():
    """Until the empty line after the last chunk (and trailers) there is no request."""
    parser = CollectingParser()
    parser.feed(CHUNKED_HEAD + b"5\r\nhel")
    assert parser.next_request() is None
    assert parser.buffered == 0  # "hel" went into the body already
    assert parser.bodies == [b"hel"]
    for piece in (b"lo\r", b"\n0\r\n", b"X: 1\r\n", b"\r"):
        parser.feed(piece)
        assert parser.next_request() is None
    parser.feed(b"\n" + NEXT_REQUEST)
    request = parser.next_request()
    assert parser.body_of(request) == b"hello"
    check_next_request_follows(parser)


# -- Expect --------------------------------------------------------------------

@pytest.mark.parametrize("field_lines, body, decoded", [
    ([b"Content-Length: 5", b"Expect: 100-continue"], b"hello", b"hello"),
    ([b"Expect: 100-continue", b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    ([b"Content-Length: 5", b"Expect: 100-Continue"], b"hello", b"hello"),  # case-insensitive
    ([b"Content-Length: 5", b"Expect:  100-continue\t"], b"hello", b"hello"),  # OWS is not part of it
])
def test_expect_100_continue_hands_out_the_request_before_its_body(field_lines, body, decoded):
    """With "Expect: 100-continue" the client waits for an answer before it
    sends the body (RFC 9110 §10.1.1), so the request comes out as soon as its
    head is complete, marked expects_continue; the body, if it comes anyway,
    is then read and framed like any other, and the next request follows it."""
    request_head = head(b"POST /upload HTTP/1.1", b"Host: a", *field_lines)
    parser = CollectingParser()
    for index in range(len(request_head) - 1):
        parser.feed(request_head[index:index + 1])
        assert parser.next_request() is None
    parser.feed(request_head[-1:])
    request = parser.next_request()
    assert (request.expects_continue, request.has_body) == (True, True)
    assert parser.buffered == 0
    kept = parser.body_of(request)
    assert kept == b""  # begun, nothing read
    parser.feed(body + NEXT_REQUEST)
    after = parser.next_request()
    assert kept == decoded
    assert parser.bodies == [decoded]
    assert after.target == "/next"
    assert parser.buffered == 0


def test_expect_100_continue_without_a_body_is_an_ordinary_request():
    """Nothing to wait for: the expectation has no effect."""
    request, body = parse_with_body(head(b"GET / HTTP/1.1", b"Host: a", b"Expect: 100-continue"))
    assert (request.expects_continue, request.has_body, body) == (False, False, None)


def test_expect_100_continue_in_http_1_0_is_ignored():
    """A server MUST ignore a 100-continue expectation in an HTTP/1.0 request
    (RFC 9110 §10.1.1): the body is read as usual."""
    request, body = parse_with_body(with_length(b"hello", b"Expect: 100-continue", version=b"HTTP/1.0"))
    assert (request.expects_continue, body) == (False, b"hello")


def test_content_length_over_max_body_is_413_even_with_expect():
    """The size is known from the head, so the answer to the expectation is
    413 at once, not a request handed out."""
    error_three_ways(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 11", b"Expect: 100-continue"),
                     413, max_body=10)


@pytest.mark.parametrize("value", [
    b"foo", b"100-continue, foo", b"100-continue;x=1", b"200-ok", b"", b"100continue",
])
def test_other_expectations_are_417(value):
    """The only expectation defined is 100-continue; anything else gets 417
    Expectation Failed (RFC 9110 §10.1.1), with or without a body."""
    error_three_ways(head(b"GET / HTTP/1.1", b"Host: a", b"Expect: " + value), 417)
    error_three_ways(head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Expect: " + value) + b"x",
                     417)


# -- the readers on their own --------------------------------------------------

def test_length_body_consumes_only_its_own_bytes():
    """LengthBody eats exactly its length from the front of the buffer."""
    reader = CollectingLengthBody(5)
    buffer = bytearray(b"hel")
    assert reader.consume(buffer) is False
    buffer += b"lo, and more"
    assert reader.consume(buffer) is True
    assert (reader.collected, buffer) == (b"hello", b", and more")
    assert reader.consume(buffer) is True  # complete stays complete, eats nothing
    assert buffer == b", and more"


def test_chunked_body_consumes_only_its_own_bytes():
    """ChunkedBody stops after the final CRLF; total counts data bytes only."""
    reader = CollectingChunkedBody(max_body=100, max_trailer_bytes=100)
    buffer = bytearray(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nrest")
    assert reader.consume(buffer) is True
    assert (reader.collected, buffer, reader.total) == (b"abcde", b"rest", 5)
