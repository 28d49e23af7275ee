"""Unit tests for static/cache.py, the metadata and small-file cache.

FileCache takes its clock as an argument, so these tests move time by hand
(a fake clock) instead of sleeping. They check the promises the module makes:

- in time: an entry answers lookups for valid_seconds after it was checked
  on disk, and never after (so a changed file is seen at most that late), and
  expire() drops exactly the entries past that, closing what they hold;
- in memory: bytes_used is the sum of ``entry_size(key, result)`` over what is
  stored and stays within max_bytes, the least recently used going first; and
  entry_size is an honest count (tracemalloc: storing an entry allocates no
  more than it says), so that a flood of long distinct paths costs at most
  max_bytes;
- in descriptors: the cache owns the large files its entries hold open,
  closes them when an entry is replaced, evicted, expired or the cache closed,
  and holds at most max_open_files of them.
"""

import gc
import os
import random
import tracemalloc
import types

import pytest
from hypothesis import settings
from hypothesis import strategies as strategies
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from support.environment import make_sparse_file
from support.fakes import FakeClock

from reactor_http.static import files
from reactor_http.static.cache import MAX_OPEN_FILES, FileCache, entry_size
from reactor_http.static.files import MissingSlash, Refused, Resource, Variant

# A path as the hostile flood sends it: about 8 KB, distinct by its end.
LONG_PATH = "/" + "ab/" * 2700


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


def open_resource(variants=1):
    """A Resource of large variants, each holding a descriptor open, as
    files.resolve makes for a file over SMALL_FILE_BYTES."""
    resource = Resource("big.bin", {})
    for coding in ("identity", "br", "zstd")[:variants]:
        variant = make_variant(coding, 10**9, small=False)
        variant.fd = os.open(os.devnull, os.O_RDONLY)
        resource.variants[coding] = variant
    return resource


def is_closed(resource):
    """Resource.close() sets each descriptor it closed to -1."""
    return all(variant.fd == -1 for variant in resource.variants.values())


def size_of(key, *sizes):
    """What an entry for ``key`` holding a make_resource(*sizes) counts."""
    return entry_size(key, make_resource(*sizes))


def make_cache(max_bytes=1_000_000, valid_seconds=5.0, max_open_files=MAX_OPEN_FILES):
    clock = FakeClock()
    return FileCache(max_bytes, valid_seconds, clock, max_open_files), clock


def present(cache, keys):
    """Which of keys are still stored, looked up at a time when every stored
    entry is fresh. (Lookups reorder the LRU: call this last.)"""
    return [key for key in keys if cache.lookup(key) is not None]


# --- what an entry counts -----------------------------------------------------------

def test_entry_size_counts_the_key_and_every_variant_byte():
    """A longer key, another variant, more bytes: each costs what it holds."""
    assert entry_size("/a" + "x" * 8000, Refused(404)) >= entry_size("/a", Refused(404)) + 8000
    assert size_of("/k", 100, 40) >= size_of("/k", 100) + 40
    assert size_of("/k", 5000) >= size_of("/k", 100) + 4900
    # A large variant's bytes stay on disk: only its name, tags and numbers count.
    large = Resource("big.bin", {"identity": make_variant("identity", 10**9, small=False)})
    assert entry_size("/k", large) < size_of("/k", 1000)


# --- validity in time -------------------------------------------------------------

def test_lookup_within_valid_seconds_hits():
    """A stored result answers lookups until valid_seconds have passed since
    it was stored, then misses, so that the caller checks the disk again."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("/key", resource)
    assert cache.lookup("/key") is resource
    clock.now += 4.9
    assert cache.lookup("/key") is resource
    clock.now += 0.2
    assert cache.lookup("/key") is None


def test_hits_do_not_extend_validity():
    """Being used does not make an entry fresher: only a new check of the
    disk (store) does. Otherwise a hot file would never be seen to change."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("/key", resource)
    for _ in range(4):
        clock.now += 1.0
        assert cache.lookup("/key") is resource
    clock.now += 1.5
    assert cache.lookup("/key") is None


