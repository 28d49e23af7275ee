"""Differential tests: reactor_http's request parser against h11 on the same bytes.

h11 (python-hyper/h11) is an independent, widely used sans-I/O HTTP/1.1
parser. Both are fed the same generated requests, split at the same points;
they must agree on whether the request is accepted, rejected or still
incomplete, and when both accept, on the method, target, version, header
fields, body bytes and the bytes left over after the request (where the next
request would start: the point request smuggling attacks).

Where the two disagree on purpose (we are stricter in places, h11 in others,
and each has its own limits), the difference is a named class below: a
predicate on the input, the outcomes it allows, and the RFC section behind it.
Every disagreement must fall into one of the classes, so a new, undocumented
difference fails the test. docs/conformance.md lists the same classes.
"""

import pathlib
import re
from collections.abc import Callable
from typing import NamedTuple

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.environment import REPO
from support.parsing import CollectingParser, mutate_bytes, split_at

from reactor_http.http1.parser import ProtocolError, RequestParser

MAX_BODY = RequestParser().max_body  # the parser's default limits throughout


# -- running both parsers ------------------------------------------------------

class Outcome(NamedTuple):
    """What one parser made of the input. kind is "accept", "incomplete" or
    "reject"; status is ours for a rejection (h11's is not compared)."""
    kind: str
    status: int = 0
    message: tuple = ()     # (method, target, version, headers) when accepted
    body: bytes = b""
    leftover: bytes = b""   # bytes after the request, for the next one


def run_ours(chunks):
    """Feed the chunks to a parser that keeps the bodies it frames
    (support.parsing.CollectingParser) and take the first request."""
    data = b"".join(chunks)
    parser = CollectingParser()
    fed = 0
    request = None
    try:
        for chunk in chunks:
            parser.feed(chunk)
            fed += len(chunk)
            if request is None:
                request = parser.next_request()
                consumed = fed - parser.buffered
                if request is not None:
                    body = parser.body_of(request)
        if request is None:
            return Outcome("incomplete")
        leftover = data[len(data) - parser.buffered:]
        if request.expects_continue:
            # Handed out before its body (Expect: 100-continue). The connection
            # would answer and close; to compare the body with h11's, read it
            # with the reader the parser itself would use.
            if request.chunked:
                reader = parser.chunked_body(parser.max_body, parser.max_header_bytes)
            else:
                reader = parser.length_body(request.content_length)
            buffer = bytearray(data[consumed:])
            if not reader.consume(buffer):
                return Outcome("incomplete")
            leftover = bytes(buffer)
            body = reader.collected
    except ProtocolError as error:
        return Outcome("reject", error.status)
    headers = dict(request.headers)
    if "transfer-encoding" in headers:
        headers["transfer-encoding"] = headers["transfer-encoding"].lower()  # h11 lower-cases it
    message = (request.method, request.target, request.version, headers)
    return Outcome("accept", message=message, body=bytes(body or b""), leftover=leftover)


def run_h11(chunks):
    """Feed the chunks to h11.Connection(h11.SERVER), collecting the Request
    and Data events until EndOfMessage."""
    connection = h11.Connection(h11.SERVER)
    request = None
    body = bytearray()
    complete = False
    try:
        for chunk in chunks:
            if not chunk:
                continue  # to h11, empty bytes mean end of file
            connection.receive_data(chunk)
            while not complete:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                else:
                    assert isinstance(event, h11.EndOfMessage), event
                    complete = True
    except h11.RemoteProtocolError:
        return Outcome("reject")
    if not complete:
        return Outcome("incomplete")
    # h11 keeps repeated fields apart; join them with ", " as we do (RFC 9110 §5.3).
    headers = {}
    for name, value in request.headers:
        name, value = name.decode("latin-1"), value.decode("latin-1")
        headers[name] = headers[name] + ", " + value if name in headers else value
    message = (request.method.decode("latin-1"), request.target.decode("latin-1"),
               "HTTP/" + request.http_version.decode("latin-1"), headers)
    return Outcome("accept", message=message, body=bytes(body), leftover=connection.trailing_data[0])


# -- the documented differences ------------------------------------------------
# Predicates look at the input only, never at either parser. They are loose on
# purpose (a pattern anywhere in the head, or anywhere after the head of a
# chunked request), and each is paired with the only outcomes it may explain.

