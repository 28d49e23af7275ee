"""How many descriptors the process may open, and how many connections that leaves room for.

Every connection costs a descriptor (its socket), and one sending a large file
holds a second while it does (a duplicate of the file's: one, however many
ranges it sends). The process also keeps a few of its own (listeners, the
selector, the wake-up channel, stdio), the executor's jobs open files for a
moment, and the file cache keeps large files open. The server raises its soft
RLIMIT_NOFILE towards what ``--max-connections`` needs at start, then shares
out the limit it got (``plan_descriptors``) so that the sum holds whatever the
clients ask for: connections get what the rest leave, and the files being
sent share one pool (a quarter of the limit), so ten thousand idle keep-alive
connections do not each need a second descriptor set aside, and a response
that finds the pool empty is a 503, never a failed open. The benchmark and
concurrency scripts raise the limit with the same function.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

try:
    import resource  # POSIX only
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

# Descriptors the server needs besides those of its connections and its
# cache: listeners, the selector, the wake-up channel, stdio, the access log.
SPARE_DESCRIPTORS = 64
# The file cache keeps at most this many large files open (nginx:
# open_file_cache max=), and at most an eighth of the descriptor limit.
CACHE_OPEN_FILES = 256

# Files being sent, all connections together, hold at most a quarter of the
# limit (and at least this many).
MIN_SENDING_FILES = 16


@dataclass(frozen=True)
class DescriptorPlan:
    """How the descriptor limit is shared out: ``soft_limit`` (None: no
    limit), connections at once, large files the cache keeps open, and files
    being sent at once (each a connection's duplicate of a large file)."""

    soft_limit: int | None
    connections: int
    cache_open_files: int
    sending_files: int


def raise_descriptor_limit(max_connections: int | None = None) -> int | None:
    """Raise the soft RLIMIT_NOFILE towards what ``max_connections`` needs,
    or to the hard limit when None; never above the hard limit. Returns the
    soft limit now in force, or None where the platform has no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Connections, the cache and the spare are three quarters; the files being sent the fourth.
    wanted = hard if max_connections is None else (max_connections + CACHE_OPEN_FILES + SPARE_DESCRIPTORS) * 4 // 3
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


def plan_descriptors(max_connections: int, blocking_threads: int) -> DescriptorPlan:
    """Share out the soft limit, so that it holds under any mix of requests:
    the descriptors already open, the executor's jobs (each may hold two
    files for a moment), the cache's open files (an eighth of the limit at
    most), the files being sent (a quarter), and one per connection for the
    rest. Stopping at this many connections, rather than at EMFILE, means an
    accepted connection can always be answered (a 503 when the pool of files
    being sent is empty, never a crash)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource is not None else None
    if soft is None or soft == getattr(resource, "RLIM_INFINITY", None):
        return DescriptorPlan(None, max_connections, CACHE_OPEN_FILES, max(MIN_SENDING_FILES, max_connections))
    return share_out(soft, descriptors_in_use(), max_connections, blocking_threads)


def share_out(soft_limit: int, in_use: int, max_connections: int, blocking_threads: int) -> DescriptorPlan:
    """The arithmetic of plan_descriptors, for a given limit and count in use."""
    cache_open_files = max(1, min(CACHE_OPEN_FILES, soft_limit // 8))
    sending_files = max(MIN_SENDING_FILES, soft_limit // 4)
    free = soft_limit - in_use - 2 * blocking_threads - cache_open_files - sending_files
    connections = max(1, min(max_connections, free))
    return DescriptorPlan(soft_limit, connections, cache_open_files, sending_files)
