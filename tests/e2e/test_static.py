"""End-to-end static-file semantics: validators, conditional requests, ranges
and content codings, checked on the wire against the real server.

The server runs in a subprocess on a document root made here, whose files all
carry one known modification time, so every validator is known in advance:
a strong ETag "mtime-size" in hex and a Last-Modified date (RFC 9110 §8.8).
Each rule is checked by status, header fields and exact body bytes, and every
request is sent twice on one connection, as HEAD and then as GET, to prove
that HEAD gives exactly GET's head and no body (RFC 9110 §9.3.2); with a
Range, which only GET honours (§14.2), HEAD gives the head of the whole file.

Read-only tests share one server per backend for the whole module (epoll and
poll); the range tests also run on a third, with --no-sendfile (the portable
send path). Files above 64 KiB are sent from an open descriptor (sendfile or
chunks read on the executor), smaller ones from memory, so every range rule
runs on both a small and a large file. Tests that need other flags or change
files start their own server.

Nothing here depends on timing to pass: the cache tests wait for a condition
with a generous deadline and never assert how long something took (the one
that proves a cached copy is used gives it an hour of validity).
"""

import base64
import gzip
import hashlib
import http.client
import os
import random
import re
import subprocess

import pytest
from support.checks import IMF_FIXDATE
from support.clients import RawClient, curl
from support.environment import require_program, wait_until
from support.servers import ServerProcess, stop_and_check

from reactor_http.static.cache import entry_size
from reactor_http.static.files import resolve

# -- the document root -------------------------------------------------------------------
#
# Every file gets this modification time, so its validators are constants.
MTIME = 1_700_000_000                              # 0x6553f100
MTIME_TEXT = "Tue, 14 Nov 2023 22:13:20 GMT"       # IMF-fixdate (§5.6.7)
MTIME_RFC850 = "Tuesday, 14-Nov-23 22:13:20 GMT"   # obsolete forms a recipient must accept
MTIME_ASCTIME = "Tue Nov 14 22:13:20 2023"
SECOND_BEFORE = "Tue, 14 Nov 2023 22:13:19 GMT"
SECOND_AFTER = "Tue, 14 Nov 2023 22:13:21 GMT"

SMALL = b"".join(b"line %04d\n" % number for number in range(100))   # 1000 bytes: sent from memory
LARGE = random.Random(9110).randbytes(200 * 1024)                   # 204800 bytes: sent from a descriptor
SCRIPT = b"".join(b"console.log('line %d of a script');\n" % number for number in range(60))
# The server never decodes a precompressed sibling, and the standard library
# has neither a brotli nor a zstd encoder, so those two are stand-in bytes
# that only need to be told apart. The gzip siblings are real gzip.
SCRIPT_BR = b"stand-in for brotli bytes of app.js\n"
SCRIPT_ZSTD = b"stand-in for zstd bytes of app.js, a little longer\n"
SCRIPT_GZIP = gzip.compress(SCRIPT, mtime=0)
SHEET = b"".join(b".rule-%d { color: #%06x; }\n" % (number, number * 997) for number in range(200))
SHEET_GZIP = gzip.compress(SHEET, mtime=0)
# Hex text compresses to a little over half, so its .gz is itself above 64 KiB.
BIG_TEXT = random.Random(14).randbytes(150 * 1024).hex().encode()
BIG_TEXT_GZIP = gzip.compress(BIG_TEXT, mtime=0)

TEXT_PLAIN = "text/plain; charset=utf-8"
OCTET_STREAM = "application/octet-stream"
JAVASCRIPT = "text/javascript; charset=utf-8"

SITE_FILES = {
    "small.txt": SMALL,
    "large.bin": LARGE,
    "empty.txt": b"",
    "app.js": SCRIPT, "app.js.br": SCRIPT_BR, "app.js.zst": SCRIPT_ZSTD, "app.js.gz": SCRIPT_GZIP,
    "sheet.css": SHEET, "sheet.css.gz": SHEET_GZIP,
    "big.txt": BIG_TEXT, "big.txt.gz": BIG_TEXT_GZIP,
    "index.html": b"<!DOCTYPE html>\n<title>site</title>\n",
    "plain_dir/file.txt": b"in a directory without an index\n",
}

# (content, Content-Type) of the files the validator and range tests run on.
FILES = {"small.txt": (SMALL, TEXT_PLAIN), "large.bin": (LARGE, OCTET_STREAM)}

assert len(LARGE) > 64 * 1024 >= len(SMALL) and len(BIG_TEXT_GZIP) > 64 * 1024


def build_root(directory, files, mtime=MTIME):
    """Create a document root from {relative path: bytes}, every file dated ``mtime``."""
    directory.mkdir(parents=True, exist_ok=True)
    for relative_path, content in files.items():
        path = directory / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (mtime, mtime))
    return directory


def etag(size, suffix=""):
    """The strong ETag of a file of ``size`` bytes dated MTIME: "mtime-size" in hex,
    with "-coding" after it for a precompressed variant."""
    return f'"{MTIME * 10**9:x}-{size:x}{suffix}"'


def etag_of(path):
    """The ETag a file on disk should have now (for files changed by a test)."""
    info = os.stat(path)
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


@pytest.fixture(scope="module")
def site_root(tmp_path_factory):
    return build_root(tmp_path_factory.mktemp("static") / "root", SITE_FILES)


SHARED_FLAGS = {
    "epoll": ["--selector", "epoll"],
    "poll": ["--selector", "poll"],
    # The portable send path: large files read in chunks on the executor.
    "epoll-no-sendfile": ["--selector", "epoll", "--no-sendfile"],
}



@pytest.fixture(scope="module", params=["epoll", "poll"])
def site_server(request, site_root):
    """The site served with default settings, shared by the read-only tests."""
    server = ServerProcess(SHARED_FLAGS[request.param], str(site_root))
    yield server
    stop_and_check(server)


@pytest.fixture(scope="module", params=list(SHARED_FLAGS))
def range_server(request, site_root):
    """The same, for the range tests: these also run on the portable send path,
    where a large file's ranges (and multipart parts) are read in chunks."""
    server = ServerProcess(SHARED_FLAGS[request.param], str(site_root))
    yield server
    stop_and_check(server)


@pytest.fixture
def own_server(start_server):
    """Factory: own_server(root, *flags) -> a server of the test's own
    (conftest's start_server: stopped, and checked for tracebacks, at teardown)."""
    return lambda root, *flags: start_server(*flags, root=str(root))


# -- talking to the server ---------------------------------------------------------------


