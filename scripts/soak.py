#!/usr/bin/env python3
"""Reliability harness for reactor_http: a soak under mixed load, an integrity
check of whole files and byte ranges, and the table of the faults tested.

    python3 scripts/soak.py --requests 20000        # the soak (or --seconds 900)
    python3 scripts/soak.py integrity               # 200 clients, sendfile and --no-sendfile
    python3 scripts/soak.py faults                  # runs the fault tests, prints their table

Every mode checks every response against the files on disk: the status, the
framing (Content-Length), and the body byte for byte (sha256 for a whole file,
the exact slice for a range, and for a multipart/byteranges body each part
against its own Content-Range). A fast wrong answer counts as an error, never
as a request served.

The soak starts ``python -m reactor_http --quiet`` on a tree of files it writes
(or drives a server already running on this machine: --url, with the --root
that server serves), runs client processes with several threads each, and
samples the server once a second with psutil: open descriptors, threads,
resident memory. After a warm-up it takes a baseline; at the end it checks that
the descriptors came back to it, that the threads never exceeded the loop plus
the executor's pool, and that memory stayed within --rss-growth-mib. It prints
a table and can write JSON (--json). Exit status 0 when every check held, 1
otherwise, 2 for bad arguments.

Traffic goes to loopback addresses only: --url must name this machine.

The verifying client (``ClientConnection``, ``check_*``) and the integrity run
(``run_integrity``) are imported by tests/test_integrity.py and
tests/test_soak.py, so the tests and this script check bytes the same way.
"""

import argparse
import concurrent.futures
import hashlib
import ipaddress
import json
import mmap
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The server's own thresholds, so the integrity tree sits exactly on them.
from reactor_http.connection.writer import CHUNK_BYTES, SENDFILE_BYTES  # noqa: E402
from reactor_http.static.files import SMALL_FILE_BYTES  # noqa: E402

KIB = 1024
MIB = 1024 * KIB

RECEIVE_BYTES = 256 * KIB
MAX_HEAD_BYTES = 64 * KIB
SOCKET_TIMEOUT_SECONDS = 60.0


# -- the wire: one client connection, responses read exactly as framed ----------------------


class Mismatch(Exception):
    """A response that is not what its request must get. Counted as an error."""


class Head:
    """A response's status line and header fields (names in lower case)."""

    __slots__ = ("status", "reason", "headers")

    def __init__(self, status, reason, headers):
        self.status = status
        self.reason = reason
        self.headers = headers

    def __repr__(self):
        return f"Head({self.status} {self.reason}, {self.headers})"


