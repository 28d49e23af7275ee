"""Fakes for unit tests that drive one piece without a server: a clock, a
socket, a reactor, an executor, a handler and the logs.

Each fake does what the real part promises and no more, records what it was
asked, and lets the test decide what happens next: the clock moves when the
test advances it, timers fire only then, a job completes only when the test
completes it, a socket takes only as many bytes as the test allows.
"""

import collections
import errno
import socket

from reactor_http.http1.responses import Response
from reactor_http.loop.executor import Outcome
from reactor_http.loop.reactor import Timer


class FakeClock:
    """A monotonic clock the test moves by hand: ``clock()`` reads it,
    ``advance(seconds)`` moves it (``now`` may also be set directly)."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeSocket:
    """A non-blocking socket whose peer is the test.

    - ``send`` records each call's bytes and flags in ``sends``; it takes at
      most ``send_limit`` bytes a call (None: everything; 0: the buffer is
      full, BlockingIOError), and raises ``send_error`` once if one is set.
    - ``recv`` returns the items of ``incoming`` in order: bytes (b"" is end
      of file), or an exception (class or instance), which is raised. With
      nothing scripted it raises BlockingIOError, as a socket with nothing to
      read does. MSG_PEEK leaves the bytes in place.
    - ``shutdown`` records its argument in ``shut``; ``close`` sets ``closed``.
    """

    def __init__(self, fd=1000):
        self.sends = []
        self.send_limit = None
        self.send_error = None
        self.incoming = collections.deque()
        self.recv_calls = 0
        self.shut = []
        self.closed = False
        self._fd = fd

    @property
    def sent(self):
        """Every byte sent, in order."""
        return b"".join(data for data, _ in self.sends)

    def fileno(self):
        return -1 if self.closed else self._fd

    def send(self, data, flags=0):
        self._check_open()
        if self.send_error is not None:
            error, self.send_error = self.send_error, None
            raise error
        taken = bytes(data if self.send_limit is None else data[:self.send_limit])
        if data and not taken:
            raise BlockingIOError(errno.EAGAIN, "the send buffer is full")
        self.sends.append((taken, flags))
        return len(taken)

    def recv(self, size, flags=0):
        self._check_open()
        self.recv_calls += 1
        if not self.incoming:
            raise BlockingIOError(errno.EAGAIN, "nothing to read")
        item = self.incoming[0]
        if not isinstance(item, bytes):
            self.incoming.popleft()
            raise item
        if flags & socket.MSG_PEEK:
            return item[:size]
        if len(item) > size:
            self.incoming[0] = item[size:]
        else:
            self.incoming.popleft()
        return item[:size]

    def shutdown(self, how):
        self._check_open()
        self.shut.append(how)

    def close(self):
        self.closed = True

    def _check_open(self):
        if self.closed:
            raise OSError(errno.EBADF, "the fake socket is closed")


class FakeReactor:
    """The reactor's interface, run by the test.

    Readiness: ``register``/``modify``/``unregister`` keep ``interests``
    (file object -> (events, callback)) and raise KeyError where a selector
    would; ``calls`` records them in order. ``fire(fileobj, mask)`` is the
    selector reporting readiness: it calls the registered callback, and
    refuses readiness nobody registered for.

    Time: ``clock`` is a FakeClock and ``now`` reads it. ``call_later``
    returns a cancellable Timer; ``advance(seconds)`` moves the clock and
    runs the timers due by then, earliest first, as the reactor's timer
    phase does. A timer that raises is not caught: nothing should.
    """

    def __init__(self, clock=None):
        self.clock = clock if clock is not None else FakeClock()
        self.interests = {}
        self.calls = []
        self._timers = []
        self._timers_made = 0

    @property
    def now(self):
        return self.clock()

    def register(self, fileobj, events, callback):
        if fileobj in self.interests:
            raise KeyError(f"{fileobj!r} is already registered")
        self.interests[fileobj] = (events, callback)
        self.calls.append(("register", events))

    def modify(self, fileobj, events, callback):
        if fileobj not in self.interests:
            raise KeyError(f"{fileobj!r} is not registered")
        self.interests[fileobj] = (events, callback)
        self.calls.append(("modify", events))

    def unregister(self, fileobj):
        if fileobj not in self.interests:
            raise KeyError(f"{fileobj!r} is not registered")
        del self.interests[fileobj]
        self.calls.append(("unregister", 0))

    def interest(self, fileobj):
        """The events fileobj is registered for (0: none)."""
        return self.interests.get(fileobj, (0, None))[0]

    def fire(self, fileobj, mask):
        events, callback = self.interests.get(fileobj, (0, None))
        assert events & mask, f"readiness {mask} fired, but the interest is {events}"
        callback(events & mask)

    def call_later(self, delay, callback, *args):
        self._timers_made += 1
        timer = Timer(self.clock() + delay, callback, args, self._timers_made)
        self._timers.append(timer)
        return timer

    def cancel(self, timer):
        timer.cancel()

    @property
    def timers(self):
        """The live timers, earliest first."""
        self._timers = [timer for timer in self._timers if not timer.cancelled]
        return sorted(self._timers)

    def advance(self, seconds):
        self.clock.advance(seconds)
        for _ in range(1000):
            due = [timer for timer in self.timers if timer.when <= self.clock()]
            if not due:
                return
            timer = due[0]
            callback, args = timer.callback, timer.args
            timer.cancel()  # spent, as the reactor marks it
            callback(*args)
        raise AssertionError("timers keep coming due: one re-arms itself with no delay")


class FakeJob:
    """A job submitted to the FakeExecutor, waiting for the test to end it."""

    def __init__(self, executor, function, args, on_completion):
        self.executor = executor
        self.function = function
        self.args = args
        self.on_completion = on_completion

    def complete(self, value=None):
        """The job returned ``value``."""
        self._finish(Outcome(value=value))

    def fail(self, error):
        """The job raised ``error``."""
        self._finish(Outcome(error=error))

    def run(self):
        """Run the job's function here, now, and complete it with what it did."""
        try:
            value = self.function(*self.args)
        except Exception as error:
            self.fail(error)
        else:
            self.complete(value)

    def _finish(self, outcome):
        self.executor.jobs.remove(self)  # a job completes once
        self.on_completion(outcome)


