"""Unit tests for the executor: blocking jobs run on worker threads, and their
outcomes come back to the loop thread.

The reactor runs on the test's own thread; each test turns it until the
completions it expects have arrived, with a generous deadline.
"""

import collections
import threading
import time

import pytest

from reactor_http.loop.executor import BlockingExecutor, Outcome
from reactor_http.loop.reactor import Reactor

# Only reached when something is broken.
GENEROUS = 10.0


@pytest.fixture
def reactor():
    loop = Reactor()
    yield loop
    loop.close()


@pytest.fixture
def executor(reactor):
    pool = BlockingExecutor(reactor, threads=4)
    yield pool
    pool.shutdown()
    # Let running jobs finish before the reactor (and its waker) is closed,
    # so no late completion writes to a closed descriptor.
    pool._pool.shutdown(wait=True)


def run_until(reactor, condition):
    """Turn the loop until condition() holds; fail after a generous deadline."""
    deadline = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < deadline, "the completions did not arrive"
        reactor.run_once(max_timeout=0.1)


class Completions:
    """An on_completion callback that records each outcome, the thread it ran
    on, and the executor's jobs_in_flight at that moment."""

    def __init__(self, executor):
        self._executor = executor
        self.outcomes = []
        self.threads = []
        self.in_flight_seen = []

    def __call__(self, outcome):
        self.outcomes.append(outcome)
        self.threads.append(threading.get_ident())
        self.in_flight_seen.append(self._executor.jobs_in_flight)

    def __len__(self):
        return len(self.outcomes)


def test_value_comes_back_as_an_outcome_on_the_loop_thread(reactor, executor):
    """The job's return value arrives in an Outcome, delivered on the thread
    that runs the loop, with non-negative queue and run times."""
    completions = Completions(executor)
    executor.submit(lambda left, right: left + right, (2, 3), completions)
    run_until(reactor, lambda: len(completions) == 1)

    outcome = completions.outcomes[0]
    assert isinstance(outcome, Outcome)
    assert outcome.value == 5
    assert outcome.error is None
    assert outcome.waited >= 0
    assert outcome.ran >= 0
    assert completions.threads == [threading.get_ident()]


class NotAnOrdinaryError(BaseException):
    """Not even an Exception: the executor must still turn it into a result."""


@pytest.mark.parametrize("error", [FileNotFoundError(2, "No such file"), NotAnOrdinaryError("odd")],
                         ids=["OSError", "BaseException"])
def test_exception_comes_back_as_an_outcome_on_the_loop_thread(reactor, executor, error):
    """An executor failure is a result, not a crash: the very exception object
    the job raised arrives as Outcome.error, on the loop thread."""

    def failing_job():
        raise error

    completions = Completions(executor)
    executor.submit(failing_job, (), completions)
    run_until(reactor, lambda: len(completions) == 1)

    outcome = completions.outcomes[0]
    assert outcome.error is error
    assert outcome.value is None
    assert outcome.waited >= 0
    assert outcome.ran >= 0
    assert completions.threads == [threading.get_ident()]
    assert executor.jobs_in_flight == 0


def test_jobs_in_flight_counts_up_and_back_to_zero(reactor, executor):
    """jobs_in_flight rises with each submit and falls, before the completion
    is called, as each outcome is delivered."""
    release = threading.Event()
    completions = Completions(executor)
    assert executor.jobs_in_flight == 0
    for number in range(3):
        executor.submit(release.wait, (GENEROUS,), completions)
        assert executor.jobs_in_flight == number + 1

    reactor.run_once(max_timeout=0)
    assert executor.jobs_in_flight == 3  # the jobs are held: nothing completed
    assert len(completions) == 0

    release.set()
    run_until(reactor, lambda: len(completions) == 3)
    assert executor.jobs_in_flight == 0
    assert sorted(completions.in_flight_seen) == [0, 1, 2]
    assert [outcome.value for outcome in completions.outcomes] == [True, True, True]


def test_many_concurrent_jobs_each_complete_exactly_once(reactor, executor):
    """Hundreds of jobs across the pool: every one completes once, with its
    own value, and nothing completes twice."""
    job_count = 300
    completions = Completions(executor)
    for number in range(job_count):
        executor.submit(lambda value: value * value, (number,), completions)
    assert executor.jobs_in_flight == job_count

    run_until(reactor, lambda: len(completions) >= job_count)
    for _ in range(3):
        reactor.run_once(max_timeout=0)  # a duplicate would arrive here
    values = collections.Counter(outcome.value for outcome in completions.outcomes)
    assert values == collections.Counter(number * number for number in range(job_count))
    assert len(completions) == job_count
    assert all(outcome.error is None for outcome in completions.outcomes)
    assert set(completions.threads) == {threading.get_ident()}
    assert executor.jobs_in_flight == 0


def test_jobs_run_on_executor_threads_not_the_loop_thread(reactor, executor):
    """Blocking work runs on the pool's threads, named "executor...", never
    on the loop thread."""

    def where_am_i():
        thread = threading.current_thread()
        return thread.name, thread.ident

    completions = Completions(executor)
    for _ in range(8):
        executor.submit(where_am_i, (), completions)
    run_until(reactor, lambda: len(completions) == 8)

    for outcome in completions.outcomes:
        name, ident = outcome.value
        assert name.startswith("executor")
        assert ident != threading.get_ident()


def test_shutdown_stops_accepting_jobs(reactor, executor):
    """After shutdown a submit is refused, is not counted as in flight, and
    never completes."""
    executor.shutdown()
    completions = Completions(executor)
    with pytest.raises(RuntimeError):
        executor.submit(lambda: "too late", (), completions)
    assert executor.jobs_in_flight == 0
    reactor.run_once(max_timeout=0)
    assert len(completions) == 0


