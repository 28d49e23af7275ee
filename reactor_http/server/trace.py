"""``--trace``: watch the reactor, the connections and the executor at work.

Tracing is not sprinkled through the code. ``install`` wraps a handful of
methods (the reactor's dispatch and interest calls, its timers, the
connection's one state-changing method and its one way in, the executor's
submit and completion) with versions that print a line and then do the real
work. When tracing is off this module is not even imported, so it costs
nothing at all.

Each line: seconds on the monotonic clock, the thread, the file descriptor,
what happened. ``curl localhost:8080/`` tells the story of one request:

    12.001234 MainThread  fd=7  accept       connection from 127.0.0.1
    12.001301 MainThread  fd=7  interest     register read
    12.001822 MainThread  fd=7  ready        readable
    12.001900 MainThread  fd=7  state        idle -> reading-request (bytes of a request arrived)
    ...

Categories, for ``--trace=conn,executor``: reactor (readiness and interest),
timer, conn (accept, state transitions, close), executor.
"""

import functools
import sys
import threading
import time

from ..connection import connection as connection_module
from ..connection import states as states_module
from ..loop import executor as executor_module
from ..loop import reactor as reactor_module
from . import output

_EVENT_NAMES = {
    reactor_module.EVENT_READ: "read",
    reactor_module.EVENT_WRITE: "write",
    reactor_module.EVENT_READ | reactor_module.EVENT_WRITE: "read+write",
}


class Tracer:
    """Writes trace lines to a stream (stderr by default)."""

    def __init__(self, categories, stream=None):
        self.categories = categories
        self.stream = stream if stream is not None else sys.stderr
        # The connection the loop thread is working for right now, so that
        # lines about timers and executor jobs can name its descriptor.
        self.current_fd = -1

    def line(self, fd, what, detail):
        if fd == -1 and threading.current_thread() is threading.main_thread():
            fd = self.current_fd
        text = (f"{time.monotonic():.6f} {threading.current_thread().name:<11} "
                f"fd={fd:<4} {what:<12} {detail}\n")
        output.write(self.stream, text)


def _fd_of(fileobj):
    try:
        return fileobj if isinstance(fileobj, int) else fileobj.fileno()
    except (OSError, ValueError):
        return -1


def install(categories, stream=None):
    """Wrap the traced methods (once per process). Returns the Tracer."""
    tracer = Tracer(categories, stream)
    _follow_current_connection(tracer)
    if "reactor" in categories:
        _trace_reactor(tracer)
    if "timer" in categories:
        _trace_timers(tracer)
    if "conn" in categories:
        _trace_connections(tracer)
    if "executor" in categories:
        _trace_executor(tracer)
    return tracer


def _follow_current_connection(tracer):
    """Keep tracer.current_fd up to date as the loop turns to a connection."""
    Connection = connection_module.Connection

    def make(original):
        def traced(self, *args):
            tracer.current_fd = _fd_of(self.sock)
            try:
                return original(self, *args)
            finally:
                tracer.current_fd = -1
        return traced

    # Every way into a connection passes through _guarded, but readiness,
    # which does what _guarded does inline (connection.py says why).
    _wrap(Connection, "_guarded", make)
    _wrap(Connection, "on_ready", make)


def _wrap(cls, name, make_wrapper):
    original = getattr(cls, name)
    wrapper = make_wrapper(original)
    functools.update_wrapper(wrapper, original)
    setattr(cls, name, wrapper)


def _trace_reactor(tracer):
    Reactor = reactor_module.Reactor

    def dispatch(original):
        def traced(self, events):
            for key, mask in events:
                name = "readable" if mask == reactor_module.EVENT_READ else (
                    "writable" if mask == reactor_module.EVENT_WRITE else "readable+writable")
                if key.fileobj is not self._waker:
                    tracer.line(key.fd, "ready", name)
            return original(self, events)
        return traced

    def interest(verb):
        def make(original):
            def traced(self, fileobj, *rest):
                detail = verb if verb == "unregister" else f"{verb} {_EVENT_NAMES.get(rest[0], rest[0])}"
                tracer.line(_fd_of(fileobj), "interest", detail)
                return original(self, fileobj, *rest)
            return traced
        return make

    def on_wake(original):
        def traced(self, mask):
            tracer.line(_fd_of(self._waker), "wake-up", "another thread handed work to the loop")
            return original(self, mask)
        return traced

    _wrap(Reactor, "_dispatch", dispatch)
    _wrap(Reactor, "register", interest("register"))
    _wrap(Reactor, "modify", interest("modify"))
    _wrap(Reactor, "unregister", interest("unregister"))
    _wrap(Reactor, "_on_wake", on_wake)


