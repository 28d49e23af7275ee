#!/usr/bin/env python3
"""Many connections, few threads: reactor_http against a thread per connection, measured.

This is the experiment behind the reactor's reason to exist. A server that spends
a thread on each connection pays for it in threads (one per connection, each with
a stack and a kernel task), in memory, and in the scheduler's and the GIL's work
of handing the CPU from thread to thread. A reactor holds every connection on one
thread and pays per *event* instead, but only if its readiness backend lets it:
select() and poll() hand the kernel the whole list of descriptors on every call,
so their cost per call grows with the connections held, ready or not; epoll (and
kqueue) keep the interest list in the kernel and return only what is ready.

What one run does:

1. Starts a server pinned to one CPU (`taskset -c 0`): reactor_http, or the
   baseline, the standard library's ThreadingHTTPServer speaking HTTP/1.1 (a
   thread per connection; `concurrency_run.py baseline-server` below).
2. Starts the load client in a process of its own, pinned to the other CPU
   (`concurrency_run.py client`): non-blocking sockets on epoll, which ramps the
   open connections through steps (10, 100, 1,000, 5,000, 10,000). Most
   connections ask for a 1 KiB file at a set rate on a kept-alive connection;
   a share is idle (one request, then silent) and a share is slow (each request
   head dribbled out over about a second). After each ramp, the step is held for
   --step-seconds and measured: request rate, latency percentiles, errors.
3. Samples the server every 100 ms with psutil (threads, descriptors, RSS, CPU)
   and, at the edges of each measured window, its context switches.

`--live` serves the live page from every reactor_http run (`--dashboard-path
/_reactor`) and prints its address, so that a class watches the connections,
the threads and the loop's lag move as the ramp happens; with `--live-port`
every reactor_http run listens on that one port, and one open page follows
them all (its feed reconnects by itself as each run starts).

`--selectors` runs reactor_http once per readiness backend (the baseline once);
`--experiment blocking-loop` is the walkthrough's experiment instead: reactor_http
with a slow disk simulated (`--disk-delay`, the file cache off), once with its
file work on the executor's threads and once on the loop thread itself
(`--file-work-on-loop`), to show in latency what blocking the loop costs.

Commands (from the repository's root; docs/concurrency.md has the figures):

    # what docs/concurrency.md shows (about 11 minutes on a 2-core machine)
    /tmp/benchvenv/bin/python scripts/concurrency_run.py --experiment all \\
        --selectors epoll,poll,select --csv docs/concurrency.csv --png docs/concurrency.png \\
        --json /tmp/concurrency.json --markdown /tmp/concurrency-tables.md

    # a smoke run: steps of 10 and 50 connections, 2 s each (what the test runs)
    /tmp/benchvenv/bin/python scripts/concurrency_run.py --quick --experiment all

    # the tables, the CSV and the plot again from a saved report, measuring nothing
    /tmp/benchvenv/bin/python scripts/concurrency_run.py --from-json concurrency.json \\
        --png docs/concurrency.png

Needs Linux and psutil (pip install psutil, or pip install -e '.[bench]');
matplotlib for --png (optional); taskset (util-linux) to pin, or it runs unpinned.
Every server runs with --keepalive-timeout and --header-timeout of 300 s, so that
idle clients are held for the whole run rather than timed out: the question here
is what holding connections costs, not how soon a server drops them.
"""

import argparse
import collections
import csv
import dataclasses
import datetime
import enum
import errno
import heapq
import importlib.util
import itertools
import json
import math
import os
import random
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from harness import REPO
from harness.http import Mismatch, frame_response, request_bytes
from harness.report import (
    KIB,
    MIB,
    format_count,
    format_number,
    load_json,
    machine_description,
    render_table,
    save_json,
    write_report,
)
from harness.sampling import ProcessSampler, find_program, parse_cpu_list, pinned
from harness.server import (
    ReactorHttpProcess,
    ServerError,
    ServerProcess,
    finish_helper,
    free_port,
    reactor_http_version,
)

from reactor_http.server.limits import CACHE_OPEN_FILES, SPARE_DESCRIPTORS, raise_descriptor_limit, share_out

DEFAULT_STEPS = (10, 100, 1000, 5000, 10000)
QUICK_STEPS = (10, 50)
SERVERS = ("reactor_http", "threads")
SERVER_LABELS = {
    "reactor_http": "reactor_http",
    "threads": "http.server, thread per connection",
}
SELECTORS = ("epoll", "poll", "select")
EXPERIMENTS = ("ramp", "blocking-loop", "all")

# The file every request asks for: small, so that the figures are about
# connections and events, not bytes.
FILE_PATH = "/index.html"
FILE_SIZE = 1 * KIB

SAMPLE_SECONDS = 0.1
# Idle clients say nothing for the whole run; neither server may time them out.
HOLD_TIMEOUT_SECONDS = 300
# reactor_http's executor threads (its --blocking-threads default) and its loop thread.
EXECUTOR_THREADS = 8
REACTOR_THREADS = 1 + EXECUTOR_THREADS
# reactor_http gets --max-connections this much above the biggest step, so
# that it is never at its own limit.
CONNECTION_MARGIN = 100
# A step during which other work took this much of the server's CPU is flagged.
NOISY_PERCENT = 10.0
# The slow clients send each request head in this many pieces.
SLOW_PIECES = 5


# -- the machine ------------------------------------------------------------------------------

