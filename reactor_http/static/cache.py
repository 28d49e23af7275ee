"""The metadata and small-file cache, like nginx's open_file_cache.

What ``files.resolve`` found for a path (a Resource with the bytes of its small
variants, a 404, a redirect) is kept here for ``valid_seconds``. Within that
time a request for the same path is answered on the loop thread, with no
executor round-trip: that is what makes a hot small file cheap. After it, the
next request goes to the executor again, which sees any change on disk; so a
changed file is served fresh at most ``valid_seconds`` later. Misses (404s) are
kept too, so that a flood of requests for missing files does not become a
flood of stat calls.

Memory is bounded by ``max_bytes``, counting the cached bytes plus a fixed
allowance per entry, and open descriptors (large files are kept open) by
MAX_OPEN_FILES; the least recently used entries go first. The cache owns
what it holds: an entry's descriptors are closed when it is replaced or
evicted. Loop thread only: no locks.
"""

from __future__ import annotations

import collections

# A rough allowance for an entry's own objects (key, Resource, Variants,
# strings), so that many tiny entries cannot grow without bound.
ENTRY_OVERHEAD_BYTES = 512

# Large files kept open at most (nginx: open_file_cache max=...).
MAX_OPEN_FILES = 256


def _open_files(result):
    variants = getattr(result, "variants", None)
    return sum(1 for v in variants.values() if v.fd >= 0) if variants else 0


def _release(result):
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _cost(result):
    variants = getattr(result, "variants", None)
    if not variants:
        return ENTRY_OVERHEAD_BYTES
    return ENTRY_OVERHEAD_BYTES + sum(len(v.data) for v in variants.values() if v.data is not None)


class FileCache:
    """An LRU map from a request path to what resolving it found."""

    def __init__(self, max_bytes, valid_seconds, clock):
        self.max_bytes = max_bytes
        self.valid_seconds = valid_seconds
        self._clock = clock
        self._entries = collections.OrderedDict()  # key -> (checked_at, result, cost)
        self.bytes_used = 0
        self.open_files = 0
        self.hits = 0
        self.misses = 0

    def lookup(self, key):
        """The cached result for key if it was checked within valid_seconds, else None."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry[0] < self.valid_seconds:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def store(self, key, result):
        """Remember what resolving key found, as of now. Returns False when it
        is not kept: then the caller still owns its descriptors."""
        # What was known about key is replaced, even by nothing: a result
        # too large to keep must not leave an older one answering for it.
        old = self._entries.pop(key, None)
        if old is not None:
            self._forget(old)
        cost = _cost(result)
        if self.max_bytes <= 0 or cost > self.max_bytes:
            return False
        self._entries[key] = (self._clock(), result, cost)
        self.bytes_used += cost
        self.open_files += _open_files(result)
        self._evict(keep=key)
        return key in self._entries

    def update_cost(self, key):
        """Recount an entry whose result gained bytes (an on-the-fly gzip variant)."""
        entry = self._entries.get(key)
        if entry is not None:
            checked_at, result, old_cost = entry
            cost = _cost(result)
            self._entries[key] = (checked_at, result, cost)
            self.bytes_used += cost - old_cost
            self._evict()

    def _evict(self, keep=None):
        """Drop the least recently used entries until within bounds. The entry
        for ``keep`` (just stored) is dropped last, and then not closed: its
        caller, told it was not kept, owns it."""
        entries = self._entries
        while entries and (self.bytes_used > self.max_bytes or self.open_files > MAX_OPEN_FILES):
            evicted_key, evicted = entries.popitem(last=False)
            if evicted_key == keep:
                _, result, cost = evicted
                self.bytes_used -= cost
                self.open_files -= _open_files(result)
            else:
                self._forget(evicted)

    def _forget(self, entry):
        _, result, cost = entry
        self.bytes_used -= cost
        self.open_files -= _open_files(result)
        _release(result)

    def close(self):
        """Forget everything, closing what the entries hold."""
        while self._entries:
            _, entry = self._entries.popitem()
            self._forget(entry)

    def __len__(self):
        return len(self._entries)
