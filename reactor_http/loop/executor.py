"""The executor: a fixed pool of threads for work that blocks.

epoll and kqueue cannot tell us when a regular file is "ready": a disk read is
always reported ready and then blocks for as long as the disk takes. So
realpath, stat, open and read run here, on worker threads, and never on the
loop thread, where one slow disk would stall every connection.

A job is a plain function. Its outcome (a result or the exception it raised)
goes back to the loop thread through ``Reactor.call_soon_threadsafe``, the one
thread-safe call in the design, and the loop thread calls the job's completion
callback there. Worker threads never touch a socket or a connection.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable
from typing import Any


class Outcome:
    """What a job produced: ``value``, or the ``error`` it raised; and how long
    it waited in the queue and ran, for anyone who wants to watch."""

    __slots__ = ("value", "error", "waited", "ran")

    def __init__(self, value: Any = None, error: BaseException | None = None, waited: float = 0.0,
                 ran: float = 0.0):
        self.value = value
        self.error = error
        self.waited = waited
        self.ran = ran


class BlockingExecutor:
    """Runs blocking jobs on ``threads`` worker threads, completes them on the loop.

    Two settings exist for the experiment in docs/walkthrough.md, never for
    production: ``disk_delay`` makes every job sleep that many seconds before
    it starts (a slow disk, simulated), and ``on_loop`` runs every job on the
    loop thread itself, as a server without an executor would, so that one
    slow file stalls every connection.
    """

    def __init__(self, reactor, threads: int = 8, disk_delay: float = 0.0, on_loop: bool = False):
        self._reactor = reactor
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="executor")
        self._disk_delay = disk_delay
        self._on_loop = on_loop
        self.jobs_in_flight = 0  # read and written on the loop thread only
        # (job, args) -> the completions waiting for that shared job's outcome.
        self._shared: dict[tuple, list[Callable[[Outcome], Any]]] = {}

    def submit(self, job: Callable[..., Any], args: tuple,
               on_completion: Callable[[Outcome], Any], shared: bool = False) -> None:
        """Run ``job(*args)`` on a worker; later call ``on_completion(outcome)``
        on the loop thread. Loop thread only. Raises RuntimeError after
        ``shutdown()``.

        With ``shared``, the job is one whose result any number of callers
        may use (``args`` must be hashable): if the same job with equal
        arguments is already queued or running, it is not started again, and
        ``on_completion`` gets that job's outcome too. When a popular file's
        cache entry expires under load, the hundreds of requests that find
        it gone in the next moments make one stat, not hundreds."""
        if not shared or self._on_loop:
            # (On the loop, as in a server without an executor, each job runs
            # as it is asked for: the experiment shows what that costs.)
            self._start(job, args, on_completion)
            return
        key = (job, args)
        waiting = self._shared.get(key)
        if waiting is not None:
            waiting.append(on_completion)
            return
        self._shared[key] = [on_completion]
        try:
            self._start(job, args, functools.partial(self._complete_shared, key))
        except BaseException:
            del self._shared[key]  # refused: nobody will wait for it
            raise

    def _start(self, job: Callable[..., Any], args: tuple, on_completion: Callable[[Outcome], Any]) -> None:
        if self._on_loop:
            # The experiment: block the loop thread for as long as the job
            # takes. The completion still runs later, as it would otherwise.
            self.jobs_in_flight += 1
            self._run(job, args, on_completion, time.monotonic(), self._reactor.call_soon)
            return
        self._pool.submit(self._run, job, args, on_completion, time.monotonic(),
                          self._reactor.call_soon_threadsafe)
        # Counted only once accepted: a refused job will never complete. The
        # completion cannot run before this line: it runs on this thread.
        self.jobs_in_flight += 1

    @property
    def jobs_queued(self) -> int | None:
        """Jobs submitted that no worker has started yet (for the status page).
        The pool keeps no public count, so this reads its queue, if it has one."""
        queue = getattr(self._pool, "_work_queue", None)
        return queue.qsize() if queue is not None else None

    def _run(self, job, args, on_completion, submitted_at, complete_on_loop):
        # This runs on a worker thread (or, in the experiment, on the loop).
        started = time.monotonic()
        try:
            if self._disk_delay:
                time.sleep(self._disk_delay)
            outcome = Outcome(value=job(*args))
        except BaseException as error:  # any failure is a result, not a crash
            outcome = Outcome(error=error)
        outcome.waited = started - submitted_at
        outcome.ran = time.monotonic() - started
        complete_on_loop(self._complete, on_completion, outcome)

    def _complete(self, on_completion, outcome):
        # Back on the loop thread.
        self.jobs_in_flight -= 1
        on_completion(outcome)

    def _complete_shared(self, key: tuple, outcome: Outcome) -> None:
        # Every caller waiting for the shared job gets its outcome, even if
        # one of them raises (the first such error is raised afterwards).
        failure = None
        for on_completion in self._shared.pop(key):
            try:
                on_completion(outcome)
            except Exception as error:
                failure = failure or error
        if failure is not None:
            raise failure

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking jobs; jobs not yet started are dropped. With ``wait``,
        also wait for the running ones to finish. Loop thread."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def shutdown_and_wait(self, timeout: float) -> bool:
        """Stop taking jobs and wait at most ``timeout`` seconds for the running
        ones. Returns True if every worker thread has ended."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for thread in list(getattr(self._pool, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in getattr(self._pool, "_threads", ()))
