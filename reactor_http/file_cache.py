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
allowance per entry, and the least recently used entries go first. Loop
thread only: no locks.
"""

import collections

# A rough allowance for an entry's own objects (key, Resource, Variants,
# strings), so that many tiny entries cannot grow without bound.
ENTRY_OVERHEAD_BYTES = 512


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
        """Remember what resolving key found, as of now."""
        # What was known about key is replaced, even by nothing: a result
        # too large to keep must not leave an older one answering for it.
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes_used -= old[2]
        cost = _cost(result)
        if self.max_bytes <= 0 or cost > self.max_bytes:
            return
        self._entries[key] = (self._clock(), result, cost)
        self.bytes_used += cost
        self._evict()

    def update_cost(self, key):
        """Recount an entry whose result gained bytes (an on-the-fly gzip variant)."""
        entry = self._entries.get(key)
        if entry is not None:
            checked_at, result, old_cost = entry
            cost = _cost(result)
            self._entries[key] = (checked_at, result, cost)
            self.bytes_used += cost - old_cost
            self._evict()

    def _evict(self):
        while self.bytes_used > self.max_bytes:
            _, (_, _, evicted_cost) = self._entries.popitem(last=False)
            self.bytes_used -= evicted_cost

    def __len__(self):
        return len(self._entries)