def test_store_again_refreshes_the_check_time():
    """Storing after a miss (the executor looked again) replaces the result
    and restarts its validity."""
    cache, clock = make_cache(valid_seconds=5.0)
    cache.store("/key", make_resource(100))
    clock.now += 6.0
    assert cache.lookup("/key") is None
    newer = make_resource(200)
    cache.store("/key", newer)
    assert (len(cache), cache.bytes_used) == (1, entry_size("/key", newer))
    clock.now += 4.0
    assert cache.lookup("/key") is newer


def test_zero_valid_seconds_never_hits():
    """valid_seconds=0 keeps nothing usable: every lookup goes to the disk."""
    cache, _ = make_cache(valid_seconds=0)
    cache.store("/key", make_resource(10))
    assert cache.lookup("/key") is None


def test_missing_key_misses():
    cache, _ = make_cache()
    assert cache.lookup("/a") is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_refusals_and_redirects_are_cached_at_what_they_hold():
    """404s and redirects are kept too (a flood of requests for a missing file
    must not become a flood of stat calls), each counted at its key and
    result, the long key of a made-up path included."""
    cache, _ = make_cache()
    missing, redirect, long_missing = Refused(404), MissingSlash(), Refused(404)
    cache.store("/missing", missing)
    cache.store("/dir", redirect)
    cache.store(LONG_PATH, long_missing)
    assert cache.lookup("/missing") is missing
    assert cache.lookup("/dir") is redirect
    assert cache.lookup(LONG_PATH) is long_missing
    assert cache.bytes_used == (entry_size("/missing", missing) + entry_size("/dir", redirect)
                                + entry_size(LONG_PATH, long_missing))
    assert entry_size(LONG_PATH, long_missing) > len(LONG_PATH)


def test_large_variants_count_no_data_bytes():
    """A variant whose bytes stay on disk (data None) counts its description
    only; a small sibling counts its bytes."""
    cache, _ = make_cache()
    resource = Resource("big.bin", {"identity": make_variant("identity", 10**9, small=False),
                                    "br": make_variant("br", 300)})
    cache.store("/big", resource)
    assert cache.bytes_used == entry_size("/big", resource) < 10**9


# --- expire() -------------------------------------------------------------------------

def test_expire_drops_exactly_the_entries_past_valid_seconds():
    """expire() drops the entries checked valid_seconds ago or more (they can
    answer nothing: lookup would miss) and closes their descriptors; fresh
    entries are untouched, whatever their place in the LRU order."""
    cache, clock = make_cache(valid_seconds=5.0)
    old, middle, young = open_resource(), open_resource(2), make_resource(100)
    cache.store("/old", old)
    clock.now += 2.0
    cache.store("/middle", middle)
    clock.now += 2.0
    cache.store("/young", young)
    assert cache.lookup("/old") is old  # the most recently used: it expires all the same
    clock.now += 0.9  # /old 4.9 s old: nothing is due yet
    assert cache.expire() == 0
    assert (len(cache), cache.open_files) == (3, 3)
    clock.now += 0.1  # /old exactly 5 s old: due (a lookup would miss it now)
    assert cache.expire() == 1
    assert is_closed(old) and not is_closed(middle)
    assert (len(cache), cache.open_files) == (2, 2)
    assert cache.bytes_used == entry_size("/middle", middle) + entry_size("/young", young)
    clock.now += 2.0  # /middle 5 s old, /young 3 s
    hits_and_misses = (cache.hits, cache.misses)
    assert cache.expire() == 1
    assert (cache.hits, cache.misses) == hits_and_misses  # expire is no lookup
    assert is_closed(middle)
    assert (len(cache), cache.open_files, cache.bytes_used) == (1, 0, entry_size("/young", young))
    assert cache.lookup("/young") is young
    clock.now += 10.0
    assert cache.expire() == 1
    assert (len(cache), cache.bytes_used) == (0, 0)


