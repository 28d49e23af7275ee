"""The per-client tables: requests per second, and connections at once.

Both are keyed by ``clients.client_key`` (an IPv4 address, an IPv6 /64, or
"unix:"), and neither can be grown without bound by a flood of addresses:

- ``RateLimiter`` (``--rate-limit`` and ``--rate-burst``, as nginx's
  limit_req with ``nodelay``) keeps a token bucket per client in a table of
  at most MAX_CLIENTS, least recently seen out first. A bucket that has
  filled up again is the same as no bucket, so forgetting it costs nothing;
  only a flood of more than MAX_CLIENTS addresses within one refill can make
  the table forget a client that still owes, which then starts again with a
  full bucket (nginx's limit_req zone, when full, forgets its oldest too).
- ``ConnectionCounts`` (``--max-connections-per-client``) holds an entry only
  while its client has a connection open: never more entries than open
  connections, so never more than ``--max-connections``.

Loop thread only: no locks. The clock is given (monotonic seconds), so the
tests can move it.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable

_RATE = re.compile(r"([0-9]+)\s*r?/(s|m|sec|min|second|minute)")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}


def parse_rate(text: str) -> tuple[int, int]:
    """'50/s' -> (50, 1); '600/m' -> (600, 60); nginx's '50r/s' too. ValueError otherwise."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected requests per second or per minute, such as 50/s or 600/m, not {text!r}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"the rate must be at least 1 request, not {text!r}")
    return count, _PERIODS[match.group(2)]


def show_rate(rate: tuple[int, int]) -> str:
    return f"{rate[0]}/{'s' if rate[1] == 1 else 'm'}"


class RateLimiter:
    """A token bucket per client: it holds at most 1 + ``burst`` tokens,
    gains ``per_second`` a second, and each request takes one. A request
    that finds less than one token is refused with the time until it would
    find one. With ``burst`` 0 requests are spaced at least 1/rate apart (as
    nginx's limit_req without burst); a burst lets a browser fetch a page's
    files at once."""

    MAX_CLIENTS = 10_000

    __slots__ = ("per_second", "capacity", "_clock", "_buckets", "max_clients")

    def __init__(self, per_second: float, burst: int, clock: Callable[[], float],
                 max_clients: int = MAX_CLIENTS):
        if per_second <= 0:
            raise ValueError("the rate must be positive")
        self.per_second = per_second
        self.capacity = 1.0 + burst
        self._clock = clock
        self.max_clients = max_clients
        # key -> [tokens, when they were counted], least recently seen first
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if the request may go on, else the
        seconds until a token will be there (more than 0)."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_clients:
                buckets.popitem(last=False)
            bucket = buckets[key] = [self.capacity, now]
        else:
            buckets.move_to_end(key)
            bucket[0] = min(self.capacity, bucket[0] + (now - bucket[1]) * self.per_second)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.per_second

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_seconds(wait: float) -> int:
    """Retry-After's delay-seconds (RFC 9110 §10.2.3): a whole number, at
    least 1, never earlier than a token will be there."""
    return max(1, math.ceil(wait))


class ConnectionCounts:
    """Open connections per client key, for ``--max-connections-per-client``."""

    __slots__ = ("limit", "_open")

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = {}

    def admit(self, key: str) -> bool:
        """Count a new connection from ``key``, or say no (nothing counted)."""
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """A connection ``admit`` counted has closed."""
        count = self._open.get(key, 0)
        if count <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = count - 1

    def open_for(self, key: str) -> int:
        return self._open.get(key, 0)

    def __len__(self) -> int:
        return len(self._open)
