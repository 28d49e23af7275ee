"""Several worker processes on one port, and the parent that looks after them.

One reactor uses one core. To use more, ``--workers N`` forks N processes,
each a complete server with its own reactor, executor and cache, all
accepting on the same listeners. Where the platform has SO_REUSEPORT each
worker listens on TCP sockets of its own and the kernel spreads new
connections among them evenly; elsewhere (and for Unix and socket-activated
listeners) they all accept from the sockets they inherit from the parent.

The parent serves nothing. It starts the workers, prints the banner once
each is listening (so that a client started by the banner is not refused),
starts a new one when one dies, and passes SIGTERM and SIGINT on to every worker: the first makes each
worker stop gracefully (finishing its responses), a second makes them stop at
once. The parent exits 0 once they all have.
"""

import os
import signal
import sys
import time

from . import output
from .banner import banner
from .board import WorkerBoard
from .listeners import for_worker, is_listening, listener_url
from .logs import log_error

# A worker that dies this soon after starting is failing, not crashing now
# and then: after this many such deaths in a row the parent gives up.
EARLY_DEATH_SECONDS = 1.0
EARLY_DEATHS_ALLOWED = 5


def supervise(config, count, listeners, tls_context, serve, selector_name):
    """Run ``count`` workers, each calling ``serve(config, its_listeners,
    tls_context)`` in its own process, until a signal stops them. Returns the
    exit status."""
    shared = all(is_listening(listener) for listener in listeners)
    urls = [listener_url(listener, tls=tls_context is not None) for listener in listeners]
    lines = banner(config, os.path.realpath(config.root), urls, selector_name, count,
                   "shared sockets" if shared else "SO_REUSEPORT")
    # Each first worker writes one byte here once its sockets listen.
    ready_reader, ready_writer = os.pipe()
    # Where the workers post their snapshots for each other (board.py), when
    # something shows them all: the metrics, the live page.
    board = WorkerBoard(count) if config.metrics_path or config.dashboard_path else None

    def start_worker(index):
        pid = os.fork()
        if pid:
            return pid
        # In the child: a server of its own on the same listeners.
        status = 1
        try:
            # Not the parent's handlers (they would relay to this worker's
            # siblings); serve() sets the worker's own.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            if ready_writer is not None:  # one of the first: the parent waits for it
                os.close(ready_reader)
            own = [for_worker(listener) for listener in listeners]
            for listener in listeners:
                if listener not in own:
                    listener.close()  # the parent's reservation: the worker has its own socket
            if ready_writer is not None:
                os.write(ready_writer, b".")
                os.close(ready_writer)
            status = serve(config, own, tls_context, worker=index, board=board)
        except BaseException as error:  # noqa: B036 - a worker reports, then exits
            log_error("worker failed", error)
        finally:
            sys.stdout.flush()
            os._exit(status)

    workers = {}  # pid -> start time
    indexes = {}  # pid -> the worker's index (a replacement takes the index of the one it replaces)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        # No worker will be started again, so the parent's sockets are not
        # needed: closing them lets the listeners close for good once the
        # workers close theirs, and new connections are refused.
        for listener in listeners:
            listener.close()
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def pass_on(signum, frame):
        # SIGHUP (reopen the access log) and SIGUSR1 (status) are the
        # workers' business: the parent only relays them.
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def on_hangup(signum, frame):
        # The terminal it was started from has closed: every worker stops,
        # and none is started again (see cli.py's signals).
        on_signal(signal.SIGTERM, frame)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hangup if output.started_in_terminal() else pass_on)
        signal.signal(signal.SIGUSR1, pass_on)
    for index in range(count):
        pid = start_worker(index)
        workers[pid], indexes[pid] = time.monotonic(), index
    os.close(ready_writer)
    ready_writer = None  # workers started later have nobody waiting for them
    _wait_until_listening(ready_reader, count)
    output.write(sys.stdout, "".join(line + "\n" for line in lines))  # in one write, as serve() does

    early_deaths = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = workers.pop(pid, None)
        if started is None or stopping:
            continue
        how = (f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status)
               else f"status {os.waitstatus_to_exitcode(status)}")
        early_deaths = early_deaths + 1 if time.monotonic() - started < EARLY_DEATH_SECONDS else 0
        if early_deaths > EARLY_DEATHS_ALLOWED:
            log_error(f"worker {pid} exited ({how}); workers keep failing at start, giving up")
            on_signal(signal.SIGTERM, None)
            stopping.append("failed")
            continue
        log_error(f"worker {pid} exited ({how}); starting another")
        index = indexes.pop(pid, 0)
        pid = start_worker(index)
        workers[pid], indexes[pid] = time.monotonic(), index
    for listener in listeners:
        listener.close()
    output.write(sys.stdout, "Stopped.\n")
    return 1 if "failed" in stopping else 0


def _wait_until_listening(ready_reader, count):
    """Read a byte from each of ``count`` workers. A worker that dies first
    closes its end without writing: once every end is closed the read finds
    the end of the pipe, and the parent goes on (to notice the death)."""
    received = 0
    try:
        while received < count:
            chunk = os.read(ready_reader, count - received)
            if not chunk:
                break
            received += len(chunk)
    finally:
        os.close(ready_reader)