class ClientConnection:
    """A blocking client socket and the bytes read from it that no response
    has used yet (pipelined responses arrive back to back)."""

    def __init__(self, host, port, timeout=SOCKET_TIMEOUT_SECONDS, receive_buffer=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if receive_buffer:
                # Before connect: the receive buffer sets the window the server may fill.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.buffer = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(RECEIVE_BYTES)
        if not data:
            raise Mismatch(f"the server closed the connection mid-response "
                           f"(unparsed: {bytes(self.buffer[:80])!r})")
        self.buffer += data

    def read_head(self):
        """The next response head, parsed strictly: HTTP/1.1, CRLF lines, no repeated field."""
        searched = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                break
            searched = len(self.buffer)
            if searched > MAX_HEAD_BYTES:
                raise Mismatch("a response head longer than 64 KiB")
            self._fill()
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[:end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) != 3 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
            raise Mismatch(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            name = name.lower()
            if not colon or name != name.strip():
                raise Mismatch(f"bad header line {line!r}")
            if name in headers:
                raise Mismatch(f"repeated header field {name!r}")
            headers[name] = value.strip(" \t")
        return Head(int(parts[1]), parts[2], headers)

    def read_body(self, length):
        """Exactly ``length`` body bytes, received straight into one buffer."""
        body = bytearray(length)
        view = memoryview(body)
        have = min(length, len(self.buffer))
        view[:have] = self.buffer[:have]
        del self.buffer[:have]
        while have < length:
            received = self.sock.recv_into(view[have:], min(length - have, 4 * MIB))
            if not received:
                raise Mismatch(f"the server closed after {have} of {length} body bytes")
            have += received
        return body

    def read_response(self, method="GET"):
        """(Head, body). The body length comes from Content-Length, which every
        response with content must carry (this server never sends chunked)."""
        head = self.read_head()
        status = head.status
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return head, b""
        length = head.headers.get("content-length")
        if length is None or not length.isdigit():
            raise Mismatch(f"{status} response without a valid Content-Length: {head.headers}")
        return head, self.read_body(int(length))

    def read_until_closed(self, limit):
        """Bytes until the server closes or resets (at most ``limit``): what a
        client gets of a response that the server cut short."""
        data = bytearray(self.buffer)
        self.buffer.clear()
        try:
            while len(data) < limit:
                chunk = self.sock.recv(RECEIVE_BYTES)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def closed_by_server(self):
        """True when the server closes with no bytes after the last response."""
        if self.buffer:
            raise Mismatch(f"bytes after the last response: {bytes(self.buffer[:80])!r}")
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        if data:
            raise Mismatch(f"bytes after the last response: {data!r}")
        return True

    def reset(self):
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()


def request_bytes(method, url, extra_fields=(), version="HTTP/1.1"):
    """The bytes of a request with no body."""
    lines = [f"{method} {url} {version}", "Host: soak"]
    lines.extend(extra_fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


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


# The sizes on either side of every threshold the server has: 64 KiB is the
# largest file read into memory (and cached), above it sendfile; the portable
# path reads 256 KiB chunks; sendfile is asked for at most 4 MiB per call.
def boundary_sizes():
    sizes = {0, 1, 2, 4095, 4096}
    for threshold in (SMALL_FILE_BYTES, CHUNK_BYTES, 2 * CHUNK_BYTES, SENDFILE_BYTES):
        sizes.update((threshold - 1, threshold, threshold + 1))
    return sorted(sizes)


INTEGRITY_LARGEST_BYTES = 50 * MIB


def build_integrity_tree(root, seed=20240601, random_files=10):
    """Write the integrity tree under ``root``: every boundary size, a 50 MiB
    file, and ``random_files`` more of random sizes, spread over nested
    directories (one name needs percent-encoding). Returns [SiteFile]."""
    rng = random.Random(seed)
    sizes = boundary_sizes() + [INTEGRITY_LARGEST_BYTES]
    sizes += [rng.randrange(0, SMALL_FILE_BYTES) for _ in range(random_files // 2)]
    sizes += [rng.randrange(SMALL_FILE_BYTES + 1, 12 * MIB) for _ in range(random_files - random_files // 2)]
    files = []
    for number, size in enumerate(sizes):
        directory = ("a", "a/b", "a/b/c", "d")[number % 4]
        name = f"file {number:02d} é.bin" if number == 7 else f"file-{number:02d}-{size}.bin"
        relative = f"{directory}/{name}"
        digest = write_random_file(os.path.join(root, relative), size, rng)
        files.append(SiteFile(root, relative, digest))
    return files


def boundary_offsets(size):
    """Offsets inside a file where the server changes how it sends: a range
    that includes bytes offset-1 and offset crosses that seam."""
    offsets = {SMALL_FILE_BYTES, CHUNK_BYTES, 2 * CHUNK_BYTES, SENDFILE_BYTES, 2 * SENDFILE_BYTES,
               size - 1, size // 2}
    return sorted(offset for offset in offsets if 0 < offset < size)


# -- the integrity run: many clients at once, every byte checked ------------------------------


class PlannedRequest:
    """One request of the integrity plan: whole (specs None) or ranges."""

    __slots__ = ("method", "file", "specs")

    def __init__(self, method, site_file, specs=None):
        self.method = method
        self.file = site_file
        self.specs = specs

    def wire(self, close=False):
        fields = [range_field(self.specs)] if self.specs else []
        if close:
            fields.append("Connection: close")
        return request_bytes(self.method, self.file.url, fields)

    @property
    def kind(self):
        if self.method == "HEAD":
            return "head"
        if self.specs is None:
            return "whole"
        return "range" if len(self.specs) == 1 else "multirange"


def _range_across(rng, offset, size):
    """A range that includes bytes offset-1 and offset."""
    return max(0, offset - 1 - rng.randrange(0, 3000)), min(size - 1, offset + rng.randrange(0, 3000))


def _disjoint_ranges(rng, size, count):
    """Up to ``count`` ranges with gaps between them, in a random order."""
    if size < 4 * count:
        return [(0, size - 1)]
    cuts = sorted(rng.sample(range(size), 2 * count))
    ranges = []
    for first, last in zip(cuts[0::2], cuts[1::2]):
        if not ranges or first > ranges[-1][1] + 1:
            ranges.append((first, min(last, first + 256 * KIB)))
    rng.shuffle(ranges)
    return ranges


def integrity_plan(files, clients, seed, big_whole_fetches=8):
    """Each client's connections: lists of (PlannedRequest, ...) with a pipelined
    flag and a close flag. Every file is fetched whole at least once; every
    seam (boundary_offsets) of every file is crossed by a single range and by a
    multipart request; the largest file is fetched whole by several clients at
    once; the rest is random whole, HEAD and range requests."""
    rng = random.Random(seed)
    requests = []
    largest = max(files, key=lambda site_file: site_file.size)
    for site_file in files:
        requests.append(PlannedRequest("GET", site_file))
        size = site_file.size
        if size == 0:
            continue
        seams = boundary_offsets(size)
        for offset in seams:
            requests.append(PlannedRequest("GET", site_file, [_range_across(rng, offset, size)]))
        if len(seams) >= 2:
            specs = merge_intervals(_range_across(rng, offset, size) for offset in seams)
            rng.shuffle(specs)
            requests.append(PlannedRequest("GET", site_file, specs[:MAX_PARTS]))
        requests.append(PlannedRequest("GET", site_file, [(None, rng.randrange(1, min(size, 100 * KIB) + 1))]))
        first = max(0, size - rng.randrange(1, 200 * KIB))
        requests.append(PlannedRequest("GET", site_file, [(first, None)]))
    requests.extend(PlannedRequest("GET", largest) for _ in range(big_whole_fetches - 1))
    # Random extras: whole small and mid-sized files (up to 1 MiB, so the byte
    # total stays moderate) and ranges of any file but the largest.
    modest = [site_file for site_file in files if site_file.size <= 12 * MIB]
    up_to_a_mebibyte = [site_file for site_file in files if site_file.size <= MIB]
    while len(requests) < clients * 8:
        site_file = rng.choice(modest)
        roll = rng.random()
        if roll < 0.4 or site_file.size == 0:
            site_file = rng.choice(up_to_a_mebibyte)
            requests.append(PlannedRequest("HEAD" if roll < 0.05 else "GET", site_file))
        elif roll < 0.7:
            requests.append(PlannedRequest("GET", site_file, [_disjoint_ranges(rng, site_file.size, 1)[0]]))
        else:
            requests.append(PlannedRequest("GET", site_file,
                                           _disjoint_ranges(rng, site_file.size, rng.randrange(2, 6))))
    rng.shuffle(requests)
    # The big whole fetches go to distinct clients, first in line, so they overlap.
    big = [request for request in requests if request.file is largest and request.kind == "whole"]
    rest = [request for request in requests if not (request.file is largest and request.kind == "whole")]
    per_client = [[] for _ in range(clients)]
    for number, request in enumerate(big):
        per_client[number * (clients // max(1, len(big))) % clients].append(request)
    for number, request in enumerate(rest):
        per_client[number % clients].append(request)
    plans = []
    for client_requests in per_client:
        connections = []
        position = 0
        while position < len(client_requests):
            count = rng.randrange(1, 6)
            batch = client_requests[position:position + count]
            position += count
            connections.append({"requests": batch, "pipelined": rng.random() < 0.35,
                                "close": rng.random() < 0.25})
        plans.append(connections)
    return plans


MAX_PARTS = 8


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


def _verify_planned(request, head, body, tally):
    site_file = request.file
    if request.specs is None:
        checked = check_whole(head, body, site_file, request.method)
        if request.method == "GET":
            tally.whole_files.add(site_file.url)
    else:
        got = check_partial(head, body, request.specs, site_file.content, site_file.size)
        checked = sum(last - first + 1 for first, last in got)
        for offset in boundary_offsets(site_file.size):
            if any(first <= offset - 1 and offset <= last for first, last in got):
                tally.seams.add((site_file.url, offset))
    tally.count(request.kind, checked)


def _run_integrity_client(host, port, connections, start, tally):
    start.wait()
    for plan in connections:
        requests, close = plan["requests"], plan["close"]
        try:
            connection = ClientConnection(host, port)
        except OSError as error:
            tally.errors.append(f"connect: {error!r}")
            continue
        try:
            wires = [request.wire(close=close and number == len(requests) - 1)
                     for number, request in enumerate(requests)]
            if plan["pipelined"]:
                connection.send(b"".join(wires))  # all at once; answers must come in order
            for number, request in enumerate(requests):
                if not plan["pipelined"]:
                    connection.send(wires[number])
                head, body = connection.read_response(request.method)
                _verify_planned(request, head, body, tally)
            if close:
                if head.headers.get("connection") != "close" or not connection.closed_by_server():
                    raise Mismatch("Connection: close was asked and the server kept the connection")
        except (Mismatch, OSError) as error:
            tally.errors.append(f"{[r.kind + ' ' + r.file.url for r in requests]}: {error}")
        finally:
            connection.close()


def run_integrity(host, port, files, clients=200, seed=1, big_whole_fetches=8):
    """Run the integrity plan with ``clients`` threads released together.
    Returns a dict: responses, bytes_verified, kinds, whole_files, seams,
    seams_expected, errors, seconds."""
    plans = integrity_plan(files, clients, seed, big_whole_fetches)
    start = threading.Barrier(clients)
    tallies = [Tally() for _ in range(clients)]
    threads = [threading.Thread(target=_run_integrity_client, args=(host, port, plan, start, tally),
                                name=f"integrity-client-{number}", daemon=True)
               for number, (plan, tally) in enumerate(zip(plans, tallies))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        total.errors.append(f"clients still running after 300 s: {stuck[:5]}")
    expected_seams = {(site_file.url, offset) for site_file in files
                      for offset in boundary_offsets(site_file.size)}
    every_connection = [plan for connections in plans for plan in connections]
    return {
        "clients": clients,
        "requests_planned": sum(len(plan["requests"]) for plan in every_connection),
        "connections": len(every_connection),
        "pipelined_connections": sum(plan["pipelined"] and len(plan["requests"]) > 1
                                     for plan in every_connection),
        "closing_connections": sum(plan["close"] for plan in every_connection),
        "responses": total.responses,
        "bytes_verified": total.bytes_verified,
        "kinds": dict(sorted(total.kinds.items())),
        "whole_files": sorted(total.whole_files),
        "seams_verified": len(total.seams & expected_seams),
        "seams_expected": len(expected_seams),
        "seams_missing": sorted(expected_seams - total.seams)[:20],
        "errors": total.errors,
        "seconds": round(time.monotonic() - began, 2),
    }


# -- starting and watching a server ---------------------------------------------------------

_BANNER = re.compile(r"Serving (.+) at http://(\[[^\]]+\]|[^:/]+):(\d+)/")


class ServerUnderTest:
    """``python -m reactor_http --port 0 --quiet`` in a subprocess, its stderr kept."""

    def __init__(self, root, flags=(), env=None):
        command = [sys.executable, "-m", "reactor_http", "--port", "0", "--root", root, "--quiet", *flags]
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            path for path in (REPO, environment.get("PYTHONPATH")) if path)
        environment["PYTHONUNBUFFERED"] = "1"
        environment.update(env or {})
        self.flags = list(flags)
        self.process = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines = []
        self._stderr_reader = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr_reader.start()
        banner = self.process.stdout.readline()
        match = _BANNER.search(banner)
        if match is None:
            self.stop()
            raise RuntimeError(f"the server did not start: {banner!r} {''.join(self.stderr_lines)}")
        # --quiet: nothing more comes on stdout but "Stopped."; drain it anyway.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.host = match.group(2).strip("[]")
        self.port = int(match.group(3))
        self.pid = self.process.pid

    def _pump_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr_reader.join(5)
        return self.process.returncode


def socket_descriptor_count(pid):
    """How many of a process's descriptors are sockets (listeners included)."""
    count = 0
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            count += os.readlink(os.path.join(directory, name)).startswith("socket:")
        except OSError:
            pass  # closed while we looked
    return count


def descriptor_targets(pid):
    """What a process's descriptors point at, counted: "socket", "pipe",
    "anon_inode:[eventpoll]", or a file's path. For a report that says what leaked."""
    counts = {}
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            target = os.readlink(os.path.join(directory, name))
        except OSError:
            continue
        kind = target.split(":[")[0] if target.startswith(("socket:", "pipe:")) else target
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


class Sampler(threading.Thread):
    """Samples a process once a second: open descriptors, threads, RSS."""

    def __init__(self, process, interval=1.0):
        super().__init__(name="sampler", daemon=True)
        self.process = process
        self.interval = interval
        self.samples = []  # (seconds since start, fds, threads, rss bytes)
        self._stop_event = threading.Event()
        self._began = time.monotonic()

    def sample(self):
        with self.process.oneshot():
            reading = (round(time.monotonic() - self._began, 2), self.process.num_fds(),
                       self.process.num_threads(), self.process.memory_info().rss)
        self.samples.append(reading)
        return reading

    def run(self):
        while not self._stop_event.wait(self.interval):
            try:
                self.sample()
            except Exception:  # the server died: the checks after the run will say so
                return

    def stop(self):
        self._stop_event.set()
        self.join(10)


def settle(process, listeners, timeout=30.0):
    """Wait until the server holds no socket but its listeners and its
    descriptor count has stopped moving; return (fds, threads, rss)."""
    import psutil
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        if process.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(process.pid, msg="the server has exited")
        with process.oneshot():
            reading = (process.num_fds(), process.num_threads(), process.memory_info().rss)
        quiet = socket_descriptor_count(process.pid) == listeners
        if quiet and previous is not None and previous[0] == reading[0]:
            return reading
        if time.monotonic() >= deadline:
            return reading
        previous = reading if quiet else None
        time.sleep(0.2)


# -- the soak: mixed load from several processes, every response verified -----------------------

SOAK_SMALL_SIZES = [0, 1, 2, 100, 512, 1000, 1024, 1500, 4096, 8191, 16384, 30000, 65535, 65536]
SOAK_LARGE_SIZES = [SMALL_FILE_BYTES + 1, 200 * KIB, CHUNK_BYTES + 1, MIB, 3 * MIB + 7,
                    SENDFILE_BYTES + 1, 8 * MIB]


def build_soak_tree(root, seed=7):
    """The soak's files under ``root``/soak: small (cached, answered from
    memory), large (sendfile or chunks), and a directory with an index.html."""
    rng = random.Random(seed)
    base = os.path.join(root, "soak")
    shutil.rmtree(base, ignore_errors=True)
    for number, size in enumerate(SOAK_SMALL_SIZES + [rng.randrange(0, SMALL_FILE_BYTES) for _ in range(16)]):
        write_random_file(os.path.join(base, "small", f"s{number:02d}.bin"), size, rng)
    for number, size in enumerate(SOAK_LARGE_SIZES):
        write_random_file(os.path.join(base, "large", f"l{number:02d}.bin"), size, rng)
    write_random_file(os.path.join(base, "dir", "index.html"), 2000, rng)
    return base


def load_soak_tree(root):
    """(small files, large files, the directory's index) as SiteFiles."""
    def listing(directory):
        return sorted(os.listdir(os.path.join(root, "soak", directory)))
    small = [SiteFile(root, f"soak/small/{name}") for name in listing("small")]
    large = [SiteFile(root, f"soak/large/{name}") for name in listing("large")]
    return small, large, SiteFile(root, "soak/dir/index.html")


# What a soak client does, by weight. Each "keepalive" or "pipelined" action is
# several requests from REQUEST_MIX on one connection.
ACTION_WEIGHTS = {"keepalive": 46, "pipelined": 30, "close": 8, "abrupt": 10, "slow": 1, "http10": 5}
REQUEST_MIX = {"small": 44, "not_found": 10, "head": 5, "range_small": 8, "range_large": 6,
               "multirange": 5, "conditional_304": 8, "conditional_200": 4, "if_range_stale": 2,
               "redirect": 3, "directory": 3, "large": 2}


class SoakClient:
    """One thread's share of the soak: a persistent connection for keep-alive
    and pipelined work, a new one for close, abrupt and slow-reader actions."""

    def __init__(self, host, port, files, rng, tally, aborted):
        self.host, self.port = host, port
        self.small, self.large, self.index = files
        self.nonempty_small = [site_file for site_file in self.small if site_file.size]
        self.rng = rng
        self.tally = tally
        self.aborted = aborted      # [count]: requests abandoned on purpose
        self.connection = None
        self.validators = {}        # url -> (ETag, Last-Modified), learned from responses
        self._actions = list(ACTION_WEIGHTS)
        self._action_weights = list(ACTION_WEIGHTS.values())
        self._kinds = list(REQUEST_MIX)
        self._kind_weights = list(REQUEST_MIX.values())

    # -- requests and what they must get ------------------------------------------------------

    def make_request(self, kind=None):
        """(kind, method, request bytes, check(head, body)) for one request."""
        rng = self.rng
        kind = kind or rng.choices(self._kinds, self._kind_weights)[0]
        if kind == "not_found":
            url = f"/soak/missing/{rng.randrange(1000)}.bin"
            return kind, "GET", request_bytes("GET", url), lambda head, body: check_error(head, body, 404)
        if kind == "redirect":
            def check_redirect(head, body):
                if head.headers.get("location") != "/soak/dir/":
                    raise Mismatch(f"redirect to {head.headers.get('location')!r}")
                return check_error(head, body, 301)
            return kind, "GET", request_bytes("GET", "/soak/dir"), check_redirect
        if kind == "directory":
            return kind, "GET", request_bytes("GET", "/soak/dir/"), self._whole_check(self.index, "GET")
        if kind in ("large", "range_large", "multirange"):
            site_file = rng.choice(self.large)
        else:
            site_file = rng.choice(self.small)
        if kind in ("small", "large", "head"):
            method = "HEAD" if kind == "head" else "GET"
            return kind, method, request_bytes(method, site_file.url), self._whole_check(site_file, method)
        if kind.startswith("range") or kind == "multirange":
            if site_file.size == 0:
                site_file = rng.choice(self.nonempty_small)
            if kind == "multirange":
                specs = _disjoint_ranges(rng, site_file.size, rng.randrange(2, 6))
            elif rng.random() < 0.2:
                specs = [(None, rng.randrange(1, site_file.size + 1))]
            else:
                specs = [_disjoint_ranges(rng, site_file.size, 1)[0]]
            wire = request_bytes("GET", site_file.url, [range_field(specs)])

            def check_range(head, body):
                self._learn(site_file, head)
                got = check_partial(head, body, specs, site_file.content, site_file.size)
                return sum(last - first + 1 for first, last in got)
            return kind, "GET", wire, check_range
        # Conditional requests need the file's validators: learn them first.
        known = self.validators.get(site_file.url)
        if known is None:
            return "small", "GET", request_bytes("GET", site_file.url), self._whole_check(site_file, "GET")
        etag, last_modified = known
        if kind == "conditional_304":
            field = f"If-None-Match: {etag}" if rng.random() < 0.6 else f"If-Modified-Since: {last_modified}"

            def check_not_modified(head, body):
                if head.status != 304 or head.headers.get("etag") != etag:
                    raise Mismatch(f"{head.status} with ETag {head.headers.get('etag')} for {field!r}")
                return 0
            return kind, "GET", request_bytes("GET", site_file.url, [field]), check_not_modified
        if kind == "conditional_200":
            field = 'If-None-Match: "not-the-etag"'
            return kind, "GET", request_bytes("GET", site_file.url, [field]), self._whole_check(site_file, "GET")
        # If-Range with a validator that no longer matches: the whole file, 200 (§13.1.5).
        if site_file.size == 0:
            site_file = rng.choice(self.nonempty_small)
        fields = ['If-Range: "stale-0"', range_field([(0, 0)])]
        return kind, "GET", request_bytes("GET", site_file.url, fields), self._whole_check(site_file, "GET")

    def _learn(self, site_file, head):
        """Remember the file's validators; they must never change (the files do not)."""
        validators = (head.headers.get("etag"), head.headers.get("last-modified"))
        known = self.validators.setdefault(site_file.url, validators)
        if known != validators:
            raise Mismatch(f"validators of {site_file.url} changed: {known} -> {validators}")

    def _whole_check(self, site_file, method):
        def check(head, body):
            checked = check_whole(head, body, site_file, method)
            self._learn(site_file, head)
            return checked
        return check

    # -- actions ---------------------------------------------------------------------------------

    def _persistent(self):
        if self.connection is None:
            self.connection = ClientConnection(self.host, self.port)
        return self.connection

    def _drop_persistent(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _finish(self, head):
        """After a response on the persistent connection: a server that says
        close (--max-requests) must then close; reconnect next time."""
        if head.headers.get("connection") == "close":
            if not self.connection.closed_by_server():
                raise Mismatch("Connection: close, and the connection stayed open")
            self._drop_persistent()

    def action_keepalive(self, budget):
        count = min(budget, self.rng.randrange(1, 17))
        for _ in range(count):
            kind, method, wire, check = self.make_request()
            connection = self._persistent()
            connection.send(wire)
            head, body = connection.read_response(method)
            self.tally.count(kind, check(head, body))
            self._finish(head)
        return count

    def action_pipelined(self, budget):
        requests = [self.make_request() for _ in range(min(budget, self.rng.randrange(2, 25)))]
        connection = self._persistent()
        connection.send(b"".join(wire for _, _, wire, _ in requests))
        for number, (kind, method, _, check) in enumerate(requests):
            head, body = connection.read_response(method)
            self.tally.count(kind, check(head, body))
            if head.headers.get("connection") == "close":
                # --max-requests reached mid-batch: the rest are never answered.
                if not connection.closed_by_server():
                    raise Mismatch("Connection: close, and the connection stayed open")
                self._drop_persistent()
                return number + 1
        return len(requests)

    def action_http10(self, budget):
        return self.action_close(budget, version="HTTP/1.0")

    def action_close(self, budget, version="HTTP/1.1"):
        """A request on a new connection that asks to close (HTTP/1.0 closes by default)."""
        kind, method, wire, check = self.make_request(self.rng.choice(("small", "not_found", "range_small")))
        if version == "HTTP/1.1":
            wire = wire.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        else:
            wire = wire.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        connection = ClientConnection(self.host, self.port)
        try:
            connection.send(wire)
            # The server answers a 1.0 request with its own version, HTTP/1.1 (RFC 9110 §2.5).
            head, body = connection.read_response(method)
            checked = check(head, body)
            if head.headers.get("connection") != "close" or not connection.closed_by_server():
                raise Mismatch(f"{version} request asking to close: the connection stayed open")
            self.tally.count("close" if version == "HTTP/1.1" else "http10", checked)
        finally:
            connection.close()
        return 1

    def action_abrupt(self, budget):
        """Leave in the middle: after part of a head, right after a request, or
        mid-body, by FIN or RST. Whatever arrived must be a correct prefix."""
        site_file = self.rng.choice(self.large)
        way = self.rng.randrange(4)
        connection = ClientConnection(self.host, self.port)
        try:
            if way == 0:
                connection.send(b"GET /soak/small/s03.bin HTTP/1.1\r\nHo")
                connection.close()
            elif way == 1:
                connection.send(request_bytes("GET", site_file.url))
                connection.reset()
            else:
                connection.send(request_bytes("GET", site_file.url))
                head = connection.read_head()
                if head.status != 200:
                    raise Mismatch(f"status {head.status} for {site_file.url}")
                prefix = connection.read_body(min(site_file.size, self.rng.randrange(1, 300 * KIB)))
                if prefix != site_file.content[:len(prefix)]:
                    raise Mismatch(f"the first bytes of {site_file.url} differ from the file")
                self.tally.bytes_verified += len(prefix)
                if way == 2:
                    connection.reset()
        finally:
            connection.close()
        self.aborted[0] += 1
        return 1

    def action_slow(self, budget):
        """A reader with a small window that takes small bites: the server must
        wait for it (writability), not drop it, and send every byte right."""
        site_file = self.rng.choice([f for f in self.large if f.size <= 2 * MIB])
        connection = ClientConnection(self.host, self.port, receive_buffer=16 * KIB)
        try:
            connection.send(request_bytes("GET", site_file.url, ["Connection: close"]))
            head = connection.read_head()
            body = bytearray(connection.buffer)
            connection.buffer.clear()
            while len(body) < site_file.size:
                chunk = connection.sock.recv(16 * KIB)
                if not chunk:
                    break
                body += chunk
                time.sleep(0.001)
            self.tally.count("slow", check_whole(head, body, site_file, "GET"))
        finally:
            connection.close()
        return 1

    def run(self, quota, deadline):
        done = 0
        while done < quota and time.monotonic() < deadline:
            action = self.rng.choices(self._actions, self._action_weights)[0]
            try:
                done += getattr(self, "action_" + action)(quota - done)
            except (Mismatch, OSError, ValueError, KeyError) as error:
                done += 1
                self.tally.errors.append(f"{action}: {type(error).__name__}: {error}")
                self._drop_persistent()
                if len(self.tally.errors) > 1000:
                    break  # something is badly wrong: stop adding noise
        self._drop_persistent()
        return done


def soak_worker(job):
    """One client process: ``job["threads"]`` SoakClients. Returns its tally as a dict."""
    small, large, index = load_soak_tree(job["root"])
    deadline = time.monotonic() + job["seconds"] if job["seconds"] else float("inf")
    tallies, aborted, done = [], [], []

    def client_thread(number):
        tally, abandoned = Tally(), [0]
        client = SoakClient(job["host"], job["port"], (small, large, index),
                            random.Random(job["seed"] * 1000 + number), tally, abandoned)
        try:
            done.append(client.run(job["quota"], deadline))
        except Exception as error:  # a bug in the harness must show, not vanish with its thread
            tally.errors.append(f"client thread {number} died: {error!r}")
        tallies.append(tally)
        aborted.append(abandoned[0])

    threads = [threading.Thread(target=client_thread, args=(number,)) for number in range(job["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return {"requests": sum(done), "responses": total.responses, "aborted": sum(aborted),
            "bytes_verified": total.bytes_verified, "kinds": total.kinds, "errors": total.errors[:50],
            "error_count": len(total.errors)}


def run_clients(pool, host, port, root, processes, threads, requests, seconds, seed):
    """Spread ``requests`` (or ``seconds``) over processes x threads; merge what they verified."""
    clients = processes * threads
    quota = -(-requests // clients) if requests else float("inf")
    jobs = [{"host": host, "port": port, "root": root, "threads": threads, "quota": quota,
             "seconds": seconds, "seed": seed * 100 + number} for number in range(processes)]
    result = {"requests": 0, "responses": 0, "aborted": 0, "bytes_verified": 0, "kinds": {},
              "errors": [], "error_count": 0}
    for part in pool.map(soak_worker, jobs):
        for key in ("requests", "responses", "aborted", "bytes_verified", "error_count"):
            result[key] += part[key]
        for kind, number in part["kinds"].items():
            result["kinds"][kind] = result["kinds"].get(kind, 0) + number
        result["errors"].extend(part["errors"])
    result["kinds"] = dict(sorted(result["kinds"].items()))
    return result


def touch_every_file(host, port, root):
    """GET every file of the soak tree once, checked. The cache keeps large
    files open; after this the baseline holds a descriptor for each of them,
    as the end of the run will."""
    small, large, index = load_soak_tree(root)
    errors = []
    for site_file in small + large + [index]:
        connection = ClientConnection(host, port)
        try:
            connection.send(request_bytes("GET", site_file.url))
            head, body = connection.read_response()
            check_whole(head, body, site_file)
        except (Mismatch, OSError) as error:
            errors.append(f"warm-up GET {site_file.url}: {type(error).__name__}: {error}")
        finally:
            connection.close()
    return errors


def fill_executor_pool(host, port, process, cap, attempts=10):
    """Start every executor thread now, so that the baseline has them all: the
    pool makes a thread when a job finds none idle, and never ends one. A burst
    of requests for distinct missing paths, all sent before any is read, keeps
    every thread busy at once."""
    for attempt in range(attempts):
        if process.num_threads() >= cap:
            return
        connections = [ClientConnection(host, port) for _ in range(4 * cap)]
        try:
            for number, connection in enumerate(connections):
                connection.send(request_bytes("GET", f"/soak/missing/warm-{attempt}-{number}"))
            for connection in connections:
                head, body = connection.read_response()
                check_error(head, body, 404)
        finally:
            for connection in connections:
                connection.close()


def _loopback_only(host):
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise SystemExit(f"soak: cannot resolve {host!r}: {error}")
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise SystemExit(f"soak: {host} is not a loopback address; this harness loads only "
                             f"servers on this machine")


def _blocking_threads(flags):
    """--blocking-threads from the server's flags, else the server's default."""
    from reactor_http.config import Config
    for number, flag in enumerate(flags):
        if flag == "--blocking-threads" and number + 1 < len(flags):
            return int(flags[number + 1])
        if flag.startswith("--blocking-threads="):
            return int(flag.partition("=")[2])
    return Config().blocking_threads


def run_soak(options):
    """The whole soak: server, warm-up, baseline, load with sampling, checks. Returns the report."""
    import psutil
    if options.url:
        _loopback_only(urllib.parse.urlsplit(options.url).hostname or "")
    own_root = options.root is None
    root = options.root or tempfile.mkdtemp(prefix="reactor-http-soak-")
    server = None
    try:
        build_soak_tree(root)
        if options.url:
            parsed = urllib.parse.urlsplit(options.url)
            host, port = parsed.hostname, parsed.port or 80
            pid = options.pid
            flags = list(psutil.Process(pid).cmdline()) if pid else []
        else:
            server = ServerUnderTest(root, options.server_arg)
            host, port, pid, flags = server.host, server.port, server.pid, options.server_arg
        process = psutil.Process(pid) if pid else None
        listeners = socket_descriptor_count(pid) if pid else 0
        thread_cap = 1 + _blocking_threads(flags)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with concurrent.futures.ProcessPoolExecutor(options.processes, mp_context=context) as pool:
            warmup = run_clients(pool, host, port, root, options.processes, options.threads,
                                 options.warmup_requests, None, options.seed + 1)
            touch_errors = touch_every_file(host, port, root)
            warmup["errors"] += touch_errors
            warmup["error_count"] += len(touch_errors)
            if process:
                fill_executor_pool(host, port, process, thread_cap)
            baseline = settle(process, listeners) if process else None
            baseline_targets = descriptor_targets(pid) if process else None
            sampler = Sampler(process) if process else None
            if sampler:
                sampler.sample()
                sampler.start()
            began = time.monotonic()
            load = run_clients(pool, host, port, root, options.processes, options.threads,
                               options.requests, options.seconds, options.seed)
            elapsed = time.monotonic() - began
            if sampler:
                sampler.stop()
        try:
            final = settle(process, listeners) if process else None
        except psutil.Error:  # the server is gone: reported below, not a crash of the harness
            final, process = None, None
            checks_if_gone = {"server still running": False}
        else:
            checks_if_gone = {}
        report = {
            "server": f"{host}:{port}", "server_flags": list(flags),
            "processes": options.processes, "threads_per_process": options.threads,
            "warmup": {key: warmup[key] for key in ("requests", "error_count")},
            "seconds": round(elapsed, 2),
            "requests": load["requests"], "responses": load["responses"], "aborted": load["aborted"],
            "errors": load["error_count"] + warmup["error_count"],
            "error_samples": (warmup["errors"] + load["errors"])[:20],
            "bytes_verified": load["bytes_verified"],
            "requests_per_second": round(load["requests"] / elapsed, 1) if elapsed else 0.0,
            "kinds": load["kinds"],
        }
        checks = {"no errors": report["errors"] == 0, **checks_if_gone}
        if options.requests:
            checks[f"at least {options.requests} requests"] = load["requests"] >= options.requests
        if process and sampler.samples:
            samples = sampler.samples
            fds = [sample[1] for sample in samples]
            threads = [sample[2] for sample in samples]
            rss = [sample[3] for sample in samples]
            report["resources"] = {
                "samples": len(samples),
                "fds": {"baseline": baseline[0], "min": min(fds), "max": max(fds), "end": final[0]},
                "threads": {"baseline": baseline[1], "min": min(threads), "max": max(threads),
                            "end": final[1], "cap": thread_cap},
                "rss_mib": {"baseline": _mib(baseline[2]), "min": _mib(min(rss)), "max": _mib(max(rss)),
                            "end": _mib(final[2]), "growth_bound": options.rss_growth_mib},
            }
            report["resources"]["descriptors"] = {"baseline": baseline_targets,
                                                  "end": descriptor_targets(pid)}
            if options.samples:
                report["resources"]["series"] = samples
            checks["descriptors back to baseline"] = final[0] == baseline[0]
            checks["threads within loop + executor"] = max(threads + [final[1]]) <= thread_cap
            checks["threads back to baseline"] = final[1] == baseline[1]
            growth = _mib(max(rss + [final[2]]) - baseline[2])
            checks[f"RSS growth {growth} MiB <= {options.rss_growth_mib} MiB"] = growth <= options.rss_growth_mib
        if server is not None:
            checks["server still running"] = server.alive() and "server still running" not in checks_if_gone
            tracebacks = "".join(server.stderr_lines).count("Traceback")
            checks["no traceback in the server's stderr"] = tracebacks == 0
            report["server_stderr_tail"] = server.stderr_lines[-10:]
        report["checks"] = checks
        report["passed"] = all(checks.values())
        return report
    finally:
        if server is not None:
            server.stop()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


def _mib(value):
    return round(value / MIB, 1)


# -- output -----------------------------------------------------------------------------------


def markdown_table(rows, header=("measure", "value")):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _size_text(size):
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def soak_table(report):
    rows = [
        ("requests (verified responses + deliberate aborts)",
         f"{report['requests']:,} ({report['responses']:,} + {report['aborted']:,})"),
        ("errors", f"{report['errors']:,}"),
        ("bytes verified", f"{report['bytes_verified']:,} ({_size_text(report['bytes_verified'])})"),
        ("duration", f"{report['seconds']} s"),
        ("requests per second", f"{report['requests_per_second']:,}"),
        ("clients", f"{report['processes']} processes x {report['threads_per_process']} threads"),
    ]
    resources = report.get("resources")
    if resources:
        fds, threads, rss = resources["fds"], resources["threads"], resources["rss_mib"]
        rows += [
            ("server descriptors: baseline / min-max / end",
             f"{fds['baseline']} / {fds['min']}-{fds['max']} / {fds['end']}"),
            ("server threads: baseline / min-max / end (cap)",
             f"{threads['baseline']} / {threads['min']}-{threads['max']} / {threads['end']} ({threads['cap']})"),
            ("server RSS MiB: baseline / min-max / end",
             f"{rss['baseline']} / {rss['min']}-{rss['max']} / {rss['end']}"),
            ("psutil samples (one a second)", resources["samples"]),
        ]
    rows.append(("by kind", ", ".join(f"{kind} {number:,}" for kind, number in report["kinds"].items())))
    rows += [(f"check: {name}", "pass" if held else "FAIL") for name, held in report["checks"].items()]
    return markdown_table(rows)


def integrity_table(results, files):
    sizes = sorted(site_file.size for site_file in files)
    lines = [f"{len(files)} files, {_size_text(sum(sizes))} in all; sizes: "
             + ", ".join(str(size) for size in sizes), ""]
    rows = []
    for path, result in results.items():
        rows.append((path, result["clients"],
                     f"{result['connections']} ({result['pipelined_connections']} pipelined, "
                     f"{result['closing_connections']} closing)",
                     f"{result['responses']:,} / {result['requests_planned']:,}",
                     f"{len(result['whole_files'])} / {len(files)}",
                     f"{result['seams_verified']} / {result['seams_expected']}",
                     ", ".join(f"{kind} {number}" for kind, number in result["kinds"].items()),
                     f"{result['bytes_verified']:,} ({_size_text(result['bytes_verified'])})",
                     len(result["errors"]), f"{result['seconds']} s"))
    lines.append(markdown_table(rows, ("send path", "clients", "connections", "responses verified / planned",
                                       "files verified whole", "seams crossed by a verified range",
                                       "by kind", "bytes verified", "errors", "time")))
    return "\n".join(lines)


def run_integrity_mode(options):
    root = tempfile.mkdtemp(prefix="reactor-http-integrity-")
    try:
        files = build_integrity_tree(root)
        results = {}
        for label, flags in (("sendfile", []), ("--no-sendfile", ["--no-sendfile"])):
            server = ServerUnderTest(root, flags)
            try:
                results[label] = run_integrity(server.host, server.port, files, options.clients, options.seed)
                results[label]["server_alive"] = server.alive()
            finally:
                server.stop()
        report = {"files": [site_file.describe() for site_file in files], "results": results}
        report["passed"] = all(not result["errors"] and result["server_alive"]
                               and result["seams_verified"] == result["seams_expected"]
                               and len(result["whole_files"]) == len(files) for result in results.values())
        print(integrity_table(results, files))
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)


# The fault table: each test in tests/test_faults.py says in its docstring
# "Fault: ..." and "Server: ...". Faults covered elsewhere are listed here.
REFERENCED_FAULT_TESTS = [
    ("tests/test_resource_limits.py::test_resets_and_half_closes_leak_nothing",
     "2000 clients reset (RST) or half-close at every stage: mid-head, right after the request, "
     "mid-response.",
     "closes each quietly; descriptors back to exactly the baseline, threads within loop + pool."),
    ("tests/test_resource_limits.py::test_out_of_descriptors_pauses_accepting_without_spinning",
     "the descriptor limit (64) is exhausted by connecting clients.",
     "pauses accepting (no spinning), serves the connections it has, recovers when they leave."),
    ("tests/test_resource_limits.py::test_send_timeout_drops_a_client_that_stops_reading",
     "a client stops reading a 64 MiB response.",
     "closes the connection after --send-timeout, frees its socket and file, logs the bytes sent."),
]


def _fault_rows():
    import ast
    rows = []
    path = os.path.join(REPO, "tests", "test_faults.py")
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            text = " ".join((ast.get_docstring(node) or "").split())
            match = re.search(r"Fault: (.*?) Server: (.*)", text)
            if match:
                rows.append((f"tests/test_faults.py::{node.name}", match.group(1), match.group(2)))
    return rows + REFERENCED_FAULT_TESTS


def run_faults_mode(options):
    """Run the fault tests with pytest and print the table with their outcomes."""
    import xml.etree.ElementTree as ElementTree
    rows = _fault_rows()
    with tempfile.TemporaryDirectory() as directory:
        junit = os.path.join(directory, "faults.xml")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                   "tests/test_faults.py", *[test for test, _, _ in REFERENCED_FAULT_TESTS]]
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        outcomes = {}
        for case in ElementTree.parse(junit).iter("testcase"):
            name = case.get("name").split("[")[0]
            skipped = case.find("skipped")
            if skipped is not None:
                outcome = "xfail (known)" if skipped.get("type") == "pytest.xfail" else "skipped"
            elif case.find("failure") is not None or case.find("error") is not None:
                outcome = "FAILED"
            else:
                outcome = "passed"
            previous = outcomes.get(name)
            if previous is None or previous == "passed":
                outcomes[name] = outcome
    table = []
    for test, fault, behaviour in rows:
        name = test.split("::")[1]
        table.append((fault, behaviour, f"`{name}`", outcomes.get(name, "not run")))
    print(markdown_table(table, ("fault", "what the server did", "test", "result")))
    print()
    print(completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr[-500:])
    return {"rows": table, "pytest_exit": completed.returncode,
            "passed": completed.returncode == 0}


# -- the command line -------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="soak.py", description="Soak, integrity check and fault table for reactor_http. "
                                    "Every response is verified against the files on disk.")
    parser.add_argument("mode", nargs="?", default="soak", choices=("soak", "integrity", "faults"),
                        help="soak (default): mixed load with psutil sampling; integrity: 200 clients "
                             "fetch whole files and ranges over both send paths; faults: run the "
                             "fault tests and print their table")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="soak: stop after N requests in all (default 20000 unless --seconds)")
    parser.add_argument("--seconds", type=float, default=None, metavar="S",
                        help="soak: stop after S seconds")
    parser.add_argument("--processes", type=int, default=2, metavar="N",
                        help="soak: client processes (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=8, metavar="N",
                        help="soak: client threads per process, each with its own connections "
                             "(default: %(default)s)")
    parser.add_argument("--warmup-requests", type=int, default=2000, metavar="N",
                        help="soak: requests before the baseline is taken (default: %(default)s)")
    parser.add_argument("--rss-growth-mib", type=float, default=32.0, metavar="MIB",
                        help="soak: the most the server's RSS may grow over its post-warm-up "
                             "baseline (default: %(default)s)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                        help="soak: a flag for the server it starts, e.g. --server-arg=--no-sendfile "
                             "(repeatable)")
    parser.add_argument("--url", help="soak: drive the server already running at this loopback URL "
                                      "instead of starting one (needs --root)")
    parser.add_argument("--root", help="soak: with --url, the directory that server serves; the "
                                       "soak writes its files under ROOT/soak/")
    parser.add_argument("--pid", type=int, help="soak: with --url, the server's process id, to sample it")
    parser.add_argument("--clients", type=int, default=200, metavar="N",
                        help="integrity: concurrent clients (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--samples", action="store_true", help="soak: put every psutil sample in the JSON")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    return parser


def main(argv=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.mode == "soak":
        if options.url and not options.root:
            parser.error("--url needs --root (the directory that server serves)")
        if options.requests is None and options.seconds is None:
            options.requests = 20000
        if options.processes < 1 or options.threads < 1:
            parser.error("--processes and --threads must be at least 1")
        report = run_soak(options)
        print(soak_table(report))
        if not report["passed"]:
            for sample in report["error_samples"]:
                print("error:", sample, file=sys.stderr)
    elif options.mode == "integrity":
        report = run_integrity_mode(options)
    else:
        report = run_faults_mode(options)
    if options.json:
        with open(options.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
