"""The reactor: one thread, one selector, readiness callbacks, timers and a wake-up.

    One thread owns every socket and the selector. Blocking disk work (stat,
    open, read) runs on worker threads, which hand their results back to that
    thread through one thread-safe call.

This module is that thread's loop, and it knows nothing about HTTP. It offers:

- interest in readiness: ``register``, ``modify``, ``unregister`` a file object
  with a callback that is called with the ready mask (EVENT_READ/EVENT_WRITE);
- timers: ``call_later`` returns a Timer you can ``cancel``;
- ``call_soon_threadsafe``: the one method any thread may call. It queues a
  callback and wakes the selector, which is how executor results and signals
  reach the loop;
- ``run`` and ``stop``;
- ``stats``: what the loop measures about itself (``LoopStats``, below):
  how long each turn's callbacks held the thread, and, once
  ``start_lag_probe`` is called, how late timers run. With
  ``slow_callback_seconds`` set, each callback that holds the thread
  longer than that is reported to ``on_slow_callback`` with what it was
  (asyncio's debug mode does the same).

One turn of the loop has four phases, always in this order:
1. compute how long select may sleep: until the next timer, or not at all when
   callbacks are waiting;
2. select, and call the callback stored with each ready file object;
3. run the timers that were due when the phase began;
4. run the callbacks queued before that phase began.

Readable does not mean "a request arrived": it may mean end-of-file or an error,
which the callback finds out when it reads. Writable does not mean "sent": it
means there is room in the kernel's buffer for some more bytes.

Errors by tier: a callback is expected to contain its own failures (the
connection does, in one place). If one escapes anyway, the reactor logs it and
goes on with the next callback, as asyncio's ``Handle._run`` does: one bug
must not stop every other client. A failure of the reactor itself (select
raising, say) propagates: it is not safe to carry on.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import os
import selectors
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE

SELECTOR_CLASSES = {
    "epoll": getattr(selectors, "EpollSelector", None),
    "kqueue": getattr(selectors, "KqueueSelector", None),
    "poll": getattr(selectors, "PollSelector", None),
    "select": selectors.SelectSelector,
}

# select(2) cannot watch a descriptor numbered FD_SETSIZE (1024 on Linux and
# the BSDs) or above; Python raises ValueError if asked to. The server refuses
# connections whose descriptor would not fit rather than crash.
SELECT_FD_LIMIT = 1024

# epoll cannot sleep longer than about 24.8 days in one call (a 32-bit count of
# milliseconds); no select() call here sleeps longer than a day.
MAX_SELECT_SECONDS = 24 * 3600.0

ReadyCallback = Callable[[int], Any]


def make_selector(name: str = "auto") -> selectors.BaseSelector:
    """Return a new selector for a backend name: auto, epoll, kqueue, poll or select.

    Raises ValueError when the platform does not have that backend.
    """
    if name == "auto":
        return selectors.DefaultSelector()
    selector_class = SELECTOR_CLASSES.get(name)
    if selector_class is None:
        raise ValueError(f"the {name!r} selector is not available on this platform")
    return selector_class()


# How late a timer runs, in seconds: the buckets of the loop-lag histogram
# (Prometheus style: each counts the observations up to its bound).
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The lag probe: a timer this often, whose lateness is the loop's lag.
LAG_PROBE_SECONDS = 0.25


class Histogram:
    """Counts of observations by bucket (each bound counts what is at most
    it, one more bucket the rest), their sum and their number: what a
    Prometheus histogram exposes. One thread only (whoever observes)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # The first bound at or above the value: its bucket (len(bounds): +Inf).
        # Performance: bisect is one C call, where a loop over the bounds would
        # be a dozen Python steps (with --metrics-path, once per response).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class LoopStats:
    """What the loop measures about itself. Always on, so it must cost almost
    nothing: per turn, one more clock read, an addition and a comparison; per
    lag probe (four a second), a histogram update. docs/benchmarks.md
    measures the cost on S1.

    - ``turns``, ``busy_seconds``: turns run, and the time their callbacks
      held the thread (from select's return to the turn's end); busy over
      elapsed is how loaded the loop is;
    - ``busiest_turn``: the longest turn since ``take_busiest`` last read it;
    - ``lag``: how late the probe timer ran (a Histogram), and ``worst_lag``
      the worst since ``take_worst_lag`` last read it. A timer runs late when
      a turn holds the thread: lag is what every connection waits, on top of
      its own work;
    - ``slow_callbacks``: callbacks over ``slow_callback_seconds`` (counted
      only when that is set).

    Loop thread only (others read a snapshot the loop thread made)."""

    __slots__ = ("turns", "busy_seconds", "busiest_turn", "lag", "worst_lag", "slow_callbacks")

    def __init__(self) -> None:
        self.turns = 0
        self.busy_seconds = 0.0
        self.busiest_turn = 0.0
        self.lag = Histogram(LAG_BUCKETS)
        self.worst_lag = 0.0
        self.slow_callbacks = 0

    def observe_lag(self, seconds: float) -> None:
        self.lag.observe(seconds)
        if seconds > self.worst_lag:
            self.worst_lag = seconds

    def take_busiest(self) -> float:
        """The longest turn since the last call (and start again)."""
        busiest, self.busiest_turn = self.busiest_turn, 0.0
        return busiest

    def take_worst_lag(self) -> float:
        """The worst lag since the last call (and start again)."""
        worst, self.worst_lag = self.worst_lag, 0.0
        return worst