def test_expire_goes_by_the_last_check_not_the_first_store():
    """An entry stored again is as old as its last check: expire keeps it
    while an entry stored in between goes."""
    cache, clock = make_cache(valid_seconds=5.0)
    first, between = open_resource(), open_resource()
    cache.store("/a", first)
    clock.now += 1.0
    cache.store("/b", between)
    clock.now += 1.0
    second = open_resource()
    cache.store("/a", second)  # replaced: the old one's descriptor is closed at once
    assert is_closed(first)
    clock.now += 4.0  # /b 5 s old, /a 4 s
    assert cache.expire(clock.now) == 1  # an explicit time, as the server's timer does
    assert is_closed(between) and not is_closed(second)
    assert present(cache, ["/a", "/b"]) == ["/a"]
    cache.close()
    assert is_closed(second) and (cache.open_files, len(cache), cache.bytes_used) == (0, 0, 0)


def test_store_expires_what_is_due_first():
    """Every store drops what has expired, so that dead entries neither hold
    memory nor descriptors while new ones come in."""
    cache, clock = make_cache(valid_seconds=1.0)
    resources = [open_resource() for _ in range(3)]
    for index, resource in enumerate(resources):
        cache.store(f"/{index}", resource)
    clock.now += 1.5
    fresh = make_resource(10)
    cache.store("/fresh", fresh)
    assert all(is_closed(resource) for resource in resources)
    assert (len(cache), cache.open_files, cache.bytes_used) == (1, 0, entry_size("/fresh", fresh))


def test_expire_with_zero_valid_seconds_drops_everything():
    cache, _ = make_cache(valid_seconds=0)
    resource = open_resource()
    cache.store("/a", resource)
    assert cache.expire() == 1
    assert is_closed(resource) and (len(cache), cache.open_files, cache.bytes_used) == (0, 0, 0)


# --- memory bound and LRU -----------------------------------------------------

def test_lru_eviction_by_bytes():
    """When a store goes over max_bytes, the least recently used entries go
    first, where a lookup hit counts as a use."""
    one = size_of("/a", 100)
    cache, _ = make_cache(max_bytes=3 * one)
    for key in ("/a", "/b", "/c"):
        cache.store(key, make_resource(100))
    assert cache.bytes_used == 3 * one  # exactly full is allowed
    assert cache.lookup("/a") is not None  # "/a" is now the most recently used
    cache.store("/d", make_resource(100))
    assert (len(cache), cache.bytes_used) == (3, 3 * one)
    assert present(cache, ["/a", "/b", "/c", "/d"]) == ["/a", "/c", "/d"]


def test_one_large_store_evicts_as_many_as_needed():
    """Eviction goes on until the total fits, oldest first."""
    one = size_of("/a", 100)
    cache, _ = make_cache(max_bytes=4 * one)
    for key in ("/a", "/b", "/c", "/d"):
        cache.store(key, make_resource(100))
    big = make_resource(2 * one)  # more than two small entries: three must go
    cache.store("/e", big)
    assert cache.bytes_used == one + entry_size("/e", big) <= 4 * one
    assert present(cache, ["/a", "/b", "/c", "/d", "/e"]) == ["/d", "/e"]


def test_most_recently_stored_survives():
    """The entry just stored is never the one evicted for it, even when it
    alone nearly fills the cache."""
    cache, _ = make_cache(max_bytes=size_of("/new", 1000))
    cache.store("/old", make_resource(10))
    cache.store("/new", make_resource(1000))
    assert present(cache, ["/old", "/new"]) == ["/new"]
    assert cache.bytes_used == size_of("/new", 1000)


def test_multiple_variants_are_all_counted():
    """Every variant's bytes count: the file and each precompressed sibling."""
    cache, _ = make_cache()
    resource = make_resource(100, 40, 30)
    cache.store("/key", resource)
    assert cache.bytes_used == entry_size("/key", resource) >= size_of("/key", 100) + 70


def test_entry_larger_than_max_bytes_is_not_stored():
    """An entry that could never fit is not stored, and evicts nothing; one
    of exactly max_bytes is stored."""
    cache, _ = make_cache(max_bytes=size_of("/big", 1000))
    cache.store("/small", make_resource(10))
    cache.store("/huge", make_resource(1001))
    assert (len(cache), cache.bytes_used) == (1, size_of("/small", 10))
    assert present(cache, ["/small", "/huge"]) == ["/small"]
    cache.store("/big", make_resource(1000))
    assert (len(cache), cache.bytes_used) == (1, cache.max_bytes)


