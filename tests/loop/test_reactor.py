"""Unit tests for the reactor: readiness dispatch, timers, call_soon, and the
thread-safe wake-up.

The loop runs on the test's own thread, one turn at a time, through
``run_once``. Socket pairs provide readiness; a fake clock moves time, so no
test sleeps waiting for a timer. Readiness and wake-up tests run over every
selector backend this platform has, plus the "auto" default.
"""

import functools
import os
import selectors
import socket
import threading
import time

import pytest
from support.fakes import FakeClock

from reactor_http.loop.reactor import (
    EVENT_READ,
    EVENT_WRITE,
    LAG_BUCKETS,
    SELECT_FD_LIMIT,
    SELECTOR_CLASSES,
    Histogram,
    Reactor,
    describe_callback,
    make_selector,
    make_waker,
)

SELECTOR_NAMES = ["auto"] + [name for name, selector_class in SELECTOR_CLASSES.items()
                             if selector_class is not None]
WAKER_KINDS = ["eventfd", "socketpair"]

# How long a turn may wait for readiness that is already there, or for a
# thread that was told to post. Only reached when something is broken.
GENEROUS = 10.0


# -- helpers -------------------------------------------------------------------------


class Watchdog:
    """Rescues a reactor left blocked in select() by a lost wake-up.

    The rescue arrives through a socket pair of its own, never through the
    waker under test, so a lost wake-up fails the test after a generous
    deadline instead of hanging it. ``fired`` says whether a rescue was needed.
    """

    def __init__(self, reactor, deadline=GENEROUS):
        self.fired = False
        self._reactor = reactor
        self._reader, self._writer = socket.socketpair()
        reactor.register(self._reader, EVENT_READ, self._on_readable)
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(deadline,), daemon=True)
        self._thread.start()

    def _watch(self, deadline):
        if not self._finished.wait(deadline):
            self.fired = True
            self._writer.send(b"!")

    def _on_readable(self, mask):
        pass  # leave the byte unread: every later select returns at once

    def finish(self):
        self._finished.set()
        self._thread.join()
        self._reactor.unregister(self._reader)
        self._reader.close()
        self._writer.close()


def run_until(reactor, condition):
    """Run blocking turns (no max_timeout) until condition() holds; fail if the
    loop had to be rescued because nothing woke it."""
    watchdog = Watchdog(reactor)
    try:
        while not condition() and not watchdog.fired:
            reactor.run_once()
    finally:
        watchdog.finish()
    assert not watchdog.fired, "the reactor stayed asleep: a wake-up was lost"


def cancelled_entries(reactor):
    return sum(1 for timer in reactor._timers if timer.cancelled)


def assert_cancel_count_consistent(reactor):
    """The lazy-cancel bookkeeping must match the heap, or compaction drifts."""
    assert reactor._cancelled_timers == cancelled_entries(reactor)


class RecordingSelector(selectors.DefaultSelector):
    """Records the timeout the loop asks select() for, but never sleeps."""

    def __init__(self):
        super().__init__()
        self.timeouts = []

    def select(self, timeout=None):
        self.timeouts.append(timeout)
        return super().select(0)


class RacingWaker:
    """Wraps a real waker. During the loop's first drain it posts a callback
    itself, standing in for another thread whose call_soon_threadsafe lands
    exactly there: before the real drain, or after it."""

    def __init__(self, inner, post_before_drain):
        self._inner = inner
        self._post_before_drain = post_before_drain
        self.post = None  # set by the test: the racing call_soon_threadsafe

    def fileno(self):
        return self._inner.fileno()

    def wake(self):
        self._inner.wake()

    def drain(self):
        post, self.post = self.post, None
        if post is not None and self._post_before_drain:
            post()
        self._inner.drain()
        if post is not None and not self._post_before_drain:
            post()

    def close(self):
        self._inner.close()


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(params=SELECTOR_NAMES)
def selector_name(request):
    return request.param