def describe_callback(callback: Callable[..., Any]) -> str:
    """What a callback is, for a person: "Connection.on_ready of <Connection
    127.0.0.1 reading-request>", seeing through functools.partial."""
    arguments = ""
    while hasattr(callback, "func"):  # functools.partial, maybe nested
        inner = [a for a in getattr(callback, "args", ()) if callable(a)]
        if inner and not arguments:
            arguments = f" (then {describe_callback(inner[0])})"
        callback = callback.func
    owner = getattr(callback, "__self__", None)
    name = getattr(callback, "__qualname__", None) or repr(callback)
    name = name.rpartition("<locals>.")[2]  # a function made inside another: its own name
    if owner is not None and not isinstance(owner, type):
        return f"{name} of {owner!r}{arguments}"
    return name + arguments


def report_callback_error(callback: Callable[..., Any], error: BaseException) -> None:
    """The default for ``Reactor.on_callback_error``: the traceback on stderr."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    text = (f"[{stamp}] reactor: a callback raised; the loop goes on: {callback!r}\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Timer:
    """A callback due at a time on the reactor's clock. ``cancel()`` is lazy:
    the entry stays in the heap and is skipped when it comes due, which makes
    cancelling O(1). Loop thread only."""

    __slots__ = ("when", "sequence", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple, sequence: int = 0):
        self.when = when
        self.sequence = sequence  # breaks ties: equal due times run first-made first
        self.callback: Callable[..., Any] | None = callback
        self.args: tuple | None = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = self.args = None  # let go of what the callback holds

    def __lt__(self, other: Timer) -> bool:
        # A heap is not stable: without the sequence, timers due at the same
        # time would run in an arbitrary order.
        return (self.when, self.sequence) < (other.when, other.sequence)


class _SocketPairWaker:
    """The portable wake-up channel: a byte written to one end of a socket pair
    makes the other end readable, which ends a select() sleeping in the loop."""

    def __init__(self):
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self):
        return self._reader.fileno()

    def wake(self):
        try:
            self._writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full of wake-ups already: the loop will wake

    def drain(self):
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self):
        self._reader.close()
        self._writer.close()


class _EventFdWaker:
    """Linux's cheaper wake-up channel: one eventfd, a counter the kernel keeps.
    Writing adds to it and makes it readable; reading returns it to zero."""

    def __init__(self):
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self):
        return self._fd

    def wake(self):
        try:
            os.eventfd_write(self._fd, 1)
        except BlockingIOError:
            pass  # the counter is at its maximum: the loop will wake anyway

    def drain(self):
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def close(self):
        os.close(self._fd)


def make_waker(kind: str = "auto"):
    """An eventfd where the platform has one (Linux), else a socket pair."""
    if kind == "eventfd" or (kind == "auto" and hasattr(os, "eventfd")):
        return _EventFdWaker()
    return _SocketPairWaker()


class Reactor:
    """The event loop. Every method but ``call_soon_threadsafe`` must be called
    on the loop thread."""

    def __init__(self, selector: selectors.BaseSelector | None = None,
                 clock: Callable[[], float] = time.monotonic, waker=None,
                 on_callback_error: Callable[[Callable[..., Any], BaseException], None] = report_callback_error):
        self.selector = selector if selector is not None else make_selector()
        self.clock = clock
        self.fd_limit = SELECT_FD_LIMIT if isinstance(self.selector, selectors.SelectSelector) else None
        self.on_callback_error = on_callback_error
        self.stats = LoopStats()
        # --slow-callback-ms: when set, each callback is timed, and one that
        # holds the thread longer is passed to on_slow_callback(callback,
        # seconds). None (the default) times nothing per callback.
        self.slow_callback_seconds: float | None = None
        self.on_slow_callback: Callable[[Callable[..., Any], float], None] | None = None
        self._lag_timer: Timer | None = None
        self._timers: list[Timer] = []  # a heap, earliest first
        self._cancelled_timers = 0
        self._timers_made = 0  # the sequence number of the newest timer
        self._ready: collections.deque = collections.deque()  # callbacks queued by any thread
        self._waker = waker if waker is not None else make_waker()
        self._wake_pending = False
        self._running = False
        self._closed = False
        # The clock as read once per turn, for callers that can live with a
        # reading a few milliseconds old (timeouts in seconds) and should not
        # pay for a clock call each time (darkhttpd does the same).
        self.now = clock()
        # Performance: the selector's own fd -> key dict, read directly:
        # get_map().get() costs four Python calls per event on the hottest
        # path. CPython's selectors all keep one; anything else uses the
        # public mapping.
        fd_to_key = getattr(self.selector, "_fd_to_key", None)
        self._fd_to_key = fd_to_key if isinstance(fd_to_key, dict) else self.selector.get_map()
        self.selector.register(self._waker, EVENT_READ, self._on_wake)

    # -- readiness -----------------------------------------------------------

    def register(self, fileobj, events: int, callback: ReadyCallback) -> None:
        """Call ``callback(mask)`` when fileobj is ready for any of ``events``."""
        if self.slow_callback_seconds is not None:
            callback = self._timed(callback)
        self.selector.register(fileobj, events, callback)

    def modify(self, fileobj, events: int, callback: ReadyCallback) -> None:
        """Change the events (and callback) of a registered file object."""
        if self.slow_callback_seconds is not None:
            callback = self._timed(callback)
        self.selector.modify(fileobj, events, callback)

    def unregister(self, fileobj) -> None:
        """Stop watching fileobj. Safe while a select result is being dispatched:
        its pending events are skipped (see ``_dispatch``)."""
        self.selector.unregister(fileobj)

    # -- timers ----------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the loop thread after ``delay`` seconds."""
        self._timers_made += 1
        if self.slow_callback_seconds is not None:
            callback = self._timed(callback)
        timer = Timer(self.clock() + delay, callback, args, self._timers_made)
        heapq.heappush(self._timers, timer)
        return timer

    def cancel(self, timer: Timer) -> None:
        """Cancel a timer; counts cancelled entries so the heap can be compacted."""
        if not timer.cancelled:
            timer.cancel()
            self._cancelled_timers += 1
            # Discussion: lazy cancelling leaves dead entries in the heap. If
            # most of it is dead, rebuild it, so that memory stays proportional
            # to the live timers even under a storm of cancellations.
            if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(self._timers):
                self._timers = [t for t in self._timers if not t.cancelled]
                heapq.heapify(self._timers)
                self._cancelled_timers = 0

    # -- callbacks ---------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` at the end of this turn. Loop thread only:
        no wake-up is needed, the loop is awake."""
        if self.slow_callback_seconds is not None:
            callback = self._timed(callback)
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Queue ``callback(*args)`` to run on the loop thread and wake the loop.

        Thread-safe, and safe from a signal handler: deque.append is atomic and
        no lock is taken, so it cannot deadlock against the loop thread.
        """
        if self._closed:
            return  # e.g. a second Ctrl+C while the server finishes: nothing to wake
        if self.slow_callback_seconds is not None:
            callback = self._timed(callback)
        self._ready.append((callback, args))
        if not self._wake_pending:
            self._wake_pending = True
            self._waker.wake()

    def _on_wake(self, mask: int) -> None:
        # Drain first, then clear the flag. The other order loses wake-ups: a
        # post landing between the two would see no wake pending, write to the
        # channel, and have its byte drained away, leaving the flag set with
        # an empty channel, so no later post would ever wake the loop. In this
        # order such a post skips the wake, and its callback still runs in
        # phase 4 of this very turn.
        self._waker.drain()
        self._wake_pending = False

    # -- watching the loop -----------------------------------------------------------

    def start_lag_probe(self, interval: float = LAG_PROBE_SECONDS) -> None:
        """Measure the loop's lag from now on: a timer every ``interval``
        seconds notes how late it ran (``stats.observe_lag``). Off until
        called, so that an idle reactor in a test sleeps without waking."""
        if self._lag_timer is None:
            self._lag_timer = self.call_later(interval, self._probe_lag, interval)

    def stop_lag_probe(self) -> None:
        if self._lag_timer is not None:
            self.cancel(self._lag_timer)
            self._lag_timer = None

    def _probe_lag(self, interval: float) -> None:
        # self.now is the clock as phase 3 began: how late this timer runs is
        # how long the turn before it (and the timers before it) held the
        # thread past the moment it was due.
        due = self._lag_timer.when if self._lag_timer is not None else self.now
        self.stats.observe_lag(max(0.0, self.now - due))
        self._lag_timer = self.call_later(interval, self._probe_lag, interval)

    def _timed(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback``, timed: if it holds the thread longer than
        slow_callback_seconds, on_slow_callback hears of it."""
        clock = self.clock

        def timed(*args: Any) -> Any:
            started = clock()
            try:
                return callback(*args)
            finally:
                held = clock() - started
                threshold = self.slow_callback_seconds
                if threshold is not None and held > threshold:
                    self.stats.slow_callbacks += 1
                    if self.on_slow_callback is not None:
                        self.on_slow_callback(callback, held)
        timed.__wrapped__ = callback  # type: ignore[attr-defined]
        return timed

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        """Run turns of the loop until ``stop()`` is called."""
        self._running = True
        while self._running:
            self.run_once()

    def stop(self) -> None:
        """Make ``run()`` return after the current turn."""
        self._running = False

    def run_once(self, max_timeout: float | None = None) -> None:
        """One turn of the loop: select, dispatch, due timers, queued callbacks."""
        # Phase 1: how long may we sleep?
        timeout: float | None
        if self._ready:
            timeout = 0
        elif self._timers:
            timeout = max(0.0, self._timers[0].when - self.clock())
        else:
            timeout = None
        if max_timeout is not None:
            timeout = max_timeout if timeout is None else min(timeout, max_timeout)
        if timeout is not None and timeout > MAX_SELECT_SECONDS:
            timeout = MAX_SELECT_SECONDS  # waking early is harmless: phase 1 runs again

        # Phase 2: wait for readiness and dispatch it.
        events = self.selector.select(timeout)
        self.now = awake = self.clock()
        self._dispatch(events)

        # Phase 3: due timers. The clock is read once for the whole phase.
        # Timers made during the phase wait for the next turn even if already
        # due, as in phase 4, so a timer re-arming itself with a zero delay
        # cannot starve the selector. self._timers is read afresh each time
        # because cancel() may replace it (compaction) from inside a callback.
        self.now = now = self.clock()
        newest = self._timers_made
        while (self._timers and self._timers[0].when <= now
               and self._timers[0].sequence <= newest):
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                self._cancelled_timers -= 1
                continue
            callback, args = timer.callback, timer.args
            timer.cancel()  # mark it spent, so a late cancel() is harmless
            try:
                callback(*args)  # type: ignore[misc]
            except Exception as error:
                self.on_callback_error(callback, error)  # type: ignore[arg-type]

        # Phase 4: callbacks queued before now. Ones they queue wait a turn,
        # so a callback that re-queues itself cannot starve the selector.
        ready = self._ready
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            try:
                callback(*args)
            except Exception as error:
                self.on_callback_error(callback, error)

        # The turn's cost: how long the callbacks held the thread.
        stats = self.stats
        held = self.clock() - awake
        stats.turns += 1
        stats.busy_seconds += held
        if held > stats.busiest_turn:
            stats.busiest_turn = held

    def _dispatch(self, events: list) -> None:
        registered = self._fd_to_key
        for key, mask in events:
            # Discussion: a callback earlier in this batch may have unregistered
            # this file object, closed it and even had its descriptor number
            # reused by a new socket, or changed its interest. So look the
            # descriptor up again and dispatch only to the same file object,
            # only for events it still wants.
            current = registered.get(key.fd)
            if current is None or current.fileobj is not key.fileobj:
                continue
            mask &= current.events
            if mask:
                # The last line of defence (see the module docstring). A try
                # costs next to nothing until something raises.
                try:
                    current.data(mask)
                except Exception as error:
                    self.on_callback_error(current.data, error)

    def close(self) -> None:
        """Release the selector and the wake-up channel."""
        self._closed = True
        self.selector.unregister(self._waker)
        self._waker.close()
        self.selector.close()