def test_storing_a_result_too_large_forgets_the_old_one():
    """When the path now resolves to something too large to keep, the
    older result for it is dropped (and its descriptors closed) rather than
    left behind (still counted, and, within valid_seconds, still answering
    with bytes known to be old); the new one stays the caller's."""
    cache, clock = make_cache(max_bytes=size_of("/key", 1000), valid_seconds=5.0)
    old = open_resource()
    assert cache.store("/key", old)
    clock.now += 1.0
    assert cache.store("/key", make_resource(5000)) is False
    assert is_closed(old)
    assert cache.lookup("/key") is None
    assert (len(cache), cache.bytes_used, cache.open_files) == (0, 0, 0)


def test_max_bytes_zero_stores_nothing():
    """max_bytes=0 turns the cache off: every lookup misses."""
    for max_bytes in (0, -1):
        cache, _ = make_cache(max_bytes=max_bytes)
        assert cache.store("/refused", Refused(404)) is False
        assert cache.store("/resource", make_resource(0)) is False
        assert (len(cache), cache.bytes_used) == (0, 0)
        assert cache.lookup("/refused") is None
        assert cache.lookup("/resource") is None


def test_a_flood_of_long_distinct_paths_stays_within_max_bytes():
    """Issue 13's flood: 20,000 distinct made-up paths of about 8 KB, each a
    404. The cache keeps what fits in max_bytes, counted at what each entry
    holds (key included), never a fixed allowance times however many fit."""
    max_bytes = 4 * 1024 * 1024
    cache, clock = make_cache(max_bytes=max_bytes, valid_seconds=3600.0)
    for number in range(20_000):
        cache.store(f"{LONG_PATH}{number}", Refused(404))
        assert cache.bytes_used <= max_bytes
        clock.now += 0.001
    one = entry_size(f"{LONG_PATH}19999", Refused(404))
    assert one > len(LONG_PATH)
    assert len(cache) == max_bytes // one  # the newest ones, as many as fit
    assert cache.lookup(f"{LONG_PATH}19999") is not None
    assert cache.lookup(f"{LONG_PATH}0") is None


# --- entry_size against what storing really allocates ----------------------------------

# Deep enough to reach this file from any allocation store() or resolve() makes.
TRACEBACK_FRAMES = 16


def _long_refusal(root, number):
    key = f"{LONG_PATH}{number}"
    return key, files.resolve(root, key.strip("/").split("/"), False)


def _small_file(root, number):
    return f"/small.txt/{number}", files.resolve(root, ["small.txt"], False)


def _large_file(root, number):
    return f"/large.bin/{number}", files.resolve(root, ["large.bin"], False)


@pytest.fixture(scope="module")
def resolve_root(tmp_path_factory):
    """A document root with a small file that has a precompressed sibling,
    and a large (sparse) file whose descriptor files.resolve keeps open."""
    root = tmp_path_factory.mktemp("cache-root")
    (root / "small.txt").write_bytes(b"s" * 3000)
    (root / "small.txt.br").write_bytes(b"b" * 700)
    make_sparse_file(root / "large.bin", files.SMALL_FILE_BYTES * 16)
    return os.path.realpath(root)


@pytest.mark.parametrize("make_entry", [_long_refusal, _small_file, _large_file],
                         ids=["refused-8KB-key", "small-data", "large-variant"])
