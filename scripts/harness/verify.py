"""Responses checked against the files on disk, and the files themselves.

A response passes only with the right status, the right framing and every
byte right: sha256 for a whole file, the exact slice for a range, and for a
multipart/byteranges body each part against its own Content-Range. A fast
wrong answer is a Mismatch, never a request served. The files are random
bytes from a seeded generator (a byte from the wrong offset never looks
right), mapped from disk when a check needs them.
"""

import hashlib
import mmap
import os
import re
import urllib.parse

from .http import Mismatch
from .report import KIB, MIB

# -- byte ranges ----------------------------------------------------------------------------

# A range spec is (first, last) for "first-last", (first, None) for "first-",
# or (None, count) for the suffix "-count" (RFC 9110 §14.1.1).


def range_field(specs):
    text = ",".join(f"{'' if first is None else first}-{'' if last is None else last}"
                    for first, last in specs)
    return f"Range: bytes={text}"


def resolve_spec(spec, size):
    """The inclusive (first, last) a satisfiable spec selects from ``size`` bytes (§14.1.2)."""
    first, last = spec
    if first is None:
        return max(0, size - last), size - 1
    return first, size - 1 if last is None else min(last, size - 1)


def merge_intervals(intervals):
    """Sorted, with overlapping and adjacent intervals joined."""
    merged = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [tuple(interval) for interval in merged]


def disjoint_ranges(rng, size, count):
    """Up to ``count`` ranges with gaps between them, in a random order."""
    if size < 4 * count:
        return [(0, size - 1)]
    cuts = sorted(rng.sample(range(size), 2 * count))
    ranges = []
    for first, last in zip(cuts[0::2], cuts[1::2], strict=True):
        if not ranges or first > ranges[-1][1] + 1:
            ranges.append((first, min(last, first + 256 * KIB)))
    rng.shuffle(ranges)
    return ranges


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def parse_content_range(value, size):
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        raise Mismatch(f"bad Content-Range {value!r}")
    first, last, total = map(int, match.groups())
    if total != size or not first <= last < size:
        raise Mismatch(f"Content-Range {value!r} does not fit a {size}-byte file")
    return first, last


def parse_multipart(body, boundary, size):
    """The parts of a multipart/byteranges body (RFC 9110 §14.6, RFC 2046 §5.1.1)
    as (first, last, data) in order. Each part is cut by its own Content-Range,
    never by searching for the boundary, so file bytes that happen to look like
    a delimiter cannot confuse it."""
    delimiter = b"--" + boundary.encode("latin-1")
    view = memoryview(body)
    position = 0
    parts = []
    while True:
        # Every delimiter but an optional first one follows a CRLF.
        if body.startswith(b"\r\n", position):
            position += 2
        elif parts:
            raise Mismatch(f"no CRLF before a delimiter at byte {position}")
        if not body.startswith(delimiter, position):
            raise Mismatch(f"expected the boundary at byte {position}")
        position += len(delimiter)
        if body.startswith(b"--", position):
            if body[position + 2:] not in (b"", b"\r\n"):
                raise Mismatch("bytes after the closing delimiter")
            if not parts:
                raise Mismatch("a multipart body with no part")
            return parts
        if not body.startswith(b"\r\n", position):
            raise Mismatch(f"no CRLF after a delimiter at byte {position}")
        position += 2
        head_end = body.find(b"\r\n\r\n", position)
        if head_end < 0:
            raise Mismatch("a part head without its end")
        fields = {}
        for line in bytes(body[position:head_end]).decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        first, last = parse_content_range(fields.get("content-range"), size)
        position = head_end + 4
        end = position + last - first + 1
        if end > len(body):
            raise Mismatch("a part longer than the body")
        parts.append((first, last, view[position:end]))
        position = end


