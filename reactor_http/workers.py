"""Several worker processes on one port, and the parent that looks after them.

One reactor uses one core. To use more, ``--workers N`` forks N processes,
each a complete server with its own reactor, executor and cache, all
accepting on the same port. Where the platform has SO_REUSEPORT each worker
listens on a socket of its own and the kernel spreads new connections among
them evenly; elsewhere they all accept from one socket they inherit from the
parent.

The parent serves nothing. It starts the workers, starts a new one when one
dies, and on SIGTERM or SIGINT passes the signal on to every worker and
exits 0 once they all have.
"""

import os
import signal
import socket
import sys
import time

from .logs import log_error
from .server import listener_url, open_listener

# A worker that dies this soon after starting is failing, not crashing now
# and then: after this many such deaths in a row the parent gives up.
EARLY_DEATH_SECONDS = 1.0
EARLY_DEATHS_ALLOWED = 5


def worker_count(text):
    """N, or "auto" for one worker per CPU."""
    if text == "auto":
        return os.cpu_count() or 1
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1 or 'auto', not {value}")
    return value


def supervise(config, count, serve):
    """Run ``count`` workers, each calling ``serve(config, listener)`` in its
    own process, until a signal stops them. Returns the exit status."""
    reuse_port = config.reuse_port and hasattr(socket, "SO_REUSEPORT")
    if reuse_port:
        # Bound, not listening: it keeps the port ours (and tells us which
        # port "0" became) while the workers' own sockets listen on it.
        reservation = open_listener(config.bind, config.port, reuse_port=True, listen=False)
        port = reservation.getsockname()[1]
        shared = None
    else:
        shared = open_listener(config.bind, config.port)
        port = shared.getsockname()[1]
        reservation = shared
    print(f"Serving {os.path.realpath(config.root)} at {listener_url(reservation)} "
          f"({count} workers, {'SO_REUSEPORT' if reuse_port else 'one shared socket'}). "
          f"Press Ctrl+C to stop.", flush=True)

    def start_worker():
        pid = os.fork()
        if pid:
            return pid
        # In the child: a server of its own on the shared port.
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            listener = shared if shared is not None else open_listener(
                config.bind, port, reuse_port=True)
            status = serve(config, listener)
        except BaseException as error:  # noqa: B036 - a worker reports, then exits
            log_error("worker failed", error)
        finally:
            sys.stdout.flush()
            os._exit(status)

    workers = {}  # pid -> start time
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for _ in range(count):
        workers[start_worker()] = time.monotonic()

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
        workers[start_worker()] = time.monotonic()
    reservation.close()
    print("Stopped.", flush=True)
    return 1 if "failed" in stopping else 0