@pytest.mark.parametrize("count", [1, 5, 42])
def test_entry_size_is_at_least_what_storing_allocates(resolve_root, make_entry, count):
    """Under tracemalloc: make ``count`` keys and results as the server does
    (files.resolve) and store them; what stays allocated afterwards (keys,
    results, and the cache's own bookkeeping: the two ordered dicts' nodes and
    tables, the entry tuples, times and sizes) is no more than what
    entry_size counted for them, so ENTRY_OVERHEAD_BYTES is an honest bound.
    The counts 5 and 42 each make the dicts grow their tables (the dearest
    moment per entry); the cache holds one entry beforehand, since an empty
    dict's first table is the cache's fixed cost, not an entry's. Only what
    this test's calls allocated is counted (a trace with this file in its
    stack), not what another thread of the session did meanwhile."""
    cache = FileCache(1 << 40, 3600.0, FakeClock())
    warm_key, warm_result = make_entry(resolve_root, "warm")
    cache.store(warm_key, warm_result)
    del warm_key, warm_result
    counted_before = cache.bytes_used
    gc.collect()
    tracemalloc.start(TRACEBACK_FRAMES)
    try:
        for number in range(count):
            key, result = make_entry(resolve_root, number)
            assert cache.store(key, result)
        del key, result
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    counted = cache.bytes_used - counted_before
    cache.close()
    ours = snapshot.filter_traces([tracemalloc.Filter(True, __file__, all_frames=True)])
    allocated = sum(statistic.size for statistic in ours.statistics("filename"))
    assert 0 < allocated <= counted, (
        f"storing {count} entries allocated {allocated} bytes; entry_size counted {counted}")


# --- update_size --------------------------------------------------------------------

def add_gzip(resource, size):
    """What the site does after on-the-fly gzip: the cached Resource gains a variant."""
    resource.variants["gzip"] = make_variant("gzip", size)


def test_update_size_accounts_the_new_size_and_keeps_the_check_time():
    """A variant added to a cached result is counted, but the entry is no
    fresher: the file was not checked again."""
    cache, clock = make_cache(valid_seconds=5.0)
    resource = make_resource(100)
    cache.store("/key", resource)
    clock.now += 3.0
    add_gzip(resource, 40)
    cache.update_size("/key")
    assert cache.bytes_used == entry_size("/key", resource) >= size_of("/key", 100) + 40
    clock.now += 1.9
    assert cache.lookup("/key") is resource
    clock.now += 0.2  # 5.1 seconds after the store, 2.1 after update_size
    assert cache.lookup("/key") is None
    assert cache.expire() == 1


def test_update_size_of_a_missing_key_does_nothing():
    """The entry may have been evicted while the gzip job ran."""
    cache, _ = make_cache()
    cache.store("/other", make_resource(10))
    cache.update_size("/gone")
    assert (len(cache), cache.bytes_used) == (1, size_of("/other", 10))


def test_update_size_evicts_to_stay_under_max_bytes():
    """Growth through update_size respects max_bytes like a store does."""
    one = size_of("/a", 100)
    cache, _ = make_cache(max_bytes=3 * one)
    resources = {key: make_resource(100) for key in ("/a", "/b", "/c")}
    for key, resource in resources.items():
        cache.store(key, resource)
    add_gzip(resources["/c"], 100)
    cache.update_size("/c")
    assert cache.bytes_used == one + entry_size("/c", resources["/c"]) <= 3 * one
    assert present(cache, ["/a", "/b", "/c"]) == ["/b", "/c"]


def test_update_size_can_shrink():
    """A variant dropped from a cached result gives its bytes back."""
    cache, _ = make_cache()
    resource = make_resource(100, 50)
    cache.store("/key", resource)
    del resource.variants["br"]
    cache.update_size("/key")
    assert cache.bytes_used == size_of("/key", 100)


# --- counters -------------------------------------------------------------------------

def test_hit_and_miss_counters():
    """Every lookup counts once: a hit, or a miss (absent or expired)."""
    cache, clock = make_cache(valid_seconds=5.0)
    cache.lookup("/a")                   # miss: absent
    cache.store("/a", make_resource(1))
    cache.lookup("/a")                   # hit
    cache.lookup("/a")                   # hit
    cache.lookup("/b")                   # miss: absent
    clock.now += 10
    cache.lookup("/a")                   # miss: expired
    assert (cache.hits, cache.misses) == (2, 3)
    cache.store("/a", make_resource(1))  # stores, updates and expiry count nothing
    cache.update_size("/a")
    clock.now += 10
    cache.expire()
    assert (cache.hits, cache.misses) == (2, 3)


# --- open files (large variants stay open, owned by the cache) ------------------------------