@pytest.fixture(params=WAKER_KINDS)
def waker_kind(request):
    if request.param == "eventfd" and not hasattr(os, "eventfd"):
        pytest.skip("os.eventfd is not available on this platform")
    return request.param


@pytest.fixture
def reactor(selector_name):
    loop = Reactor(make_selector(selector_name))
    yield loop
    loop.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def timed_reactor(clock):
    """A reactor on the default selector whose time only moves when told."""
    loop = Reactor(clock=clock)
    yield loop
    loop.close()


@pytest.fixture
def socket_pair():
    """make() returns a new non-blocking socket pair; all are closed afterwards."""
    made = []

    def make():
        left, right = socket.socketpair()
        left.setblocking(False)
        right.setblocking(False)
        made.extend((left, right))
        return left, right

    yield make
    for sock in made:
        sock.close()


# -- readiness -----------------------------------------------------------------------


def test_readable_callback_fires_with_event_read_when_bytes_arrive(reactor, socket_pair):
    """Registering for EVENT_READ calls the callback with EVENT_READ once bytes
    arrive, and not before."""
    sender, receiver = socket_pair()
    masks = []
    reactor.register(receiver, EVENT_READ, masks.append)

    reactor.run_once(max_timeout=0)
    assert masks == []  # nothing has arrived yet

    sender.send(b"ping")
    reactor.run_once(max_timeout=GENEROUS)
    assert masks == [EVENT_READ]
    assert receiver.recv(16) == b"ping"


def test_writable_callback_fires_for_a_fresh_socket(reactor, socket_pair):
    """A fresh socket has room in its send buffer, so it is writable at once."""
    writer, _ = socket_pair()
    masks = []
    reactor.register(writer, EVENT_WRITE, masks.append)
    reactor.run_once(max_timeout=GENEROUS)
    assert masks == [EVENT_WRITE]


def test_callback_receives_both_events_in_one_mask(reactor, socket_pair):
    """Readable and writable at once arrive as one call with both bits."""
    sender, receiver = socket_pair()
    sender.send(b"x")
    masks = []
    reactor.register(receiver, EVENT_READ | EVENT_WRITE, masks.append)
    reactor.run_once(max_timeout=GENEROUS)
    assert masks == [EVENT_READ | EVENT_WRITE]


def test_modify_switches_interest_and_callback(reactor, socket_pair):
    """After modify, only the new events are reported, to the new callback."""
    sender, receiver = socket_pair()
    writable_masks, readable_masks = [], []
    reactor.register(receiver, EVENT_WRITE, writable_masks.append)
    reactor.run_once(max_timeout=GENEROUS)
    assert writable_masks == [EVENT_WRITE]

    reactor.modify(receiver, EVENT_READ, readable_masks.append)
    reactor.run_once(max_timeout=0)
    # Still writable, but no longer asked for; not readable yet.
    assert writable_masks == [EVENT_WRITE]
    assert readable_masks == []

    sender.send(b"x")
    reactor.run_once(max_timeout=GENEROUS)
    assert readable_masks == [EVENT_READ]
    assert writable_masks == [EVENT_WRITE]


def test_unregister_stops_callbacks(reactor, socket_pair):
    """An unregistered socket is not reported, even though it is still ready."""
    sender, receiver = socket_pair()
    masks = []
    reactor.register(receiver, EVENT_READ | EVENT_WRITE, masks.append)
    sender.send(b"x")
    reactor.run_once(max_timeout=GENEROUS)
    assert masks == [EVENT_READ | EVENT_WRITE]

    reactor.unregister(receiver)
    reactor.run_once(max_timeout=0)
    reactor.run_once(max_timeout=0)
    assert masks == [EVENT_READ | EVENT_WRITE]


# -- changes made during one dispatch batch -------------------------------------------


