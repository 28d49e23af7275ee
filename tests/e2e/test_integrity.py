"""Integrity under concurrency: 200 clients fetch whole files and byte ranges, every byte checked.

The tree (scripts/integrity.py, build_integrity_tree) has a file of every size on
both sides of each threshold where the server changes how it sends: 0 and 1
byte; 64 KiB (files.SMALL_FILE_BYTES: up to it a file is read into memory and
cached, above it sent from an open descriptor); 256 KiB (the portable path's
chunk); 4 MiB (sendfile's most per call); a 50 MiB file; and random sizes.
Contents are random, so a byte from the wrong offset or the wrong file never
looks right.

200 client threads, released together, run their share of a seeded plan:
every file whole, a range across every seam inside every file, multi-range
requests (multipart/byteranges, each part checked against its own
Content-Range), suffix and open ranges, HEAD, eight concurrent downloads of
the 50 MiB file; on connections of one to five requests, some pipelined (all
sent at once, answers read in order), some ending in Connection: close. Every
body is checked: sha256 for whole files, exact slices for ranges. Run over the
sendfile path and the portable path (--no-sendfile).

The checks themselves are tested first, on responses made wrong on purpose:
a verifier that passed everything would make the rest worthless.
"""

import hashlib

import pytest
from harness.http import ClientConnection, Head, Mismatch, request_bytes
from harness.verify import check_partial, check_whole, merge_intervals, parse_multipart, resolve_spec
from support.environment import import_script

from reactor_http.static.ranges import multipart_layout

integrity = import_script("integrity")

CLIENTS = 200
SEED = 11


# -- the checks catch what they must --------------------------------------------------------------


class FakeFile:
    """Just what the checks read of a SiteFile."""

    def __init__(self, content):
        self.content = content
        self.size = len(content)
        self.sha256 = hashlib.sha256(content).digest()
        self.url = "/fake.bin"


CONTENT = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable mod 256


def head(status, **fields):
    return Head(status, "X", {name.replace("_", "-"): value for name, value in fields.items()})


def multipart_body(ranges, content=CONTENT, boundary="b0undary"):
    """A multipart/byteranges body laid out by the server's own function."""
    parts, closing, _ = multipart_layout(ranges, len(content), "application/octet-stream", boundary)
    return b"".join(part_head + content[first:last + 1] for part_head, first, last in parts) + closing


def test_check_whole_catches_one_wrong_byte_and_a_wrong_length():
    """A whole-file body passes only if every byte and the Content-Length are the file's."""
    fake = FakeFile(CONTENT)
    good = head(200, content_length=str(len(CONTENT)), accept_ranges="bytes", etag='"x"')
    assert check_whole(good, bytearray(CONTENT), fake) == len(CONTENT)
    wrong = bytearray(CONTENT)
    wrong[5000] ^= 1
    with pytest.raises(Mismatch):
        check_whole(good, wrong, fake)
    with pytest.raises(Mismatch):
        check_whole(head(200, content_length="10239", accept_ranges="bytes", etag='"x"'),
                         bytearray(CONTENT), fake)


def test_check_partial_catches_shifted_reordered_and_missing_ranges():
    """A 206 passes only with the exact bytes of each range asked, all of them,
    in the order asked when none overlap (RFC 9110 §15.3.7.2)."""
    single = head(206, content_range=f"bytes 100-199/{len(CONTENT)}")
    assert check_partial(single, CONTENT[100:200], [(100, 199)], CONTENT, len(CONTENT)) == [(100, 199)]
    with pytest.raises(Mismatch):  # the right length from one byte further on
        check_partial(single, CONTENT[101:201], [(100, 199)], CONTENT, len(CONTENT))
    with pytest.raises(Mismatch):  # not the range asked
        check_partial(single, CONTENT[100:200], [(100, 299)], CONTENT, len(CONTENT))

    multi = head(206, content_type="multipart/byteranges; boundary=b0undary")
    asked = [(5000, 5099), (10, 19), (9000, 10239)]
    body = multipart_body(asked)
    assert check_partial(multi, body, asked, CONTENT, len(CONTENT)) == asked
    with pytest.raises(Mismatch):  # the parts in another order
        check_partial(multi, multipart_body(sorted(asked)), asked, CONTENT, len(CONTENT))
    with pytest.raises(Mismatch):  # a part left out
        check_partial(multi, multipart_body(asked[:2]), asked, CONTENT, len(CONTENT))
    corrupted = bytearray(body)
    corrupted[body.index(CONTENT[5000:5100]) + 50] ^= 0xFF
    with pytest.raises(Mismatch):  # one byte of one part
        check_partial(multi, corrupted, asked, CONTENT, len(CONTENT))