def test_a_replaced_or_evicted_entry_closes_its_files():
    first, second = open_resource(), open_resource()
    cache, _ = make_cache(max_bytes=10 * entry_size("/a", first))
    assert cache.store("/a", first)
    assert cache.open_files == 1
    assert cache.store("/a", second)  # replaced: the old one's descriptor is closed
    assert is_closed(first) and not is_closed(second)
    # Evicted for bytes: one that fills the cache pushes /a out, and closes it.
    cache.max_bytes = entry_size("/a", second) + size_of("/b", 10)
    assert cache.store("/b", make_resource(100))
    assert is_closed(second) and cache.open_files == 0
    assert present(cache, ["/a", "/b"]) == ["/b"]
    cache.close()
    assert (cache.open_files, len(cache), cache.bytes_used) == (0, 0, 0)


def test_open_files_are_bounded():
    """At most max_open_files descriptors are held: past it the least recently
    used entries holding files go (closed), whatever the bytes allow."""
    cache, _ = make_cache(max_bytes=1 << 40)
    resources = [open_resource() for _ in range(MAX_OPEN_FILES + 5)]
    for index, resource in enumerate(resources):
        cache.store(f"/{index}", resource)
    assert cache.open_files == MAX_OPEN_FILES
    assert all(is_closed(resource) for resource in resources[:5])  # the least recently used went
    assert not any(is_closed(resource) for resource in resources[5:])
    cache.close()
    assert all(is_closed(resource) for resource in resources)


def test_open_files_bound_counts_every_variant():
    """A bound the server lowers under a low descriptor limit: each open
    variant (a file and its precompressed siblings) counts."""
    cache, _ = make_cache(max_bytes=1 << 40, max_open_files=3)
    two, one, other = open_resource(2), open_resource(1), open_resource(1)
    cache.store("/two", two)
    cache.store("/one", one)
    assert cache.open_files == 3
    cache.store("/other", other)
    assert is_closed(two) and not is_closed(one) and not is_closed(other)
    assert cache.open_files == 2
    cache.close()


def test_a_result_not_kept_stays_the_callers():
    """store() returns False for what it did not keep, and leaves its
    descriptors open: the caller owns them, and must close them. So for a
    result that holds more files than max_open_files allows."""
    cache, _ = make_cache(max_bytes=0)
    resource = open_resource()
    assert cache.store("/a", resource) is False
    assert not is_closed(resource)
    resource.close()
    cache, _ = make_cache(max_bytes=1 << 40, max_open_files=1)
    too_many = open_resource(2)
    assert cache.store("/a", too_many) is False
    assert not is_closed(too_many) and (len(cache), cache.open_files, cache.bytes_used) == (0, 0, 0)
    too_many.close()


# --- accounting under random operations --------------------------------------------

def check_accounting(cache):
    """bytes_used is the sum of entry_size over what is stored, and within
    bounds; open_files counts the descriptors the entries hold, within
    max_open_files; the age order is the order of the checks.

    This reads the private entry tables: the sums over entries cannot be
    observed through lookups without changing the LRU order.
    """
    entries = cache._entries
    for key, (_, result, size) in entries.items():
        assert size == entry_size(key, result)
    assert cache.bytes_used == sum(size for _, _, size in entries.values())
    assert 0 <= cache.bytes_used <= max(cache.max_bytes, 0)
    assert cache.open_files == sum(1 for _, result, _ in entries.values()
                                   for variant in getattr(result, "variants", {}).values() if variant.fd >= 0)
    assert cache.open_files <= cache.max_open_files
    assert len(cache) == len(entries) == len(cache._by_age)
    ages = list(cache._by_age.values())
    assert ages == sorted(ages)
    assert all(cache._by_age[key] == checked_at for key, (checked_at, _, _) in entries.items())