class FakeExecutor:
    """Records submitted jobs in ``jobs`` (oldest first); nothing runs until
    the test completes a job, fails it or runs it."""

    def __init__(self):
        self.jobs = []
        self.submitted = 0

    def submit(self, function, args, on_completion, shared=False):
        self.submitted += 1
        self.jobs.append(FakeJob(self, function, args, on_completion))

    def run_all(self, limit=1000):
        """Run jobs, the ones they submit too, until none is left."""
        for _ in range(limit):
            if not self.jobs:
                return
            self.jobs[0].run()
        raise AssertionError(f"still {len(self.jobs)} jobs after {limit}")


def echo(request, exchange):
    """200 with the request's target as its body."""
    return Response(200, "Content-Type: text/plain\r\n", request.target.encode("latin-1"))


class FakeHandler:
    """A Handler that answers by target: ``routes`` maps a target to a
    function (request, exchange) -> Response or None (after
    ``exchange.run_blocking``); other targets get ``default``. Records the
    requests it was given, in order."""

    def __init__(self, routes=None, default=echo):
        self.routes = dict(routes or {})
        self.default = default
        self.requests = []

    def handle(self, request, exchange):
        self.requests.append(request)
        return self.routes.get(request.target, self.default)(request, exchange)


class FakeAccessLog:
    """Records each response logged as (client, request line, status, body bytes)."""

    def __init__(self):
        self.lines = []
        self.seconds = []  # the time each took, in the same order

    def log(self, client, request, request_line, status, body_bytes, seconds=0.0):
        self.lines.append((client, request_line, status, body_bytes))
        self.seconds.append(seconds)


class FakeErrorLog:
    """A ``log_error`` that records (message, error) pairs."""

    def __init__(self):
        self.entries = []

    def __call__(self, message, error=None):
        self.entries.append((message, error))

    @property
    def errors(self):
        return [error for _, error in self.entries]