def reactor_capacity(connections, descriptor_limit):
    """How many connections reactor_http holds when given --max-connections
    `connections` + CONNECTION_MARGIN under this hard descriptor limit. It
    raises its soft limit to a descriptor per connection, the cache's open
    files and some spare, and a third more for the files being sent, then
    shares it out (raise_descriptor_limit and share_out in
    reactor_http.server.limits).
    The server says so itself at start when it cannot hold them all; this is
    only the check before starting anything."""
    wanted = connections + CONNECTION_MARGIN
    soft = min((wanted + CACHE_OPEN_FILES + SPARE_DESCRIPTORS) * 4 // 3, descriptor_limit)
    return share_out(soft, SPARE_DESCRIPTORS // 2, wanted, EXECUTOR_THREADS).connections


def steps_that_fit(steps, descriptor_limit):
    """Split steps into those this descriptor limit (per process) allows and
    a message for each one it does not. The client needs one descriptor per
    connection, the baseline one more, reactor_http two (see reactor_capacity)."""
    fitting, messages = [], []
    for step in steps:
        client_needs = step + SPARE_DESCRIPTORS
        if client_needs > descriptor_limit or reactor_capacity(step, descriptor_limit) < step:
            messages.append(
                f"this machine allows {descriptor_limit:,} descriptors per process (hard "
                f"RLIMIT_NOFILE); step {step:,} needs {client_needs:,} in the client and about "
                f"{(step + CACHE_OPEN_FILES + SPARE_DESCRIPTORS) * 4 // 3:,} in reactor_http (one a "
                f"connection, its cache's, and a quarter for the files it sends): skipped (raise the "
                f"hard limit, e.g. `ulimit -Hn`, in /etc/security/limits.conf or with prlimit)")
        else:
            fitting.append(step)
    return fitting, messages


def _read_number(path):
    try:
        with open(path) as file:
            text = file.read().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text) if text.isdigit() else None


def thread_limits():
    """What limits the threads one process can make, as {name: value}: the
    kernel's threads-max and pid_max (every thread takes a pid), the user's
    RLIMIT_NPROC (processes and threads together; not enforced for root), the
    cgroup's pids.max, and the tasks that exist already."""
    limits = {
        "kernel.threads-max": _read_number("/proc/sys/kernel/threads-max"),
        "kernel.pid_max": _read_number("/proc/sys/kernel/pid_max"),
        "cgroup pids.max": (_read_number("/sys/fs/cgroup/pids.max")
                            or _read_number("/sys/fs/cgroup/pids/pids.max")),
    }
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    limits["RLIMIT_NPROC"] = None if soft == resource.RLIM_INFINITY else soft
    try:
        with open("/proc/loadavg") as file:
            limits["tasks now"] = int(file.read().split()[3].split("/")[1])
    except (OSError, IndexError, ValueError):
        limits["tasks now"] = None
    return limits


def thread_warnings(biggest_step, limits):
    """Messages saying which limit stops the baseline making a thread per
    connection at the biggest step, if any would. Not an error: a server
    that cannot make its threads is one of the results."""
    needed = biggest_step + 16
    in_use = limits.get("tasks now") or 0
    messages = []
    for name in ("kernel.threads-max", "kernel.pid_max", "cgroup pids.max", "RLIMIT_NPROC"):
        limit = limits.get(name)
        if limit is None:
            continue
        room = limit - in_use
        if name == "RLIMIT_NPROC" and os.geteuid() == 0:
            continue  # root is exempt
        if room < needed:
            messages.append(
                f"the baseline needs a thread per connection, {needed:,} at step {biggest_step:,}, "
                f"but {name} is {limit:,} with {in_use:,} tasks running already: expect it to "
                f"fail to start threads (reported as errors, not a crash)")
    return messages


def cpu_plan(server_cpus, client_cpus, log):
    """The taskset CPU lists for server and client, or (None, None) to run
    unpinned when taskset is missing."""
    if find_program("taskset") is None:
        log("taskset not found (apt-get install util-linux): server and client run unpinned, "
            "sharing whatever CPUs the scheduler gives them")
        return None, None
    available = sorted(os.sched_getaffinity(0))
    for flag, cpus in (("--server-cpus", server_cpus), ("--client-cpus", client_cpus)):
        if not set(parse_cpu_list(cpus)) <= set(available):
            raise SystemExit(f"concurrency_run.py: error: {flag} {cpus}: this machine has CPUs "
                             f"{','.join(map(str, available))}")
    if set(parse_cpu_list(server_cpus)) & set(parse_cpu_list(client_cpus)):
        log("warning: server and client share a CPU; the client's work shows in the server's latency")
    return server_cpus, client_cpus


def build_document_root(directory):
    """The one file every request asks for: FILE_SIZE bytes of HTML."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    head = b"<!doctype html>\n<title>concurrency_run</title>\n<p>"
    tail = b"</p>\n"
    body = head + b"x" * (FILE_SIZE - len(head) - len(tail)) + tail
    path = os.path.join(directory, FILE_PATH.lstrip("/"))
    with open(path, "wb") as file:
        file.write(body)
    os.chmod(path, 0o644)
    return directory


# -- the baseline: a thread per connection ------------------------------------------------------

def baseline_server_main(argv):
    """`concurrency_run.py baseline-server`: http.server as a Python user would
    run it for HTTP/1.1, one thread per connection, with the two settings that
    keep the comparison about threads: TCP_NODELAY (its head and body go out in
    two sends, and Nagle would hold the body ~40 ms) and a listen backlog of
    1024 (the stdlib's 5 would make the ramp about SYN retries)."""
    import functools
    import http.server

    parser = argparse.ArgumentParser(prog="concurrency_run.py baseline-server",
                                     description=baseline_server_main.__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)

    class ThreadPerConnectionHandler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # persistent connections
        disable_nagle_algorithm = True

        def log_message(self, format, *args):
            pass  # no access log, as reactor_http runs with --quiet

    class ThreadPerConnectionServer(http.server.ThreadingHTTPServer):
        request_queue_size = 1024       # the listen backlog; reactor_http's is 1024 too

    raise_descriptor_limit()
    handler = functools.partial(ThreadPerConnectionHandler, directory=args.root)
    with ThreadPerConnectionServer(("127.0.0.1", args.port), handler) as server:
        print(f"Serving {args.root} at http://127.0.0.1:{args.port}/ (a thread per connection)",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


# -- a running server ------------------------------------------------------------------------------

_CAPACITY = re.compile(r"the descriptor limit leaves room for (\d+) connections")


def warm_up(port, psutil_process, wanted_threads, seconds=3.0, burst=128):
    """Answer bursts of requests before measuring, so that the server starts
    measured as it would be after running a while: modules imported, and
    reactor_http's executor pool at its full size. The pool starts a thread
    only when a job finds none idle, so a quiet server may run with two or
    three of its eight; a burst of requests for distinct paths (each a cache
    miss, so each a job) makes it start them all. Returns the thread count
    reached (for the baseline, once its burst's threads have ended). With
    seconds=0, one burst only."""
    deadline = time.monotonic() + seconds
    rounds = itertools.count()
    while True:
        round_number = next(rounds)
        sockets = []
        try:
            for _ in range(burst):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sockets.append(sock)
            for index, sock in enumerate(sockets):
                path = FILE_PATH if index % 2 else f"/warm-up-{round_number}-{index}"
                sock.sendall(request_bytes("GET", path, ["Connection: close"], host="127.0.0.1"))
            for sock in sockets:
                while sock.recv(65536):
                    pass
        except OSError:
            pass  # a burst that fails is only a warm-up that did less
        finally:
            for sock in sockets:
                sock.close()
        # The baseline's threads end with their connections: give them a moment.
        settled_by = time.monotonic() + 2.0
        threads = psutil_process.num_threads()
        while threads > wanted_threads and time.monotonic() < settled_by:
            time.sleep(0.05)
            threads = psutil_process.num_threads()
        if threads == wanted_threads or time.monotonic() >= deadline:
            return threads


# -- the load client, run as a process of its own --------------------------------------------------
#
# It must not be the bottleneck: at 10,000 connections and 1 request a second
# each, it sends and reads 10,000 requests a second on one core. So it is a
# reactor too, and a lean one: select.epoll directly (no selectors layer), one
# timer heap for every connection's next send, no per-request allocation beyond
# the response bytes. It reports its own CPU per window, so a reader can see
# whether it kept up.

class Role(enum.Enum):
    ACTIVE = "active"   # a request at the set rate, on a kept-alive connection
    IDLE = "idle"       # one request, then silent for the rest of the run
    SLOW = "slow"       # like ACTIVE, but each request head dribbled out over --slow-seconds


class State(enum.Enum):
    CONNECTING = "connecting"       # connect() in progress
    WAITING = "waiting"             # between requests: a timer will start the next
    SENDING_SLOWLY = "sending"      # a slow client between pieces of its request
    AWAITING = "awaiting"           # request sent, reading the response
    SILENT = "silent"               # an idle client after its one response
    CLOSED = "closed"


ERROR_KINDS = ("refused", "connect_timeout", "reset", "closed", "timeout", "other")
# The fractional parts of i * (golden ratio) spread evenly over [0, 1) for any
# count, so the share of idle and slow clients is right at every step, even 10.
_GOLDEN = (math.sqrt(5) - 1) / 2


def role_for(index, idle_share, slow_share):
    """The role of the index-th connection opened (deterministic, evenly spread)."""
    fraction = (index * _GOLDEN) % 1.0
    if fraction < idle_share:
        return Role.IDLE
    if fraction < idle_share + slow_share:
        return Role.SLOW
    return Role.ACTIVE


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def cpu_seconds_of_this_process():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadConnection:
    __slots__ = ("sock", "fd", "role", "state", "started_at", "due_at", "sent_at", "piece",
                 "buffer", "expected_length", "status")

    def __init__(self, sock, role, now):
        self.sock = sock
        self.fd = sock.fileno()
        self.role = role
        self.state = State.CONNECTING
        self.started_at = now
        self.due_at = now      # when the next request is meant to start
        self.sent_at = None    # when the last byte of the current request went out
        self.piece = 0         # a slow client's next piece
        self.buffer = b""
        self.expected_length = None
        self.status = None


class Window:
    """What the client saw while a step was held."""

    def __init__(self, now):
        self.started = now
        self.cpu_started = cpu_seconds_of_this_process()
        self.latencies = []    # seconds, from the request's last byte to the response's
        self.completed = 0
        self.non_200 = 0


class LoadClient:
    """Opens connections step by step and keeps each one doing its role,
    reporting to the harness in JSON lines on stdout; the harness answers
    "go" on stdin at each barrier (after it has sampled the server)."""

    def __init__(self, plan, emit):
        self.plan = plan
        self.emit = emit
        self.address = ("127.0.0.1", plan["port"])
        self.request = request_bytes("GET", plan["path"], ["User-Agent: concurrency_run"],
                                     host=f"127.0.0.1:{plan['port']}")
        size = math.ceil(len(self.request) / SLOW_PIECES)
        self.pieces = [self.request[start:start + size] for start in range(0, len(self.request), size)]
        self.piece_gap = plan["slow_seconds"] / max(1, len(self.pieces) - 1)
        rate = plan["rate_per_connection"]
        self.interval = 1.0 / rate if rate > 0 else 0.0  # 0: the next request as soon as answered
        self.random = random.Random(1)
        self.epoll = select.epoll()
        self.connections = {}          # fd -> LoadConnection
        self.timers = []               # heap of (when, sequence, connection)
        self.sequence = itertools.count()
        self.connecting = set()
        self.awaiting = set()
        self.opened = 0                # connections attempted so far
        self.open_by_role = collections.Counter()
        self.errors = collections.Counter()        # since the last window ended
        self.errors_total = collections.Counter()
        self.out_of_descriptors = False
        self.window = None
        self.commands = collections.deque()
        self.stdin_closed = False
        self.step_index = 0
        self.target = 0
        self.phase = "ramp"
        self.recent_latencies = []     # since the last progress report
        self.recent_completed = 0
        self.last_progress = self.last_housekeeping = time.monotonic()
        os.set_blocking(0, False)
        self.epoll.register(0, select.EPOLLIN)

    # -- the loop --------------------------------------------------------------------

    def turn(self, longest_wait):
        """One loop iteration: wait for events (at most until the next timer),
        handle them, then run the timers that are due."""
        now = time.monotonic()
        timeout = longest_wait
        if self.timers:
            timeout = min(timeout, max(0.0, self.timers[0][0] - now))
        for fd, _ in self.epoll.poll(timeout):
            if fd == 0:
                self.read_commands()
                continue
            connection = self.connections.get(fd)
            if connection is None:
                continue
            if connection.state is State.CONNECTING:
                self.on_connected(connection)
            else:
                self.on_readable(connection)
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, connection = heapq.heappop(self.timers)
            if connection.state is State.WAITING:
                self.start_request(connection)
            elif connection.state is State.SENDING_SLOWLY:
                self.send_piece(connection)
            # CLOSED: a timer of a connection that failed meanwhile, dropped lazily.
        if now - self.last_housekeeping >= 0.5:
            self.check_timeouts(now)
            self.last_housekeeping = now
        if now - self.last_progress >= 0.5:
            self.report_progress(now)

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while not self.stdin_closed:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.turn(min(0.1, left))

    def barrier(self, message):
        """Tell the harness where we are and keep the load going until it says "go"."""
        self.emit(message)
        while not self.stdin_closed:
            if self.commands:
                self.commands.popleft()
                return
            self.turn(0.1)

    def read_commands(self):
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        if not data:
            self.stdin_closed = True  # the harness has gone: stop
            return
        self.commands.extend(line for line in data.decode().split("\n") if line.strip())

    def schedule(self, connection, when):
        heapq.heappush(self.timers, (when, next(self.sequence), connection))

    # -- opening connections ---------------------------------------------------------

    def ramp_to(self, target):
        """Open connections until `target` have been tried, gradually: at most
        --connect-concurrency handshakes at once and --open-rate a second, so
        that neither server's listen queue overflows into SYN retries."""
        self.target, self.phase = target, "ramp"
        started, opened_before = time.monotonic(), self.opened
        while not self.stdin_closed:
            allowed = opened_before + 1 + int((time.monotonic() - started) * self.plan["open_rate"])
            while (self.opened < min(target, allowed) and not self.out_of_descriptors
                   and len(self.connecting) < self.plan["connect_concurrency"]):
                self.open_connection()
            if (self.opened >= target or self.out_of_descriptors) and not self.connecting:
                break
            self.turn(0.005)
        self.run_for(self.plan["settle_seconds"])  # let the server finish accepting

    def open_connection(self):
        role = role_for(self.opened, self.plan["idle_share"], self.plan["slow_share"])
        self.opened += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as error:
            self.out_of_descriptors = error.errno in (errno.EMFILE, errno.ENFILE)
            self.count_error("other")
            return
        sock.setblocking(False)
        # Each piece of a slow request goes out as it is sent, not coalesced.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = LoadConnection(sock, role, time.monotonic())
        result = sock.connect_ex(self.address)
        if result not in (0, errno.EINPROGRESS):
            sock.close()
            self.count_error("refused" if result == errno.ECONNREFUSED else "other")
            return
        self.connections[connection.fd] = connection
        self.connecting.add(connection)
        self.epoll.register(connection.fd, select.EPOLLOUT)

    def on_connected(self, connection):
        self.connecting.discard(connection)
        result = connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if result:
            kind = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "connect_timeout"}.get(result, "other")
            self.fail(connection, kind, was_open=False)
            return
        self.epoll.modify(connection.fd, select.EPOLLIN)
        self.open_by_role[connection.role] += 1
        connection.state = State.WAITING
        # A random phase, so that the connections do not ask in unison.
        first = time.monotonic() + self.random.uniform(0, self.interval)
        connection.due_at = first
        self.schedule(connection, first)

    # -- requests and responses --------------------------------------------------------

    def start_request(self, connection):
        if connection.role is Role.SLOW:
            connection.state = State.SENDING_SLOWLY
            connection.piece = 0
            self.send_piece(connection)
        else:
            self.send(connection, self.request)

    def send_piece(self, connection):
        piece = self.pieces[connection.piece]
        connection.piece += 1
        if connection.piece < len(self.pieces):
            if self.send_bytes(connection, piece):
                self.schedule(connection, time.monotonic() + self.piece_gap)
        else:
            self.send(connection, piece)

    def send(self, connection, data):
        """Send the (last part of the) request; the response is awaited from now."""
        if self.send_bytes(connection, data):
            connection.sent_at = time.monotonic()
            connection.state = State.AWAITING
            self.awaiting.add(connection)

    def send_bytes(self, connection, data):
        # A request is under 100 bytes on a connection with nothing else in
        # flight: it always fits the send buffer, so a short send is an error.
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.fail(connection, "reset")
            return False
        if sent != len(data):
            self.fail(connection, "other")
            return False
        return True

    def on_readable(self, connection):
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.fail(connection, "reset")
            return
        if not data:
            self.fail(connection, "closed")  # the server closed (or refused after accepting)
            return
        if connection.state is not State.AWAITING:
            self.fail(connection, "other")  # bytes nobody asked for (a 408, say)
            return
        connection.buffer += data
        if connection.expected_length is None:
            try:
                framed = frame_response(connection.buffer)
            except Mismatch:
                self.fail(connection, "other")
                return
            if framed is None:
                return
            head, connection.expected_length = framed
            connection.status = head.status
        if len(connection.buffer) < connection.expected_length:
            return
        self.on_response(connection, time.monotonic())

    def on_response(self, connection, now):
        latency = now - connection.sent_at
        ok = connection.status == 200 and len(connection.buffer) == connection.expected_length
        connection.buffer, connection.expected_length = b"", None
        self.awaiting.discard(connection)
        self.recent_completed += 1
        if ok:
            self.recent_latencies.append(latency)
        window = self.window
        if window is not None:
            window.completed += 1
            if ok:
                window.latencies.append(latency)
            else:
                window.non_200 += 1
        if connection.role is Role.IDLE:
            connection.state = State.SILENT
            return
        connection.state = State.WAITING
        if not self.interval:
            self.start_request(connection)
            return
        # The next request is due one jittered interval after this one was;
        # if this answer came later than that, it starts now: the client never
        # bursts to catch up, so a slow server shows as a lower rate.
        connection.due_at = max(connection.due_at + self.interval * self.random.uniform(0.5, 1.5), now)
        self.schedule(connection, connection.due_at)

    # -- failures ---------------------------------------------------------------------

    def count_error(self, kind):
        self.errors[kind] += 1
        self.errors_total[kind] += 1

    def fail(self, connection, kind, was_open=True):
        self.count_error(kind)
        self.close(connection, was_open)

    def close(self, connection, was_open=True):
        if connection.state is State.CLOSED:
            return
        if was_open and connection.state is not State.CONNECTING:
            self.open_by_role[connection.role] -= 1
        connection.state = State.CLOSED
        self.connecting.discard(connection)
        self.awaiting.discard(connection)
        self.connections.pop(connection.fd, None)
        try:
            self.epoll.unregister(connection.fd)
        except (OSError, ValueError):
            pass
        connection.sock.close()

    def check_timeouts(self, now):
        for connection in [c for c in self.connecting if now - c.started_at > self.plan["connect_timeout"]]:
            self.fail(connection, "connect_timeout", was_open=False)
        for connection in [c for c in self.awaiting if now - c.sent_at > self.plan["response_timeout"]]:
            self.fail(connection, "timeout")  # a real client gives up too

    # -- reporting -------------------------------------------------------------------

    def open_count(self):
        return sum(self.open_by_role.values())

    def report_progress(self, now):
        elapsed = now - self.last_progress
        latencies = sorted(self.recent_latencies)
        self.emit({"type": "progress", "step": self.step_index, "target": self.target,
                   "phase": self.phase, "open": self.open_count(), "opened": self.opened,
                   "rate": self.recent_completed / elapsed if elapsed else 0.0,
                   "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
                   "errors": sum(self.errors_total.values())})
        self.recent_latencies, self.recent_completed = [], 0
        self.last_progress = now

    def window_result(self, window, now):
        seconds = now - window.started
        latencies = sorted(window.latencies)
        rate = self.plan["rate_per_connection"]
        active, slow = self.open_by_role[Role.ACTIVE], self.open_by_role[Role.SLOW]
        # What the open connections would ask for if every answer came at once:
        # a slow client's cycle is at least its dribble.
        offered = (active * rate + slow / max(1.0 / rate, self.plan["slow_seconds"])) if rate else None

        def ms(fraction):
            value = percentile(latencies, fraction)
            return None if value is None else 1000 * value

        return {"type": "window", "step": self.step_index, "target": self.target,
                "seconds": seconds, "open": self.open_count(), "opened": self.opened,
                "active": active, "idle": self.open_by_role[Role.IDLE], "slow": slow,
                "requests": window.completed, "ok": len(latencies), "non_200": window.non_200,
                "request_rate": window.completed / seconds if seconds else 0.0,
                "offered_rate": offered,
                "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99),
                "max_ms": 1000 * latencies[-1] if latencies else None,
                "errors": {kind: self.errors[kind] for kind in ERROR_KINDS},
                "client_cpu_percent": 100.0 * (cpu_seconds_of_this_process() - window.cpu_started) / seconds
                if seconds else None}

    # -- the plan --------------------------------------------------------------------

    def run(self):
        for index, target in enumerate(self.plan["steps"]):
            self.step_index = index
            self.ramp_to(target)
            self.barrier({"type": "ready", "step": index, "target": target, "open": self.open_count()})
            self.phase = "hold"
            self.window = Window(time.monotonic())
            self.run_for(self.plan["step_seconds"])
            result = self.window_result(self.window, time.monotonic())
            self.window = None
            self.errors.clear()
            self.barrier(result)
            if self.stdin_closed:
                break
        for connection in list(self.connections.values()):
            self.close(connection)
        self.emit({"type": "finished", "errors": dict(self.errors_total)})


def client_main(argv):
    parser = argparse.ArgumentParser(prog="concurrency_run.py client",
                                     description="The load client; the harness starts it.")
    parser.add_argument("--plan", required=True, help="the plan, as JSON")
    plan = json.loads(parser.parse_args(argv).plan)
    raise_descriptor_limit()

    def emit(message):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    LoadClient(plan, emit).run()
    return 0


# -- one run: a server, the client, the sampler --------------------------------------------------

@dataclasses.dataclass
class RunSpec:
    experiment: str            # "ramp" or "blocking-loop"
    server: str                # "reactor_http" or "threads"
    selector: str              # reactor_http's --selector, "" for the baseline
    variant: str               # blocking-loop: "executor" or "on the loop"; else ""
    server_args: tuple
    steps: list
    plan: dict                 # the client's settings, besides port and steps

    @property
    def label(self):
        parts = [SERVER_LABELS[self.server]]
        if self.selector:
            parts.append(self.selector)
        if self.variant:
            parts.append(f"file work {self.variant}")
        return ", ".join(parts)


def start_server(run, port, root, cpus, log_path):
    """The run's server on ``port``, pinned to ``cpus``, in a session of its
    own (stopping it stops anything it started), its output in a log file."""
    process_options = {"log_path": log_path, "new_session": True}
    if run.server == "threads":
        command = [sys.executable, os.path.abspath(__file__), "baseline-server", "--port", str(port), "--root", root]
        return ServerProcess(pinned(command, cpus), cwd=REPO, **process_options)
    flags = ["--quiet", "--port", str(port), "--root", root, "--selector", run.selector,
             "--max-connections", str(max(run.steps) + CONNECTION_MARGIN),
             "--keepalive-timeout", str(HOLD_TIMEOUT_SECONDS), "--header-timeout", str(HOLD_TIMEOUT_SECONDS),
             *run.server_args]
    return ReactorHttpProcess(flags, launcher=pinned((), cpus), **process_options)


class Progress:
    """The live line on stderr (rewritten in place with a carriage return when
    stderr is a terminal; otherwise one line per measured step)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.live = stream.isatty()
        self.width = 0

    def show(self, text):
        if self.live:
            text = text[:max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)

    def log(self, text):
        if self.live and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(text + "\n")
        self.stream.flush()


def measure_run(run, context):
    """Start the server, warm it up, drive it with the client through the
    run's steps; return the run as a dict with one row per step."""
    import psutil
    progress = context["progress"]
    live = "--dashboard-path" in run.server_args
    port = context["live_port"] if live and context["live_port"] else free_port()
    log_path = os.path.join(context["work_directory"], f"server-{context['run_number']}.log")
    server = start_server(run, port, context["root"], context["server_cpus"], log_path)
    result = {"experiment": run.experiment, "server": run.server, "selector": run.selector,
              "variant": run.variant, "label": run.label, "notes": [], "rows": [],
              "command": " ".join(shlex.quote(part) for part in server.command)}
    client = sampler = None
    try:
        banner = server.wait_until_serving()
        if live:
            progress.log(f"{run.label}: watch it live at http://127.0.0.1:{port}{LIVE_PATH}")
        if run.selector and banner.selector != run.selector:
            raise ServerError(f"asked for --selector {run.selector}, the banner says {banner.selector}")
        # taskset execs the server, so this pid is the server itself.
        server_process = psutil.Process(server.pid)
        steps = list(run.steps)
        capacity = _CAPACITY.search(server.output())
        if capacity and run.server == "reactor_http":
            room = int(capacity.group(1))
            for step in [step for step in steps if step > room]:
                result["notes"].append(f"reactor_http says its descriptor limit leaves room for "
                                       f"{room:,} connections: step {step:,} skipped")
            steps = [step for step in steps if step <= room]
        if not steps:
            raise ServerError("no step fits")
        if run.experiment == "ramp":
            wanted = REACTOR_THREADS if run.server == "reactor_http" else 1
            threads = warm_up(port, server_process, wanted)
            if threads != wanted:
                result["notes"].append(f"after the warm-up the server had {threads} threads, not "
                                       f"{wanted} (reactor_http's executor starts its threads on "
                                       "demand; the baseline's end with their connections)")
        else:
            # The simulated disk makes every job slow (and, on the loop, serial):
            # a few requests are warm-up enough.
            warm_up(port, server_process, 1, seconds=0, burst=4)
        sampler = ProcessSampler(server.pid, SAMPLE_SECONDS,
                                 context["server_cpus"] and parse_cpu_list(context["server_cpus"]))
        start = sampler.edge()
        sampler.start()
        plan = dict(run.plan, port=port, path=FILE_PATH, steps=steps)
        client_command = pinned([sys.executable, os.path.abspath(__file__), "client",
                                 "--plan", json.dumps(plan)], context["client_cpus"])
        client_log_path = os.path.join(context["work_directory"], f"client-{context['run_number']}.log")
        with open(client_log_path, "wb") as client_log:
            client = subprocess.Popen(client_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=client_log, text=True, bufsize=1)
        drive_client(run, client, server, sampler, start, steps, result, progress, client_log_path)
    except (ServerError, OSError, ValueError, KeyError) as error:  # this run fails, not the invocation
        result["error"] = str(error)
        progress.log(f"{run.label}: failed: {error}")
    finally:
        if client is not None:
            finish_helper(client, 30)
        if sampler is not None:
            sampler.stop()
            result["samples"] = sampler.samples
        # What the server said while it was measured; at the end the client
        # drops its connections, some mid-request, and a server may complain
        # (http.server prints a BrokenPipeError per response it could not send).
        log_text = result.pop("measured_log", None) or server.output()
        server.stop()
    result["notes"] += server_log_notes(run, log_text)
    return result


def drive_client(run, client, server, sampler, start, steps, result, progress, client_log_path):
    """Follow the client's reports: show progress, sample the server at each
    window's edges, and make a row of each window."""
    deadline = time.monotonic() + len(steps) * (run.plan["step_seconds"] + 120) + 120
    window_start = None
    ramp_start = start  # each step's ramp begins where the last window ended
    for line in client.stdout:
        if time.monotonic() > deadline:
            raise ServerError("the client took far too long; stopped")
        try:
            message = json.loads(line)
        except ValueError:
            continue
        kind = message["type"]
        if kind == "progress":
            sample = sampler.latest() or {}
            progress.show(
                f"{run.label}: step {message['step'] + 1}/{len(steps)} {message['target']:,} conns "
                + (f"(opening: {message['opened']:,} tried, {message['open']:,} open)" if message["phase"] == "ramp"
                   else f"({message['open']:,} open)")
                + f" | {message['rate']:,.0f} req/s, p99 {format_number(message['p99_ms'])} ms, "
                f"{message['errors']:,} errors | server: {sample.get('threads', 0):,} threads, "
                f"{sample.get('rss', 0) / MIB:,.0f} MiB, CPU {sample.get('cpu_percent', 0):.0f}%")
        elif kind == "ready":
            window_start = sampler.edge()
            _answer(client)
        elif kind == "window":
            window_end = sampler.edge()
            row = make_row(run, message, start, ramp_start, window_start, window_end, sampler.samples)
            ramp_start = window_end
            result["rows"].append(row)
            result["measured_log"] = server.output()
            progress.log(step_line(row))
            if not server.alive():
                _answer(client)
                raise ServerError(f"the server died at step {message['target']:,}: {server.log_tail()}")
            _answer(client)
        elif kind == "finished":
            break
    if client.wait(30) != 0:
        with open(client_log_path, "rb") as file:
            tail = file.read()[-1500:].decode("utf-8", "replace").strip()
        raise ServerError(f"the client exited with status {client.returncode}: {tail}")


def _answer(client):
    try:
        client.stdin.write("go\n")
        client.stdin.flush()
    except OSError:
        pass


def server_log_notes(run, log_text):
    """What a server said about itself that the tables should mention."""
    notes = []
    failed_threads = log_text.count("can't start new thread")
    if failed_threads:
        notes.append(f"the baseline failed to start a thread {failed_threads:,} times "
                     "(RuntimeError: can't start new thread; each such connection was closed)")
    # Name each exception behind the tracebacks, not the tracebacks themselves.
    exceptions = collections.Counter(re.findall(r"^(\w+(?:Error|Exception|Exit)\b.*)$", log_text, re.MULTILINE))
    for exception, count in sorted(exceptions.items()):
        if "can't start new thread" not in exception:
            notes.append(f"the server printed {count:,} traceback(s) ending in {exception[:200]}")
    for line in sorted(set(re.findall(r"(?:at the connection limit|cannot accept)[^\n]*", log_text))):
        notes.append(f"the server said: {line.strip()}")
    return notes


def make_row(run, window, start, ramp_start, window_start, window_end, samples):
    """One step: the client's window, the server's readings during it, and
    what the server went through on the ramp to it (which, for a server that
    falls over, is where it falls)."""
    row = {"experiment": run.experiment, "server": run.server, "selector": run.selector,
           "variant": run.variant, "label": run.label, "connections": window["target"]}
    for key in ("open", "active", "idle", "slow", "requests", "non_200", "request_rate", "offered_rate",
                "p50_ms", "p90_ms", "p99_ms", "max_ms", "client_cpu_percent", "seconds"):
        row[key] = window[key]
    row["open_connections"] = row.pop("open")
    for kind in ERROR_KINDS:
        row[f"errors_{kind}"] = window["errors"][kind]
    row["errors_total"] = sum(window["errors"].values())
    inside = [s for s in samples if window_start and window_end and window_start["t"] <= s["t"] <= window_end["t"]]
    if window_start and window_end:
        inside = inside or [window_end]
        elapsed = window_end["t"] - window_start["t"]
        cpu = window_end["cpu_seconds"] - window_start["cpu_seconds"]
        row["threads"] = statistics.median(s["threads"] for s in inside)
        row["threads_max"] = max(s["threads"] for s in inside)
        row["fds"] = statistics.median(s["fds"] for s in inside)
        rss = statistics.median(s["rss"] for s in inside)
        row["rss_mib"] = rss / MIB
        row["rss_start_mib"] = start["rss"] / MIB
        row["rss_per_connection_kib"] = ((rss - start["rss"]) / row["open_connections"] / KIB
                                         if row["open_connections"] else None)
        row["cpu_percent"] = 100.0 * cpu / elapsed
        row["cpu_us_per_request"] = 1e6 * cpu / row["requests"] if row["requests"] else None
        for kind in ("voluntary", "involuntary"):
            # Threads that ended in the window took their counts with them:
            # a total that went down says nothing, so none is reported.
            if kind in window_end and kind in window_start and window_end[kind] >= window_start[kind]:
                row[f"{kind}_switches_per_second"] = (window_end[kind] - window_start[kind]) / elapsed
        if "voluntary_switches_per_second" in row:
            row["context_switches_per_second"] = (row["voluntary_switches_per_second"]
                                                  + row["involuntary_switches_per_second"])
        row["samples"] = len(inside)
        row["system_percent"] = 100.0 * (window_end["system_seconds"] - window_start["system_seconds"]) / elapsed
        if window_end.get("cpus_busy_seconds") is not None and window_start.get("cpus_busy_seconds") is not None:
            busy = window_end["cpus_busy_seconds"] - window_start["cpus_busy_seconds"]
            row["other_load_percent"] = max(0.0, 100.0 * (busy - cpu) / elapsed)
        ramp = [s for s in samples if ramp_start["t"] <= s["t"] <= window_start["t"]] or [window_start]
        row["ramp_seconds"] = window_start["t"] - ramp_start["t"]
        row["threads_peak"] = max(s["threads"] for s in ramp + inside)
        if row["ramp_seconds"] > 0:
            row["ramp_cpu_percent"] = (100.0 * (window_start["cpu_seconds"] - ramp_start["cpu_seconds"])
                                       / row["ramp_seconds"])
            row["ramp_system_percent"] = (100.0 * (window_start["system_seconds"] - ramp_start["system_seconds"])
                                          / row["ramp_seconds"])
    return row


def step_line(row):
    return (f"  {row['label']}: {row['connections']:,} connections ({row['open_connections']:,} open): "
            f"{format_number(row['request_rate'])} req/s, p50 {format_number(row['p50_ms'])} ms, "
            f"p99 {format_number(row['p99_ms'])} ms, {errors_cell(row)} errors; server "
            f"{format_count(row.get('threads'))} threads, {format_number(row.get('rss_mib'))} MiB, "
            f"CPU {format_number(row.get('cpu_percent'))}%; client CPU "
            f"{format_number(row['client_cpu_percent'])}%")


# -- reporting ------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "experiment", "server", "selector", "variant", "connections", "open_connections", "active", "idle",
    "slow", "seconds", "requests", "request_rate", "offered_rate", "p50_ms", "p90_ms", "p99_ms", "max_ms",
    "non_200", *(f"errors_{kind}" for kind in ERROR_KINDS), "errors_total", "threads", "threads_max",
    "threads_peak", "fds", "rss_mib", "rss_start_mib", "rss_per_connection_kib", "cpu_percent",
    "system_percent", "cpu_us_per_request",
    "voluntary_switches_per_second", "involuntary_switches_per_second", "context_switches_per_second",
    "client_cpu_percent", "other_load_percent", "samples", "ramp_seconds", "ramp_cpu_percent", "ramp_system_percent",
    "skipped",
)


def errors_cell(row):
    parts = [f"{kind.replace('_', ' ')} {row[f'errors_{kind}']:,}" for kind in ERROR_KINDS
             if row.get(f"errors_{kind}")]
    if row.get("non_200"):
        parts.append(f"non-200 {row['non_200']:,}")
    return ", ".join(parts) or "0"


def _connections_cell(row):
    if row["open_connections"] == row["connections"]:
        return f"{row['connections']:,}"
    return f"{row['open_connections']:,} of {row['connections']:,}"


_SWITCH_COLUMNS = ("voluntary_switches_per_second", "involuntary_switches_per_second",
                   "context_switches_per_second")


def _switches(row, key="context_switches_per_second"):
    """Context switches a second; none where threads ended in the window and
    took their counts with them (the total went down: reports saved before
    that was checked can hold such a figure)."""
    value = row.get(key)
    return value if value is None or value >= 0 else None


def _cpu_cell(row, total_key, system_key):
    if row.get(total_key) is None:
        return "-"
    text = format_number(row[total_key])
    return text + (f" ({format_number(row[system_key])})" if row.get(system_key) is not None else "")


def _rate_cell(row):
    text = format_number(row["request_rate"])
    return text + (f" ({format_number(row['offered_rate'])})" if row.get("offered_rate") else "")


def report_tables(report, markdown=False):
    """The summary: aligned text, or Markdown."""
    rows = report["rows"]
    meta = report["meta"]
    machine = meta["machine"]
    # Reports saved before the harness was shared name the CPU count "nproc".
    cpus = machine.get("cpus", machine.get("nproc"))
    sections = [f"Measured {meta['date']} on {machine['cpu_model']} (nproc {cpus}, Linux "
                f"{machine['kernel']}, {machine['memory_gib']} GiB), Python {machine['python']}, "
                f"{meta.get('reactor_http', 'reactor_http')}; "
                f"server on CPU {meta['server_cpus'] or 'any (unpinned)'}, client on CPU "
                f"{meta['client_cpus'] or 'any (unpinned)'}. Command: {meta['command']}"]

    def section(title, headers, table_rows, note=None):
        parts = [f"### {title}" if markdown else title, "", render_table(headers, table_rows, markdown)]
        if note:
            parts += ["", note]
        sections.append("\n".join(parts))

    ramp = [row for row in rows if row["experiment"] == "ramp" and not row.get("skipped")]
    options = meta["options"]
    if ramp:
        section(f"Ramp: load and latency ({options['step_seconds']} s held per step; "
                f"{options['rate_per_connection']:g} request/s per active connection, "
                f"{options['idle_share']:.0%} idle, {options['slow_share']:.0%} slow)",
                ["server", "selector", "connections", "req/s (offered)", "p50 ms", "p90 ms", "p99 ms",
                 "max ms", "errors", "client CPU %"],
                [[SERVER_LABELS[row["server"]], row["selector"] or "-", _connections_cell(row),
                  _rate_cell(row), format_number(row["p50_ms"]), format_number(row["p90_ms"]),
                  format_number(row["p99_ms"]), format_number(row["max_ms"]), errors_cell(row),
                  format_number(row["client_cpu_percent"])] for row in ramp],
                "connections: held open by the client at the end of the step, of those asked for. "
                "Latency: from a request's last byte sent to its response's last byte received. "
                "errors: during the ramp to the step and the step itself.")
        section("Ramp: what the server spends",
                ["server", "selector", "connections", "threads", "fds", "RSS MiB", "RSS/conn KiB",
                 "CPU % (system)", "ctx switches/s", "CPU us/request"],
                [[SERVER_LABELS[row["server"]], row["selector"] or "-", _connections_cell(row),
                  format_count(row.get("threads")), format_count(row.get("fds")),
                  format_number(row.get("rss_mib")), format_number(row.get("rss_per_connection_kib")),
                  _cpu_cell(row, "cpu_percent", "system_percent"),
                  format_number(_switches(row)),
                  format_number(row.get("cpu_us_per_request"))] for row in ramp],
                "Medians of the 100 ms samples in the step (threads, fds, RSS); RSS/conn: (RSS - RSS "
                "before the ramp) / connections open. CPU % of one core over the step, in brackets the "
                "part spent in the kernel; context switches: every thread's, a second; CPU us/request: "
                "server CPU time / requests answered.")
        section("Ramp: the way to each step",
                ["server", "selector", "connections", "ramp s", "peak threads", "CPU % (system) on the ramp"],
                [[SERVER_LABELS[row["server"]], row["selector"] or "-", _connections_cell(row),
                  format_number(row.get("ramp_seconds")), format_count(row.get("threads_peak")),
                  _cpu_cell(row, "ramp_cpu_percent", "ramp_system_percent")] for row in ramp],
                "ramp s: from the end of the previous step to the start of this one: opening the new "
                "connections (at most --open-rate a second), waiting out failed handshakes, then 1 s to "
                "settle. Peak threads: the most seen on the ramp or in the step.")
    blocking = [row for row in rows if row["experiment"] == "blocking-loop" and not row.get("skipped")]
    if blocking:
        rate = options["blocking_rate"]
        section(f"Blocking the loop: reactor_http --cache-bytes 0 --disk-delay {options['disk_delay']:g} "
                f"({rate:g} request/s per connection)" if rate else
                f"Blocking the loop: reactor_http --cache-bytes 0 --disk-delay {options['disk_delay']:g} "
                "(each connection asks again as soon as it is answered)",
                ["file work", "connections", "req/s (offered)", "p50 ms", "p90 ms", "p99 ms", "max ms",
                 "errors", "server CPU %"],
                [[row["variant"], _connections_cell(row), _rate_cell(row), format_number(row["p50_ms"]),
                  format_number(row["p90_ms"]), format_number(row["p99_ms"]), format_number(row["max_ms"]),
                  errors_cell(row), format_number(row.get("cpu_percent"))] for row in blocking],
                "executor: file jobs (with the simulated disk's sleep) on the executor's 8 threads, "
                "requests for the one file that arrive while its lookup is in flight sharing it; "
                "on the loop: --file-work-on-loop, every job run on the loop thread itself.")
    notes = list(report.get("notes", ()))
    noisy = [row for row in rows if (row.get("other_load_percent") or 0) >= NOISY_PERCENT]
    if noisy:
        notes.append(f"other work took {NOISY_PERCENT:.0f}% or more of the server's CPU during: " + ", ".join(
            f"{row['label']} at {row['connections']:,} ({row['other_load_percent']:.0f}%)" for row in noisy)
            + "; those steps measured a shared machine")
    for run in report["runs"]:
        notes += [f"{run['label']}: {note}" for note in run.get("notes", ())]
        if run.get("error"):
            notes.append(f"{run['label']}: failed: {run['error']}")
    notes += [f"{row['label']}: {row['connections']:,} connections skipped: {row['skipped']}"
              for row in rows if row.get("skipped")]
    if notes:
        sections.append(("### Notes\n\n" if markdown else "Notes:\n") + "\n".join(f"- {note}" for note in notes))
    return "\n\n".join(sections) + "\n"


def write_csv(report, path):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in report["rows"]:
            writer.writerow({key: _csv_value(_switches(row, key) if key in _SWITCH_COLUMNS
                                             else row.get(key)) for key in CSV_COLUMNS})


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else value


# The plot's colours: reactor_http in warm colours, one per selector; the baseline blue.
LINE_STYLES = {
    ("reactor_http", "epoll"): ("#c0392b", "o"),
    ("reactor_http", "poll"): ("#e67e22", "s"),
    ("reactor_http", "select"): ("#8e44ad", "^"),
    ("threads", ""): ("#2c6fbb", "D"),
}


def render_png(report, path):
    """Six panels, connections on the x axis; returns None, or why there is no plot."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed: no PNG (pip install matplotlib, or pip install -e '.[plots]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    ramp = [row for row in report["rows"] if row["experiment"] == "ramp" and not row.get("skipped")]
    blocking = [row for row in report["rows"] if row["experiment"] == "blocking-loop" and not row.get("skipped")]
    if not ramp and not blocking:
        return "nothing to plot"
    series = collections.defaultdict(list)
    for row in ramp:
        series[(row["server"], row["selector"])].append(row)
    panels = (
        ("threads", "threads", "log"),
        ("rss_per_connection_kib", "RSS per connection, KiB", "log"),
        ("cpu_percent", "server CPU, % of one core", "linear"),
        ("p99_ms", "p99 latency, ms", "log"),
        ("cpu_us_per_request", "server CPU per request, us", "log"),
    )
    figure, axes = pyplot.subplots(2, 3, figsize=(15, 8.4))
    for axis, (key, title, scale) in zip(axes.flat, panels, strict=False):  # the sixth is the blocking one
        for (server, selector), server_rows in series.items():
            colour, marker = LINE_STYLES.get((server, selector), ("#555555", "x"))
            points = [(row["connections"], row.get(key)) for row in server_rows
                      if row.get(key) is not None and row.get(key) > 0]
            if not points:
                continue
            label = SERVER_LABELS[server] + (f" ({selector})" if selector else "")
            axis.plot(*zip(*points, strict=True), marker=marker, color=colour, label=label, linewidth=1.6)
            for row in server_rows:  # where the server held fewer than were asked for
                if row["open_connections"] < 0.95 * row["connections"] and row.get(key):
                    axis.annotate(f"{row['open_connections']:,} held", (row["connections"], row[key]),
                                  textcoords="offset points", xytext=(4, 6), fontsize=7, color=colour)
        axis.set_xscale("log")
        axis.set_yscale(scale)
        axis.set_title(title, fontsize=10, loc="left")
        axis.set_xlabel("connections asked for", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(True, which="major", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        axes.flat[0].legend(handles, labels, fontsize=7, loc="upper left")
    axis = axes.flat[5]
    variants = collections.defaultdict(list)
    for row in blocking:
        variants[row["variant"]].append(row)
    for variant, colour in (("executor", "#27ae60"), ("on the loop", "#222222")):
        for key, style in (("p99_ms", "-"), ("p50_ms", ":")):
            points = [(row["connections"], row[key]) for row in variants.get(variant, ()) if row.get(key)]
            if points:
                axis.plot(*zip(*points, strict=True), style, marker="o", color=colour,
                          label=f"file work {variant}, {key[:3]}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    options = report["meta"]["options"]
    axis.set_title(f"blocking the loop: latency, ms (disk delay {1000 * options['disk_delay']:g} ms)",
                   fontsize=10, loc="left")
    axis.set_xlabel("connections", fontsize=8)
    axis.tick_params(labelsize=8)
    axis.grid(True, which="major", alpha=0.3)
    if blocking:
        axis.legend(fontsize=7, loc="upper left")
    meta = report["meta"]
    figure.suptitle(f"A thread per connection against one reactor thread: {meta['machine']['cpu_model']}, "
                    f"server on one CPU, {meta['date'][:10]}; {options['rate_per_connection']:g} req/s per "
                    f"active connection, {options['idle_share']:.0%} idle, {options['slow_share']:.0%} slow",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return None


def write_outputs(report, options, log):
    if options.csv:
        write_csv(report, options.csv)
    write_report(report, report_tables, options.markdown, render_png, options.png, log)
    return 0


# -- the command line -----------------------------------------------------------------------------

def _step_list(text):
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None
    if not steps or steps[0] < 1:
        raise argparse.ArgumentTypeError("steps must be 1 or more")
    return steps


def _name_list(choices):
    def parse(text):
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return names
    return parse


def _share(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Says the default where there is one worth saying (not None, not off)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.help is None or "default:" in action.help:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="concurrency_run.py",
        description="Ramp open connections against reactor_http and a thread-per-connection "
                    "http.server, and measure what each spends: threads, memory, CPU, latency.",
        epilog="Subcommands used by the harness itself: `baseline-server --port P --root DIR` (the "
               "thread-per-connection server) and `client --plan JSON` (the load). See the module "
               "docstring and docs/concurrency.md.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--experiment", choices=EXPERIMENTS, default="ramp",
                        help="ramp: both servers through --steps; blocking-loop: reactor_http with a "
                             "slow disk, file work on the executor vs on the loop; all: both")
    parser.add_argument("--servers", type=_name_list(SERVERS), default=",".join(SERVERS),
                        help="servers for the ramp: reactor_http, threads (http.server, a thread per "
                             "connection)")
    parser.add_argument("--selectors", type=_name_list(SELECTORS), default="epoll",
                        help="reactor_http's readiness backends, one ramp each (the baseline runs once): "
                             "any of epoll, poll, select")
    parser.add_argument("--steps", type=_step_list, default=None,
                        help="open connections to ramp through (default: 10,100,1000,5000,10000; "
                             "10,50 with --quick)")
    parser.add_argument("--step-seconds", type=float, default=None,
                        metavar="SECONDS",
                        help="how long each step is held and measured once reached (default: 10; "
                             "2 with --quick)")
    parser.add_argument("--rate-per-connection", type=float, default=1.0, metavar="REQUESTS",
                        help="requests a second on each active connection, jittered +-50%%")
    parser.add_argument("--idle-share", type=_share, default=0.2,
                        help="share of connections that send one request, then stay silent")
    parser.add_argument("--slow-share", type=_share, default=0.1,
                        help=f"share of connections that send each request head in {SLOW_PIECES} pieces "
                             "over --slow-seconds")
    parser.add_argument("--slow-seconds", type=float, default=1.0, metavar="SECONDS",
                        help="how long a slow client takes to send one request head")
    parser.add_argument("--open-rate", type=float, default=2000.0, metavar="PER_SECOND",
                        help="new connections a second, at most, during a ramp")
    parser.add_argument("--connect-concurrency", type=int, default=64, metavar="N",
                        help="handshakes in flight at once, at most")
    parser.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="a handshake not complete this long counts as a connect timeout")
    parser.add_argument("--response-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="a response not complete this long after its request counts as a "
                             "timeout, and its connection is closed")
    blocking = parser.add_argument_group("the blocking-loop experiment")
    blocking.add_argument("--blocking-steps", type=_step_list, default=None,
                          help="connections (all active) for the experiment (default: 10,100,1000; "
                               "20 with --quick)")
    blocking.add_argument("--blocking-rate", type=float, default=None, metavar="REQUESTS",
                          help="requests a second per connection; 0: ask again as soon as answered "
                               "(default: 1; 0 with --quick)")
    blocking.add_argument("--disk-delay", type=float, default=None, metavar="SECONDS",
                          help="reactor_http's --disk-delay, the simulated disk's time per file job "
                               "(default: 0.005; 0.02 with --quick)")
    parser.add_argument("--live", action="store_true",
                        help="serve the live page (--dashboard-path /_reactor) from each reactor_http run and "
                             "print its address, to watch the ramp as it happens")
    parser.add_argument("--live-port", type=int, default=None, metavar="PORT",
                        help="with --live, every reactor_http run listens on this port, so that one open "
                             "page follows them all")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: steps 10,50 of 2 s; the blocking experiment at 20 connections "
                             "asking continuously, 20 ms disk delay")
    parser.add_argument("--server-cpus", default="0", metavar="CPUS", help="taskset CPU list for the server")
    parser.add_argument("--client-cpus", default="1", metavar="CPUS",
                        help="taskset CPU list for the client (and this harness's sampling)")
    parser.add_argument("--csv", metavar="PATH", help="one row per server x selector x step, every figure")
    parser.add_argument("--json", metavar="PATH", help="everything, the 100 ms samples too")
    parser.add_argument("--markdown", metavar="PATH", help="the summary tables as Markdown")
    parser.add_argument("--png", metavar="PATH", help="the plot (needs matplotlib)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: tables, --csv, --markdown and --png from an earlier --json")
    return parser


def resolve_options(options):
    quick = options.quick
    defaults = {"steps": (list(QUICK_STEPS), list(DEFAULT_STEPS)),
                "step_seconds": (2.0, 10.0),
                "blocking_steps": ([20], [10, 100, 1000]),
                "blocking_rate": (0.0, 1.0),
                "disk_delay": (0.02, 0.005)}
    for name, (fast, normal) in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, fast if quick else normal)
    return options


def client_plan(options, blocking=False):
    settle = min(1.0, options.step_seconds / 4)
    plan = {"step_seconds": options.step_seconds, "rate_per_connection": options.rate_per_connection,
            "idle_share": options.idle_share, "slow_share": options.slow_share,
            "slow_seconds": options.slow_seconds, "open_rate": options.open_rate,
            "connect_concurrency": options.connect_concurrency, "connect_timeout": options.connect_timeout,
            "response_timeout": options.response_timeout, "settle_seconds": settle}
    if blocking:  # every connection active, so the figures are the disk's alone
        plan.update(rate_per_connection=options.blocking_rate, idle_share=0.0, slow_share=0.0)
    return plan


# Where --live serves the page (reactor_http's --dashboard-path).
LIVE_PATH = "/_reactor"


def plan_runs(options, steps, blocking_steps):
    runs = []
    if options.experiment in ("ramp", "all"):
        plan = client_plan(options)
        # The baseline right after the first reactor_http run: the comparison
        # that matters most comes first, the other selectors after.
        order = [("reactor_http", options.selectors[0])] if "reactor_http" in options.servers else []
        if "threads" in options.servers:
            order.append(("threads", ""))
        if "reactor_http" in options.servers:
            order += [("reactor_http", selector) for selector in options.selectors[1:]]
        live = ("--dashboard-path", LIVE_PATH) if options.live else ()
        for server, selector in order:
            runs.append(RunSpec("ramp", server, selector, "", live if server == "reactor_http" else (), steps, plan))
    if options.experiment in ("blocking-loop", "all"):
        plan = client_plan(options, blocking=True)
        flags = ("--cache-bytes", "0", "--disk-delay", f"{options.disk_delay:g}",
                 *(("--dashboard-path", LIVE_PATH) if options.live else ()))
        runs.append(RunSpec("blocking-loop", "reactor_http", "epoll", "executor", flags, blocking_steps, plan))
        runs.append(RunSpec("blocking-loop", "reactor_http", "epoll", "on the loop",
                            flags + ("--file-work-on-loop",), blocking_steps, plan))
    return runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["baseline-server"]:
        return baseline_server_main(argv[1:])
    if argv[:1] == ["client"]:
        return client_main(argv[1:])
    options = resolve_options(build_parser().parse_args(argv))
    progress = Progress()
    log = progress.log
    if options.from_json:
        return write_outputs(load_json(options.from_json), options, log)
    if not sys.platform.startswith("linux"):
        log("concurrency_run.py: error: Linux only (epoll, /proc, taskset)")
        return 2
    if importlib.util.find_spec("psutil") is None:
        log("concurrency_run.py: error: psutil is needed to sample the servers: pip install psutil "
            "(or pip install -e '.[bench]')")
        return 2

    def on_terminate(signum, frame):
        # Stop as Ctrl+C does, through every `finally`, so that the server and
        # the client this harness started are stopped too, not left behind.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGINT, on_terminate)  # even when started in the background with it ignored
    server_cpus, client_cpus = cpu_plan(options.server_cpus, options.client_cpus, log)
    if client_cpus:
        # This process samples the server; keep it off the server's CPU.
        os.sched_setaffinity(0, parse_cpu_list(client_cpus))
    soft = raise_descriptor_limit()
    wanted = options.steps + (options.blocking_steps if options.experiment != "ramp" else [])
    _, messages = steps_that_fit(sorted(set(wanted)), soft)
    for message in messages:
        log(message)
    steps = steps_that_fit(options.steps, soft)[0]
    blocking_steps = steps_that_fit(options.blocking_steps, soft)[0]
    limits = thread_limits()
    if options.experiment != "blocking-loop" and "threads" in options.servers and steps:
        for message in thread_warnings(max(steps), limits):
            log(message)
            messages.append(message)

    report = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "machine": machine_description(), "server_cpus": server_cpus, "client_cpus": client_cpus,
                 "reactor_http": reactor_http_version(),
                 "command": " ".join(shlex.quote(part) for part in
                                     [os.path.relpath(os.path.abspath(__file__), REPO), *argv]),
                 "descriptor_limit": soft, "thread_limits": limits,
                 "options": {key: value for key, value in vars(options).items()
                             if key not in ("csv", "json", "markdown", "png", "from_json")}},
        "notes": messages, "runs": [], "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="concurrency-run-") as work_directory:
        os.chmod(work_directory, 0o755)
        context = {"root": build_document_root(os.path.join(work_directory, "root")),
                   "work_directory": work_directory, "server_cpus": server_cpus,
                   "client_cpus": client_cpus, "progress": progress, "live_port": options.live_port}
        for number, run in enumerate(plan_runs(options, steps, blocking_steps)):
            if not run.steps:
                continue
            context["run_number"] = number
            log(f"{run.label}: steps {', '.join(f'{step:,}' for step in run.steps)}")
            result = measure_run(run, context)
            report["runs"].append(result)
            report["rows"] += result["rows"]
            for step in run.steps[len(result["rows"]):]:
                report["rows"].append({"experiment": run.experiment, "server": run.server,
                                       "selector": run.selector, "variant": run.variant,
                                       "label": run.label, "connections": step,
                                       "skipped": result.get("error", "not reached")})
            if options.json:  # as it goes: an interrupted run keeps what it measured
                save_json(report, options.json)
    if options.json:
        save_json(report, options.json)
    return write_outputs(report, options, log)


if __name__ == "__main__":
    sys.exit(main())
