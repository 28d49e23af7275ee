"""The blocking half of serving a file: the job the executor runs.

Everything here may block on the disk, so it runs on an executor thread and
never on the loop thread. It resolves symlinks, checks that the real path is
still under the root, stats and opens the file, and for a small file reads it
whole so that the loop can send head and body in a single ``send``. What it
returns is a plain value describing the outcome; it never touches a socket.
"""

import errno
import os
import stat

from .paths import is_hidden

# Files up to this size are read into memory here and sent with the head in one
# send(); larger ones are streamed with sendfile from the open descriptor, so
# memory per response stays bounded whatever the file size.
SMALL_FILE_BYTES = 64 * 1024

# A file that keeps changing size between fstat and read is given up on after
# this many tries (it is being written to right now).
READ_ATTEMPTS = 3

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0) | os.O_NONBLOCK

_NOT_FOUND_ERRNOS = frozenset((errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP))
_FORBIDDEN_ERRNOS = frozenset((errno.EACCES, errno.EPERM))


class Refused:
    """The request cannot be served: answer ``status`` (403 or 404)."""

    __slots__ = ("status", "detail")

    def __init__(self, status, detail=None):
        self.status = status
        self.detail = detail


class MissingSlash:
    """The path names a directory but lacks its trailing slash: redirect."""

    __slots__ = ()


class OpenedFile:
    """A regular file ready to serve: its bytes in ``data`` (small files),
    or an open descriptor ``fd`` that the caller now owns (large files), or
    neither (metadata only, for HEAD)."""

    __slots__ = ("name", "size", "mtime", "fd", "data")

    def __init__(self, name, size, mtime, fd=-1, data=None):
        self.name = name
        self.size = size
        self.mtime = mtime
        self.fd = fd
        self.data = data


def open_for_serving(root, segments, wants_directory, show_hidden, read_body):
    """Resolve ``segments`` under ``root`` (a real path) and open what they name.

    Returns Refused, MissingSlash or OpenedFile. Raises OSError only for the
    unexpected (an I/O error), which the caller turns into a 500.
    """
    path = os.path.join(root, *segments)
    found = _resolve(root, path, show_hidden)
    if isinstance(found, Refused):
        return found
    real_path, info = found
    name = segments[-1] if segments else ""
    if stat.S_ISDIR(info.st_mode):
        if not wants_directory:
            return MissingSlash()
        found = _resolve(root, os.path.join(real_path, "index.html"), show_hidden)
        if isinstance(found, Refused):
            return found
        real_path, info = found
        name = "index.html"
        if not stat.S_ISREG(info.st_mode):
            return Refused(404)
    elif wants_directory:
        return Refused(404)  # "/file.txt/": a file is not a directory
    if not stat.S_ISREG(info.st_mode):
        return Refused(403, "not a regular file")  # a FIFO or device: never open it
    return _open_regular(real_path, name, read_body)


def _resolve(root, path, show_hidden):
    """Resolve symlinks and stat; return (real_path, stat_result) or Refused."""
    real_path = os.path.realpath(path)
    if real_path != root:
        prefix = root if root.endswith(os.sep) else root + os.sep
        if not real_path.startswith(prefix):
            return Refused(403, "outside the document root")
        # A symlink inside the root may lead to a hidden file: hide it too.
        if not show_hidden and is_hidden(real_path[len(prefix):]):
            return Refused(404)
    try:
        return real_path, os.stat(real_path)
    except OSError as error:
        return _refusal_for(error)


def _refusal_for(error):
    if error.errno in _NOT_FOUND_ERRNOS:
        return Refused(404)
    if error.errno in _FORBIDDEN_ERRNOS:
        return Refused(403, "permission denied")
    raise error


def _open_regular(real_path, name, read_body):
    try:
        fd = os.open(real_path, _OPEN_FLAGS)
    except OSError as error:
        return _refusal_for(error)
    try:
        for _ in range(READ_ATTEMPTS):
            # fstat the descriptor, not the path: it is the file we will send,
            # even if the path is replaced from now on.
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Refused(403, "not a regular file")
            size = info.st_size
            if not read_body:
                return OpenedFile(name, size, info.st_mtime)
            if size > SMALL_FILE_BYTES:
                opened = OpenedFile(name, size, info.st_mtime, fd=fd)
                fd = -1  # the caller owns it now
                return opened
            data = os.pread(fd, size + 1, 0)
            if len(data) == size:
                return OpenedFile(name, size, info.st_mtime, data=data)
            # The file changed size between fstat and read: look again.
        raise OSError(errno.EAGAIN, f"{real_path} keeps changing while being read")
    finally:
        if fd >= 0:
            os.close(fd)


def read_chunk(fd, offset, length):
    """Read up to ``length`` bytes at ``offset`` (the portable send path)."""
    return os.pread(fd, length, offset)