def head_of(data):
    """The bytes up to the first CRLFCRLF (all of them if there is none)."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end + 4]


def after_head(data):
    end = data.find(b"\r\n\r\n")
    return b"" if end < 0 else data[end + 4:]


def field_values(data, name):
    """The values of every field line named name (any case) in the head,
    whatever the line ends are."""
    values = []
    for line in re.split(rb"\r\n|\n|\r", head_of(data))[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.lower() == name:
            values.append(value.strip(b" \t"))
    return values


def is_chunked(data):
    return b"transfer-encoding" in head_of(data).lower()


def framing_part(data):
    """Where framing lines live: the head, and the rest of a chunked request
    (its size lines and trailers; a Content-Length body is only data)."""
    return data if is_chunked(data) else head_of(data)


def version_of(data):
    match = re.match(rb"(?:\r?\n)*[^ \r\n]* [^ \r\n]* HTTP/([0-9])\.([0-9])\r?\n", data)
    return match.groups() if match else None


# RFC 3986 §3.2.2-3: IP-literal (simplified to its alphabet) or reg-name, then
# an optional port. Written from the RFC, not copied from the parser.
_RFC3986_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")


def has_bad_host(data):
    return any(_RFC3986_HOST.fullmatch(value) is None for value in field_values(data, b"host"))


def has_large_size(data):
    """A Content-Length or chunk size over our max_body."""
    lengths = [int(value) for value in field_values(data, b"content-length") if value.isdigit()]
    sizes = [int(size, 16) for size in re.findall(rb"(?:^|\n)([0-9A-Fa-f]{1,16})", after_head(data))]
    return any(size > MAX_BODY for size in lengths + (sizes if is_chunked(data) else []))


ACCEPT, INCOMPLETE, REJECT = "accept", "incomplete", "reject"
H11_GOES_ON = {ACCEPT, INCOMPLETE}  # h11 took it, or waits for the rest


class Difference(NamedTuple):
    """One documented, deliberate difference from h11."""
    name: str
    rfc: str
    reason: str
    applies: Callable[[bytes], bool]
    ours: set     # our outcomes it explains: kinds, or statuses for a rejection
    theirs: set   # h11's outcomes it explains


DIFFERENCES = [
    Difference(
        "bare LF", "RFC 9112 §2.2",
        "A recipient MAY accept a bare LF as a line terminator; h11 does in the head, "
        "we require CRLF everywhere (lenient line ends are a smuggling vector).",
        lambda data: re.search(rb"(?:^|[^\r])\n", framing_part(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "bare CR", "RFC 9112 §2.2",
        "A bare CR MUST be rejected or replaced by SP; we reject it on the next byte, "
        "h11 only when its line is complete (or accepts it inside a chunk extension).",
        lambda data: re.search(rb"\r(?!\n)", framing_part(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "leading empty lines", "RFC 9112 §2.2",
        "A server SHOULD ignore at least one empty line before the request line; "
        "we skip them, h11 rejects them.",
        lambda data: data[:1] in (b"\r", b"\n"),
        {ACCEPT, INCOMPLETE}, {REJECT}),
    Difference(
        "h11 rejects an obviously bad first byte early", "(h11 policy)",
        "h11 rejects an incomplete head whose first byte is SP or a control; "
        "we reject it too, once the line it starts is complete.",
        lambda data: data[:1] < b"\x21",
        {INCOMPLETE}, {REJECT}),
    Difference(
        "obs-fold", "RFC 9112 §5.2",
        "A server MAY reject obsolete line folding with 400; h11 unfolds it.",
        lambda data: re.search(rb"\n[ \t]", framing_part(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "control characters in field values", "RFC 9110 §5.5",
        "Field values are VCHAR, obs-text, SP and HTAB; h11 also lets other "
        "controls through (not NUL, CR, LF), we reject them.",
        lambda data: _CONTROL.search(framing_part(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "HTTP major version other than 1", "RFC 9110 §15.6.6, RFC 9112 §2.3",
        "We answer 505; h11 parses any HTTP/d.d request line as HTTP/1.",
        lambda data: (version := version_of(data)) is not None and version[0] != b"1",
        {505}, H11_GOES_ON),
    Difference(
        "malformed Host", "RFC 9112 §3.2, RFC 9110 §7.2",
        "A request with an invalid Host MUST get 400; h11 checks only that Host "
        "is present (HTTP/1.1) and not repeated.",
        has_bad_host, {400}, H11_GOES_ON),
    Difference(
        "missing Host in HTTP/1.2 and later", "RFC 9112 §3.2, RFC 9110 §6.2",
        "A higher minor version is processed as the highest we implement, 1.1, "
        "which requires Host; h11 requires it only of exactly HTTP/1.1.",
        lambda data: (version := version_of(data)) is not None and version[0] == b"1" and version[1] > b"1"
        and field_values(data, b"host") == [],
        {400}, H11_GOES_ON),
    Difference(
        "Expect other than 100-continue", "RFC 9110 §10.1.1",
        "A server MAY answer an unknown expectation with 417; h11 ignores it.",
        lambda data: field_values(data, b"expect") != []
        and b", ".join(field_values(data, b"expect")).lower() != b"100-continue",
        {417}, H11_GOES_ON),
    Difference(
        "Content-Length and Transfer-Encoding together", "RFC 9112 §6.3 (3)",
        "A server MAY reject a request with both; we do (the classic smuggling "
        "pair), h11 lets Transfer-Encoding win.",
        lambda data: field_values(data, b"content-length") != [] and field_values(data, b"transfer-encoding") != [],
        {400}, H11_GOES_ON),
    Difference(
        "repeated Content-Length", "RFC 9112 §6.3 (5), RFC 9110 §8.6",
        "Identical repeated values MAY be merged (h11 does); we treat any repeat "
        "or list as invalid framing.",
        lambda data: len(field_values(data, b"content-length")) > 1
        or any(b"," in value for value in field_values(data, b"content-length")),
        {400}, H11_GOES_ON),
    Difference(
        "Content-Length over 18 digits", "RFC 9110 §8.6",
        "A recipient MUST anticipate large numerals and prevent overflow; we "
        "refuse more than 18 digits, h11 more than 20.",
        lambda data: any(len(value) > 18 for value in field_values(data, b"content-length")),
        {400}, H11_GOES_ON),
    Difference(
        "body over max_body", "RFC 9110 §15.5.14",
        "We refuse a body over max_body (1 MiB) with 413 when its size is "
        "known; h11 has no body limit and waits for the bytes.",
        has_large_size, {413}, {INCOMPLETE}),
    Difference(
        "transfer codings other than exactly chunked", "RFC 9112 §6.1, §7",
        "We frame any list of known codings that ends in chunked, across field "
        "lines; h11 supports only a single 'chunked' (and answers 501).",
        lambda data: len(field_values(data, b"transfer-encoding")) > 1
        or any(value.lower() != b"chunked" for value in field_values(data, b"transfer-encoding")),
        {ACCEPT, INCOMPLETE}, {REJECT}),
    Difference(
        "Transfer-Encoding in HTTP/1.0", "RFC 9112 §6.1",
        "HTTP/1.0 has no chunked coding, so the framing is faulty; we reject, "
        "h11 frames it as chunked.",
        lambda data: version_of(data) == (b"1", b"0") and field_values(data, b"transfer-encoding") != [],
        {400}, H11_GOES_ON),
    Difference(
        "chunk-size over 16 hex digits", "RFC 9112 §7.1",
        "A recipient MUST anticipate large hex numerals and prevent overflow; "
        "we allow 16 digits (2**64), h11 20, whatever their value.",
        lambda data: is_chunked(data) and re.search(rb"[0-9A-Fa-f]{17}", after_head(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "whitespace after the chunk size", "RFC 9112 §7.1",
        "The grammar has none; h11 allows trailing OWS before the CRLF "
        "(servers in the wild send it), we reject it.",
        lambda data: is_chunked(data) and re.search(rb"[ \t]\r?\n", after_head(data)) is not None,
        {400}, H11_GOES_ON),
    Difference(
        "chunk extension grammar", "RFC 9112 §7.1.1",
        "chunk-ext is ';' name ['=' ( token / quoted-string )]; we check it, "
        "h11 accepts anything after the ';' (even NUL and bare CR).",
        lambda data: is_chunked(data) and b";" in after_head(data),
        {400}, H11_GOES_ON),
    Difference(
        "whitespace before a chunk extension", "RFC 9112 §7.1.1",
        "chunk-ext allows BWS before ';' (and around '='); we accept it, h11 "
        "rejects whitespace between the chunk size and the ';'.",
        lambda data: is_chunked(data) and re.search(rb"[0-9A-Fa-f][ \t]+;", after_head(data)) is not None,
        {ACCEPT, INCOMPLETE}, {REJECT}),
    Difference(
        "framing fields in the trailer", "RFC 9110 §6.5.1",
        "Trailer fields must not change framing; we check their syntax and drop "
        "them, h11 also validates Content-Length and Transfer-Encoding there.",
        lambda data: is_chunked(data) and re.search(rb"(?i)\n(?:content-length|transfer-encoding):",
                                                    after_head(data)) is not None,
        {ACCEPT}, {REJECT}),
]


def explaining(data, ours, theirs):
    """The documented differences that explain this pair of outcomes."""
    ours_key = ours.status if ours.kind == REJECT else ours.kind
    return [difference for difference in DIFFERENCES
            if ours_key in difference.ours and theirs.kind in difference.theirs and difference.applies(data)]


def compare(data, chunks):
    """Run both parsers; fail unless they agree or differ as documented.
    Returns the names of the differences that explained a disagreement."""
    ours, theirs = run_ours(chunks), run_h11(chunks)
    if ours.kind == theirs.kind:
        if ours.kind == ACCEPT:
            # Both accepted: no exception applies, everything must match.
            assert ours.message == theirs.message, data
            assert ours.body == theirs.body, data
            assert ours.leftover == theirs.leftover, data
        return []
    reasons = explaining(data, ours, theirs)
    assert reasons, f"undocumented difference: ours {ours}, h11 {theirs}, for {data!r}"
    return [difference.name for difference in reasons]


# -- generating requests -------------------------------------------------------

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PATH_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%?"
# A field value's inner bytes (RFC 9110 §5.5): VCHAR and obs-text; SP and HTAB
# only between them, since OWS at either end is not part of the value.
VALUE_INNER = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
FRAMING_NAMES = (b"host", b"content-length", b"transfer-encoding", b"expect")


def bytes_over(alphabet, min_size, max_size):
    """Byte strings drawn from alphabet (mapping random bytes is cheaper for
    Hypothesis than drawing from a sampled alphabet)."""
    table = bytes(alphabet[index % len(alphabet)] for index in range(256))
    return st.binary(min_size=min_size, max_size=max_size).map(lambda raw: raw.translate(table))


tokens = bytes_over(TCHAR, 1, 10)
methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"M-SEARCH"]) | tokens
targets = bytes_over(PATH_CHARS, 0, 30).map(lambda raw: b"/" + raw) | st.sampled_from(
    [b"*", b"http://example.com/a?b", b"example.com:443"])
hosts = st.sampled_from([b"example.com", b"example.com:8080", b"127.0.0.1", b"[::1]:80", b"a", b""])
field_names = tokens.filter(lambda name: name.lower() not in FRAMING_NAMES)


# Bodies: short binary ones, and longer ones made of bytes that mean
# something to a parser, which matter only if the framing is read wrong.
bodies = (st.binary(max_size=40) | bytes_over(b"0123456789abcdef\r\n;: GETHTTP/1.", 20, 300)
          | st.sampled_from([b"", b"0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]))
# A value: up to three words, joined by SP or HTAB.
generated_values = st.builds(lambda words, joint: joint.join(words),
                             st.lists(bytes_over(VALUE_INNER, 1, 8), max_size=3), st.sampled_from([b" ", b"\t"]))
ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])
# How to write one field line: which letters of the name to flip to the other
# case (names are case-insensitive, RFC 9110 §5.1), OWS before and after the value.
line_styles = st.tuples(st.integers(0, 2 ** 20 - 1), ows, ows)


def random_case(name, mask):
    """name with the letters whose bit is set in mask switched to the other case."""
    return bytes(byte ^ 0x20 if mask >> index & 1 and bytes([byte]).isalpha() else byte
                 for index, byte in enumerate(name))


def field_lines(name, value):
    """A strategy for the line name ":" OWS value OWS, in a drawn style."""
    return line_styles.map(lambda style: random_case(name, style[0]) + b":" + style[1] + value
                           + (style[2] if value else b""))


@st.composite
def chunked_bodies(draw, body):
    """body in chunked coding: random chunk sizes (hex of either case, maybe
    with leading zeros), valid extensions, maybe trailer fields."""
    cuts = draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=4))
    pieces = [piece for piece in split_at(body, cuts) if piece]
    extensions = st.sampled_from([b"", b";a", b";name=value", b';q="quoted \\" string"', b";a;b=c", b";x= y"])
    encoded = b""
    for piece in pieces + [b""]:
        size = draw(st.sampled_from([b"%x", b"%X", b"00%x"])) % len(piece)
        encoded += size + draw(extensions) + b"\r\n" + piece + (b"\r\n" if piece else b"")
    trailer_names = field_names.filter(lambda name: name.lower() not in (b"content-length", b"transfer-encoding"))
    trailers = draw(st.lists(st.tuples(trailer_names, generated_values), max_size=2))
    for name, value in trailers:
        encoded += draw(field_lines(name, value)) + b"\r\n"
    return encoded + b"\r\n"


@st.composite
def valid_requests(draw):
    """A valid request that both parsers must take, as (head lines, encoded body)."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [draw(methods) + b" " + draw(targets) + b" " + version]
    fields = [draw(field_lines(name, value))
              for name, value in draw(st.lists(st.tuples(field_names, generated_values), max_size=5))]
    if version == b"HTTP/1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), draw(field_lines(b"Host", draw(hosts))))
    body = draw(bodies)
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == b"HTTP/1.1" else ["none", "length"]))
    if framing == "length":
        fields.append(draw(field_lines(b"Content-Length", b"%d" % len(body))))
        encoded = body
    elif framing == "chunked":
        fields.append(draw(field_lines(b"Transfer-Encoding", b"chunked")))
        encoded = draw(chunked_bodies(body))
    else:
        encoded = b""
    if draw(st.integers(0, 4)) == 0:
        fields.append(draw(field_lines(b"Expect", b"100-continue")))
    return lines + fields, encoded


