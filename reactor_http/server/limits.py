"""How many descriptors the process may open, and how many connections that leaves room for.

Every connection costs a descriptor (its socket), and one sending a large file
holds a second (a duplicate of the file's). The process also keeps a few of
its own (listeners, the selector, the wake-up channel, stdio) and the file
cache keeps large files open. The server raises its soft RLIMIT_NOFILE
towards what ``--max-connections`` needs at start, and stops accepting a
little before the limit it got, so that a connection it accepted can still
open its file (and if even that fails, it gets a 503, not a crash). The
benchmark and concurrency scripts raise the limit with the same function.
"""

from __future__ import annotations

import os

try:
    import resource  # POSIX only
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

# Descriptors the server needs besides those of its connections: listeners,
# the selector, the wake-up channel, stdio, the access log.
SPARE_DESCRIPTORS = 64
# At least this many descriptors are kept free for files being served.
RESERVED_DESCRIPTORS = 16


def raise_descriptor_limit(max_connections: int | None = None) -> int | None:
    """Raise the soft RLIMIT_NOFILE towards what ``max_connections`` needs
    (each may also hold a file), or to the hard limit when None; never above
    the hard limit. Returns the soft limit now in force, or None where the
    platform has no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if max_connections is None else max_connections * 2 + SPARE_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def descriptors_in_use() -> int:
    """How many descriptors this process has open now (a guess of 16 where
    /proc is missing: stdio, selector, waker, listener)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def connection_capacity(max_connections: int) -> int:
    """How many connections the descriptor limit leaves room for. Besides
    the descriptors already open, a quarter of the limit (at least
    RESERVED_DESCRIPTORS) is kept for the files that connections open to
    send."""
    if resource is None:
        return max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    reserved_for_files = max(RESERVED_DESCRIPTORS, soft // 4)
    return max(1, min(max_connections, soft - descriptors_in_use() - reserved_for_files))
