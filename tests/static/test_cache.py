"""Unit tests for file_cache.py, the metadata and small-file cache.

FileCache takes its clock as an argument, so these tests move time by hand
(a fake clock) instead of sleeping. They check the two promises the module
makes: an entry answers lookups for valid_seconds after it was checked on
disk, and never after (so a changed file is seen at most that late); and
memory stays under max_bytes, counting ENTRY_OVERHEAD_BYTES per entry plus
the bytes of its small variants, with the least recently used going first.
"""

import os
import random
import types

from hypothesis import settings
from hypothesis import strategies as strategies
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support.fakes import FakeClock

from reactor_http.static.cache import ENTRY_OVERHEAD_BYTES, MAX_OPEN_FILES, FileCache
from reactor_http.static.files import MissingSlash, Refused, Resource, Variant


def make_variant(coding, size, small=True):
    """A Variant of ``size`` bytes, holding them when ``small``."""
    info = types.SimpleNamespace(st_size=size, st_mtime=1_600_000_000.0, st_dev=1, st_ino=size + 1,
                                 st_mtime_ns=1_600_000_000 * 10**9)
    return Variant(coding, f"/srv/file.{coding}", info, b"x" * size if small else None)


def make_resource(*sizes):
    """A Resource whose variants hold ``sizes`` bytes (identity first, then br, zstd)."""
    codings = ("identity", "br", "zstd")
    return Resource("file.txt", {coding: make_variant(coding, size)
                                 for coding, size in zip(codings, sizes, strict=False)})


def cost_of(*sizes):
    return ENTRY_OVERHEAD_BYTES + sum(sizes)


def make_cache(max_bytes=1_000_000, valid_seconds=5.0):
    clock = FakeClock()
    return FileCache(max_bytes, valid_seconds, clock), clock


def present(cache, keys):
    """Which of keys are still stored, looked up at a time when every stored
    entry is fresh. (Lookups reorder the LRU: call this last.)"""
    return [key for key in keys if cache.lookup(key) is not None]


# --- validity in time ---------------------------------------------------------

def test_lookup_within_valid_seconds_hits():
    """A stored result answers lookups until valid_seconds have passed since
    it was stored, then misses, so that the caller checks the disk again."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("key", resource)
    assert cache.lookup("key") is resource
    clock.now += 4.9
    assert cache.lookup("key") is resource
    clock.now += 0.2
    assert cache.lookup("key") is None


def test_hits_do_not_extend_validity():
    """Being used does not make an entry fresher: only a new check of the
    disk (store) does. Otherwise a hot file would never be seen to change."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("key", resource)
    for _ in range(4):
        clock.now += 1.0
        assert cache.lookup("key") is resource
    clock.now += 1.5
    assert cache.lookup("key") is None


def test_store_again_refreshes_the_check_time():
    """Storing after a miss (the executor looked again) replaces the result
    and restarts its validity."""
    cache, clock = make_cache(valid_seconds=5.0)
    cache.store("key", make_resource(100))
    clock.now += 6.0
    assert cache.lookup("key") is None
    newer = make_resource(200)
    cache.store("key", newer)
    assert (len(cache), cache.bytes_used) == (1, cost_of(200))
    clock.now += 4.0
    assert cache.lookup("key") is newer


def test_zero_valid_seconds_never_hits():
    """valid_seconds=0 keeps nothing usable: every lookup goes to the disk."""
    cache, _ = make_cache(valid_seconds=0)
    cache.store("key", make_resource(10))
    assert cache.lookup("key") is None


def test_missing_key_misses():
    cache, _ = make_cache()
    assert cache.lookup(("a",)) is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_refusals_and_redirects_are_cached_at_the_overhead_cost():
    """404s and redirects are kept too (a flood of requests for a missing file
    must not become a flood of stat calls), each costing the fixed allowance."""
    cache, _ = make_cache()
    missing, redirect = Refused(404), MissingSlash()
    cache.store((("missing",), False), missing)
    cache.store((("dir",), False), redirect)
    assert cache.lookup((("missing",), False)) is missing
    assert cache.lookup((("dir",), False)) is redirect
    assert cache.bytes_used == 2 * ENTRY_OVERHEAD_BYTES