def serialize(lines, body):
    """The request's bytes: its lines with CRLFs, the empty line, the body."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


# Named deviations: each turns a valid request into a near-miss of one kind.
BAD_CONTENT_LENGTHS = [b"+5", b"-1", b"0x5", b"5 5", b"5, 5", b"1e3", b"", b"9" * 19, b"9" * 20, b"99999999",
                       b"1048577", b"1048576", b"0005"]
BAD_CHUNK_LINES = [b" 5", b"5 ", b"5\t", b"0x5", b"-1", b"+5", b"0" * 16 + b"5", b"0" * 19 + b"5",
                   b"0" * 20 + b"5", b"ffffffff", b"5;", b"5 ;a", b"5;a\x00b", b"5;a\rb", b"5;a=b c",
                   b"5;a=\"b", b"5;\x7f", b"5;a = b", b"100001"]
TRANSFER_CODINGS = [b"gzip, chunked", b"chunked, gzip", b"identity, chunked", b"Chunked", b"chunked, chunked",
                    b"x", b"chunked ,", b"CHUNKED"]
BAD_HOSTS = [b"a b", b"[::1", b"a/b", b"a@b", b"caf\xe9", b"a:b:c", b"[::1]x", b"%zz", b"a\"b"]
EXPECTATIONS = [b"foo", b"100-continue, foo", b"", b"100-Continue", b"200-ok"]
INTERESTING_BYTES = b"\r\n \t:;,\x00\x01\x7f\x80\xff0aF"


DEVIATIONS = [
    "obs-fold", "bare LF", "bare CR", "space before colon", "control in value", "leading empty lines",
    "CL and TE", "two CLs", "bad CL", "wrong CL", "bad chunk line", "transfer coding", "TE in 1.0",
    "expect", "bad host", "no host", "two hosts", "version", "truncate", "trailer framing", "bytes",
    "pipelined"]


@st.composite
def deviated_requests(draw, first):
    """A valid request with the deviation first, maybe one or two more, then
    maybe random byte mutations. Returns (bytes, names of what was done)."""
    lines, body = draw(valid_requests())
    done = [first] + draw(st.lists(st.sampled_from(DEVIATIONS), max_size=2))
    for kind in done:
        field_index = draw(st.integers(1, len(lines)))  # where a field line goes (after the request line)
        if kind == "obs-fold" and len(lines) > 1:
            index = draw(st.integers(1, len(lines) - 1))
            lines.insert(index + 1, draw(st.sampled_from([b" ", b"\t", b"  "])) + b"folded")
        elif kind == "space before colon" and len(lines) > 1:
            index = draw(st.integers(1, len(lines) - 1))
            lines[index] = lines[index].replace(b":", draw(st.sampled_from([b" :", b"\t:"])), 1)
        elif kind == "control in value":
            control = draw(st.sampled_from(b"\x00\x01\x08\x0b\x0c\x1b\x1f\x7f"))
            lines.insert(field_index, b"X-Control: a" + bytes([control]) + b"b")
        elif kind == "CL and TE":
            lines.insert(field_index, b"Content-Length: %d" % len(body))
            lines.insert(draw(st.integers(1, len(lines))), b"Transfer-Encoding: chunked")
        elif kind == "two CLs":
            value = draw(st.sampled_from([b"%d" % len(body), b"0", b"5"]))
            lines.insert(field_index, b"Content-Length: " + value)
            lines.insert(field_index, b"Content-Length: " + value)
        elif kind == "bad CL":
            lines.insert(field_index, b"Content-Length: " + draw(st.sampled_from(BAD_CONTENT_LENGTHS)))
        elif kind == "wrong CL":
            lines.insert(field_index, b"Content-Length: %d" % max(len(body) + draw(st.integers(-3, 3)), 0))
        elif kind == "bad chunk line":
            lines.insert(field_index, b"Transfer-Encoding: chunked")
            body = draw(st.sampled_from(BAD_CHUNK_LINES)) + b"\r\nhello\r\n0\r\n\r\n"
        elif kind == "transfer coding":
            values = draw(st.sampled_from([[value] for value in TRANSFER_CODINGS] + [[b"gzip", b"chunked"],
                                                                                     [b"chunked", b"chunked"]]))
            for value in reversed(values):
                lines.insert(field_index, b"Transfer-Encoding: " + value)
            body = b"5\r\nhello\r\n0\r\n\r\n"
        elif kind == "TE in 1.0":
            lines[0] = lines[0][:-len(b"HTTP/1.1")] + b"HTTP/1.0"
            lines.insert(field_index, b"Transfer-Encoding: chunked")
            body = b"0\r\n\r\n"
        elif kind == "expect":
            lines.insert(field_index, b"Expect: " + draw(st.sampled_from(EXPECTATIONS)))
        elif kind == "bad host":
            lines.insert(field_index, b"Host: " + draw(st.sampled_from(BAD_HOSTS)))
            lines = [line for index, line in enumerate(lines) if index == field_index
                     or not line.lower().startswith(b"host:")]
        elif kind == "no host":
            lines = [line for line in lines if not line.lower().startswith(b"host:")]
        elif kind == "two hosts":
            lines.insert(field_index, b"Host: a")
            lines.insert(field_index, b"Host: a")
        elif kind == "version":
            version = draw(st.sampled_from([b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.5", b"HTTP/1.0", b"HTTP/3.1"]))
            lines[0] = lines[0][:-len(b"HTTP/1.1")] + version
        elif kind == "trailer framing" and body.endswith(b"0\r\n\r\n"):
            body = body[:-2] + draw(st.sampled_from([b"Content-Length: x", b"Transfer-Encoding: gzip",
                                                     b"Content-Length: 5"])) + b"\r\n\r\n"
        elif kind == "pipelined":
            body += b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    data = bytearray(serialize(lines, body))
    for kind in done:
        # The byte-level deviations work on the serialized request.
        line_ends = [match.start() for match in re.finditer(rb"\r\n", data)]
        if kind == "bare LF" and line_ends:
            del data[draw(st.sampled_from(line_ends))]
        elif kind == "bare CR" and line_ends:
            position = draw(st.sampled_from(line_ends))
            data[position:position + 2] = draw(st.sampled_from([b"\r", b"\r\r\n", b"\n\r"]))
        elif kind == "leading empty lines":
            data[:0] = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b"\r"]))
        elif kind == "truncate" and len(data) > 1:
            del data[draw(st.integers(1, len(data) - 1)):]
        elif kind == "bytes":
            mutate_bytes(draw, data, st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
    return bytes(data), done


def draw_chunks(data, draw):
    """data split into reads: whole, one byte at a time, or at drawn points."""
    how = draw(st.sampled_from(["whole", "bytes", "points"]), label="split")
    if how == "whole" or not data:
        return [data]
    if how == "bytes":
        return [data[index:index + 1] for index in range(len(data))]
    return split_at(data, draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=10), label="points"))


# -- the tests -----------------------------------------------------------------

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=valid_requests(), data=st.data())
def test_valid_requests_parse_identically(request, data):
    """Valid requests (any field-name case, OWS, both framings, extensions,
    trailers, any split) are accepted by both, with the same method, target,
    version, fields, body and leftover bytes. No documented difference may
    excuse anything here."""
    raw = serialize(*request)
    chunks = draw_chunks(raw, data.draw)
    ours, theirs = run_ours(chunks), run_h11(chunks)
    assert ours.kind == theirs.kind == ACCEPT, (ours, theirs, raw)
    assert ours.message == theirs.message
    assert (ours.body, ours.leftover) == (theirs.body, theirs.leftover)


@pytest.mark.parametrize("deviation", DEVIATIONS)
@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_near_misses_agree_or_differ_as_documented(deviation, data):
    """Near-miss requests (each deviation gets its own examples, so each is
    exercised) either get the same answer from both parsers or differ in one
    of the documented ways; anything else is a new difference to fix or to
    document."""
    raw, done = data.draw(deviated_requests(deviation), label="request")
    for name in compare(raw, draw_chunks(raw, data.draw)):
        event(f"difference: {name}")
    for kind in done:
        event(f"deviation: {kind}")


# One input per documented difference, showing it is real: the two parsers do
# disagree on it, in the way the class says.
EXAMPLES = {
    "bare LF": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: a\rb",
    "leading empty lines": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "h11 rejects an obviously bad first byte early": b" GET / HTTP/1.1\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    "control characters in field values": b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
    "HTTP major version other than 1": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "malformed Host": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "missing Host in HTTP/1.2 and later": b"GET / HTTP/1.5\r\n\r\n",
    "Expect other than 100-continue": b"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
    "Content-Length and Transfer-Encoding together":
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "repeated Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "Content-Length over 18 digits": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"0" * 19 + b"\r\n\r\n",
    "body over max_body": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n",
    "transfer codings other than exactly chunked":
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk-size over 16 hex digits":
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 17 + b"\r\n\r\n",
    "whitespace after the chunk size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0 \r\n\r\n",
    "chunk extension grammar": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0;\r\n\r\n",
    "whitespace before a chunk extension":
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0 ;a\r\n\r\n",
    "framing fields in the trailer":
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: x\r\n\r\n",
}


def test_every_difference_has_an_example():
    """The list of examples and the list of differences name the same classes."""
    assert sorted(EXAMPLES) == sorted(difference.name for difference in DIFFERENCES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_documented_difference_is_real(name):
    """Each class explains a real disagreement (so none is stale), and its
    example is explained by that class."""
    data = EXAMPLES[name]
    ours, theirs = run_ours([data]), run_h11([data])
    assert ours.kind != theirs.kind, (ours, theirs)
    assert name in [difference.name for difference in explaining(data, ours, theirs)]


def test_every_difference_is_in_the_conformance_document():
    """docs/conformance.md has a table row for each class, with its RFC section."""
    document = (pathlib.Path(REPO) / "docs" / "conformance.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in document.splitlines() if line.startswith("| ")}
    for difference in DIFFERENCES:
        assert difference.name in rows, f"{difference.name!r} is not in docs/conformance.md"
        assert f"| {difference.rfc} |" in rows[difference.name], difference.name


def test_an_undocumented_difference_fails():
    """compare() is not a rubber stamp: a disagreement outside the classes
    (simulated by hiding all of them) is reported."""
    data = EXAMPLES["obs-fold"]
    saved = DIFFERENCES[:]
    DIFFERENCES.clear()
    try:
        with pytest.raises(AssertionError, match="undocumented difference"):
            compare(data, [data])
    finally:
        DIFFERENCES[:] = saved
    assert compare(data, [data]) == ["obs-fold"]


@pytest.mark.parametrize("data", [
    # Framing both parsers must read the same way: where the body ends.
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /x",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n0\r\nT: 1\r\n\r\nrest",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcdef",
])
def test_both_parsers_end_the_request_at_the_same_byte(data):
    """For a few hand-picked streams both accept, the leftover bytes match:
    the next request would start at the same byte for both."""
    ours, theirs = run_ours([data]), run_h11([data])
    assert ours.kind == theirs.kind == ACCEPT
    assert (ours.message, ours.body, ours.leftover) == (theirs.message, theirs.body, theirs.leftover)
    assert ours.leftover != b""