def test_unregister_during_dispatch_skips_the_closed_sockets_event(reactor, socket_pair):
    """Two sockets are ready in the same select batch. Whichever callback runs
    first unregisters and closes the other: the other's pending event must be
    dropped, not delivered to a closed socket's callback."""
    first_sender, first_receiver = socket_pair()
    second_sender, second_receiver = socket_pair()
    first_sender.send(b"1")
    second_sender.send(b"2")
    called = []

    def make_callback(name, other):
        def on_readable(mask):
            called.append(name)
            if other.fileno() != -1:
                reactor.unregister(other)
                other.close()
        return on_readable

    reactor.register(first_receiver, EVENT_READ, make_callback("first", second_receiver))
    reactor.register(second_receiver, EVENT_READ, make_callback("second", first_receiver))
    # Both are readable before the turn starts, so one select returns both.
    reactor.run_once(max_timeout=GENEROUS)
    assert len(called) == 1


def test_descriptor_reused_during_dispatch_gets_no_stale_event(reactor, socket_pair):
    """The first callback closes the other ready socket and a new socket takes
    its descriptor number and registers for EVENT_READ only. The stale event
    from the batch (readable and writable, for the old socket) must not reach
    the new socket's callback; the new socket's own readiness still does."""
    first_sender, first_receiver = socket_pair()
    second_sender, second_receiver = socket_pair()
    first_sender.send(b"1")
    second_sender.send(b"2")
    old_masks = []
    new_masks = []
    replacement = {}

    def make_callback(other):
        def on_ready(mask):
            old_masks.append(mask)
            if replacement:
                return
            number = other.fileno()
            reactor.unregister(other)
            other.close()
            # Put a new socket on exactly that descriptor number.
            fresh, fresh_peer = socket_pair()
            if fresh.fileno() == number:  # the kernel reused the lowest free number
                new_socket = fresh
            else:
                os.dup2(fresh.fileno(), number)
                new_socket = socket.socket(fileno=number)
                new_socket.setblocking(False)
                fresh.close()
            replacement.update(socket=new_socket, peer=fresh_peer, number=number)
            reactor.register(new_socket, EVENT_READ, new_masks.append)
        return on_ready

    reactor.register(first_receiver, EVENT_READ | EVENT_WRITE, make_callback(second_receiver))
    reactor.register(second_receiver, EVENT_READ | EVENT_WRITE, make_callback(first_receiver))
    try:
        reactor.run_once(max_timeout=GENEROUS)
        assert len(old_masks) == 1
        assert replacement["socket"].fileno() == replacement["number"]
        # Nothing was sent to the new socket: its callback has no business running.
        assert new_masks == []

        # Silence the survivor (always writable), then show the new socket works.
        survivor = first_receiver if first_receiver.fileno() != -1 else second_receiver
        reactor.unregister(survivor)
        replacement["peer"].send(b"new")
        reactor.run_once(max_timeout=GENEROUS)
        assert new_masks == [EVENT_READ]
    finally:
        if replacement:
            replacement["socket"].close()


def test_modify_during_dispatch_narrows_the_pending_mask(reactor, socket_pair):
    """If an earlier callback in the batch narrows another socket's interest
    and replaces its callback, the pending event is delivered only for the
    events still wanted, and to the new callback."""
    first_sender, first_receiver = socket_pair()
    second_sender, second_receiver = socket_pair()
    first_sender.send(b"1")
    second_sender.send(b"2")
    calls = []

    def replacement_callback(mask):
        calls.append(("replacement", mask))

    def make_callback(name, other):
        def on_ready(mask):
            calls.append((name, mask))
            if len(calls) == 1:
                reactor.modify(other, EVENT_WRITE, replacement_callback)
        return on_ready

    reactor.register(first_receiver, EVENT_READ | EVENT_WRITE, make_callback("first", second_receiver))
    reactor.register(second_receiver, EVENT_READ | EVENT_WRITE, make_callback("second", first_receiver))
    reactor.run_once(max_timeout=GENEROUS)
    assert len(calls) == 2
    assert calls[0][1] == EVENT_READ | EVENT_WRITE
    # Readable too when selected, but only writability is still wanted.
    assert calls[1] == ("replacement", EVENT_WRITE)


