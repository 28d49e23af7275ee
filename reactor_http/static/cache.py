"""The metadata and small-file cache, like nginx's open_file_cache.

What ``files.resolve`` found for a path (a Resource with the bytes of its small
variants, a 404, a redirect) is kept here for ``valid_seconds``. Within that
time a request for the same path is answered on the loop thread, with no
executor round-trip: that is what makes a hot small file cheap. After it, the
next request goes to the executor again, which sees any change on disk; so a
changed file is served fresh at most ``valid_seconds`` later. Misses (404s) are
kept too, so that a flood of requests for missing files does not become a
flood of stat calls.

Bounds, whatever the requests are:

- Memory: ``max_bytes`` counts what an entry really costs: its key (a path
  may be 8 KiB long), what it found (the bytes of small files, the names and
  tags of every variant), and the bookkeeping around it (``entry_size``); the
  least recently used entries go first. A flood of long distinct missing
  paths therefore costs at most ``max_bytes``, not a fixed allowance per
  entry times however many fit.
- Descriptors: large files are kept open; at most ``max_open_files`` of them.
- Time: an entry older than ``valid_seconds`` can answer nothing, so it is
  dropped (and its descriptors closed, as nginx's ``inactive=``) by ``expire``,
  which ``store`` calls and the server calls every ``valid_seconds``.

The cache owns what it holds: an entry's descriptors are closed when it is
replaced, evicted or expired. Loop thread only: no locks.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable

from . import files

# Large files kept open at most, by default (nginx: open_file_cache max=...).
# The server passes a smaller number when the descriptor limit is low.
MAX_OPEN_FILES = 256

# What an entry costs beyond its key and result: a node in each of the two
# ordered dicts, the entry's tuple and its float time. tracemalloc measures
# 200 to 260 bytes an entry when 5 or 42 are stored, on CPython 3.10 to 3.13;
# one entry stored alone on 3.10 measured up to 960, the interpreter's own
# one-time allocations falling to it. The bound covers that worst case, with
# room (tests/static/test_cache.py checks it on each Python of the matrix).
ENTRY_OVERHEAD_BYTES = 1280


def entry_size(key: str, result: object) -> int:
    """The bytes an entry holds: the key, the result and all it refers to,
    and the bookkeeping (ENTRY_OVERHEAD_BYTES)."""
    size = ENTRY_OVERHEAD_BYTES + sys.getsizeof(key) + sys.getsizeof(result)
    if isinstance(result, files.Resource):
        size += sys.getsizeof(result.name) + sys.getsizeof(result.variants)
        for coding, variant in result.variants.items():
            size += (sys.getsizeof(coding) + sys.getsizeof(variant) + sys.getsizeof(variant.path)
                     + sys.getsizeof(variant.etag) + sys.getsizeof(variant.identity)
                     + sum(sys.getsizeof(number) for number in variant.identity))
            if variant.data is not None:
                size += sys.getsizeof(variant.data)
    elif isinstance(result, files.Refused):
        size += sys.getsizeof(result.detail) if result.detail is not None else 0
    elif isinstance(result, files.Listing):
        size += sys.getsizeof(result.entries)
        for entry in result.entries:
            size += sys.getsizeof(entry) + sys.getsizeof(entry.name) + 64  # size and time numbers
    return size


def _open_files(result: object) -> int:
    if isinstance(result, files.Resource):
        return sum(1 for variant in result.variants.values() if variant.fd >= 0)
    return 0


def _release(result: object) -> None:
    if isinstance(result, files.Resource):
        result.close()


class FileCache:
    """An LRU map from a request path to what resolving it found."""

    def __init__(self, max_bytes: int, valid_seconds: float, clock: Callable[[], float],
                 max_open_files: int = MAX_OPEN_FILES):
        self.max_bytes = max_bytes
        self.valid_seconds = valid_seconds
        self.max_open_files = max_open_files
        self._clock = clock
        # key -> (checked_at, result, size), least recently used first.
        self._entries: collections.OrderedDict[str, tuple[float, object, int]] = collections.OrderedDict()
        # key -> checked_at, oldest check first: what expire() walks.
        self._by_age: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.bytes_used = 0
        self.open_files = 0
        self.hits = 0
        self.misses = 0

    def lookup(self, key: str) -> object | None:
        """The cached result for key if it was checked within valid_seconds, else None."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry[0] < self.valid_seconds:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def holds(self, key: str, result: object) -> bool:
        """Whether ``result`` itself is what the cache keeps for key (however old)."""
        entry = self._entries.get(key)
        return entry is not None and entry[1] is result

    def store(self, key: str, result: object) -> bool:
        """Remember what resolving key found, as of now. Returns False when it
        is not kept: then the caller still owns its descriptors."""
        now = self._clock()
        self.expire(now)
        # What was known about key is replaced, even by nothing: a result
        # too large to keep must not leave an older one answering for it.
        if key in self._entries:
            self._forget(key)
        size = entry_size(key, result)
        if self.max_bytes <= 0 or size > self.max_bytes:
            return False
        self._entries[key] = (now, result, size)
        self._by_age[key] = now
        self.bytes_used += size
        self.open_files += _open_files(result)
        self._evict(keep=key)
        return key in self._entries

    def update_size(self, key: str) -> None:
        """Recount an entry whose result gained bytes (an on-the-fly gzip variant)."""
        entry = self._entries.get(key)
        if entry is not None:
            checked_at, result, old_size = entry
            size = entry_size(key, result)
            self._entries[key] = (checked_at, result, size)
            self.bytes_used += size - old_size
            self._evict()

    def expire(self, now: float | None = None) -> int:
        """Drop the entries checked more than valid_seconds ago (they can
        answer nothing any more), closing what they hold. Returns how many.
        Each entry is looked at once: the oldest are first."""
        if now is None:
            now = self._clock()
        by_age = self._by_age
        dropped = 0
        while by_age:
            key, checked_at = next(iter(by_age.items()))
            if now - checked_at < self.valid_seconds:
                break
            self._forget(key)
            dropped += 1
        return dropped

    def _evict(self, keep: str | None = None) -> None:
        """Drop the least recently used entries until within bounds. The entry
        for ``keep`` (just stored) is dropped last, and then not closed: its
        caller, told it was not kept, owns it."""
        entries = self._entries
        while entries and (self.bytes_used > self.max_bytes or self.open_files > self.max_open_files):
            oldest = next(iter(entries))
            self._forget(oldest, release=oldest != keep)

    def _forget(self, key: str, release: bool = True) -> None:
        _, result, size = self._entries.pop(key)
        del self._by_age[key]
        self.bytes_used -= size
        self.open_files -= _open_files(result)
        if release:
            _release(result)

    def close(self) -> None:
        """Forget everything, closing what the entries hold."""
        while self._entries:
            self._forget(next(iter(self._entries)))

    def __len__(self) -> int:
        return len(self._entries)