def _callback_name(callback):
    owner = getattr(callback, "__self__", None)
    name = getattr(callback, "__name__", repr(callback))
    return f"{type(owner).__name__}.{name}" if owner is not None else name


def _owner_fd(callback):
    owner = getattr(callback, "__self__", None)
    sock = getattr(owner, "sock", None)
    return _fd_of(sock) if sock is not None else -1


def _trace_timers(tracer):
    Reactor = reactor_module.Reactor

    def call_later(original):
        def traced(self, delay, callback, *args):
            fd = _owner_fd(callback)
            name = _callback_name(callback)
            tracer.line(fd, "timer", f"scheduled {name} in {delay:.3f} s")

            def fire(*fire_args):
                tracer.line(fd, "timer", f"fired {name}")
                return callback(*fire_args)
            fire.trace_fd, fire.trace_name = fd, name
            return original(self, delay, fire, *args)
        return traced

    def cancel(original):
        def traced(self, timer):
            if not timer.cancelled:
                tracer.line(getattr(timer.callback, "trace_fd", -1), "timer",
                            f"cancelled {getattr(timer.callback, 'trace_name', '')}")
            return original(self, timer)
        return traced

    _wrap(Reactor, "call_later", call_later)
    _wrap(Reactor, "cancel", cancel)


def _trace_connections(tracer):
    Connection = connection_module.Connection
    transitions = states_module.TRANSITIONS

    def enter(original):
        def traced(self, new_state):
            old_state = self.state
            original(self, new_state)
            why = transitions.get((old_state, new_state), "?")
            tracer.line(_fd_of(self.sock), "state", f"{old_state.value} -> {new_state.value} ({why})")
        return traced

    def start(original):
        def traced(self):
            tracer.line(_fd_of(self.sock), "accept", f"connection from {self.client}")
            return original(self)
        return traced

    def close(original):
        def traced(self):
            if self.state is not states_module.State.CLOSED:
                tracer.line(_fd_of(self.sock), "close", f"connection from {self.client}")
            return original(self)
        return traced

    _wrap(Connection, "_enter", enter)
    _wrap(Connection, "start", start)
    _wrap(Connection, "close", close)  # accepting is traced through Connection.start


def _trace_executor(tracer):
    BlockingExecutor = executor_module.BlockingExecutor

    def submit(original):
        def traced(self, job, args, on_completion, shared=False):
            fd = tracer.current_fd
            if shared and (job, args) in self._shared:
                tracer.line(fd, "executor", f"join the {job.__name__} already in flight")
            else:
                tracer.line(fd, "executor", f"submit {job.__name__} ({self.jobs_in_flight + 1} in flight)")

            def completed(outcome):
                tracer.current_fd = fd
                result = "error " + type(outcome.error).__name__ if outcome.error is not None else "done"
                tracer.line(fd, "executor", f"{job.__name__} {result}: waited {outcome.waited * 1e3:.2f} ms, "
                                            f"ran {outcome.ran * 1e3:.2f} ms")
                return on_completion(outcome)
            return original(self, job, args, completed, shared)
        return traced

    def run(original):
        def traced(self, job, args, *rest):
            where = ("on the loop thread, blocking it" if threading.current_thread() is threading.main_thread()
                     else "on a worker thread")
            tracer.line(-1, "executor", f"running {job.__name__} {where}")
            return original(self, job, args, *rest)
        return traced

    _wrap(BlockingExecutor, "submit", submit)
    _wrap(BlockingExecutor, "_run", run)