def test_multipart_parts_are_cut_by_content_range_not_by_searching():
    """File bytes that contain the boundary itself do not confuse the parser:
    each part is exactly as long as its Content-Range says."""
    boundary = "b0undary"
    content = b"\r\n--" + boundary.encode() + b"\r\n" + b"z" * 50 + CONTENT
    body = multipart_body([(0, 40), (100, 120)], content, boundary)
    parts = parse_multipart(body, boundary, len(content))
    assert [(first, last, bytes(data)) for first, last, data in parts] == [
        (0, 40, content[0:41]), (100, 120, content[100:121])]


# -- 200 clients, two send paths ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def integrity_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    return str(root), integrity.build_integrity_tree(str(root))


def test_the_tree_sits_on_every_threshold(integrity_tree):
    """The sizes the server treats differently are all there, on both sides,
    with a 50 MiB file, in under 200 MiB in all."""
    _, files = integrity_tree
    sizes = {site_file.size for site_file in files}
    for size in (0, 1, 65535, 65536, 65537, 262143, 262144, 262145,
                 4 * 1024 * 1024 - 1, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 50 * 1024 * 1024):
        assert size in sizes, size
    assert integrity.SMALL_FILE_BYTES == 65536 and integrity.CHUNK_BYTES == 262144
    assert integrity.SENDFILE_BYTES == 4 * 1024 * 1024
    assert sum(sizes) < 200 * 1024 * 1024


def expected_file_bytes(plans):
    """The file bytes the plan's responses must carry, computed from the plan
    alone: what the verifier claims to have checked must add up to this."""
    total = 0
    for connections in plans:
        for plan in connections:
            for request in plan["requests"]:
                size = request.file.size
                if request.method == "HEAD":
                    continue
                if request.specs is None:
                    total += size
                else:
                    wanted = merge_intervals(resolve_spec(spec, size) for spec in request.specs)
                    total += sum(last - first + 1 for first, last in wanted)
    return total


@pytest.mark.parametrize("send_path", ["sendfile", "portable"])
def test_two_hundred_clients_get_every_byte_right(start_server, integrity_tree, send_path):
    """200 concurrent clients, 1600 requests (whole, HEAD, single and multi
    range; keep-alive, pipelined, closing) over files of every threshold size:
    every response is verified, and they add up to every file whole and every
    seam crossed by a range, with no error."""
    root, files = integrity_tree
    flags = ["--quiet"] + (["--no-sendfile"] if send_path == "portable" else [])
    server = start_server(*flags, root=root)
    result = integrity.run_integrity(server.host, server.port, files, clients=CLIENTS, seed=SEED)

    assert result["errors"] == []
    assert result["responses"] == result["requests_planned"] >= CLIENTS * 8
    plans = integrity.integrity_plan(files, CLIENTS, SEED)
    assert result["bytes_verified"] == expected_file_bytes(plans)
    assert sorted(result["whole_files"]) == sorted(site_file.url for site_file in files)
    assert result["seams_verified"] == result["seams_expected"] > 80, result["seams_missing"]
    assert set(result["kinds"]) == {"whole", "head", "range", "multirange"}
    assert result["pipelined_connections"] > 100 and result["closing_connections"] > 100
    assert server.process.poll() is None
    check_largest_file_still_served(server, files)


def check_largest_file_still_served(server, files):
    """After the crowd, a fresh client gets the largest file whole."""
    largest = max(files, key=lambda site_file: site_file.size)
    connection = ClientConnection.connect(server.host, server.port)
    try:
        connection.send(request_bytes("GET", largest.url))
        head, body = connection.read_response()
        assert check_whole(head, body, largest) == largest.size
    finally:
        connection.close()
