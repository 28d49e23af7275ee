"""The blocking half of serving a file: the jobs the executor runs.

Everything here may block on the disk, so it runs on an executor thread and
never on the loop thread. ``resolve`` turns path segments into a description of
what to serve: it resolves symlinks, checks that the real path is still under
the root, stats the file and its precompressed siblings (``style.css.br``,
``.zst``, ``.gz``), reads small files whole so that the loop can answer from
memory, and keeps large ones open (the cache then holds the descriptor, and
each response sends from a duplicate of it). ``open_variant`` opens a large
file afresh when the descriptor the cache holds no longer matches it (the file
was rewritten in place). ``gzip_variant`` compresses for ``--gzip``. What they
return are plain values; they never touch a socket.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat

from .autoindex import scan_directory
from .digests import content_etag, digest_of_bytes
from .negotiation import PRECOMPRESSED_SUFFIXES, SERVER_PREFERENCE
from .paths import is_hidden

# Files up to this size are read into memory here (and may be kept in the
# cache) and sent with the head in one send(); larger ones are streamed with
# sendfile from an open descriptor, so memory stays bounded whatever the size.
SMALL_FILE_BYTES = 64 * 1024

# A file that keeps changing size between fstat and read is given up on after
# this many tries (it is being written to right now).
READ_ATTEMPTS = 3

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0) | os.O_NONBLOCK

_NOT_FOUND_ERRNOS = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP))
_FORBIDDEN_ERRNOS = frozenset((errno.EACCES, errno.EPERM))
_OUT_OF_DESCRIPTORS = frozenset((errno.EMFILE, errno.ENFILE))


class Refused:
    """The request cannot be served: answer ``status`` (403 or 404)."""

    __slots__ = ("status", "detail")

    def __init__(self, status, detail=None):
        self.status = status
        self.detail = detail


class MissingSlash:
    """The path names a directory but lacks its trailing slash: redirect."""

    __slots__ = ()


class Listing:
    """A directory without an index, to be listed (only with --autoindex)."""

    __slots__ = ("entries",)

    def __init__(self, entries):
        self.entries = entries


class Variant:
    """One representation of a file: the file itself ("identity") or a
    precompressed sibling ("br", "zstd", "gzip").

    ``data`` holds the bytes of a small file; a large one is opened later
    (``open_variant``). ``identity`` is what the file system says makes this
    the same file: device, inode, size and modification time.
    """

    __slots__ = ("coding", "path", "size", "mtime", "identity", "etag", "data", "fd")

    def __init__(self, coding, path, info, data=None):
        self.coding = coding
        self.path = path
        self.size = info.st_size
        self.mtime = int(info.st_mtime)
        self.identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        # A strong validator from the file's identity: nginx's mtime-size in
        # hex, but with the modification time in nanoseconds, so that a
        # same-size rewrite within one second still changes it (a strong
        # ETag must, RFC 9110 §8.8.3). Each coding gets its own.
        suffix = "" if coding == "identity" else "-" + coding
        self.etag = f'"{info.st_mtime_ns:x}-{self.size:x}{suffix}"'
        self.data = data
        # A large variant stays open (like nginx's open_file_cache): each
        # response sends from a duplicate of this descriptor, made on the loop
        # thread without touching the disk. Whoever holds the Resource (the
        # cache) closes it with Resource.close().
        self.fd = -1


class Resource:
    """A file to serve: the name that gives its Content-Type, and its
    variants by coding ("identity" is always there)."""

    __slots__ = ("name", "variants")

    def __init__(self, name, variants):
        self.name = name
        self.variants = variants

    def close(self):
        """Close the descriptors of its large variants (safe to repeat)."""
        for variant in self.variants.values():
            if variant.fd >= 0:
                os.close(variant.fd)
                variant.fd = -1


def resolve(root, segments, wants_directory, show_hidden=False, precompressed=True, autoindex=False,
            digests=None):
    """Resolve ``segments`` under ``root`` (a real path): Refused, MissingSlash,
    Listing or Resource. Raises OSError only for the unexpected (an I/O error),
    which the caller turns into a 500. With ``digests`` (a ContentDigests,
    for --etag content), every variant's ETag is a digest of its bytes."""
    # Performance: os.path.join walks its arguments in Python, one by one;
    # segments hold no "/" (paths.py split on it), so one str.join will do.
    found = _real_path(root, root.rstrip(os.sep) + os.sep + os.sep.join(segments) if segments else root,
                       show_hidden)
    if isinstance(found, Refused):
        return found
    real_path, info = found
    name = segments[-1] if segments else ""
    if stat.S_ISDIR(info.st_mode):
        if not wants_directory:
            return MissingSlash()
        index = _real_path(root, os.path.join(real_path, "index.html"), show_hidden)
        if isinstance(index, Refused):
            if index.status == 404:
                if autoindex:
                    return Listing(scan_directory(real_path, show_hidden))
                # Said, so that a person who opened a folder of files sees
                # why and how to list it (see the README's "A folder of files").
                return Refused(404, "this folder has no index.html, and listings are off "
                                    "(the server lists folders when started with --autoindex)")
            return index
        real_path, info = index
        name = "index.html"
        if not stat.S_ISREG(info.st_mode):
            return Refused(404)
    elif wants_directory:
        return Refused(404)  # "/file.txt/": a file is not a directory
    if not stat.S_ISREG(info.st_mode):
        return Refused(403, "not a regular file")  # a FIFO or device: never open it
    variant = _read_variant("identity", real_path, digests)
    if isinstance(variant, Refused):
        return variant
    resource = Resource(name, {"identity": variant})
    try:
        if precompressed:
            for coding in SERVER_PREFERENCE:
                sibling = _sibling_variant(root, coding, real_path + PRECOMPRESSED_SUFFIXES[coding],
                                           show_hidden, digests)
                if sibling is not None:
                    resource.variants[coding] = sibling
    except BaseException:
        resource.close()  # no descriptor may leak from a failed job
        raise
    return resource