def build_request(method, target, fields=None):
    lines = [f"{method} {target} HTTP/1.1", "Host: test.example"]
    lines += [f"{name}: {value}" for name, value in (fields or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fetch(server, target, fields=None, method="GET"):
    """One request on a fresh connection: (status, headers, body)."""
    client = RawClient(server.connect())
    try:
        return client.request(build_request(method, target, fields), head_request=method == "HEAD")
    finally:
        client.close()


_BOUNDARY_PARAMETER = re.compile(r"boundary=[0-9A-Za-z'()+_,./:=?-]+")


def comparable(headers):
    """Header fields that must be equal between HEAD and GET: all but Date
    (the clock may tick between them) and the multipart boundary, which is
    fresh for every response."""
    fields = {name: value for name, value in headers.items() if name != "date"}
    if "content-type" in fields:
        fields["content-type"] = _BOUNDARY_PARAMETER.sub("boundary=*", fields["content-type"])
    return fields


def exchange(server, target, fields=None):
    """HEAD, then GET of ``target`` with the same fields on one connection;
    returns GET's (status, headers, body) after proving that HEAD had the same
    status and fields and no body (RFC 9110 §9.3.2), and that the framing is
    exact: a stray body byte after any response would break the next one.

    Range handling is defined for GET only, and a server MUST ignore Range on
    any other method (RFC 9110 §14.2). So a HEAD with a Range is compared with
    a GET whose Range the server must ignore too: one with an If-Range that
    matches nothing (§13.1.5)."""
    fields = dict(fields or {})
    client = RawClient(server.connect())
    try:
        head_status, head_headers, head_body = client.request(
            build_request("HEAD", target, fields), head_request=True)
        status, headers, body = client.request(build_request("GET", target, fields))
        if "Range" in fields:
            ignoring_range = dict(fields, **{"If-Range": '"matches-nothing"'})
            reference_status, reference_headers, _ = client.request(build_request("GET", target, ignoring_range))
        else:
            reference_status, reference_headers = status, headers
        options_status, _, _ = client.request(b"OPTIONS * HTTP/1.1\r\nHost: test.example\r\n\r\n")
    finally:
        client.close()
    assert options_status == 204
    assert head_body == b""
    assert (head_status, comparable(head_headers)) == (reference_status, comparable(reference_headers))
    assert IMF_FIXDATE.fullmatch(headers["date"]), headers["date"]
    if status == 304:
        # No content, so no Content-Length describing it (RFC 9110 §15.4.5, §8.6).
        assert "content-length" not in headers and body == b""
    else:
        assert int(headers["content-length"]) == len(body)
    return status, headers, body


# The fields of each kind of response, by name. Asserting the whole set
# catches a field that should not be there as well as one that is missing.
FILE_FIELDS = {"server", "date", "content-type", "x-content-type-options", "last-modified", "etag",
               "accept-ranges", "content-length"}
NOT_MODIFIED_FIELDS = {"server", "date", "last-modified", "etag"}
ERROR_FIELDS = {"server", "date", "content-type", "x-content-type-options", "content-length"}


def assert_whole_file(response, content, content_type, expected_etag, extra_fields=()):
    """A 200 with the whole file and its validators."""
    status, headers, body = response
    assert status == 200
    assert body == content
    assert set(headers) == FILE_FIELDS | set(extra_fields), headers
    assert headers["content-type"] == content_type
    assert headers["etag"] == expected_etag
    assert headers["last-modified"] == MTIME_TEXT
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"


def assert_not_modified(response, expected_etag, extra_fields=()):
    """A 304 carries the validators a 200 would have (RFC 9110 §15.4.5), and nothing else."""
    status, headers, body = response
    assert status == 304
    assert body == b""
    assert set(headers) == NOT_MODIFIED_FIELDS | set(extra_fields), headers
    assert headers["etag"] == expected_etag
    assert headers["last-modified"] == MTIME_TEXT


def assert_error(response, status, extra_fields=()):
    """A short plain-text error: "412 Precondition Failed\\n"."""
    reasons = {404: "Not Found", 412: "Precondition Failed", 416: "Range Not Satisfiable"}
    actual_status, headers, body = response
    assert actual_status == status
    assert set(headers) == ERROR_FIELDS | set(extra_fields), headers
    assert headers["content-type"] == TEXT_PLAIN
    assert body == f"{status} {reasons[status]}\n".encode()


def assert_partial(response, content, content_type, first, last, expected_etag, extra_fields=()):
    """A 206 for one range: the bytes first..last, and a Content-Range saying so (§14.4)."""
    status, headers, body = response
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(content)}"
    assert body == content[first:last + 1]
    assert set(headers) == FILE_FIELDS | {"content-range"} | set(extra_fields), headers
    assert headers["content-type"] == content_type
    assert headers["etag"] == expected_etag
    assert headers["last-modified"] == MTIME_TEXT


def parse_multipart_byteranges(headers, body):
    """The parts of a multipart/byteranges body (RFC 9110 §14.6, RFC 2046 §5.1.1)
    as a list of (part headers, part bytes); asserts the multipart framing."""
    media_type, _, parameter = headers["content-type"].partition(";")
    assert media_type == "multipart/byteranges"
    name, _, boundary = parameter.strip().partition("=")
    assert name == "boundary" and 1 <= len(boundary) <= 70, parameter
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    if body.startswith(delimiter[2:]):
        body = b"\r\n" + body  # no preamble: the first delimiter may lack its CRLF
    preamble, *sections = body.split(delimiter)
    assert preamble == b"", preamble
    closing = sections.pop()
    assert closing in (b"--", b"--\r\n"), closing  # the close delimiter, no epilogue
    parts = []
    for section in sections:
        assert section.startswith(b"\r\n"), section[:80]
        head, separator, data = section[2:].partition(b"\r\n\r\n")
        assert separator, section[:200]
        part_headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            field_name, _, value = line.partition(":")
            part_headers[field_name.lower()] = value.strip()
        parts.append((part_headers, data))
    return parts


def assert_multipart(response, content, content_type, ranges, expected_etag):
    """A 206 whose multipart/byteranges body has one part per range, in order,
    each with the file's Content-Type and exactly the bytes its Content-Range names."""
    status, headers, body = response
    assert status == 206
    assert "content-range" not in headers  # each part has its own (§14.6)
    assert headers["etag"] == expected_etag
    assert headers["last-modified"] == MTIME_TEXT
    parts = parse_multipart_byteranges(headers, body)
    assert [part_headers for part_headers, _ in parts] == [
        {"content-type": content_type, "content-range": f"bytes {first}-{last}/{len(content)}"}
        for first, last in ranges]
    assert [data for _, data in parts] == [content[first:last + 1] for first, last in ranges]


# -- validators -------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected_etag", [
    # The modification time in nanoseconds: 1,700,000,000 s is 0x17979cfe362a0000.
    ("small.txt", '"17979cfe362a0000-3e8"'),    # 1000 bytes
    ("large.bin", '"17979cfe362a0000-32000"'),  # 204800 bytes
    ("empty.txt", '"17979cfe362a0000-0"'),
])
def test_file_has_strong_etag_and_last_modified(site_server, name, expected_etag):
    """A file is sent whole with a strong ETag "mtime-size" (hex), its
    Last-Modified date, and Accept-Ranges: bytes (RFC 9110 §8.8, §14.3)."""
    content = SITE_FILES[name]
    content_type = OCTET_STREAM if name.endswith(".bin") else TEXT_PLAIN
    assert_whole_file(exchange(site_server, "/" + name), content, content_type, expected_etag)


def test_index_page_has_validators_too(site_server):
    """A directory's index.html is a file like any other."""
    assert_whole_file(exchange(site_server, "/"), SITE_FILES["index.html"], "text/html; charset=utf-8",
                      etag(len(SITE_FILES["index.html"])))


# -- preconditions (RFC 9110 §13.2.2) ---------------------------------------------------------
#
# Placeholders: {etag} is the file's ETag, {opaque} the same without quotes.