def test_large_variants_cost_only_the_overhead():
    """A variant whose bytes stay on disk (data None) costs no data bytes."""
    cache, _ = make_cache()
    resource = Resource("big.bin", {"identity": make_variant("identity", 10**9, small=False),
                                    "br": make_variant("br", 300)})
    cache.store("big", resource)
    assert cache.bytes_used == cost_of(300)


# --- memory bound and LRU -----------------------------------------------------

def test_lru_eviction_by_bytes():
    """When a store goes over max_bytes, the least recently used entries go
    first, where a lookup hit counts as a use."""
    cache, _ = make_cache(max_bytes=3 * cost_of(100))
    for key in ("a", "b", "c"):
        cache.store(key, make_resource(100))
    assert cache.bytes_used == 3 * cost_of(100)  # exactly full is allowed
    assert cache.lookup("a") is not None  # "a" is now the most recently used
    cache.store("d", make_resource(100))
    assert (len(cache), cache.bytes_used) == (3, 3 * cost_of(100))
    assert present(cache, ["a", "b", "c", "d"]) == ["a", "c", "d"]


def test_one_large_store_evicts_as_many_as_needed():
    """Eviction goes on until the total fits, oldest first."""
    cache, _ = make_cache(max_bytes=4 * cost_of(100))
    for key in ("a", "b", "c", "d"):
        cache.store(key, make_resource(100))
    cache.store("big", make_resource(2 * cost_of(100) - ENTRY_OVERHEAD_BYTES + 1))
    # "big" costs two entries and one byte: three small ones must go.
    assert cache.bytes_used == cost_of(100) + 2 * cost_of(100) + 1
    assert present(cache, ["a", "b", "c", "d", "big"]) == ["d", "big"]


def test_most_recently_stored_survives():
    """The entry just stored is never the one evicted for it, even when it
    alone nearly fills the cache."""
    cache, _ = make_cache(max_bytes=cost_of(1000))
    cache.store("old", make_resource(10))
    cache.store("new", make_resource(1000))
    assert present(cache, ["old", "new"]) == ["new"]
    assert cache.bytes_used == cost_of(1000)


def test_multiple_variants_are_all_counted():
    """Every variant's bytes count: the file and each precompressed sibling."""
    cache, _ = make_cache()
    cache.store("key", make_resource(100, 40, 30))
    assert cache.bytes_used == cost_of(100, 40, 30)


def test_entry_larger_than_max_bytes_is_not_stored():
    """An entry that could never fit is not stored, and evicts nothing; one
    of exactly max_bytes is stored."""
    cache, _ = make_cache(max_bytes=cost_of(1000))
    cache.store("small", make_resource(10))
    cache.store("huge", make_resource(1001))
    assert (len(cache), cache.bytes_used) == (1, cost_of(10))
    assert present(cache, ["small", "huge"]) == ["small"]
    cache.store("exact", make_resource(1000))
    assert (len(cache), cache.bytes_used) == (1, cost_of(1000))


def test_storing_a_result_too_large_forgets_the_old_one():
    """When the path now resolves to something too large to keep, the
    older result for it is dropped rather than left behind (still counted,
    and, within valid_seconds, still answering with bytes known to be old)."""
    cache, clock = make_cache(max_bytes=cost_of(1000), valid_seconds=5.0)
    cache.store("key", make_resource(10))
    clock.now += 1.0
    cache.store("key", make_resource(5000))
    assert cache.lookup("key") is None
    assert (len(cache), cache.bytes_used) == (0, 0)


def test_max_bytes_zero_stores_nothing():
    """max_bytes=0 turns the cache off: every lookup misses."""
    for max_bytes in (0, -1):
        cache, _ = make_cache(max_bytes=max_bytes)
        cache.store("refused", Refused(404))
        cache.store("resource", make_resource(0))
        assert (len(cache), cache.bytes_used) == (0, 0)
        assert cache.lookup("refused") is None
        assert cache.lookup("resource") is None


# --- update_cost ----------------------------------------------------------------

def add_gzip(resource, size):
    """What static.py does after on-the-fly gzip: the cached Resource gains a variant."""
    resource.variants["gzip"] = make_variant("gzip", size)