def _real_path(root, path, show_hidden):
    """Stat, then resolve symlinks; return (real_path, stat_result) or Refused."""
    # Performance, and a bound: one stat finds a path that is not there (the
    # commonest refusal), where realpath would look at each of its components
    # in turn, thousands of system calls for a long made-up path. Nothing
    # that is not there can be outside the root.
    try:
        info = os.stat(path)
    except OSError as error:
        return _refusal_for(error)
    real_path = os.path.realpath(path)
    prefix = root if root.endswith(os.sep) else root + os.sep
    if real_path + os.sep != prefix:  # the root itself, with or without its trailing "/"
        if not real_path.startswith(prefix):
            return Refused(403, "outside the document root")
        # A symlink inside the root may lead to a hidden file: hide it too.
        if not show_hidden and is_hidden(real_path[len(prefix):]):
            return Refused(404)
    return real_path, info


def _sibling_variant(root, coding, path, show_hidden, digests):
    """A precompressed sibling, if there is a readable regular file there."""
    try:
        os.stat(path)
    except OSError:
        return None  # the common case: no such sibling
    found = _real_path(root, path, show_hidden)  # a sibling may be a symlink too
    if isinstance(found, Refused) or not stat.S_ISREG(found[1].st_mode):
        return None
    variant = _read_variant(coding, found[0], digests)
    return None if isinstance(variant, Refused) else variant


def _refusal_for(error):
    if error.errno in _NOT_FOUND_ERRNOS:
        return Refused(404)
    if error.errno in _FORBIDDEN_ERRNOS:
        return Refused(403, "permission denied")
    if error.errno in _OUT_OF_DESCRIPTORS:
        # Not the file's fault and not for long: 503, and never cached.
        return Refused(503, "out of file descriptors; try again")
    raise error


def _open(path):
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as error:
        return _refusal_for(error)


def _read_variant(coding, real_path, digests=None):
    """Open a file (so that one we may not read is refused now, for HEAD as for
    GET), fstat it, and read it if it is small. Returns Variant or Refused.
    With ``digests``, the ETag is a digest of the bytes (digests.py)."""
    fd = _open(real_path)
    if isinstance(fd, Refused):
        return fd
    try:
        for _ in range(READ_ATTEMPTS):
            # fstat the descriptor, not the path: it is the file we read.
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Refused(403, "not a regular file")
            if info.st_size > SMALL_FILE_BYTES:
                variant = Variant(coding, real_path, info)
                if digests is not None:
                    digest = digests.digest_of_open_file(fd, info)
                    if digest is None:
                        continue  # it changed while being read: look again
                    variant.etag = content_etag(digest, coding)
                variant.fd, fd = fd, -1  # kept open, for sendfile
                return variant
            data = os.pread(fd, info.st_size + 1, 0)
            if len(data) == info.st_size:
                variant = Variant(coding, real_path, info, data)
                if digests is not None:
                    variant.etag = content_etag(digest_of_bytes(data), coding)
                return variant
            # The file changed size between fstat and read: look again.
        raise OSError(errno.EAGAIN, f"{real_path} keeps changing while being read")
    finally:
        if fd >= 0:
            os.close(fd)


def open_variant(variant, digests=None):
    """Open a large variant for sending. Returns ``(fd, fresh_variant)``, the
    caller owning fd, where fresh_variant describes the file now open (it may
    have changed since ``variant`` was made); or Refused if it is gone."""
    fd = _open(variant.path)
    if isinstance(fd, Refused):
        return fd
    try:
        for _ in range(READ_ATTEMPTS):
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return Refused(403, "not a regular file")
            fresh = Variant(variant.coding, variant.path, info)
            if digests is None:
                return fd, fresh
            digest = digests.digest_of_open_file(fd, info)  # remembered, unless the file changed
            if digest is not None:
                fresh.etag = content_etag(digest, fresh.coding)
                return fd, fresh
        raise OSError(errno.EAGAIN, f"{variant.path} keeps changing while being read")
    except BaseException:
        os.close(fd)
        raise


def gzip_variant(variant, max_bytes):
    """Compress a file for on-the-fly gzip. Returns a "gzip" Variant holding the
    compressed bytes, or None if the file changed, grew past ``max_bytes`` or
    does not get smaller."""
    try:
        fd = _open(variant.path)
    except OSError:  # an I/O error: serve the file uncompressed instead
        return None
    if isinstance(fd, Refused):
        return None
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) != variant.identity:
            return None
        if info.st_size > max_bytes:
            return None
        data = variant.data if variant.data is not None else os.pread(fd, info.st_size + 1, 0)
        if len(data) != info.st_size:
            return None
    except OSError:
        return None
    finally:
        os.close(fd)
    # mtime=0: the same input always gives the same bytes, so the ETag is strong.
    compressed = gzip.compress(data, compresslevel=6, mtime=0)
    if len(compressed) >= len(data):
        return None
    result = Variant("gzip", variant.path, info, compressed)
    result.size = len(compressed)
    result.etag = variant.etag[:-1] + '-gz"'
    return result