# -- timers ----------------------------------------------------------------------------


def test_timers_run_in_order_of_due_time(timed_reactor, clock):
    """Timers run only once due, earliest first, whatever order they were made in."""
    ran = []
    timed_reactor.call_later(3, ran.append, "three")
    timed_reactor.call_later(1, ran.append, "one")
    timed_reactor.call_later(2, ran.append, "two")

    timed_reactor.run_once(max_timeout=0)
    assert ran == []
    clock.advance(1)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["one"]
    clock.advance(0.5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["one"]
    clock.advance(10)
    timed_reactor.run_once(max_timeout=0)  # both due in one turn: still in order
    assert ran == ["one", "two", "three"]
    assert timed_reactor._timers == []


def test_timers_due_at_the_same_time_run_in_the_order_scheduled(timed_reactor, clock):
    """Equal due times run first-scheduled first (a heap alone does not keep
    that order)."""
    ran = []
    for number in range(20):
        timed_reactor.call_later(1, ran.append, number)
    clock.advance(1)
    timed_reactor.run_once(max_timeout=0)
    assert ran == list(range(20))


def test_cancelled_timer_never_runs(timed_reactor, clock):
    """A timer cancelled before it is due never runs; cancelling twice, or
    cancelling a timer that already ran, is harmless."""
    ran = []
    cancelled = timed_reactor.call_later(1, ran.append, "cancelled")
    kept = timed_reactor.call_later(2, ran.append, "kept")
    timed_reactor.cancel(cancelled)
    timed_reactor.cancel(cancelled)
    assert_cancel_count_consistent(timed_reactor)

    clock.advance(5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["kept"]
    timed_reactor.cancel(kept)  # already ran: nothing to do
    assert_cancel_count_consistent(timed_reactor)
    assert timed_reactor._cancelled_timers == 0
    clock.advance(5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["kept"]


def test_timer_cancelled_by_an_earlier_timer_in_the_same_turn_does_not_run(timed_reactor, clock):
    """Both timers are due in the same turn; the first cancels the second."""
    ran = []

    def cancel_the_other():
        ran.append("first")
        timed_reactor.cancel(second)

    timed_reactor.call_later(1, cancel_the_other)
    second = timed_reactor.call_later(2, ran.append, "second")
    clock.advance(5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first"]
    assert_cancel_count_consistent(timed_reactor)
    clock.advance(5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first"]
    assert timed_reactor._timers == []


def test_timer_can_schedule_another_timer(timed_reactor, clock):
    """A timer's callback may call call_later; the new timer runs when due."""
    ran = []

    def first():
        ran.append("first")
        timed_reactor.call_later(1, ran.append, "second")

    timed_reactor.call_later(1, first)
    clock.advance(1)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first"]
    clock.advance(0.5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first"]
    clock.advance(0.5)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first", "second"]


def test_timer_rearming_itself_with_zero_delay_runs_once_per_turn(timed_reactor, clock):
    """A timer scheduled by a timer waits for the next turn even if it is
    already due, so a timer that re-arms itself with delay 0 cannot keep the
    loop from selecting (the same rule as for call_soon)."""
    runs = []

    def rearm():
        runs.append(len(runs))
        if len(runs) < 100:  # bounded, so a regression fails instead of hanging
            timed_reactor.call_later(0, rearm)

    timed_reactor.call_later(0, rearm)
    timed_reactor.run_once(max_timeout=0)
    assert len(runs) == 1
    timed_reactor.run_once(max_timeout=0)
    assert len(runs) == 2


def test_heap_is_compacted_after_many_cancellations(timed_reactor, clock):
    """Lazy cancelling leaves dead entries in the heap; once they outnumber the
    live ones (and number more than 64) the heap is rebuilt, so its size stays
    proportional to the live timers."""
    ran = []
    timers = [timed_reactor.call_later(1 + number / 1000, ran.append, number)
              for number in range(1000)]
    for timer in timers[:900]:
        timed_reactor.cancel(timer)
        dead = cancelled_entries(timed_reactor)
        live = len(timed_reactor._timers) - dead
        assert dead <= max(64, live)
    assert len(timed_reactor._timers) < 1000
    assert len(timed_reactor._timers) - cancelled_entries(timed_reactor) == 100
    assert_cancel_count_consistent(timed_reactor)

    clock.advance(10)
    timed_reactor.run_once(max_timeout=0)
    assert ran == list(range(900, 1000))
    assert timed_reactor._timers == []
    assert timed_reactor._cancelled_timers == 0


def test_compaction_inside_a_timer_callback_keeps_the_count_right(timed_reactor, clock):
    """A timer that cancels enough timers to trigger compaction while the
    timer phase is running must not leave the cancelled-count out of step with
    the heap, and every live timer still runs exactly once."""
    ran = []
    later = [timed_reactor.call_later(10, ran.append, "never") for _ in range(100)]

    def cancel_them_all():
        ran.append("canceller")
        for timer in later:
            timed_reactor.cancel(timer)

    timed_reactor.call_later(1, cancel_them_all)
    timed_reactor.call_later(1, ran.append, "neighbour")  # due in the same phase
    clock.advance(1)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["canceller", "neighbour"]
    assert_cancel_count_consistent(timed_reactor)

    clock.advance(20)
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["canceller", "neighbour"]
    assert timed_reactor._timers == []
    assert timed_reactor._cancelled_timers == 0


def test_run_once_sleeps_until_the_next_timer(clock):
    """The select timeout is the time left until the earliest timer, capped by
    max_timeout; zero when a timer is overdue or a callback is queued; None
    (sleep until woken) when there is nothing to wait for."""
    selector = RecordingSelector()
    loop = Reactor(selector, clock=clock)
    try:
        loop.run_once()
        assert selector.timeouts[-1] is None

        loop.run_once(max_timeout=0.25)
        assert selector.timeouts[-1] == 0.25

        ran = []
        loop.call_later(5, ran.append, "five")
        loop.call_later(2, ran.append, "two")
        loop.run_once()
        assert selector.timeouts[-1] == 2.0
        loop.run_once(max_timeout=0.5)
        assert selector.timeouts[-1] == 0.5
        loop.run_once(max_timeout=30)
        assert selector.timeouts[-1] == 2.0

        clock.advance(1.5)
        loop.run_once()
        assert selector.timeouts[-1] == 0.5
        assert ran == []

        clock.advance(1)  # "two" is now overdue by half a second
        loop.run_once()
        assert selector.timeouts[-1] == 0
        assert ran == ["two"]
        loop.run_once()
        assert selector.timeouts[-1] == 2.5  # "five" is due at 1005, now is 1002.5

        loop.call_soon(ran.append, "soon")
        loop.run_once()
        assert selector.timeouts[-1] == 0
        assert ran == ["two", "soon"]
    finally:
        loop.close()


# -- call_soon -------------------------------------------------------------------------


def test_call_soon_runs_at_the_end_of_the_turn(clock, socket_pair):
    """Callbacks queued during dispatch and during the timer phase run after
    both, in the same turn."""
    loop = Reactor(clock=clock)
    try:
        sender, receiver = socket_pair()
        ran = []

        def on_readable(mask):
            ran.append("readable")
            receiver.recv(16)
            loop.call_soon(ran.append, "queued by readable")

        def on_timer():
            ran.append("timer")
            loop.call_soon(ran.append, "queued by timer")

        loop.register(receiver, EVENT_READ, on_readable)
        loop.call_later(1, on_timer)
        clock.advance(1)
        sender.send(b"x")
        loop.run_once(max_timeout=GENEROUS)
        assert ran == ["readable", "timer", "queued by readable", "queued by timer"]
    finally:
        loop.close()


def test_callback_queued_by_a_callback_runs_on_the_next_turn(timed_reactor):
    """A callback that queues another (or itself) does not get it run in the
    same turn, so it cannot keep the loop from selecting."""
    ran = []

    def first():
        ran.append("first")
        timed_reactor.call_soon(second)

    def second():
        ran.append("second")

    timed_reactor.call_soon(first)
    timed_reactor.call_soon(ran.append, "sibling")
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first", "sibling"]
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first", "sibling", "second"]
    timed_reactor.run_once(max_timeout=0)
    assert ran == ["first", "sibling", "second"]


def test_queued_callback_keeps_run_once_from_blocking(reactor):
    """With a callback queued, the turn must not sleep in select even though
    nothing is ready and no timeout was given."""
    ran = []
    reactor.call_soon(ran.append, "soon")
    watchdog = Watchdog(reactor)
    try:
        reactor.run_once()
    finally:
        watchdog.finish()
    assert not watchdog.fired
    assert ran == ["soon"]


# -- call_soon_threadsafe and the wakers ------------------------------------------------


@pytest.fixture
def waking_reactor(selector_name, waker_kind):
    loop = Reactor(make_selector(selector_name), waker=make_waker(waker_kind))
    yield loop
    loop.close()


def test_make_waker_returns_the_kind_asked_for(waker_kind):
    """eventfd is one descriptor; the socket-pair fallback is a pair of sockets."""
    waker = make_waker(waker_kind)
    try:
        if waker_kind == "eventfd":
            assert type(waker).__name__ == "_EventFdWaker"
        else:
            assert type(waker).__name__ == "_SocketPairWaker"
    finally:
        waker.close()



def post_after_a_moment(reactor, callback):
    """From another thread: let the loop reach select first, then post."""
    time.sleep(0.05)
    reactor.call_soon_threadsafe(callback)


def test_post_from_another_thread_wakes_a_blocked_run_once(waking_reactor):
    """run_once() with nothing to do sleeps in select with no timeout; a
    call_soon_threadsafe from another thread must end that sleep and run the
    callback on the loop thread, every time, not just the first."""
    loop_thread = threading.get_ident()
    for round_number in range(3):
        ran_on = []
        record_thread = functools.partial(lambda found: found.append(threading.get_ident()), ran_on)
        poster = threading.Thread(target=post_after_a_moment, args=(waking_reactor, record_thread))
        watchdog = Watchdog(waking_reactor)
        poster.start()
        try:
            waking_reactor.run_once()  # one turn: it must return because of the post
        finally:
            watchdog.finish()
            poster.join(GENEROUS)
        assert not watchdog.fired, f"round {round_number}: the post did not wake the loop"
        assert ran_on == [loop_thread]


def test_many_posts_from_many_threads_each_arrive_exactly_once(waking_reactor):
    """Every post runs once, and each thread's posts run in the order it made them."""
    thread_count, posts_per_thread = 8, 250
    received = []
    start_together = threading.Barrier(thread_count)

    def post_all(thread_index):
        start_together.wait(GENEROUS)
        for number in range(posts_per_thread):
            waking_reactor.call_soon_threadsafe(received.append, (thread_index, number))

    posters = [threading.Thread(target=post_all, args=(index,)) for index in range(thread_count)]
    for poster in posters:
        poster.start()
    try:
        run_until(waking_reactor, lambda: len(received) >= thread_count * posts_per_thread)
    finally:
        for poster in posters:
            poster.join(GENEROUS)
    waking_reactor.run_once(max_timeout=0)  # nothing may arrive twice
    assert sorted(received) == [(index, number) for index in range(thread_count)
                                for number in range(posts_per_thread)]
    for index in range(thread_count):
        assert [number for thread_index, number in received if thread_index == index] \
            == list(range(posts_per_thread))


@pytest.mark.parametrize("post_before_drain", [True, False], ids=["before-drain", "after-drain"])
def test_post_racing_with_the_drain_does_not_lose_later_wakeups(selector_name, waker_kind,
                                                              post_before_drain):
    """A post that lands while the loop is handling a wake-up (just before or
    just after it drains the channel) must run, and must not leave the loop
    believing a wake-up is pending when the channel is empty: otherwise every
    later post skips waking the loop and it sleeps forever."""
    waker = RacingWaker(make_waker(waker_kind), post_before_drain)
    loop = Reactor(make_selector(selector_name), waker=waker)
    try:
        ran = []
        waker.post = lambda: loop.call_soon_threadsafe(ran.append, "raced")
        loop.call_soon_threadsafe(ran.append, "first")
        loop.run_once(max_timeout=GENEROUS)
        assert ran == ["first", "raced"]

        # Now a post from another thread must still wake a loop with no
        # timeout. (A leftover wake-up may end a turn early: that is harmless.)
        poster = threading.Thread(
            target=lambda: (time.sleep(0.05), loop.call_soon_threadsafe(ran.append, "later")))
        poster.start()
        try:
            run_until(loop, lambda: "later" in ran)
        finally:
            poster.join(GENEROUS)
        assert ran == ["first", "raced", "later"]
    finally:
        loop.close()


# -- run and stop ----------------------------------------------------------------------


def test_timer_calling_stop_ends_run(selector_name, clock):
    """run() returns after the turn in which stop() was called; that turn
    finishes (its queued callbacks still run); run() can be started again."""
    loop = Reactor(make_selector(selector_name), clock=clock)
    try:
        ran = []

        def stop_now():
            ran.append("stop")
            loop.stop()
            loop.call_soon(ran.append, "rest of the turn")

        loop.call_later(0, stop_now)
        loop.call_later(5, ran.append, "later")  # not due: run() must not wait for it
        loop.run()
        assert ran == ["stop", "rest of the turn"]

        clock.advance(5)
        loop.call_later(0, loop.stop)
        loop.run()
        assert ran == ["stop", "rest of the turn", "later"]
    finally:
        loop.close()


def test_stop_posted_from_another_thread_ends_run(waking_reactor):
    """How the command line stops the server: call_soon_threadsafe(stop) from
    a signal handler or another thread ends a run() that is asleep."""
    poster = threading.Thread(
        target=lambda: (time.sleep(0.05), waking_reactor.call_soon_threadsafe(waking_reactor.stop)))
    watchdog = Watchdog(waking_reactor)
    poster.start()
    try:
        waking_reactor.run()
    finally:
        watchdog.finish()
        poster.join(GENEROUS)
    assert not watchdog.fired, "stop() posted from another thread did not wake run()"


# -- selectors -------------------------------------------------------------------------


def test_make_selector_rejects_an_unknown_name():
    with pytest.raises(ValueError):
        make_selector("nope")


def test_make_selector_rejects_a_backend_this_platform_lacks():
    for name, selector_class in SELECTOR_CLASSES.items():
        if selector_class is None:
            with pytest.raises(ValueError):
                make_selector(name)


def test_make_selector_builds_the_backend_named(selector_name):
    selector = make_selector(selector_name)
    try:
        expected = selectors.DefaultSelector if selector_name == "auto" else SELECTOR_CLASSES[selector_name]
        assert type(selector) is expected
    finally:
        selector.close()


def test_fd_limit_is_set_only_for_the_select_backend(reactor, selector_name):
    """select(2) cannot watch descriptors at or above FD_SETSIZE (1024); the
    other backends have no such limit."""
    uses_select = selector_name == "select" or (
        selector_name == "auto" and selectors.DefaultSelector is selectors.SelectSelector)
    if uses_select:
        assert reactor.fd_limit == SELECT_FD_LIMIT == 1024
    else:
        assert reactor.fd_limit is None


# -- watching the loop: LoopStats, the lag probe, slow callbacks ------------------------------------


def test_each_turn_counts_and_the_time_its_callbacks_held_the_thread(timed_reactor, clock):
    """A callback that holds the thread 30 ms (the fake clock moved inside
    it) makes a 30 ms turn; busy time adds up, the busiest turn is taken."""
    reactor = timed_reactor
    reactor.call_soon(clock.advance, 0.030)
    reactor.run_once(max_timeout=0)
    reactor.call_soon(clock.advance, 0.010)
    reactor.run_once(max_timeout=0)
    stats = reactor.stats
    assert stats.turns == 2
    assert stats.busy_seconds == pytest.approx(0.040)
    assert stats.take_busiest() == pytest.approx(0.030)
    assert stats.take_busiest() == 0.0  # taken: it starts again


def test_the_lag_probe_sees_how_late_a_blocked_loop_runs_its_timer(timed_reactor, clock):
    reactor = timed_reactor
    reactor.start_lag_probe(interval=0.25)
    clock.advance(0.25)
    reactor.run_once(max_timeout=0)          # due on time: no lag
    clock.advance(0.25 + 0.120)              # a turn held the thread 120 ms past the timer's time
    reactor.run_once(max_timeout=0)
    stats = reactor.stats
    assert stats.lag.count == 2
    assert stats.take_worst_lag() == pytest.approx(0.120)
    assert stats.lag.total == pytest.approx(0.120)
    # One observation at 0 s (the first bucket) and one of 120 ms (the bucket up to 250 ms).
    assert stats.lag.counts[0] == 1 and stats.lag.counts[LAG_BUCKETS.index(0.25)] == 1
    reactor.stop_lag_probe()
    assert not [timer for timer in reactor._timers if not timer.cancelled]


def test_without_the_probe_an_idle_reactor_has_no_timer(timed_reactor):
    assert timed_reactor._timers == []


def test_a_slow_callback_is_reported_with_what_it_was(timed_reactor, clock):
    """With slow_callback_seconds set, each kind of callback (readiness,
    timer, queued) that holds the thread longer is reported, named; a
    quick one is not."""
    reactor = timed_reactor
    reported = []
    reactor.slow_callback_seconds = 0.020
    reactor.on_slow_callback = lambda callback, held: reported.append((describe_callback(callback), held))

    class Worker:
        def __repr__(self):
            return "<Worker 7>"

        def slow(self):
            clock.advance(0.050)

        def quick(self):
            clock.advance(0.001)

    worker = Worker()
    reactor.call_soon(worker.slow)
    reactor.call_soon(worker.quick)
    reactor.call_later(0, functools.partial(worker.slow))
    clock.advance(0.001)
    reactor.run_once(max_timeout=0)
    reactor.run_once(max_timeout=0)
    assert [name for name, _ in reported] == ["Worker.slow of <Worker 7>"] * 2
    assert all(held == pytest.approx(0.050) for _, held in reported)
    assert reactor.stats.slow_callbacks == 2


def test_describe_callback_sees_through_partials():
    def job():
        pass

    class Owner:
        def __repr__(self):
            return "<Owner>"

        def step(self, then):
            pass

    owner = Owner()
    assert describe_callback(functools.partial(owner.step, job)) == "Owner.step of <Owner> (then job)"
    assert describe_callback(job) == "job"


def test_a_histogram_counts_each_value_in_the_first_bucket_at_or_above_it():
    histogram = Histogram((0.001, 0.01, 0.1))
    for value in (0.0, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.2, 99.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 2, 2]  # up to 1 ms, 10 ms, 100 ms, and above (+Inf)
    assert histogram.count == 8 and histogram.total == pytest.approx(99.3620001)
