"""Unit tests for --etag content: digests.py, and files.py's jobs when given a ContentDigests.

Real files in temporary directories, the jobs run on the test thread as an
executor thread would run them. What matters: the tag is a function of the
bytes alone (two copies with different mtimes agree; one changed byte does
not), a large file is read once per version and not on every cache expiry,
a file that changes while it is read is not given the old bytes' tag, and
what is remembered stays within its bound.
"""

import base64
import hashlib
import os
import threading
import tracemalloc

import pytest

from reactor_http.static import digests as digests_module
from reactor_http.static.digests import ContentDigests, content_etag
from reactor_http.static.files import SMALL_FILE_BYTES, Resource, gzip_variant, open_variant, resolve

LARGE = bytes(range(256)) * (SMALL_FILE_BYTES // 256 * 3 + 7)  # over the small-file size, odd length
SMALL = b"<h1>same bytes, other mtimes</h1>\n"


def expected_tag(data, coding="identity"):
    tag = base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:16]).decode().rstrip("=")
    return f'"{tag}"' if coding == "identity" else f'"{tag}-{coding}"'


def make_tree(root, mtime):
    root.mkdir()
    (root / "small.html").write_bytes(SMALL)
    (root / "large.bin").write_bytes(LARGE)
    (root / "large.bin.gz").write_bytes(b"pretend-gzip" * 10)
    for name in ("small.html", "large.bin", "large.bin.gz"):
        os.utime(root / name, (mtime, mtime))
    return os.path.realpath(root)


def etags(root, name, digests):
    resource = resolve(root, [name], False, digests=digests)
    assert isinstance(resource, Resource)
    try:
        return {coding: variant.etag for coding, variant in resource.variants.items()}
    finally:
        resource.close()


def test_the_tag_is_the_digest_of_the_bytes():
    assert content_etag(hashlib.sha256(b"x").digest(), "identity") == expected_tag(b"x")
    assert content_etag(hashlib.sha256(b"x").digest(), "br") == expected_tag(b"x", "br")
    assert len(expected_tag(b"x")) == 22 + 2


def test_two_copies_with_different_mtimes_agree(tmp_path):
    first = make_tree(tmp_path / "a", 1_000_000_000)
    second = make_tree(tmp_path / "b", 1_700_000_000)
    for name, data in (("small.html", SMALL), ("large.bin", LARGE)):
        tags = etags(first, name, ContentDigests())
        assert tags == etags(second, name, ContentDigests())
        assert tags["identity"] == expected_tag(data)
    assert etags(first, "large.bin", ContentDigests())["gzip"] == expected_tag(b"pretend-gzip" * 10, "gzip")
    # Without digests, the tags come from the mtimes, and differ: why the flag exists.
    assert etags(first, "small.html", None) != etags(second, "small.html", None)