def test_update_cost_accounts_the_new_size_and_keeps_the_check_time():
    """A variant added to a cached result is counted, but the entry is no
    fresher: the file was not checked again."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("key", resource)
    clock.now += 3.0
    add_gzip(resource, 40)
    cache.update_cost("key")
    assert cache.bytes_used == cost_of(100, 40)
    clock.now += 1.9
    assert cache.lookup("key") is resource
    clock.now += 0.2  # 5.1 seconds after the store, 2.1 after update_cost
    assert cache.lookup("key") is None


def test_update_cost_of_a_missing_key_does_nothing():
    """The entry may have been evicted while the gzip job ran."""
    cache, _ = make_cache()
    cache.store("other", make_resource(10))
    cache.update_cost("gone")
    assert (len(cache), cache.bytes_used) == (1, cost_of(10))


def test_update_cost_evicts_to_stay_under_max_bytes():
    """Growth through update_cost respects max_bytes like a store does."""
    cache, _ = make_cache(max_bytes=3 * cost_of(100))
    resources = {key: make_resource(100) for key in ("a", "b", "c")}
    for key, resource in resources.items():
        cache.store(key, resource)
    add_gzip(resources["c"], 100)
    cache.update_cost("c")
    assert cache.bytes_used == cost_of(100) + cost_of(100, 100)
    assert present(cache, ["a", "b", "c"]) == ["b", "c"]


def test_update_cost_can_shrink():
    """A variant dropped from a cached result gives its bytes back."""
    cache, _ = make_cache()
    resource = make_resource(100, 50)
    cache.store("key", resource)
    del resource.variants["br"]
    cache.update_cost("key")
    assert cache.bytes_used == cost_of(100)


# --- counters -------------------------------------------------------------------

def test_hit_and_miss_counters():
    """Every lookup counts once: a hit, or a miss (absent or expired)."""
    cache, clock = make_cache(valid_seconds=5.0)
    cache.lookup("a")                   # miss: absent
    cache.store("a", make_resource(1))
    cache.lookup("a")                   # hit
    cache.lookup("a")                   # hit
    cache.lookup("b")                   # miss: absent
    clock.now += 10
    cache.lookup("a")                   # miss: expired
    assert (cache.hits, cache.misses) == (2, 3)
    cache.store("a", make_resource(1))  # stores count nothing
    cache.update_cost("a")
    assert (cache.hits, cache.misses) == (2, 3)


# --- accounting under random operations --------------------------------------------

def _stored_cost(result):
    variants = getattr(result, "variants", None) or {}
    return ENTRY_OVERHEAD_BYTES + sum(len(variant.data) for variant in variants.values()
                                      if variant.data is not None)


def check_accounting(cache):
    """bytes_used is the sum over what is stored, and within bounds.

    This reads the private entry table: the sum over entries cannot be
    observed through lookups without changing the LRU order.
    """
    entries = cache._entries
    assert cache.bytes_used == sum(_stored_cost(result) for _, result, _ in entries.values())
    assert 0 <= cache.bytes_used <= max(cache.max_bytes, 0)
    assert len(cache) == len(entries)


class FileCacheMachine(RuleBasedStateMachine):
    """Random stores, lookups, cost updates and clock moves. Beside the
    accounting invariants, a small model of what was stored when checks
    every lookup: a hit returns the very result last stored for that key,
    within valid_seconds of that store."""

    keys = strategies.sampled_from(["a", "b", "c"])  # few keys: many collisions

    @initialize(max_bytes=strategies.sampled_from([0, 600, 2000, 5000]),
                valid_seconds=strategies.sampled_from([0, 1.0, 5.0]))
    def start(self, max_bytes, valid_seconds):
        self.clock = FakeClock()
        self.cache = FileCache(max_bytes, valid_seconds, self.clock)
        self.last_stored = {}  # key -> (stored_at, result)
        self.lookups = 0

    # Sizes around the limits: a result may fit, crowd others out, or never fit.
    @rule(key=keys, sizes=strategies.lists(strategies.sampled_from([0, 1, 88, 300, 1500, 5000]), max_size=3))
    def store_resource(self, key, sizes):
        result = make_resource(*sizes) if sizes else Resource("empty", {})
        self.cache.store(key, result)
        self.last_stored[key] = (self.clock.now, result)

    @rule(key=keys, status=strategies.sampled_from([403, 404]))
    def store_refusal(self, key, status):
        result = Refused(status)
        self.cache.store(key, result)
        self.last_stored[key] = (self.clock.now, result)

    @rule(key=keys)
    def lookup(self, key):
        self.lookups += 1
        found = self.cache.lookup(key)
        if found is not None:
            stored_at, result = self.last_stored[key]
            assert found is result
            assert self.clock.now - stored_at < self.cache.valid_seconds

    @precondition(lambda self: self.last_stored)
    @rule(data=strategies.data(), size=strategies.integers(0, 3000))
    def gzip_then_update_cost(self, data, size):
        # As static.py does: mutate the result it was handed, then recount.
        key = data.draw(strategies.sampled_from(sorted(self.last_stored)))
        result = self.last_stored[key][1]
        if isinstance(result, Resource):
            add_gzip(result, size)
        self.cache.update_cost(key)

    @rule(seconds=strategies.sampled_from([0.0, 0.5, 1.0, 4.9, 6.0]))
    def advance(self, seconds):
        self.clock.now += seconds

    @invariant()
    def accounting_holds(self):
        check_accounting(self.cache)
        assert self.cache.hits + self.cache.misses == self.lookups


TestFileCacheMachine = FileCacheMachine.TestCase
TestFileCacheMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


def test_random_sequence_accounting():
    """The same accounting checks over long seeded random sequences
    (a complement to the state machine's shorter, shrinkable ones)."""
    for seed in range(20):
        generator = random.Random(seed)
        clock = FakeClock()
        cache = FileCache(generator.choice([1000, 4000, 20000]), 3.0, clock)
        results = {}  # key -> (stored_at, result)
        for _ in range(500):
            key = generator.randrange(30)
            action = generator.random()
            if action < 0.4:
                result = make_resource(*[generator.randrange(4000) for _ in range(generator.randrange(4))])
                cache.store(key, result)
                results[key] = (clock.now, result)
            elif action < 0.7:
                found = cache.lookup(key)
                if found is not None:
                    assert found is results[key][1]
                    assert clock.now - results[key][0] < 3.0
            elif action < 0.85 and key in results:
                add_gzip(results[key][1], generator.randrange(2000))
                cache.update_cost(key)
            else:
                clock.now += generator.random()
            check_accounting(cache)


# -- open files (large variants stay open, owned by the cache) ------------------------------


class _OpenVariant:
    def __init__(self):
        self.data = None
        self.fd = os.open(os.devnull, os.O_RDONLY)


class _OpenResource:
    """A stand-in for files.Resource with one large variant held open."""

    def __init__(self):
        self.variants = {"identity": _OpenVariant()}

    def close(self):
        for variant in self.variants.values():
            if variant.fd >= 0:
                os.close(variant.fd)
                variant.fd = -1

    @property
    def closed(self):
        return all(variant.fd == -1 for variant in self.variants.values())


def test_a_replaced_or_evicted_entry_closes_its_files():
    clock = [0.0]
    cache = FileCache(max_bytes=10 * ENTRY_OVERHEAD_BYTES, valid_seconds=1, clock=lambda: clock[0])
    first, second = _OpenResource(), _OpenResource()
    assert cache.store("a", first)
    assert cache.open_files == 1
    assert cache.store("a", second)  # replaced: the old one's descriptor is closed
    assert first.closed and not second.closed
    cache.close()
    assert second.closed and cache.open_files == 0 and len(cache) == 0


def test_open_files_are_bounded():
    cache = FileCache(max_bytes=1 << 40, valid_seconds=1, clock=lambda: 0.0)
    resources = [_OpenResource() for _ in range(MAX_OPEN_FILES + 5)]
    for index, resource in enumerate(resources):
        cache.store(index, resource)
    assert cache.open_files == MAX_OPEN_FILES
    assert all(resource.closed for resource in resources[:5])  # the least recently used went
    assert not any(resource.closed for resource in resources[5:])
    cache.close()


def test_a_result_not_kept_stays_the_callers():
    cache = FileCache(max_bytes=0, valid_seconds=1, clock=lambda: 0.0)
    resource = _OpenResource()
    assert cache.store("a", resource) is False
    assert not resource.closed  # the caller owns it, and must close it
    resource.close()