def check_partial(head, body, specs, content, size):
    """Assert a 206 carries exactly the requested ranges of ``content``, as one
    Content-Range or as multipart parts, each byte equal to the file's.
    Returns the parts as (first, last)."""
    if head.status != 206:
        raise Mismatch(f"status {head.status} for a satisfiable Range, expected 206")
    content_type = head.headers.get("content-type", "")
    if content_type.startswith("multipart/byteranges"):
        match = re.search(r"boundary=([^;\s]+)", content_type)
        if match is None or "content-range" in head.headers:
            raise Mismatch(f"bad multipart head {head.headers}")
        parts = parse_multipart(body, match.group(1).strip('"'), size)
    else:
        first, last = parse_content_range(head.headers.get("content-range"), size)
        parts = [(first, last, memoryview(body))]
    for first, last, data in parts:
        if len(data) != last - first + 1 or data != content[first:last + 1]:
            raise Mismatch(f"the bytes of range {first}-{last} differ from the file's")
    wanted = [resolve_spec(spec, size) for spec in specs]
    got = [(first, last) for first, last, _ in parts]
    if merge_intervals(got) != merge_intervals(wanted):
        raise Mismatch(f"ranges {got} sent for {wanted} asked")
    if len(merge_intervals(wanted)) == len(wanted) and got != wanted:
        # Nothing to coalesce: the parts come in the order asked (RFC 9110 §15.3.7.2).
        raise Mismatch(f"ranges {got} sent in another order than asked {wanted}")
    return got


def check_whole(head, body, site_file, method="GET"):
    """Assert a 200 with the whole file: Content-Length, then every byte (sha256).
    Returns the number of file bytes checked."""
    if head.status != 200:
        raise Mismatch(f"status {head.status} for {site_file.url}, expected 200")
    if head.headers.get("content-length") != str(site_file.size):
        raise Mismatch(f"Content-Length {head.headers.get('content-length')} for a "
                       f"{site_file.size}-byte file {site_file.url}")
    if head.headers.get("accept-ranges") != "bytes" or "etag" not in head.headers:
        raise Mismatch(f"file response without Accept-Ranges or ETag: {head.headers}")
    if method == "HEAD":
        return 0
    if len(body) != site_file.size or hashlib.sha256(body).digest() != site_file.sha256:
        raise Mismatch(f"the body of {site_file.url} differs from the file (sha256)")
    return site_file.size


def check_error(head, body, status):
    """Assert one of the server's short plain-text errors, e.g. "404 Not Found\\n".
    Returns 0: no file bytes in it."""
    if head.status != status:
        raise Mismatch(f"status {head.status}, expected {status}")
    if not body.startswith(f"{status} ".encode()) or not body.endswith(b"\n"):
        raise Mismatch(f"error body {bytes(body[:80])!r}")
    return 0


# -- the files served -----------------------------------------------------------------------


class SiteFile:
    """A file of a test tree: its URL, size and sha256, and its bytes, mapped
    from disk on first use (the file is the truth the responses are checked against)."""

    def __init__(self, root, relative, sha256=None):
        self.relative = relative
        self.path = os.path.join(root, relative)
        self.url = "/" + urllib.parse.quote(relative)
        self.size = os.path.getsize(self.path)
        self._content = None
        self._sha256 = sha256

    @property
    def content(self):
        if self._content is None:
            if self.size == 0:
                self._content = b""
            else:
                with open(self.path, "rb") as file:
                    self._content = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._content

    @property
    def sha256(self):
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.content).digest()
        return self._sha256

    def describe(self):
        return {"path": self.relative, "size": self.size, "sha256": self.sha256.hex()}


def write_random_file(path, size, rng):
    """``size`` random bytes from ``rng`` (seeded: the same tree every run).
    Random, not zeros: a byte from the wrong offset must not look right."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        remaining = size
        while remaining:
            block = rng.randbytes(min(remaining, 4 * MIB))
            digest.update(block)
            file.write(block)
            remaining -= len(block)
    return digest.digest()


# -- what a client verified ------------------------------------------------------------------


class Tally:
    """What one client verified, merged into the run's result at the end."""

    def __init__(self):
        self.responses = 0
        self.bytes_verified = 0
        self.kinds = {}
        self.whole_files = set()
        self.seams = set()         # (url, offset) crossed by a verified range
        self.errors = []

    def count(self, kind, body_bytes):
        self.responses += 1
        self.bytes_verified += body_bytes
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def merge(self, other):
        self.responses += other.responses
        self.bytes_verified += other.bytes_verified
        for kind, number in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + number
        self.whole_files |= other.whole_files
        self.seams |= other.seams
        self.errors.extend(other.errors)
