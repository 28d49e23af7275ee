"""Entity tags from a file's bytes (``--etag content``), for replicas that must agree.

The default ETag comes from the file's modification time and size (files.py,
as nginx's). Two replicas holding the same file with different mtimes
(separate checkouts, container builds, ``cp`` without ``-p``) then give
different tags, and a client or CDN that meets both gets 200 where 304 was
due, or restarts a download that If-Range should have resumed. A digest of
the bytes is the same wherever the bytes are.

The cost is reading the whole file once per version of it, so it is done
here, on the executor, never on the loop thread: a small file's digest comes
from the bytes already read to serve it; a large one is read in chunks of
``CHUNK_BYTES`` (hashlib releases the GIL while it works on each, so the loop
thread runs on meanwhile). SHA-256 runs at about 2 GB/s on these machines
(SHA-NI), so a 1 GiB file costs about half a second of one executor thread
the first time it is asked for (docs/scaling.md has the measurement). The
digest is then remembered by file version (``file_version``: device, inode,
size, and the modification and change times): when the cache entry expires and the file
is looked at again, an unchanged file is not read again. A file that changes
while it is read is read again (the caller retries).

The tag is the first 128 bits of the SHA-256 in URL-safe base64: 22
characters, as unique as any site needs, and strong (RFC 9110 §8.8.1), since
equal tags mean equal bytes.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import threading

# What one pread hands to the hash at a time: large enough that the system
# calls cost nothing beside the hashing, small enough to stay out of the way
# of the memory bound (one chunk per executor thread at most).
CHUNK_BYTES = 1024 * 1024

# File versions whose digest is remembered (large files only; a small one is
# hashed from the bytes in hand). Each costs about 410 bytes on CPython
# 3.10-3.13 (tests/static/test_digests.py checks it stays under 512), so
# the memo holds at most 512 KiB, whatever is requested.
MAX_REMEMBERED = 1024


def content_etag(digest: bytes, coding: str) -> str:
    """The quoted entity-tag for a digest; a precompressed sibling's says its coding."""
    tag = base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")
    return f'"{tag}"' if coding == "identity" else f'"{tag}-{coding}"'


def digest_of_bytes(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class ContentDigests:
    """Digests of large files by version, shared by the executor's threads
    (hence the lock: the only state in static/ touched from several threads)."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED):
        self.max_remembered = max_remembered
        self._lock = threading.Lock()
        self._by_version: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self.files_read = 0  # large files read whole to hash them (for tests and the status page)

    def digest_of_open_file(self, fd: int, info: os.stat_result) -> bytes | None:
        """The digest of the open file ``fd`` whose fstat gave ``info``; None
        if the file changed while it was read (the caller looks again)."""
        version = file_version(info)
        with self._lock:
            digest = self._by_version.get(version)
            if digest is not None:
                self._by_version.move_to_end(version)
                return digest
        digest = _hash_file(fd, version[2])
        if digest is None or file_version(os.fstat(fd)) != version:
            return None
        with self._lock:
            self.files_read += 1
            self._by_version[version] = digest
            while len(self._by_version) > self.max_remembered:
                self._by_version.popitem(last=False)
        return digest

    def __len__(self) -> int:
        return len(self._by_version)


def file_version(info: os.stat_result) -> tuple:
    """What tells one version of a file from another without reading it: its
    device, inode, size, modification time, and its change time. The ctime
    is in the key because the mtime can be set back (``cp -p``, ``touch -d``,
    ``os.utime``): a rewrite of the same size given its old mtime back still
    moves the ctime, which no one can set."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _hash_file(fd: int, size: int) -> bytes | None:
    """SHA-256 of the first ``size`` bytes of fd; None if there are fewer or more."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK_BYTES, size - offset), offset)
        if not chunk:
            return None  # shorter than its fstat said: it is being rewritten
        digest.update(chunk)
        offset += len(chunk)
    if os.pread(fd, 1, size):
        return None  # longer: it grew while being read
    return digest.digest()
