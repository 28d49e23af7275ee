"""What one server process is doing, as one plain dict: the snapshot that the
live page (dashboard.py) and the Prometheus metrics (metrics.py) are drawn from.

The numbers are the ones the server keeps anyway: the connections and their
states, the access log's counts, the executor's jobs, the cache's hits, the
reactor's own measurements (loop/reactor.py's LoopStats); and a few the
process is asked for, which are cheap on Linux (its resident memory from
/proc/self/statm, its descriptors from /proc/self/fd). Taking a snapshot walks
the open connections once (to count them by state), so it is done once a
second for the page and once per scrape for the metrics, never per request.

With --workers each process takes its own snapshots; workers.py's
WorkerBoard lets any of them answer for all (one line per worker).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..loop.reactor import Histogram

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..loop.reactor import Timer
    from .board import WorkerBoard
    from .server import Server

# How often a snapshot is taken for the live page and the worker board.
TICK_SECONDS = 1.0

# Response times, in seconds, from a request's first byte to its answer's
# last byte handed to the kernel: the buckets of the response-time histogram.
RESPONSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_FD_DIRECTORY = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


def resident_bytes() -> int | None:
    """The process's resident memory now (Linux), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def open_descriptors() -> int | None:
    try:
        return len(os.listdir(_FD_DIRECTORY)) - 1  # less the one listdir held open
    except OSError:
        return None


def snapshot(server: Server, worker: int = 0, take_peaks: bool = False) -> dict[str, Any]:
    """The process's state as plain values (JSON-ready). ``worker`` is its
    index under --workers (0 alone). With ``take_peaks``, reading the
    busiest turn and the worst lag starts them again: the ticks (below) take
    them, so each tick gets the worst of its second."""
    parts = server.parts
    reactor = parts.reactor
    stats = reactor.stats
    cache = parts.site.cache
    executor = parts.executor
    log = parts.access_log
    cpu = os.times()
    return {
        "worker": worker,
        "pid": os.getpid(),
        "version": __version__,
        "time": time.time(),
        "started": server.started_at_wall,
        "stopping": server.stop_requested,
        "connections": server.connections_by_state(),
        "accepted": server.accepted,
        "responses": log.responses,
        "body_bytes": log.body_bytes,
        "by_class": list(log.by_class) if log.by_class is not None else None,
        "response_seconds": _histogram(log.timings),
        "executor": {"threads": server.config.blocking_threads, "running": executor.jobs_in_flight,
                     "queued": executor.jobs_queued or 0},
        "cache": {"hits": cache.hits, "misses": cache.misses, "bytes": cache.bytes_used,
                  "entries": len(cache), "open_files": cache.open_files,
                  "limit_bytes": cache.max_bytes},
        "loop": {"turns": stats.turns, "busy_seconds": stats.busy_seconds,
                 "busiest_turn": stats.take_busiest() if take_peaks else stats.busiest_turn,
                 "worst_lag": stats.take_worst_lag() if take_peaks else stats.worst_lag,
                 "lag": _histogram(stats.lag),
                 "slow_callbacks": stats.slow_callbacks},
        "process": {"threads": threading.active_count(), "resident_bytes": resident_bytes(),
                    "open_fds": open_descriptors(), "cpu_seconds": cpu.user + cpu.system,
                    "max_fds": resource.getrlimit(resource.RLIMIT_NOFILE)[0]},
    }


def _histogram(histogram: Histogram | None) -> dict[str, Any] | None:
    if histogram is None:
        return None
    return {"bounds": histogram.bounds, "counts": list(histogram.counts), "sum": histogram.total,
            "count": histogram.count}


class Telemetry:
    """One process's ticks: a snapshot every TICK_SECONDS, posted to the
    worker board (with --workers) and handed to whoever listens (the live
    page's feed). Started only when something needs it (--dashboard-path,
    or --metrics-path with --workers); a server without either takes no
    snapshot at all. Loop thread only."""

    def __init__(self, server: Server, worker: int = 0, board: WorkerBoard | None = None):
        self.server = server
        self.worker = worker
        self.board = board
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._timer: Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = self.server.reactor.call_later(TICK_SECONDS, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self.server.reactor.cancel(self._timer)
            self._timer = None

    def _tick(self) -> None:
        self._timer = self.server.reactor.call_later(TICK_SECONDS, self._tick)
        own = snapshot(self.server, self.worker, take_peaks=True)
        if self.board is not None:
            self.board.post(self.worker, own)
        if self.listeners:
            every = self._with_others(own)
            for listener in list(self.listeners):
                listener(every)

    def current(self) -> list[dict[str, Any]]:
        """Every worker's state: this one's now, the others' as of their last
        post. What this worker reports is posted too, so that the board never
        holds less than was reported: a scrape answered by another worker a
        moment later cannot see a counter go back (Prometheus would read that
        as a restart)."""
        own = snapshot(self.server, self.worker)
        if self.board is not None:
            self.board.post(self.worker, own)
        return self._with_others(own)

    def _with_others(self, own: dict[str, Any]) -> list[dict[str, Any]]:
        if self.board is None:
            return [own]
        every = [own, *self.board.read_others(self.worker)]
        every.sort(key=lambda item: item["worker"])
        return every