PRECONDITION_CASES = [
    # If-None-Match (§13.1.2) uses the weak comparison: W/ matches too.
    ({"If-None-Match": "{etag}"}, 304),
    ({"If-None-Match": "W/{etag}"}, 304),
    ({"If-None-Match": '"other", {etag}'}, 304),
    ({"If-None-Match": '"a",W/"b" , , {etag}'}, 304),  # OWS and empty elements (§5.6.1)
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"other"'}, 200),
    ({"If-None-Match": '"other", W/"another"'}, 200),
    ({"If-None-Match": "{opaque}"}, 200),  # not an entity-tag: matches nothing
    # If-Modified-Since (§13.1.3): 304 unless modified after the date.
    ({"If-Modified-Since": MTIME_TEXT}, 304),
    ({"If-Modified-Since": SECOND_AFTER}, 304),
    ({"If-Modified-Since": SECOND_BEFORE}, 200),
    ({"If-Modified-Since": MTIME_RFC850}, 304),
    ({"If-Modified-Since": MTIME_ASCTIME}, 304),
    ({"If-Modified-Since": "not a date"}, 200),  # an invalid date is ignored
    ({"If-Modified-Since": MTIME_TEXT.lower()}, 200),  # HTTP-date is case-sensitive (§5.6.7)
    ({"If-Modified-Since": f"{MTIME_TEXT}, {MTIME_TEXT}"}, 200),  # a list is no date
    # With If-None-Match present, If-Modified-Since is ignored (§13.1.3, §13.2.2 step 4).
    ({"If-None-Match": '"other"', "If-Modified-Since": SECOND_AFTER}, 200),
    ({"If-None-Match": "{etag}", "If-Modified-Since": SECOND_BEFORE}, 304),
    # If-Match (§13.1.1) uses the strong comparison: a weak tag never matches.
    ({"If-Match": "{etag}"}, 200),
    ({"If-Match": '"other", {etag}'}, 200),
    ({"If-Match": "*"}, 200),
    ({"If-Match": "W/{etag}"}, 412),
    ({"If-Match": '"other"'}, 412),
    ({"If-Match": "{opaque}"}, 412),  # policy: a malformed If-Match fails, the safe side
    # If-Unmodified-Since (§13.1.4): 412 if modified after the date.
    ({"If-Unmodified-Since": MTIME_TEXT}, 200),
    ({"If-Unmodified-Since": SECOND_AFTER}, 200),
    ({"If-Unmodified-Since": SECOND_BEFORE}, 412),
    ({"If-Unmodified-Since": "yesterday"}, 200),  # an invalid date is ignored
    # With If-Match present, If-Unmodified-Since is ignored (§13.2.2 step 2).
    ({"If-Match": "{etag}", "If-Unmodified-Since": SECOND_BEFORE}, 200),
    # The order of §13.2.2: a failing If-Match or If-Unmodified-Since is
    # answered 412 before If-None-Match or If-Modified-Since are looked at.
    ({"If-Match": '"other"', "If-None-Match": "{etag}"}, 412),
    ({"If-Match": "W/{etag}", "If-None-Match": "W/{etag}"}, 412),
    ({"If-Unmodified-Since": SECOND_BEFORE, "If-None-Match": "{etag}"}, 412),
    ({"If-Unmodified-Since": SECOND_BEFORE, "If-Modified-Since": MTIME_TEXT}, 412),
    ({"If-Match": "{etag}", "If-None-Match": "{etag}"}, 304),
    ({"If-Match": "{etag}", "If-Modified-Since": MTIME_TEXT}, 304),
    # Preconditions come before Range (§13.2.2 step 5).
    ({"If-None-Match": "{etag}", "Range": "bytes=0-9"}, 304),
    ({"If-Modified-Since": MTIME_TEXT, "Range": "bytes=0-9"}, 304),
    ({"If-Match": '"other"', "Range": "bytes=0-9"}, 412),
    ({"If-Unmodified-Since": SECOND_BEFORE, "Range": "bytes=0-9"}, 412),
    ({"If-Match": "{etag}", "Range": "bytes=0-9"}, 206),
    ({"If-None-Match": '"other"', "If-Unmodified-Since": MTIME_TEXT, "Range": "bytes=0-9"}, 206),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("fields, expected_status", PRECONDITION_CASES,
                         ids=[" ".join(f"{n}={v}" for n, v in fields.items()) for fields, _ in PRECONDITION_CASES])
def test_preconditions(site_server, name, fields, expected_status):
    """Each precondition, alone and in combination, evaluated in the order of
    RFC 9110 §13.2.2: 412 (no validators), 304 (validators, no body), or the
    response without conditions (the whole file, or the range asked for);
    HEAD answered exactly as GET."""
    content, content_type = FILES[name]
    file_etag = etag(len(content))
    fields = {field_name: value.format(etag=file_etag, opaque=file_etag.strip('"'))
              for field_name, value in fields.items()}
    response = exchange(site_server, "/" + name, fields)
    if expected_status == 304:
        assert_not_modified(response, file_etag)
    elif expected_status == 412:
        assert_error(response, 412)
    elif expected_status == 206:
        assert_partial(response, content, content_type, 0, 9, file_etag)
    else:
        assert_whole_file(response, content, content_type, file_etag)


def test_precondition_on_missing_file_is_404(site_server):
    """No representation, no precondition to evaluate: a missing file is 404
    whatever the If-* fields say (If-None-Match: * included)."""
    assert_error(exchange(site_server, "/missing.txt", {"If-None-Match": "*"}), 404)
    assert_error(exchange(site_server, "/missing.txt", {"If-Match": "*"}), 404)


# -- single ranges (RFC 9110 §14) ---------------------------------------------------------
#
# Placeholders: {size}, {last} (size - 1) and {beyond} (size + 100).

SINGLE_RANGE_CASES = [
    ("bytes=0-99", lambda size: (0, 99)),
    ("bytes=0-0", lambda size: (0, 0)),
    ("bytes=100-", lambda size: (100, size - 1)),
    ("bytes=-100", lambda size: (size - 100, size - 1)),
    ("bytes={last}-{last}", lambda size: (size - 1, size - 1)),
    ("bytes={last}-", lambda size: (size - 1, size - 1)),
    ("bytes=10-{beyond}", lambda size: (10, size - 1)),    # last-pos past the end is clipped (§14.1.2)
    ("bytes=-{beyond}", lambda size: (0, size - 1)),       # a suffix longer than the file: all of it
    ("bytes=0-{last}", lambda size: (0, size - 1)),
    ("Bytes=0-9", lambda size: (0, 9)),                    # the range unit is case-insensitive (§14.1)
    ("bytes= 0-9 ", lambda size: (0, 9)),                  # OWS around list elements (§5.6.1)
    ("bytes=0-9, ,", lambda size: (0, 9)),                 # empty list elements (§5.6.1)
    # Overlapping or adjacent ranges are coalesced (§14.2), leaving one: no multipart.
    ("bytes=0-9,5-19", lambda size: (0, 19)),
    ("bytes=0-9,10-19", lambda size: (0, 19)),
    ("bytes=0-,0-,0-", lambda size: (0, size - 1)),
    ("bytes=" + ",".join(f"{i}-{i + 1}" for i in range(17)), lambda size: (0, 17)),
    # An unsatisfiable range beside a satisfiable one is dropped.
    ("bytes=0-9,{size}-", lambda size: (0, 9)),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("range_value, expected", SINGLE_RANGE_CASES, ids=[case[0] for case in SINGLE_RANGE_CASES])
def test_single_range(range_server, name, range_value, expected):
    """One range: 206 with Content-Range and exactly those bytes, from memory
    for the small file and from the descriptor for the large one."""
    content, content_type = FILES[name]
    size = len(content)
    range_value = range_value.format(size=size, last=size - 1, beyond=size + 100)
    first, last = expected(size)
    response = exchange(range_server, "/" + name, {"Range": range_value})
    assert_partial(response, content, content_type, first, last, etag(size))


# -- several ranges: multipart/byteranges (RFC 9110 §14.6) -----------------------------------------

MULTIPART_CASES = [
    ("bytes=0-9,20-29,-10", lambda size: [(0, 9), (20, 29), (size - 10, size - 1)]),
    ("bytes=0-9,5-19,30-39", lambda size: [(0, 19), (30, 39)]),       # the first two coalesce
    ("bytes=0-9,{size}-,20-29", lambda size: [(0, 9), (20, 29)]),     # the unsatisfiable one is dropped
    ("bytes=0-0,{last}-", lambda size: [(0, 0), (size - 1, size - 1)]),
    ("bytes=100-199,-{beyond2}", lambda size: [(0, size - 1)]),          # coalesced into the whole file
    # Exactly 16 ranges, the most the server serves as such.
    ("bytes=" + ",".join(f"{20 * i}-{20 * i + 9}" for i in range(16)),
     lambda size: [(20 * i, 20 * i + 9) for i in range(16)]),
    # Ranges spanning the whole of the large file in pieces: several sendfile regions.
    ("bytes=0-70000,70010-140000,140010-", lambda size: (
        [(0, 70000), (70010, 140000), (140010, size - 1)] if size > 140010 else [(0, size - 1)])),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("range_value, expected", MULTIPART_CASES, ids=[case[0][:40] for case in MULTIPART_CASES])
def test_multiple_ranges(range_server, name, range_value, expected):
    """Several ranges: one multipart/byteranges body whose parts are parsed and
    compared byte for byte with the file; coalesced ranges are one part."""
    content, content_type = FILES[name]
    size = len(content)
    range_value = range_value.format(size=size, last=size - 1, beyond2=size + 200)
    ranges = expected(size)
    response = exchange(range_server, "/" + name, {"Range": range_value})
    if len(ranges) == 1:
        assert_partial(response, content, content_type, *ranges[0], etag(size))
    else:
        assert_multipart(response, content, content_type, ranges, etag(size))


@pytest.mark.parametrize("name", list(FILES))
def test_multipart_parts_keep_the_requested_order(range_server, name):
    """Ranges that neither overlap nor touch are sent in the order they were
    asked for: "the server SHOULD send the parts in the same order that the
    corresponding range-spec appeared in the received Range header field"
    (RFC 9110 §15.3.7.2). Only coalescing (§14.6) may merge them."""
    content, content_type = FILES[name]
    response = exchange(range_server, "/" + name, {"Range": "bytes=500-599,0-99"})
    assert_multipart(response, content, content_type, [(500, 599), (0, 99)], etag(len(content)))


# -- ranges that are ignored or unsatisfiable ----------------------------------------------------------

IGNORED_RANGES = [
    "bytes=abc", "bytes=9-5", "items=0-9", "bytes=", "bytes=-", "bytes=--5", "bytes 0-9", "0-9",
    "bytes=0-9;x", "bytes=1-2-3", "bytes=0x0-9", "bytes=0-9,abc", "bytes=+1-2", "bytes=0-9.5",
    # More than 16 ranges after coalescing (a policy against amplification, §14.2): ignored.
    "bytes=" + ",".join(f"{20 * i}-{20 * i + 9}" for i in range(17)),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("range_value", IGNORED_RANGES, ids=[value[:30] for value in IGNORED_RANGES])
def test_malformed_range_is_ignored(range_server, name, range_value):
    """A Range field that is not valid bytes syntax, or asks for too many
    pieces, is ignored: the whole file with 200 (RFC 9110 §14.2)."""
    content, content_type = FILES[name]
    assert_whole_file(exchange(range_server, "/" + name, {"Range": range_value}),
                      content, content_type, etag(len(content)))


UNSATISFIABLE_RANGES = ["bytes={size}-", "bytes={beyond}-{beyond2}", "bytes=-0", "bytes={size}-,{beyond}-",
                        "bytes=-0,{size}-{beyond}"]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("range_value", UNSATISFIABLE_RANGES)
def test_unsatisfiable_range_is_416(range_server, name, range_value):
    """No satisfiable range: 416 with Content-Range: bytes */LENGTH (RFC 9110 §15.5.17)."""
    size = len(FILES[name][0])
    range_value = range_value.format(size=size, beyond=size + 100, beyond2=size + 200)
    response = exchange(range_server, "/" + name, {"Range": range_value})
    assert_error(response, 416, {"content-range"})
    assert response[1]["content-range"] == f"bytes */{size}"


def test_ranges_of_an_empty_file(range_server):
    """An empty file has no byte to start a range at: "bytes=0-9" is 416 with
    "bytes */0"; a suffix range is ignored (policy: a 206 cannot carry an
    empty range, and §14.2 lets a server ignore Range for empty content)."""
    response = exchange(range_server, "/empty.txt", {"Range": "bytes=0-9"})
    assert_error(response, 416, {"content-range"})
    assert response[1]["content-range"] == "bytes */0"
    assert_whole_file(exchange(range_server, "/empty.txt", {"Range": "bytes=-5"}), b"", TEXT_PLAIN, etag(0))


# -- If-Range (RFC 9110 §13.1.5) ----------------------------------------------------------

IF_RANGE_CASES = [
    ("{etag}", 206),
    ('"other"', 200),
    ("W/{etag}", 200),      # a weak tag never matches: If-Range needs the strong comparison
    (MTIME_TEXT, 206),      # a date must equal Last-Modified exactly
    (MTIME_RFC850, 206),
    (SECOND_BEFORE, 200),
    (SECOND_AFTER, 200),
    ("not a date", 200),
]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("if_range, expected_status", IF_RANGE_CASES, ids=[case[0] for case in IF_RANGE_CASES])
def test_if_range(range_server, name, if_range, expected_status):
    """If-Range lets Range apply only when the representation is the one the
    client has: 206 then, else the whole file with 200."""
    content, content_type = FILES[name]
    file_etag = etag(len(content))
    response = exchange(range_server, "/" + name,
                        {"Range": "bytes=0-9", "If-Range": if_range.format(etag=file_etag)})
    if expected_status == 206:
        assert_partial(response, content, content_type, 0, 9, file_etag)
    else:
        assert_whole_file(response, content, content_type, file_etag)


@pytest.mark.parametrize("name", list(FILES))
def test_if_range_mismatch_ignores_even_an_unsatisfiable_range(range_server, name):
    """When If-Range does not match, Range is ignored entirely, so even a range
    past the end gives the whole file rather than 416."""
    content, content_type = FILES[name]
    response = exchange(range_server, "/" + name, {"Range": f"bytes={len(content)}-", "If-Range": '"other"'})
    assert_whole_file(response, content, content_type, etag(len(content)))


@pytest.mark.parametrize("name", list(FILES))
def test_if_range_with_multiple_ranges(range_server, name):
    """A matching If-Range with several ranges: the multipart body."""
    content, content_type = FILES[name]
    file_etag = etag(len(content))
    response = exchange(range_server, "/" + name, {"Range": "bytes=0-9,-10", "If-Range": file_etag})
    assert_multipart(response, content, content_type, [(0, 9), (len(content) - 10, len(content) - 1)], file_etag)


# -- precompressed siblings (RFC 9110 §12.5.3, §8.4) --------------------------------------

VARIANTS = {
    # coding: (the bytes served, the ETag suffix)
    "identity": (SCRIPT, ""),
    "br": (SCRIPT_BR, "-br"),
    "zstd": (SCRIPT_ZSTD, "-zstd"),
    "gzip": (SCRIPT_GZIP, "-gzip"),
}

ACCEPT_ENCODING_CASES = [
    (None, "identity"),                       # no field: the unencoded file (policy)
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),                       # §8.4.1.3: x-gzip is gzip
    ("GZip", "gzip"),                         # codings are case-insensitive
    ("br", "br"),
    ("zstd", "zstd"),
    ("gzip, deflate, br, zstd", "br"),        # equal weights: the smallest (br, zstd, gzip)
    ("zstd, gzip", "zstd"),
    ("br;q=0.5, gzip", "gzip"),               # q-values (§12.4.2) beat the server's preference
    ("br;q=0.5, zstd;q=0.7, gzip;q=0.6", "zstd"),
    ("gzip;q=1.0, br;q=0.999", "gzip"),
    ("br;q=0, *", "zstd"),                    # "*" is every coding not listed
    ("*", "br"),
    ("*;q=0", "identity"),
    ("gzip;q=0", "identity"),
    ("identity", "identity"),
    ("", "identity"),                         # an empty field: no coding wanted
    ("deflate", "identity"),
    ("br;q=bogus, gzip", "gzip"),             # an invalid member is ignored, not the field
]


@pytest.mark.parametrize("accept_encoding, coding", ACCEPT_ENCODING_CASES,
                         ids=[str(case[0]) for case in ACCEPT_ENCODING_CASES])
def test_precompressed_variant_is_chosen_by_accept_encoding(site_server, accept_encoding, coding):
    """app.js has .br, .zst and .gz siblings: the one the client accepts best
    is sent with Content-Encoding, the original Content-Type, its own ETag,
    and Vary: Accept-Encoding; the identity file carries Vary too."""
    fields = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    content, suffix = VARIANTS[coding]
    status, headers, body = exchange(site_server, "/app.js", fields)
    extra_fields = {"vary"} if coding == "identity" else {"vary", "content-encoding"}
    assert_whole_file((status, headers, body), content, JAVASCRIPT, etag(len(content), suffix),
                      extra_fields=extra_fields)
    assert headers["vary"] == "Accept-Encoding"
    if coding != "identity":
        assert headers["content-encoding"] == coding


def test_gzip_sibling_is_real_gzip_of_the_file(site_server):
    """What a client decodes from the gzip variant is the file itself."""
    _, headers, body = exchange(site_server, "/app.js", {"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == SCRIPT


def test_sibling_requested_by_name_is_a_plain_file(site_server):
    """/app.js.gz itself is a gzip file, not gzip-encoded content: no
    Content-Encoding (a client must not decode it), and no Vary."""
    assert_whole_file(exchange(site_server, "/app.js.gz", {"Accept-Encoding": "gzip"}),
                      SCRIPT_GZIP, "application/gzip", etag(len(SCRIPT_GZIP)))


def test_file_without_siblings_has_no_vary(site_server):
    """Vary is only sent when the response depends on Accept-Encoding."""
    assert_whole_file(exchange(site_server, "/small.txt", {"Accept-Encoding": "gzip, br"}),
                      SMALL, TEXT_PLAIN, etag(len(SMALL)))


GZIP_TAG = etag(len(SCRIPT_GZIP), "-gzip")


@pytest.mark.parametrize("accept_encoding, if_none_match, expected_status, coding", [
    ("gzip", GZIP_TAG, 304, "gzip"),
    (None, etag(len(SCRIPT)), 304, "identity"),
    ("gzip", etag(len(SCRIPT)), 200, "gzip"),       # the client holds the identity one: send gzip
    (None, GZIP_TAG, 200, "identity"),
    ("br, gzip", GZIP_TAG, 200, "br"),
    ("br, gzip", f'{GZIP_TAG}, {etag(len(SCRIPT_BR), "-br")}', 304, "br"),
])
def test_conditional_request_on_a_precompressed_variant(site_server, accept_encoding, if_none_match,
                                                        expected_status, coding):
    """Preconditions compare with the ETag of the variant that would be sent
    (``coding``): each coding is a representation of its own (RFC 9110 §8.8.3)."""
    fields = {"If-None-Match": if_none_match}
    if accept_encoding is not None:
        fields["Accept-Encoding"] = accept_encoding
    response = exchange(site_server, "/app.js", fields)
    content, suffix = VARIANTS[coding]
    if expected_status == 304:
        assert_not_modified(response, etag(len(content), suffix), extra_fields={"vary"})
        assert response[1]["vary"] == "Accept-Encoding"
    else:
        extra_fields = {"vary"} if coding == "identity" else {"vary", "content-encoding"}
        assert_whole_file(response, content, JAVASCRIPT, etag(len(content), suffix), extra_fields=extra_fields)


@pytest.mark.parametrize("name, original, compressed", [
    ("app.js", SCRIPT, SCRIPT_GZIP),         # small: from memory
    ("big.txt", BIG_TEXT, BIG_TEXT_GZIP),    # the .gz is above 64 KiB: from its descriptor
])
def test_a_range_is_always_of_the_file_itself(range_server, name, original, compressed):
    """A request with Range gets a range of the identity file even when the
    client accepts a coding that has a precompressed sibling: a range of the
    compressed bytes is one a resuming client cannot use (curl --compressed
    -C - would append compressed bytes to a decoded file, or take a 416 for
    "complete"). The answer still says Vary: Accept-Encoding."""
    content_type = JAVASCRIPT if name == "app.js" else TEXT_PLAIN
    identity_etag = etag(len(original))
    status, headers, body = exchange(range_server, "/" + name, {"Accept-Encoding": "gzip", "Range": "bytes=10-109"})
    assert status == 206
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-range"] == f"bytes 10-109/{len(original)}"
    assert headers["etag"] == identity_etag
    assert headers["content-type"] == content_type
    assert body == original[10:110]

    last = len(original) - 1
    response = exchange(range_server, "/" + name,
                        {"Accept-Encoding": "gzip", "Range": "bytes=0-1,-20", "If-Range": identity_etag})
    assert "content-encoding" not in response[1]
    assert_multipart(response, original, content_type, [(0, 1), (last - 19, last)], identity_etag)

    # The gzip variant's ETag (from an earlier answer without Range) names
    # another representation: If-Range fails, and the whole file is sent,
    # the file itself, which the client can resume next time.
    response = exchange(range_server, "/" + name,
                        {"Accept-Encoding": "gzip", "Range": "bytes=0-1", "If-Range": etag(len(compressed), "-gzip")})
    assert_whole_file(response, original, content_type, identity_etag, extra_fields={"vary"})
    # Without Range, the same client gets the compressed sibling.
    status, headers, body = exchange(range_server, "/" + name, {"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"], body) == (200, "gzip", compressed)


def test_curl_resumes_a_compressed_download_whole(tmp_path, own_server):
    """The hostile-load issue's repro: a text file with .gz and .br siblings,
    the first 300,000 bytes already on disk, then `curl --compressed -C -`.
    curl must end with the whole file, byte for byte."""
    root = tmp_path / "root"
    root.mkdir()
    content = "".join(f"{number}\n" for number in range(1, 100001)).encode()
    (root / "t.txt").write_bytes(content)
    (root / "t.txt.gz").write_bytes(gzip.compress(content, 9))
    (root / "t.txt.br").write_bytes(gzip.compress(content, 1))  # any bytes: only the coding's name matters here
    partial = tmp_path / "part"
    partial.write_bytes(content[:300000])
    server = own_server(root)
    curl("--compressed", "-C", "-", "-o", str(partial), f"{server.url}/t.txt")
    assert partial.read_bytes() == content

@pytest.mark.parametrize("fields, expected_status", [
    ({}, 200),
    ({"Accept-Encoding": "gzip"}, 200),
    ({"Range": "bytes=0-9"}, 206),
    ({"Accept-Encoding": "gzip", "Range": "bytes=0-9,20-29"}, 206),
    ({"If-None-Match": "*"}, 304),
    ({"Accept-Encoding": "br", "If-Modified-Since": MTIME_TEXT}, 304),
])
def test_vary_on_every_success_for_a_file_with_siblings(site_server, fields, expected_status):
    """Whatever variant and status, a response for app.js says it depends on
    Accept-Encoding, so that no cache hands gzip to a client that cannot read it."""
    status, headers, _ = exchange(site_server, "/app.js", fields)
    assert status == expected_status
    assert headers["vary"] == "Accept-Encoding"


def test_vary_on_errors_that_depend_on_the_variant(site_server):
    """A 412 for app.js also depends on Accept-Encoding: the If-Match here
    matches the identity variant and not the gzip one. So it needs Vary too
    (RFC 9110 §12.5.5: Vary whenever the selection used a request field)."""
    fields = {"Accept-Encoding": "gzip", "If-Match": etag(len(SCRIPT))}
    status, headers, _ = exchange(site_server, "/app.js", fields)
    assert status == 412
    assert headers.get("vary") == "Accept-Encoding", headers
    # Without Accept-Encoding the same request succeeds: the outcome did vary.
    assert exchange(site_server, "/app.js", {"If-Match": etag(len(SCRIPT))})[0] == 200


def test_a_range_past_the_end_is_judged_against_the_file_itself(site_server):
    """A Range always selects the file itself (never a compressed sibling), so
    a range past the end of the smaller gzip variant is still satisfiable,
    and one past the end of the file is a 416 whatever the client accepts."""
    fields = {"Accept-Encoding": "gzip", "Range": f"bytes={len(SCRIPT_GZIP)}-"}
    status, headers, body = exchange(site_server, "/app.js", fields)
    assert (status, body) == (206, SCRIPT[len(SCRIPT_GZIP):])
    status, headers, _ = exchange(site_server, "/app.js", {"Accept-Encoding": "gzip",
                                                            "Range": f"bytes={len(SCRIPT)}-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(SCRIPT)}")
    assert headers.get("vary") == "Accept-Encoding", headers


def test_no_precompressed_serves_the_file_itself(own_server, site_root):
    """--no-precompressed ignores the siblings: identity, no Content-Encoding,
    no Vary, whatever the client accepts."""
    server = own_server(site_root, "--no-precompressed")
    for accept_encoding in ("gzip, br, zstd", "br", "*"):
        assert_whole_file(exchange(server, "/app.js", {"Accept-Encoding": accept_encoding}),
                          SCRIPT, JAVASCRIPT, etag(len(SCRIPT)))
    response = exchange(server, "/app.js", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert_partial(response, SCRIPT, JAVASCRIPT, 0, 9, etag(len(SCRIPT)))


# -- on-the-fly gzip (--gzip) --------------------------------------------------------------

PAGE = b"<!DOCTYPE html>\n" + b"".join(b"<p>Paragraph %d of a page worth compressing.</p>\n" % n
                                       for n in range(150))
BIG_SHEET = b"".join(b".generated-%d { margin: %dpx; padding: %dpx; }\n" % (n, n % 17, n % 5)
                     for n in range(2500))
PHOTO = random.Random(3).randbytes(4000)
TINY = b"too small to be worth gzip\n"
SIBLING_SHEET = b"body { color: black; }\n" * 40
SIBLING_SHEET_GZIP = gzip.compress(SIBLING_SHEET, compresslevel=1, mtime=0)
GZIP_FILES = {
    "page.html": PAGE, "big.css": BIG_SHEET, "photo.png": PHOTO, "tiny.txt": TINY,
    "sibling.css": SIBLING_SHEET, "sibling.css.gz": SIBLING_SHEET_GZIP,
}
assert len(BIG_SHEET) > 64 * 1024 and len(TINY) < 256


@pytest.fixture(scope="module")
def gzip_server(tmp_path_factory):
    root = build_root(tmp_path_factory.mktemp("gzip") / "root", GZIP_FILES)
    server = ServerProcess(["--gzip"], str(root))
    yield server
    stop_and_check(server)


def on_the_fly_etag(content):
    """On-the-fly gzip: the identity ETag with "-gz" added (gzip with mtime 0
    gives the same bytes every time, so the tag can stay strong)."""
    return etag(len(content), "-gz")


@pytest.mark.parametrize("name, content_type", [("page.html", "text/html; charset=utf-8"),
                                                ("big.css", "text/css; charset=utf-8")])
def test_gzip_on_the_fly(gzip_server, name, content_type):
    """--gzip compresses text for a client that accepts gzip, small file or large;
    the bytes decode to the file and are the same on every request (cached)."""
    content = GZIP_FILES[name]
    status, headers, body = exchange(gzip_server, "/" + name, {"Accept-Encoding": "gzip, br"})
    assert status == 200
    assert set(headers) == FILE_FIELDS | {"vary", "content-encoding"}, headers
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == content_type
    assert headers["vary"] == "Accept-Encoding"
    assert headers["etag"] == on_the_fly_etag(content)
    assert gzip.decompress(body) == content
    assert len(body) < len(content)
    assert exchange(gzip_server, "/" + name, {"Accept-Encoding": "gzip"})[2] == body
    # Revalidating the gzip variant by its own tag.
    assert_not_modified(exchange(gzip_server, "/" + name, {"Accept-Encoding": "gzip",
                                                           "If-None-Match": on_the_fly_etag(content)}),
                        on_the_fly_etag(content), extra_fields={"vary"})


def test_gzip_on_the_fly_not_for_a_client_without_gzip(gzip_server):
    """No gzip in Accept-Encoding: the file itself, but still Vary, since
    another client would get gzip."""
    for fields in ({}, {"Accept-Encoding": "br"}, {"Accept-Encoding": "gzip;q=0"}):
        assert_whole_file(exchange(gzip_server, "/page.html", fields), PAGE, "text/html; charset=utf-8",
                          etag(len(PAGE)), extra_fields={"vary"})


def test_gzip_on_the_fly_never_for_ranges(gzip_server):
    """A Range gets the file's own bytes: gzip output is ours, not a file's."""
    response = exchange(gzip_server, "/page.html", {"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert_partial(response, PAGE, "text/html; charset=utf-8", 0, 99, etag(len(PAGE)), extra_fields={"vary"})
    assert response[1]["vary"] == "Accept-Encoding"


def test_gzip_on_the_fly_skips_binary_and_tiny_files(gzip_server):
    """An image is not a compressible type (no Vary either: nothing depends on
    Accept-Encoding); a file under 256 bytes is not worth it."""
    assert_whole_file(exchange(gzip_server, "/photo.png", {"Accept-Encoding": "gzip"}),
                      PHOTO, "image/png", etag(len(PHOTO)))
    assert_whole_file(exchange(gzip_server, "/tiny.txt", {"Accept-Encoding": "gzip"}),
                      TINY, TEXT_PLAIN, etag(len(TINY)), extra_fields={"vary"})


def test_gzip_on_the_fly_prefers_a_precompressed_sibling(gzip_server):
    """A file that has a .gz sibling is served from it, with the sibling's ETag."""
    assert_whole_file(exchange(gzip_server, "/sibling.css", {"Accept-Encoding": "gzip"}),
                      SIBLING_SHEET_GZIP, "text/css; charset=utf-8", etag(len(SIBLING_SHEET_GZIP), "-gzip"),
                      extra_fields={"vary", "content-encoding"})


def test_curl_compressed_with_gzip_on_the_fly(gzip_server):
    """`curl --compressed` decodes the on-the-fly gzip back to the file."""
    output = curl("--compressed", "--write-out", "\n%{size_download}", gzip_server.url + "/page.html")
    body, _, downloaded = output.rpartition(b"\n")
    assert body == PAGE
    assert int(downloaded) < len(PAGE)  # it did travel compressed


# -- Cache-Control, autoindex, error pages, fallback ---------------------------------------------


def test_cache_control_on_file_responses(own_server, site_root):
    """--cache-control adds its value to every response for a file (200, 206,
    304, and HEAD alike), and not to errors."""
    server = own_server(site_root, "--cache-control", "max-age=60, public")
    file_etag = etag(len(SMALL))
    response = exchange(server, "/small.txt")
    assert_whole_file(response, SMALL, TEXT_PLAIN, file_etag, extra_fields={"cache-control"})
    assert response[1]["cache-control"] == "max-age=60, public"
    response = exchange(server, "/small.txt", {"Range": "bytes=0-9"})
    assert (response[0], response[1]["cache-control"]) == (206, "max-age=60, public")
    response = exchange(server, "/small.txt", {"If-None-Match": file_etag})
    assert_not_modified(response, file_etag, extra_fields={"cache-control"})
    assert response[1]["cache-control"] == "max-age=60, public"
    assert_error(exchange(server, "/missing.txt"), 404)


def test_cache_control_by_path(own_server, site_root):
    """--cache-control PATTERN=VALUE rules, the first match winning, and the
    plain value for the rest: on 200, 206 and 304, for a directory's index
    ("/" is matched as /index.html), large files and precompressed variants
    alike; never on errors."""
    server = own_server(site_root, "--cache-control", "*.html=no-cache",
                        "--cache-control", "/app.*=public, max-age=31536000, immutable",
                        "--cache-control", "max-age=60")
    immutable = "public, max-age=31536000, immutable"
    for target, fields, value in (
            ("/", {}, "no-cache"),
            ("/index.html", {}, "no-cache"),
            ("/app.js", {}, immutable),
            ("/app.js", {"Accept-Encoding": "br"}, immutable),
            ("/app.js.gz", {}, immutable),
            ("/small.txt", {}, "max-age=60"),
            ("/large.bin", {"Range": "bytes=0-9"}, "max-age=60"),
            ("/large.bin", {"If-None-Match": etag(len(LARGE))}, "max-age=60")):
        status, headers, _ = exchange(server, target, fields)
        assert status in (200, 206, 304)
        assert headers["cache-control"] == value, (target, fields)
    assert "cache-control" not in fetch(server, "/missing.html")[1]
    # Rules without a plain value: a path no rule matches gets none.
    server = own_server(site_root, "--cache-control", "*.html=no-cache")
    assert fetch(server, "/index.html")[1]["cache-control"] == "no-cache"
    assert "cache-control" not in fetch(server, "/small.txt")[1]


def content_tag(content, coding="identity"):
    """What --etag content says for these bytes (static/digests.py)."""
    tag = base64.urlsafe_b64encode(hashlib.sha256(content).digest()[:16]).decode().rstrip("=")
    return f'"{tag}"' if coding == "identity" else f'"{tag}-{coding}"'


def test_etag_content_agrees_across_copies_with_other_mtimes(own_server, site_root, tmp_path):
    """Two servers on two copies of the tree, their mtimes years apart: with
    --etag content the ETags agree, for small files, large ones sent with
    sendfile (and without), and precompressed variants; and a validator from
    one is honoured by the other: If-None-Match gives 304, If-Range 206,
    If-Match 200. Without the flag they differ (why it exists)."""
    other_root = build_root(tmp_path / "copy", SITE_FILES, mtime=MTIME - 86400 * 400)
    first = own_server(site_root, "--etag", "content")
    second = own_server(other_root, "--etag", "content", "--no-sendfile")
    for target, fields, content in (("/small.txt", {}, SMALL), ("/large.bin", {}, LARGE),
                                    ("/app.js", {"Accept-Encoding": "gzip"}, SCRIPT_GZIP),
                                    ("/", {}, SITE_FILES["index.html"])):
        status, headers, body = exchange(first, target, fields)
        assert (status, body) == (200, content)
        coding = headers.get("content-encoding", "identity")
        assert headers["etag"] == content_tag(content, coding)
        assert exchange(second, target, fields)[1]["etag"] == headers["etag"]
        tag = headers["etag"]
        assert exchange(second, target, dict(fields, **{"If-None-Match": tag}))[0] == 304
        assert exchange(second, target, dict(fields, **{"If-Match": tag}))[0] == 200
    tag = fetch(first, "/large.bin")[1]["etag"]
    status, headers, body = exchange(second, "/large.bin", {"Range": "bytes=1000-1999", "If-Range": tag})
    assert (status, body, headers["etag"]) == (206, LARGE[1000:2000], tag)
    # Last-Modified still says each copy's own mtime.
    assert fetch(first, "/small.txt")[1]["last-modified"] != fetch(second, "/small.txt")[1]["last-modified"]
    plain = own_server(other_root)
    assert fetch(plain, "/small.txt")[1]["etag"] != content_tag(SMALL)


def test_etag_content_follows_a_rewrite(own_server, tmp_path):
    """A file rewritten in place with the same size and mtime (what an mtime
    tag cannot see) gets a new content tag once the cache looks again; the
    old tag then gets 200, not 304."""
    root = build_root(tmp_path / "root", {"data.bin": LARGE})
    server = own_server(root, "--etag", "content", "--cache-valid", "0.1s")
    old_tag = fetch(server, "/data.bin")[1]["etag"]
    changed = LARGE[::-1]
    (root / "data.bin").write_bytes(changed)
    os.utime(root / "data.bin", (MTIME, MTIME))
    wait_until(lambda: fetch(server, "/data.bin")[1]["etag"] == content_tag(changed), 10,
               "the new bytes never got their own tag")
    status, headers, body = fetch(server, "/data.bin", {"If-None-Match": old_tag})
    assert (status, body, headers["etag"]) == (200, changed, content_tag(changed))


AUTOINDEX_FILES = {
    "listing/a.txt": b"a\n", "listing/b c.txt": b"b c\n", "listing/<x>&.txt": b"x\n",
    "listing/.hidden": b"secret\n", "listing/sub/inner.txt": b"inner\n",
    "with_index/index.html": b"<h1>an index</h1>\n", "with_index/other.txt": b"other\n",
}


@pytest.fixture(scope="module")
def autoindex_root(tmp_path_factory):
    return build_root(tmp_path_factory.mktemp("autoindex") / "root", AUTOINDEX_FILES)


def test_autoindex_lists_a_directory(own_server, autoindex_root):
    """--autoindex answers a directory without index.html with an HTML listing:
    directories first, names escaped in text and percent-encoded in links,
    hidden entries left out."""
    server = own_server(autoindex_root, "--autoindex")
    status, headers, body = exchange(server, "/listing/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    assert "<title>Index of /listing/</title>" in page
    links = re.findall(r'<a href="([^"]*)">([^<]*)</a>', page)
    assert links == [("../", "../"), ("./sub/", "sub/"), ("./%3Cx%3E%26.txt", "&lt;x&gt;&amp;.txt"),
                     ("./a.txt", "a.txt"), ("./b%20c.txt", "b c.txt")]
    assert "hidden" not in page
    # The links work.
    assert exchange(server, "/listing/b%20c.txt")[2] == b"b c\n"
    assert exchange(server, "/listing/%3Cx%3E%26.txt")[2] == b"x\n"
    # An index.html still wins; a directory named without its slash is redirected.
    assert exchange(server, "/with_index/")[2] == b"<h1>an index</h1>\n"
    status, headers, _ = exchange(server, "/listing")
    assert (status, headers["location"]) == (301, "/listing/")


def test_autoindex_shows_hidden_entries_with_show_hidden(own_server, autoindex_root):
    """With --show-hidden, dotfiles are listed (and served)."""
    server = own_server(autoindex_root, "--autoindex", "--show-hidden")
    page = exchange(server, "/listing/")[2].decode("utf-8")
    assert '<a href="./.hidden">.hidden</a>' in page
    assert exchange(server, "/listing/.hidden")[2] == b"secret\n"


def test_no_listing_without_autoindex(site_server):
    """Without --autoindex a directory without index.html is 404, and the
    page says why."""
    status, headers, body = exchange(site_server, "/plain_dir/")
    assert status == 404 and headers["content-type"] == TEXT_PLAIN
    assert body.startswith(b"404 Not Found: this folder has no index.html"), body


ERROR_PAGE_FILES = {
    "404.html": b"<!DOCTYPE html>\n<h1>Nothing here</h1>\n",
    "errors/403.html": b"<!DOCTYPE html>\n<h1>Not for you</h1>\n",
    "page.txt": b"a page\n",
}


@pytest.fixture(scope="module")
def error_page_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("error-pages")
    root = build_root(directory / "root", ERROR_PAGE_FILES)
    outside = directory / "outside.txt"
    outside.write_bytes(b"outside the root\n")
    (root / "escape.txt").symlink_to(outside)  # leads out of the root: 403
    server = ServerProcess(["--error-page", "404=/404.html", "--error-page", "403=/errors/403.html",
                            "--error-page", "400=/no-such-page.html"], str(root))
    yield server
    stop_and_check(server)


@pytest.mark.parametrize("target, status, page", [
    ("/missing.html", 404, "404.html"),
    ("/.env", 404, "404.html"),            # a hidden path is answered as missing
    ("/escape.txt", 403, "errors/403.html"),
])
def test_error_page_is_served_with_the_error_status(error_page_server, target, status, page):
    """--error-page STATUS=PATH sends that file as the body of the error, with
    the error's status and the page's type, and no validators or ranges: they
    would describe the page, not the error."""
    for fields in ({}, {"If-None-Match": "*"}, {"Range": "bytes=0-3"}, {"If-Match": '"x"'}):
        response_status, headers, body = exchange(error_page_server, target, fields)
        assert response_status == status
        assert body == ERROR_PAGE_FILES[page]
        assert set(headers) == ERROR_FIELDS, headers
        assert headers["content-type"] == "text/html; charset=utf-8"


def test_error_page_that_is_missing_gives_the_plain_error(error_page_server):
    """An error page that does not exist falls back to the short text error:
    "/%00" is a 400 from the path rules, and its page is missing."""
    status, headers, body = exchange(error_page_server, "/%00")
    assert (status, headers["content-type"]) == (400, TEXT_PLAIN)
    assert body.startswith(b"400 Bad Request")
    # Files are served normally.
    assert exchange(error_page_server, "/page.txt")[2] == b"a page\n"


SPA_FILES = {"index.html": b"<!DOCTYPE html>\n<div id=app></div>\n", "app.css": b"#app { }\n",
             "assets/logo.txt": b"logo\n"}


@pytest.fixture(scope="module")
def spa_server(tmp_path_factory):
    root = build_root(tmp_path_factory.mktemp("spa") / "root", SPA_FILES)
    server = ServerProcess(["--fallback", "/index.html"], str(root))
    yield server
    stop_and_check(server)


@pytest.mark.parametrize("target", ["/some/client/route", "/missing.png", "/assets/", "/assets/missing.txt"])
def test_fallback_serves_the_app_for_paths_matching_nothing(spa_server, target):
    """--fallback /index.html answers any path that matches no file with that
    file, as a 200 with its own validators, so it can be revalidated."""
    server = spa_server
    index = SPA_FILES["index.html"]
    assert_whole_file(exchange(server, target), index, "text/html; charset=utf-8", etag(len(index)))
    assert_not_modified(exchange(server, target, {"If-None-Match": etag(len(index))}), etag(len(index)))
    # Real files, and the redirect for a directory without its slash, are untouched.
    assert exchange(server, "/app.css")[2] == b"#app { }\n"
    assert exchange(server, "/assets/logo.txt")[2] == b"logo\n"
    status, headers, _ = exchange(server, "/assets")
    assert (status, headers["location"]) == (301, "/assets/")


def test_fallback_that_is_missing_gives_404(own_server, tmp_path):
    """A fallback file that does not exist: the plain 404."""
    server = own_server(build_root(tmp_path / "root", SPA_FILES), "--fallback", "/nope.html")
    assert_error(exchange(server, "/some/route"), 404)


# -- the file cache (--cache-valid, --cache-bytes) ---------------------------------------------


def body_and_etag(server, target):
    status, headers, body = fetch(server, target)
    return status, body, headers.get("etag")


@pytest.mark.parametrize("name, old, new", [
    ("file.txt", b"old contents\n", b"new contents, longer\n"),
    ("file.bin", LARGE, LARGE[:-1000]),
], ids=["small", "large"])
def test_changed_file_is_served_after_cache_valid(own_server, tmp_path, name, old, new):
    """With --cache-valid 0.5, a changed file may be served as it was for up to
    half a second (the cached copy and its own ETag, never a mix), and after
    that the new content with the new ETag."""
    root = build_root(tmp_path / "root", {name: old})
    server = own_server(root, "--cache-valid", "0.5")
    old_state = (200, old, etag(len(old)))
    assert body_and_etag(server, "/" + name) == old_state
    (root / name).write_bytes(new)
    new_state = (200, new, etag_of(root / name))
    assert new_state[2] != old_state[2]

    def serves_new():
        state = body_and_etag(server, "/" + name)
        assert state in (old_state, new_state), state[0::2]
        return state == new_state

    wait_until(serves_new, 10, "the changed file was not served within 10 s")
    assert body_and_etag(server, "/" + name) == new_state


def traced(server, what):
    """How many of the server's trace lines say ``what``."""
    return sum(1 for line in server.stderr_lines if what in line)


def ask_together(server, target, joined_job, headers=None, clients=20, deadline=10):
    """Send one request for ``target``; once its lookup is traced as
    submitted, send the others, and wait until each is traced joining a
    ``joined_job`` already in flight. The server's --disk-delay keeps the jobs
    in flight meanwhile. Returns the responses: (status, fields, body) each."""
    headers = headers or {}
    connections = [http.client.HTTPConnection(server.host, server.port, timeout=30) for _ in range(clients)]
    try:
        connections[0].request("GET", target, headers=headers)
        wait_until(lambda: traced(server, "submit resolve") == 1, 10, "the first lookup was not traced")
        for connection in connections[1:]:
            connection.request("GET", target, headers=headers)
        wait_until(lambda: traced(server, f"join the {joined_job} already in flight") == clients - 1, deadline,
                   lambda: "".join(server.stderr_lines[-40:]))
        responses = []
        for connection in connections:
            response = connection.getresponse()
            responses.append((response.status, dict(response.getheaders()), response.read()))
        return responses
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("name, content, cache_flags", [
    ("file.txt", b"small and kept in memory\n", ()),
    ("file.bin", LARGE, ()),                          # the cached entry holds it open
    ("file.bin", LARGE, ("--cache-bytes", "0")),      # nothing cached: each request opens it
], ids=["small", "large", "large-uncached"])
def test_requests_that_miss_together_share_one_lookup(own_server, tmp_path, name, content, cache_flags):
    """Twenty requests for a path the cache does not hold, arriving while the
    first one's lookup is on the executor, wait for that lookup instead of
    each starting its own (a popular file's entry expiring under load would
    otherwise become a stat and an open per waiting request). Each still gets
    the whole file. The trace says which request submitted the lookup and
    which joined it; the slow disk (--disk-delay) keeps the lookup in flight
    while the others arrive."""
    root = build_root(tmp_path / "root", {name: content})
    server = own_server(root, "--trace=executor", "--disk-delay", "2s", *cache_flags)
    responses = ask_together(server, "/" + name, "resolve")
    assert [(status, body) for status, _, body in responses] == [(200, content)] * 20
    assert traced(server, "submit resolve") == 1


def test_requests_that_want_one_file_gzipped_together_share_one_compression(own_server, tmp_path):
    """With --gzip, twenty requests for a compressible file that is not yet
    compressed share the lookup and then the one on-the-fly compression, and
    each gets the same gzip body, which decodes to the file."""
    root = build_root(tmp_path / "root", {"page.html": PAGE})
    server = own_server(root, "--gzip", "--trace=executor", "--disk-delay", "2s")
    responses = ask_together(server, "/page.html", "gzip_variant", {"Accept-Encoding": "gzip"}, deadline=20)
    assert [(status, fields.get("Content-Encoding")) for status, fields, _ in responses] == [(200, "gzip")] * 20
    bodies = {body for _, _, body in responses}
    assert len(bodies) == 1 and gzip.decompress(bodies.pop()) == PAGE
    assert (traced(server, "submit resolve"), traced(server, "submit gzip_variant")) == (1, 1)


def test_deleted_file_becomes_404_after_cache_valid(own_server, tmp_path):
    """A deleted file is 404 once the cache entry has expired."""
    root = build_root(tmp_path / "root", {"gone.txt": b"here for now\n"})
    server = own_server(root, "--cache-valid", "0.5")
    assert fetch(server, "/gone.txt")[2] == b"here for now\n"
    (root / "gone.txt").unlink()

    def is_gone():
        status, _, body = fetch(server, "/gone.txt")
        assert (status, body) in ((200, b"here for now\n"), (404, b"404 Not Found\n"))
        return status == 404

    wait_until(is_gone, 10, "the deleted file was still served after 10 s")


def test_new_file_appears_after_cache_valid(own_server, tmp_path):
    """A 404 is cached too (so that a flood of misses is not a flood of stat
    calls), and a file created later is served once it expires."""
    root = build_root(tmp_path / "root", {})
    server = own_server(root, "--cache-valid", "0.5")
    assert fetch(server, "/later.txt")[0] == 404
    (root / "later.txt").write_bytes(b"created later\n")
    wait_until(lambda: fetch(server, "/later.txt")[2] == b"created later\n", 10,
               "the new file was not served within 10 s")


def test_cached_copy_is_served_within_cache_valid(own_server, tmp_path):
    """Within --cache-valid the cached copy is what is served: proof the cache
    is used. (The only assumption: two requests take less than an hour.)"""
    root = build_root(tmp_path / "root", {"file.txt": b"cached\n"})
    server = own_server(root, "--cache-valid", "3600")
    assert body_and_etag(server, "/file.txt") == (200, b"cached\n", etag(7))
    (root / "file.txt").write_bytes(b"changed on disk\n")
    assert body_and_etag(server, "/file.txt") == (200, b"cached\n", etag(7))


def test_cache_bytes_zero_serves_changes_at_once(own_server, tmp_path):
    """--cache-bytes 0 turns the cache off: every change is seen by the very
    next request, however long --cache-valid is."""
    root = build_root(tmp_path / "root", {"file.txt": b"first\n"})
    server = own_server(root, "--cache-bytes", "0", "--cache-valid", "3600")
    assert body_and_etag(server, "/file.txt") == (200, b"first\n", etag(6))
    (root / "file.txt").write_bytes(b"second, longer\n")
    assert body_and_etag(server, "/file.txt") == (200, b"second, longer\n", etag_of(root / "file.txt"))
    (root / "file.txt").unlink()
    assert fetch(server, "/file.txt")[0] == 404
    (root / "file.txt").write_bytes(b"third\n")
    assert fetch(server, "/file.txt")[2] == b"third\n"


def test_cache_bytes_bounds_the_cache(own_server, tmp_path):
    """--cache-bytes bounds what is kept: with room for one 600-byte file, caching
    a second evicts the first (least recently used), whose change is then seen
    at once, while the second is still served from the cache."""
    first, second = b"1" * 600, b"2" * 600
    root = build_root(tmp_path / "root", {"first.txt": first, "second.txt": second})
    # What one entry costs, counted as the server counts it (the file as resolve finds it).
    one_entry = entry_size("/first.txt", resolve(os.path.realpath(root), ["first.txt"], False))
    room_for_one = one_entry * 3 // 2
    server = own_server(root, "--cache-bytes", str(room_for_one), "--cache-valid", "3600")
    assert fetch(server, "/first.txt")[2] == first
    assert fetch(server, "/second.txt")[2] == second   # evicts first.txt
    (root / "first.txt").write_bytes(b"first, changed\n")
    (root / "second.txt").write_bytes(b"second, changed\n")
    assert fetch(server, "/second.txt")[2] == second    # still cached
    assert fetch(server, "/first.txt")[2] == b"first, changed\n"


# -- ordinary clients: http.client, curl, wget -------------------------------------------------




def test_http_client_range_and_revalidation(site_server):
    """The standard library's client reads a 206 and a 304 on one connection."""
    connection = http.client.HTTPConnection(site_server.host, site_server.port, timeout=10)
    try:
        connection.request("GET", "/large.bin", headers={"Range": "bytes=1000-1999"})
        response = connection.getresponse()
        assert (response.status, response.read()) == (206, LARGE[1000:2000])
        connection.request("GET", "/large.bin", headers={"If-None-Match": etag(len(LARGE))})
        response = connection.getresponse()
        assert (response.status, response.read()) == (304, b"")
    finally:
        connection.close()


@pytest.mark.parametrize("name, range_argument, expected", [
    ("small.txt", "0-99", SMALL[:100]),
    ("small.txt", "-10", SMALL[-10:]),
    ("large.bin", "100000-", LARGE[100000:]),
    ("large.bin", "65536-131071", LARGE[65536:131072]),
], ids=["small-0-99", "small--10", "large-100000-", "large-65536-131071"])
def test_curl_range(site_server, name, range_argument, expected):
    """`curl -r` gets a 206 with exactly the bytes asked for."""
    output = curl("-r", range_argument, "--write-out", "\n%{http_code}", site_server.url + "/" + name)
    body, _, status = output.rpartition(b"\n")
    assert (status, body) == (b"206", expected)


def test_curl_time_condition(site_server, tmp_path):
    """`curl -z` sends If-Modified-Since: a 304 shows as an empty body; an
    older date, or a local file older than the server's, gets the file."""
    url = site_server.url + "/small.txt"
    assert curl("-z", MTIME_TEXT, "--write-out", "%{http_code}", url) == b"304"
    assert curl("-z", SECOND_BEFORE, url) == SMALL
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    os.utime(reference, (MTIME, MTIME))
    assert curl("-z", str(reference), "--write-out", "%{http_code}", url) == b"304"
    os.utime(reference, (MTIME - 3600, MTIME - 3600))
    assert curl("-z", str(reference), url) == SMALL


def test_curl_compressed_gets_the_precompressed_gzip(site_server):
    """`curl --compressed` on a file with a .gz sibling: the gzip bytes travel,
    curl decodes them back to the file."""
    output = curl("--compressed", "--dump-header", "-", "--write-out", "\n%{size_download}",
                  site_server.url + "/sheet.css")
    head, _, rest = output.partition(b"\r\n\r\n")
    body, _, downloaded = rest.rpartition(b"\n")
    assert b"\r\nContent-Encoding: gzip" in head
    assert body == SHEET
    assert int(downloaded) == len(SHEET_GZIP)


def test_wget_continues_a_partial_download(site_server, tmp_path):
    """`wget -c` finds the first 50000 bytes on disk, asks for the rest with a
    Range, and ends with the whole file."""
    program = require_program("wget")
    (tmp_path / "large.bin").write_bytes(LARGE[:50000])
    completed = subprocess.run(
        [program, "--no-config", "--quiet", "--tries=1", "--timeout=30", "--continue",
         site_server.url + "/large.bin"],
        cwd=tmp_path, capture_output=True, timeout=60)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    result = (tmp_path / "large.bin").read_bytes()
    assert hashlib.sha256(result).hexdigest() == hashlib.sha256(LARGE).hexdigest()
    # The server sent only the missing bytes, as a 206.
    site_server.wait_for_log(lambda line: f'"GET /large.bin HTTP/1.1" 206 {len(LARGE) - 50000}' in line)