def test_shutdown_drops_jobs_not_yet_started(reactor):
    """Jobs still queued at shutdown never run; the one already running
    finishes and its outcome is still delivered."""
    executor = BlockingExecutor(reactor, threads=1)
    release = threading.Event()
    started = threading.Event()
    queued_job_ran = threading.Event()
    completions = Completions(executor)
    try:
        executor.submit(lambda: (started.set(), release.wait(GENEROUS))[1], (), completions)
        executor.submit(queued_job_ran.set, (), completions)
        assert started.wait(GENEROUS)  # the only thread is busy; the second job waits

        executor.shutdown()
        release.set()
        run_until(reactor, lambda: len(completions) == 1)
        executor._pool.shutdown(wait=True)  # the worker has exited: nothing else will run
        reactor.run_once(max_timeout=0)
        assert completions.outcomes[0].value is True
        assert len(completions) == 1
        assert not queued_job_ran.is_set()
    finally:
        release.set()
        executor.shutdown()


class CountedJob:
    """A job that counts its runs and waits for ``release`` before returning
    what it was given, so the test decides when it ends."""

    def __init__(self):
        self.runs = 0
        self.release = threading.Event()

    def __call__(self, value):
        self.runs += 1
        self.release.wait(GENEROUS)
        return [value]  # a new object each run: sharing is seen by identity


def test_a_shared_job_runs_once_for_every_caller_waiting_for_it(reactor, executor):
    """Ten callers submit the same shared job with equal arguments while it
    runs: it runs once, counts once in flight, and every caller gets the very
    same outcome, on the loop thread."""
    job = CountedJob()
    completions = Completions(executor)
    for _ in range(10):
        executor.submit(job, ("/index.html",), completions, shared=True)
    assert executor.jobs_in_flight == 1

    job.release.set()
    run_until(reactor, lambda: len(completions) == 10)
    for _ in range(3):
        reactor.run_once(max_timeout=0)  # a second run's completions would arrive here
    assert job.runs == 1
    assert len(completions) == 10
    assert len({id(outcome) for outcome in completions.outcomes}) == 1
    assert completions.outcomes[0].value == ["/index.html"]
    assert set(completions.threads) == {threading.get_ident()}
    assert executor.jobs_in_flight == 0


def test_shared_jobs_with_different_arguments_or_unshared_run_separately(reactor, executor):
    """Sharing needs the same function and equal arguments, and both callers
    asking for it: anything else is a job of its own."""
    job = CountedJob()
    job.release.set()
    completions = Completions(executor)
    executor.submit(job, ("/a",), completions, shared=True)
    executor.submit(job, ("/b",), completions, shared=True)
    executor.submit(job, ("/a",), completions)  # not shared: runs anyway
    run_until(reactor, lambda: len(completions) == 3)
    assert job.runs == 3
    assert sorted(outcome.value[0] for outcome in completions.outcomes) == ["/a", "/a", "/b"]


def test_a_shared_job_submitted_after_the_last_one_completed_runs_again(reactor, executor):
    """Sharing is only with a job still in flight: once its outcome has been
    delivered, the same submit runs the job anew (what a cache refresh needs)."""
    job = CountedJob()
    job.release.set()
    completions = Completions(executor)
    executor.submit(job, ("/index.html",), completions, shared=True)
    run_until(reactor, lambda: len(completions) == 1)
    executor.submit(job, ("/index.html",), completions, shared=True)
    run_until(reactor, lambda: len(completions) == 2)
    assert job.runs == 2
    assert completions.outcomes[0] is not completions.outcomes[1]


def test_a_shared_failure_reaches_every_caller(reactor, executor):
    """The job's exception is the outcome of every caller that shared it."""
    error = FileNotFoundError(2, "No such file")
    release = threading.Event()

    def failing_job(path):
        release.wait(GENEROUS)
        raise error

    completions = Completions(executor)
    for _ in range(3):
        executor.submit(failing_job, ("/gone",), completions, shared=True)
    release.set()
    run_until(reactor, lambda: len(completions) == 3)
    assert [outcome.error for outcome in completions.outcomes] == [error, error, error]


def test_a_caller_that_raises_does_not_keep_the_outcome_from_the_others(reactor, executor):
    """One completion raising (a bug of its caller) still lets every other
    caller of the shared job have its outcome; the error then goes to the
    reactor, which logs it."""
    job = CountedJob()
    completions = Completions(executor)
    errors = []
    reactor.on_callback_error = lambda callback, error: errors.append(error)

    def broken(outcome):
        raise RuntimeError("a caller's bug")

    executor.submit(job, ("/x",), completions, shared=True)
    executor.submit(job, ("/x",), broken, shared=True)
    executor.submit(job, ("/x",), completions, shared=True)
    job.release.set()
    run_until(reactor, lambda: len(completions) == 2)
    assert job.runs == 1
    assert executor.jobs_in_flight == 0
    assert [str(error) for error in errors] == ["a caller's bug"]


def test_on_the_loop_nothing_is_shared(reactor):
    """--file-work-on-loop is a server without an executor: each job runs,
    blocking the loop, as it is asked for, shared or not (the walkthrough's
    experiment measures exactly that)."""
    executor = BlockingExecutor(reactor, threads=1, on_loop=True)
    runs = []
    completions = Completions(executor)
    try:
        for _ in range(3):
            executor.submit(runs.append, ("/index.html",), completions, shared=True)
        assert runs == ["/index.html"] * 3
        run_until(reactor, lambda: len(completions) == 3)
    finally:
        executor.shutdown()