def test_one_changed_byte_changes_the_tag(tmp_path):
    root = make_tree(tmp_path / "a", 1_000_000_000)
    before = etags(root, "large.bin", ContentDigests())["identity"]
    changed = bytearray(LARGE)
    changed[len(LARGE) // 2] ^= 1
    (tmp_path / "a" / "large.bin").write_bytes(changed)
    os.utime(tmp_path / "a" / "large.bin", (1_000_000_000, 1_000_000_000))  # same size, same mtime
    after = etags(root, "large.bin", ContentDigests())["identity"]
    assert before != after == expected_tag(bytes(changed))


def test_a_large_file_is_read_once_per_version(tmp_path):
    root = make_tree(tmp_path / "a", 1_000_000_000)
    digests = ContentDigests()
    for _ in range(3):  # the cache entry expiring, and the file looked at again
        etags(root, "large.bin", digests)
    assert digests.files_read == 1
    os.utime(tmp_path / "a" / "large.bin", (1_000_000_001, 1_000_000_001))  # touched: a new version
    etags(root, "large.bin", digests)
    assert digests.files_read == 2


def test_a_rewrite_that_puts_the_old_mtime_back_is_seen(tmp_path):
    """Same size, and the mtime set back as it was (cp -p, touch -d): the
    change time still moves, so the file is read again."""
    root = make_tree(tmp_path / "a", 1_000_000_000)
    digests = ContentDigests()
    before = etags(root, "large.bin", digests)["identity"]
    (tmp_path / "a" / "large.bin").write_bytes(LARGE[::-1])
    os.utime(tmp_path / "a" / "large.bin", (1_000_000_000, 1_000_000_000))
    assert etags(root, "large.bin", digests)["identity"] == expected_tag(LARGE[::-1]) != before
    assert digests.files_read == 2


def test_open_variant_keeps_the_tag_of_an_unchanged_file_and_makes_a_new_one_for_a_changed_one(tmp_path):
    root = make_tree(tmp_path / "a", 1_000_000_000)
    digests = ContentDigests()
    resource = resolve(root, ["large.bin"], False, digests=digests)
    variant = resource.variants["identity"]
    fd, fresh = open_variant(variant, digests)
    os.close(fd)
    assert fresh.etag == variant.etag
    (tmp_path / "a" / "large.bin").write_bytes(LARGE[::-1])
    fd, fresh = open_variant(variant, digests)
    os.close(fd)
    assert fresh.etag == expected_tag(LARGE[::-1])
    resource.close()


def test_the_gzip_variant_of_a_content_tag_is_its_own(tmp_path):
    root = tmp_path / "a"
    root.mkdir()
    (root / "page.html").write_bytes(b"<p>compress me</p>\n" * 100)
    resource = resolve(os.path.realpath(root), ["page.html"], False, digests=ContentDigests())
    compressed = gzip_variant(resource.variants["identity"], 1 << 20)
    assert compressed.etag == resource.variants["identity"].etag[:-1] + '-gz"'


def test_a_file_that_changes_while_it_is_read_is_not_given_a_tag(tmp_path, monkeypatch):
    """The file grows between the fstat and the last read: None, and the
    caller looks again (resolve then sees the new version and its bytes)."""
    path = tmp_path / "growing.bin"
    path.write_bytes(LARGE)
    real_pread = os.pread

    def pread_then_grow(fd, length, offset):
        data = real_pread(fd, length, offset)
        if offset == 0 and not grown:
            grown.append(True)
            with open(path, "ab") as file:
                file.write(b"more")
        return data
    grown = []
    monkeypatch.setattr(digests_module.os, "pread", pread_then_grow)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert ContentDigests().digest_of_open_file(fd, os.fstat(fd)) is None
    finally:
        os.close(fd)
    # resolve retries (the file grows once more under its first read), and
    # tags the bytes it finally read.
    grown.clear()
    resource = resolve(os.path.realpath(tmp_path), ["growing.bin"], False, digests=ContentDigests())
    assert path.read_bytes() == LARGE + b"moremore"
    assert resource.variants["identity"].etag == expected_tag(LARGE + b"moremore")
    resource.close()


def test_what_is_remembered_is_bounded(tmp_path):
    """At most max_remembered versions, the least recently used out first;
    and an entry costs what digests.py says (MAX_REMEMBERED x that is the
    bound in memory)."""
    path = tmp_path / "large.bin"
    path.write_bytes(LARGE)
    digests = ContentDigests(max_remembered=4)
    fd = os.open(path, os.O_RDONLY)
    try:
        for mtime_ns in range(10):  # ten versions of the file, as far as the memo can tell
            os.utime(path, ns=(mtime_ns, mtime_ns))
            assert digests.digest_of_open_file(fd, os.fstat(fd)) is not None
        assert len(digests) == 4

        many = ContentDigests(max_remembered=1000)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for mtime_ns in range(200):
            os.utime(path, ns=(10**12 + mtime_ns,) * 2)
            many.digest_of_open_file(fd, os.fstat(fd))
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 200
        tracemalloc.stop()
    finally:
        os.close(fd)
    assert len(many) == 200
    assert per_entry <= 512, per_entry


def test_threads_share_one_memo(tmp_path):
    """The executor's threads ask at once: every answer is the same tag."""
    root = make_tree(tmp_path / "a", 1_000_000_000)
    digests = ContentDigests()
    found = []

    def work():
        for _ in range(5):
            found.append(etags(root, "large.bin", digests)["identity"])
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(found) == {expected_tag(LARGE)}
    assert 1 <= digests.files_read <= 4  # each thread may miss once before the first is stored


@pytest.mark.parametrize("size", [0, 1, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1])
def test_sizes_at_the_edges(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert etags(os.path.realpath(tmp_path), "f", ContentDigests())["identity"] == expected_tag(data)
