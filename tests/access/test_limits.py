"""The per-client tables (access/limits.py): the token bucket of --rate-limit,
the connection counts of --max-connections-per-client, and their bounds."""

import ipaddress

import pytest
from support.fakes import FakeClock

from reactor_http.access.limits import ConnectionCounts, RateLimiter, parse_rate, retry_after_seconds, show_rate


@pytest.mark.parametrize("text, rate", [
    ("50/s", (50, 1)), ("600/m", (600, 60)), ("50r/s", (50, 1)), ("1r/m", (1, 60)), (" 7/sec ", (7, 1)),
    ("2/minute", (2, 60)),
])
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["50", "0/s", "-1/s", "1.5/s", "5/h", "fast", "/s"])
def test_rates_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rates_shown_as_given():
    assert [show_rate(parse_rate(text)) for text in ("50/s", "600r/m")] == ["50/s", "600/m"]


def test_a_bucket_holds_one_request_and_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, 4, clock)
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    wait = limiter.take("a")
    assert wait == pytest.approx(0.1)  # one token at 10 a second
    assert limiter.take("b") == 0.0  # another client has a bucket of its own


def test_a_bucket_refills_at_the_rate_up_to_its_size():
    clock = FakeClock()
    limiter = RateLimiter(2, 0, clock)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.advance(0.25)
    assert limiter.take("a") == pytest.approx(0.25)  # a refused request takes nothing
    clock.advance(0.25)
    assert limiter.take("a") == 0.0
    clock.advance(3600)
    assert limiter.take("a") == 0.0  # a long pause gives one token, not thousands
    assert limiter.take("a") > 0


def test_a_rate_per_minute():
    clock = FakeClock()
    limiter = RateLimiter(1 / 60, 2, clock)
    assert [limiter.take("a") == 0.0 for _ in range(4)] == [True, True, True, False]
    clock.advance(59)
    assert limiter.take("a") == pytest.approx(1)
    clock.advance(1)
    assert limiter.take("a") == 0.0


@pytest.mark.parametrize("wait, seconds", [(0.01, 1), (0.5, 1), (1.0, 1), (1.01, 2), (59.2, 60)])
def test_retry_after_is_whole_seconds_never_early(wait, seconds):
    assert retry_after_seconds(wait) == seconds


def test_a_flood_of_distinct_addresses_cannot_grow_the_rate_table():
    clock = FakeClock()
    limiter = RateLimiter(1, 0, clock, max_clients=1000)
    base = ipaddress.ip_address("198.18.0.0")
    for number in range(50_000):
        limiter.take(str(base + number))
        assert len(limiter) <= 1000
    assert len(limiter) == 1000
    assert RateLimiter.MAX_CLIENTS == 10_000  # what the README and the module say


def test_the_table_forgets_the_least_recently_seen_first():
    clock = FakeClock()
    limiter = RateLimiter(1, 0, clock, max_clients=100)
    assert limiter.take("busy") == 0.0
    for number in range(500):
        limiter.take(f"flood-{number}")
        if number % 50 == 0:
            assert limiter.take("busy") > 0  # seen again: kept, and still owes its token
    assert limiter.take("busy") > 0


def test_connection_counts():
    counts = ConnectionCounts(2)
    assert counts.admit("a") and counts.admit("a")
    assert not counts.admit("a")
    assert counts.open_for("a") == 2
    assert counts.admit("b")
    counts.release("a")
    assert counts.admit("a")
    for _ in range(2):
        counts.release("a")
    counts.release("b")
    assert len(counts) == 0


def test_connection_counts_hold_only_open_connections():
    """An entry lives while its client has a connection open: a flood of
    addresses that connect and go leaves nothing behind."""
    counts = ConnectionCounts(1)
    base = ipaddress.ip_address("198.18.0.0")
    for number in range(10_000):
        key = str(base + number)
        assert counts.admit(key)
        counts.release(key)
    assert len(counts) == 0