class FileCacheMachine(RuleBasedStateMachine):
    """Random stores (of small files, open large files and refusals), lookups,
    size updates, expiries and clock moves. Beside the accounting invariants,
    a small model of what was stored when checks every lookup: a hit returns
    the very result last stored for that key, within valid_seconds of that
    store; and every descriptor ever opened is open exactly while the cache
    holds its result (a result not kept is closed by its caller, as the site
    does)."""

    keys = strategies.sampled_from(["/a", "/b", "/c", LONG_PATH])  # few keys: many collisions

    @initialize(max_bytes=strategies.sampled_from([0, 600, 2000, 12000, 20000]),
                valid_seconds=strategies.sampled_from([0, 1.0, 5.0]),
                max_open_files=strategies.sampled_from([1, 2, 256]))
    def start(self, max_bytes, valid_seconds, max_open_files):
        self.clock = FakeClock()
        self.cache = FileCache(max_bytes, valid_seconds, self.clock, max_open_files)
        self.last_stored = {}  # key -> (stored_at, result)
        self.opened = []  # every Resource with descriptors made
        self.lookups = 0

    def _store(self, key, result):
        if not self.cache.store(key, result) and isinstance(result, Resource):
            result.close()  # not kept: the caller's to close
        self.last_stored[key] = (self.clock.now, result)

    # Sizes around the limits: a result may fit, crowd others out, or never fit.
    @rule(key=keys, sizes=strategies.lists(strategies.sampled_from([0, 1, 88, 300, 1500, 5000]), max_size=3))
    def store_resource(self, key, sizes):
        self._store(key, make_resource(*sizes) if sizes else Resource("empty", {}))

    @rule(key=keys, variants=strategies.integers(1, 3))
    def store_open_resource(self, key, variants):
        resource = open_resource(variants)
        self.opened.append(resource)
        self._store(key, resource)

    @rule(key=keys, status=strategies.sampled_from([403, 404]))
    def store_refusal(self, key, status):
        self._store(key, Refused(status))

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
    def gzip_then_update_size(self, data, size):
        # As the site does: mutate the result it was handed, then recount.
        key = data.draw(strategies.sampled_from(sorted(self.last_stored)))
        result = self.last_stored[key][1]
        if isinstance(result, Resource):
            add_gzip(result, size)
        self.cache.update_size(key)

    @rule()
    def expire(self):
        self.cache.expire()
        now, valid_seconds = self.clock.now, self.cache.valid_seconds
        assert all(now - checked_at < valid_seconds for checked_at in self.cache._by_age.values())

    @rule(seconds=strategies.sampled_from([0.0, 0.5, 1.0, 4.9, 6.0]))
    def advance(self, seconds):
        self.clock.now += seconds

    @invariant()
    def accounting_holds(self):
        check_accounting(self.cache)
        assert self.cache.hits + self.cache.misses == self.lookups

    @invariant()
    def descriptors_open_exactly_while_held(self):
        held = {id(result) for _, result, _ in self.cache._entries.values()}
        for resource in self.opened:
            assert is_closed(resource) != (id(resource) in held)

    def teardown(self):
        self.cache.close()
        assert all(is_closed(resource) for resource in self.opened)


TestFileCacheMachine = FileCacheMachine.TestCase
TestFileCacheMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


def test_random_sequence_accounting():
    """The same accounting checks over long seeded random sequences
    (a complement to the state machine's shorter, shrinkable ones), with keys
    short and long, open files, expiry by store and by expire()."""
    for seed in range(20):
        generator = random.Random(seed)
        clock = FakeClock()
        cache = FileCache(generator.choice([4000, 16000, 60000]), 3.0, clock, generator.choice([2, 8]))
        results = {}  # key -> (stored_at, result)
        for _ in range(500):
            key = generator.choice(["/", LONG_PATH[:1000]]) + str(generator.randrange(30))
            action = generator.random()
            if action < 0.3:
                result = make_resource(*[generator.randrange(4000) for _ in range(generator.randrange(4))])
                cache.store(key, result)
                results[key] = (clock.now, result)
            elif action < 0.4:
                result = open_resource(generator.randrange(1, 3))
                if not cache.store(key, result):
                    result.close()
                results[key] = (clock.now, result)
            elif action < 0.7:
                found = cache.lookup(key)
                if found is not None:
                    assert found is results[key][1]
                    assert clock.now - results[key][0] < 3.0
            elif action < 0.8 and key in results:
                add_gzip(results[key][1], generator.randrange(2000))
                cache.update_size(key)
            elif action < 0.85:
                cache.expire()
            else:
                clock.now += generator.random()
            check_accounting(cache)
        cache.close()
