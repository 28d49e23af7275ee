#!/usr/bin/env python3
"""Hostile load: the attacks of issue 13, run against reactor_http and nginx, the server watched from outside.

Each attack is a client that costs little and asks the server to spend a lot:

    1  paths    distinct made-up paths of about 8 KB (404s), one after another on
                one keep-alive connection (the file cache used to grow ~190 KB a
                request, and each cost ~6 ms of realpath); then a small file
    2  ranges   under `prlimit --nofile=256:256`, clients that never read, each
                asking for 16 large ranges of a 64 MiB (sparse) file (one
                descriptor per range used to exhaust the limit); then a new client
                asks for a small file
    3  linger   3a: `GET /one.bin` (1 MiB) with Connection: close, then 2,000
                pipelined requests in the same write (a close with unread input
                used to reset the connection and truncate the body); 3b: 3,000
                pipelined requests past --max-requests 1000 (nginx:
                keepalive_requests 1000); 3c: after a Connection: close answer, a
                client that keeps sending: the server must stop draining
    4  slow     the portable path (--no-sendfile; nginx: sendfile off): clients with
                a 4 KiB receive buffer ask for a 10 MiB file and read nothing once
                the answer has begun (a 256 KiB chunk each used to stay in memory)
    5  cost     5a: bare CRLF before a request line, streamed; 5b: a 1 MiB body in
                1-byte chunks; 5c: 4,000 1-byte chunks (a body a server should
                still take), then a GET on the same connection

The servers are this tree's reactor_http, the reactor_http of other checkouts
(--reactor-http-checkout NAME=DIR, as in scripts/bench.py: the commit before a
fix, say) and nginx (Debian's package, configured as the benchmark's
scripts/bench_peers/nginx.py configures it, with the changes each attack
names). Each server is started afresh for each attack, warmed up, then watched
with psutil (harness.sampling) while the attack runs: resident memory before
and at its peak, descriptors before and at their peak, and the CPU seconds the
serving process used (for nginx, its worker). What the client saw is the
outcome column.

    python3 scripts/attacks.py
    git clone -q . /tmp/reactor-before && git -C /tmp/reactor-before checkout -q 1e7ace9
    python3 scripts/attacks.py --reactor-http-checkout before=/tmp/reactor-before --servers reactor_http,nginx \\
        --markdown attacks.md --json attacks.json
    python3 scripts/attacks.py --attacks 1,5 --paths 300        # a few seconds

tests/e2e/test_hostile_load.py runs these clients against the server and
asserts what the fixes promise; tests/meta/test_attacks.py runs this script small.
"""

import argparse
import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import itertools
import os
import select
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time

import bench
from harness import REPO
from harness.http import ClientConnection, Mismatch, fetch, frame_response, parse_head, request_bytes
from harness.report import KIB, MIB, format_count, format_number, render_table, save_json
from harness.sampling import ProcessSampler, find_program
from harness.server import ReactorHttpProcess, ServerError, ServerProcess, free_port

HOST = "127.0.0.1"

# The document root: name -> size (sparse files: they cost no disk and read as zeros).
SMALL_FILE = "small.txt"
ONE_MIB_FILE = "one.bin"
TEN_MIB_FILE = "ten.bin"
BIG_FILE = "big.bin"
ROOT_FILES = {ONE_MIB_FILE: MIB, TEN_MIB_FILE: 10 * MIB, BIG_FILE: 64 * MIB}
SMALL_BYTES = b"small file\n" * 93  # 1,023 bytes

# Attack 1: "/" + "ab/" x 2700 + a counter, as in issue 13 (a request line under 8 KiB).
PATH_REPEATS = 2700
# Attack 2: 16 ranges of 1 MiB, 4 MiB apart (nothing to coalesce), of the 64 MiB file.
RANGES = ",".join(f"{start}-{start + MIB - 1}" for start in range(0, 64 * MIB, 4 * MIB))
DESCRIPTOR_LIMIT = 256
# Attacks 2 and 4: what a client that does not read sets before connecting.
SMALL_RECEIVE_BUFFER = 4096
# Attack 3c: how much a client sends at the most before it gives up; 5a: for how
# long (the old server read CRLF until its 10 s header timeout).
FLOOD_LIMIT_BYTES = 64 * MIB
FLOOD_SECONDS = 15.0
FLOOD_PIECE = 64 * KIB
# How long a client waits for an answer (the old server's header timeout was 10 s).
ANSWER_TIMEOUT = 20.0


# -- the clients -------------------------------------------------------------------------


def connect(host, port, receive_buffer=None, timeout=ANSWER_TIMEOUT):
    return ClientConnection.connect(host, port, timeout, receive_buffer=receive_buffer)


def long_path(number, repeats=PATH_REPEATS):
    """A made-up path of 3 x ``repeats`` + a few bytes, distinct by ``number``."""
    return "/" + "ab/" * repeats + str(number)


def path_flood(host, port, count, repeats=PATH_REPEATS):
    """``count`` GETs of distinct made-up paths, each answer read before the
    next request, on one keep-alive connection (a new one when the server
    ends it: --max-requests): the statuses, counted."""
    statuses = collections.Counter()
    connection = connect(host, port)
    try:
        for number in range(count):
            connection.send(request_bytes("GET", long_path(number, repeats)))
            head, _ = connection.read_response()
            statuses[head.status] += 1
            if head.headers.get("connection") == "close":
                connection.close()
                connection = connect(host, port)
    finally:
        connection.close()
    return statuses


class StalledClients:
    """``count`` connections, each with a small receive buffer set before
    connecting, that send ``request`` and then read nothing: the server's
    answers stop in the kernel's buffers. A context manager; leaving it closes
    them all."""

    def __init__(self, host, port, request, count, receive_buffer=SMALL_RECEIVE_BUFFER):
        self.connections = []
        try:
            for _ in range(count):
                connection = connect(host, port, receive_buffer)
                self.connections.append(connection)
                connection.send(request)
        except BaseException:
            self.close()
            raise

    def answered(self):
        """How many have received the first bytes of their answer (peeked at, not read)."""
        socks = [connection.sock for connection in self.connections]
        count = 0
        for first in range(0, len(socks), 500):  # select() takes at most FD_SETSIZE descriptors
            readable, _, _ = select.select(socks[first:first + 500], [], [], 0)
            count += len(readable)
        return count

    def wait_until_answered(self, timeout):
        """True once every one has the start of its answer; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.answered() < len(self.connections):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def heads(self):
        """Each one's response head (reading it, and what came with it), or the error."""
        heads = []
        for connection in self.connections:
            try:
                heads.append(connection.read_head())
            except (OSError, Mismatch) as error:
                heads.append(error)
        return heads

    def close(self):
        for connection in self.connections:
            connection.reset()
        self.connections = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def range_request(path=f"/{BIG_FILE}", ranges=RANGES):
    return request_bytes("GET", path, [f"Range: bytes={ranges}"])


class Sender(threading.Thread):
    """Sends ``pieces`` (byte strings) on a socket from a thread of its own,
    while the caller reads the answers, until all are sent, the peer stops it
    (reset, broken pipe) or stop() is called. ``sent`` counts the bytes the
    kernel took; ``error`` is what ended it early."""

    def __init__(self, sock, pieces):
        super().__init__(name="sender", daemon=True)
        self.sock = sock
        self.pieces = pieces
        self.sent = 0
        self.error = None
        self.finished = False
        self._stopped = threading.Event()

    def run(self):
        try:
            for piece in self.pieces:
                if self._stopped.is_set():
                    return
                self.sock.sendall(piece)
                self.sent += len(piece)
            self.finished = True
        except OSError as error:
            self.error = error

    def stop(self, timeout=ANSWER_TIMEOUT):
        """Stop sending (a send that blocks is woken by shutting our side) and wait for the thread."""
        self._stopped.set()
        if self.is_alive():
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        self.join(timeout)


def pieces_of(data, size=FLOOD_PIECE):
    view = memoryview(data)
    return (view[start:start + size] for start in range(0, len(data), size))


def count_responses(data, method="GET"):
    """The responses framed back to back at the start of ``data``: (statuses, bytes left over)."""
    statuses, offset = [], 0
    while offset < len(data):
        framed = frame_response(data[offset:offset + 64 * KIB], method)
        if framed is None or offset + framed[1] > len(data):
            break
        statuses.append(framed[0].status)
        offset += framed[1]
    return statuses, len(data) - offset


@dataclasses.dataclass
class ClosedAnswer:
    """The answer to a request with Connection: close followed by more input:
    its status, announced length, body bytes that arrived, and how it ended."""

    status: int | None
    content_length: int | None
    body_received: int
    ended: str  # "EOF" or "reset"


def close_then_pipeline(host, port, path=f"/{ONE_MIB_FILE}", pipelined=2000):
    """``GET path`` with Connection: close and ``pipelined`` more requests,
    all in one write; what arrives until the server closes."""
    data, ended = send_and_read(host, port, request_bytes("GET", path, ["Connection: close"])
                                + request_bytes("GET", "/") * pipelined)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return ClosedAnswer(None, None, 0, ended)
    head = parse_head(data[:end])
    length = head.headers.get("content-length")
    return ClosedAnswer(head.status, int(length) if length else None, len(data) - end - 4, ended)


def send_and_read(host, port, data):
    """Send ``data`` in one write from a thread while this one reads, until
    the server closes: (every byte that arrived, "EOF" or "reset")."""
    connection = connect(host, port)
    try:
        sender = Sender(connection.sock, [data])
        sender.start()
        received, ended = read_to_the_end(connection)
        sender.stop()
    finally:
        connection.close()
    return received, ended


def read_to_the_end(connection, limit=1 << 30):
    """Every byte until the server closes: (bytes, "EOF" or "reset")."""
    data = bytearray(connection.buffer)
    connection.buffer.clear()
    try:
        while len(data) < limit:
            chunk = connection.sock.recv(256 * KIB)
            if not chunk:
                return bytes(data), "EOF"
            data += chunk
    except ConnectionResetError:
        return bytes(data), "reset"
    return bytes(data), "limit"


def pipeline_past_max_requests(host, port, path=f"/{SMALL_FILE}", count=3000):
    """``count`` pipelined requests in one write: the statuses of the answers
    that arrive before the server closes, and how it closed."""
    data, ended = send_and_read(host, port, request_bytes("GET", path) * count)
    statuses, _ = count_responses(data)
    return statuses, ended


def flood_after_close(host, port, limit=FLOOD_LIMIT_BYTES):
    """A request with Connection: close and junk after it in the same write
    (so that the server sees input it has not read, and lingers), then more
    junk as fast as the server takes it: the bytes the kernel took before the
    server closed, or None if it was still open after ``limit``."""
    connection = connect(host, port)
    junk = b"x" * FLOOD_PIECE
    try:
        sender = Sender(connection.sock, itertools.chain(
            [request_bytes("GET", f"/{SMALL_FILE}", ["Connection: close"]) + junk],
            itertools.repeat(junk, limit // FLOOD_PIECE - 1)))
        sender.run()  # here, not in a thread: nothing to read meanwhile
    finally:
        connection.close()
    return None if sender.finished else sender.sent


@dataclasses.dataclass
class FloodAnswer:
    """What came back while a client streamed input: status, body, bytes sent by then."""

    status: int | None
    body: bytes
    sent: int
    follow_up: int | None = None  # a GET on the same connection afterwards, if asked


def answer_while_sending(host, port, pieces, follow_up=False):
    """Send ``pieces`` from a thread while reading the first answer here; with
    ``follow_up``, once all is sent, a GET of the small file on the same connection."""
    connection = connect(host, port)
    try:
        sender = Sender(connection.sock, pieces)
        sender.start()
        try:
            head, body = connection.read_response("POST")
        except (OSError, Mismatch):
            sender.stop()
            return FloodAnswer(None, b"", sender.sent)
        status = None
        if follow_up:
            sender.join(ANSWER_TIMEOUT)
            if sender.finished:
                connection.send(request_bytes("GET", f"/{SMALL_FILE}"))
                with contextlib.suppress(OSError, Mismatch):
                    status = connection.read_response()[0].status
        sender.stop()
        return FloodAnswer(head.status, bytes(body), sender.sent, status)
    finally:
        connection.close()


def crlf_flood(host, port, seconds=FLOOD_SECONDS):
    """Bare CRLF where a request line should be, streamed until the server
    answers or closes, or for ``seconds``."""
    deadline = time.monotonic() + seconds
    pieces = itertools.takewhile(lambda _: time.monotonic() < deadline,
                                 itertools.repeat(b"\r\n" * (FLOOD_PIECE // 2)))
    return answer_while_sending(host, port, pieces)


def chunked_post(chunks):
    """A POST whose body is ``chunks`` chunks of one byte."""
    return (request_bytes("POST", f"/{SMALL_FILE}", ["Transfer-Encoding: chunked"])
            + b"1\r\nx\r\n" * chunks + b"0\r\n\r\n")


def one_byte_chunks(host, port, chunks, follow_up=False):
    return answer_while_sending(host, port, pieces_of(chunked_post(chunks)), follow_up)


# -- watching the server -------------------------------------------------------------------


class Watch:
    """The serving process sampled through one attack (harness.sampling's
    ProcessSampler, every 50 ms): resident memory and descriptors before and
    at their peak, and the CPU seconds it used."""

    def __init__(self, pid, interval=0.05):
        self.sampler = ProcessSampler(pid, interval)

    def __enter__(self):
        self.sampler.sample()
        self.sampler.start()
        return self

    def __exit__(self, *exc_info):
        self.sampler.stop()
        self.sampler.sample()

    def sample(self):
        """A reading now, kept among the samples (a moment a peak may be at).
        Through the sampler's second psutil.Process: its own one is its thread's."""
        reading = self.sampler.reading(self.sampler.edge_process)
        if reading is not None:
            self.sampler.samples.append(reading)
        return reading

    def figures(self):
        samples = self.sampler.samples
        first, last = samples[0], samples[-1]
        return {"rss_before": first["rss"], "rss_peak": max(sample["rss"] for sample in samples),
                "fds_before": first["fds"], "fds_peak": max(sample["fds"] for sample in samples),
                "cpu_seconds": last["cpu_seconds"] - first["cpu_seconds"]}


# -- the servers -------------------------------------------------------------------------------


def build_root(directory):
    """The attacks' files, readable by anyone (nginx's worker runs as nobody)."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    with open(os.path.join(directory, SMALL_FILE), "wb") as file:
        file.write(SMALL_BYTES)
    for name, size in ROOT_FILES.items():
        with open(os.path.join(directory, name), "wb") as file:
            file.truncate(size)
    for name in (SMALL_FILE, *ROOT_FILES):
        os.chmod(os.path.join(directory, name), 0o644)
    return directory


def nginx_config(prefix, port, root, descriptors, edits):
    """The benchmark's nginx configuration (scripts/bench_peers/nginx.py), with
    ``edits`` (old text -> new) applied."""
    sys.path.insert(0, bench.PEERS)  # the launcher imports its neighbour peer_command_line
    try:
        launcher = importlib.import_module("nginx")
    finally:
        sys.path.remove(bench.PEERS)
    config = launcher.CONFIG.format(prefix=prefix, host=HOST, port=port, root=root, descriptors=descriptors)
    for old, new in edits.items():
        if old not in config:
            raise ServerError(f"the nginx configuration has no {old!r} to change")
        config = config.replace(old, new)
    return config


@dataclasses.dataclass
class Running:
    """A server started for one attack: the process, where it listens, and
    the process that serves (nginx: its worker)."""

    process: ServerProcess
    host: str
    port: int
    pid: int


def start(spec, attack, root, work_directory):
    """``spec``'s server for ``attack``, ready to serve."""
    launcher = ("prlimit", f"--nofile={DESCRIPTOR_LIMIT}:{DESCRIPTOR_LIMIT}") if attack.descriptor_limit else ()
    log_path = os.path.join(work_directory, f"{spec.name}-{attack.key}.log")
    if spec.is_reactor_http:
        process = ReactorHttpProcess(["--port", "0", "--root", root, "--quiet", *attack.reactor_flags],
                                     checkout=spec.checkout or REPO, launcher=launcher, log_path=log_path,
                                     new_session=True)
        banner = process.wait_until_serving()
        return Running(process, banner.host, banner.port, process.pid)
    port = free_port()
    prefix = os.path.join(work_directory, f"nginx-{attack.key}")
    os.makedirs(prefix, exist_ok=True)
    config_path = os.path.join(prefix, "nginx.conf")
    with open(config_path, "w") as file:
        file.write(nginx_config(prefix, port, root, DESCRIPTOR_LIMIT if attack.descriptor_limit else 65536,
                                attack.nginx_edits))
    nginx = find_program("nginx")
    process = ServerProcess([*launcher, nginx, "-p", prefix, "-c", config_path, "-e",
                             os.path.join(prefix, "error.log")], log_path=log_path, new_session=True)
    process.wait_until_listening(HOST, port)
    import psutil
    workers = psutil.Process(process.pid).children(recursive=True)
    return Running(process, HOST, port, workers[0].pid if workers else process.pid)


def warm_up(running):
    """One-time costs out of the way: lazy imports, the first executor
    threads, the Date cache, the allocator's first arenas. Returns once the
    server has closed the warm-up's connections."""
    for path in (f"/{SMALL_FILE}", "/missing", f"/{ONE_MIB_FILE}"):
        fetch(running.host, running.port, path, timeout=ANSWER_TIMEOUT)
    import psutil
    process = psutil.Process(running.pid)
    descriptors = process.num_fds()
    with StalledClients(running.host, running.port, request_bytes("GET", f"/{ONE_MIB_FILE}"), 8) as clients:
        clients.wait_until_answered(ANSWER_TIMEOUT)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while process.num_fds() > descriptors and time.monotonic() < deadline:
        time.sleep(0.02)


def still_serves(running):
    """The status a new client gets for the small file, or why it got none."""
    try:
        head, body = fetch(running.host, running.port, f"/{SMALL_FILE}", timeout=10)
    except (OSError, Mismatch) as error:
        return f"no answer ({type(error).__name__})"
    return str(head.status) if head.status != 200 or body == SMALL_BYTES else f"{head.status}, wrong body"


def statuses_text(statuses):
    counts = collections.Counter(statuses)
    return ", ".join(f"{status} x {count:,}" for status, count in sorted(counts.items(), key=str)) or "none"


# -- the attacks ---------------------------------------------------------------------------


def attack_paths(running, options):
    with Watch(running.pid) as watch:
        statuses = path_flood(running.host, running.port, options.paths)
    return [("1 paths", f"{statuses_text(statuses)}; then a small file: {still_serves(running)}",
             watch.figures())]


def attack_ranges(running, options):
    with Watch(running.pid) as watch, StalledClients(running.host, running.port, range_request(),
                                                      options.range_clients) as clients:
        all_answered = clients.wait_until_answered(ANSWER_TIMEOUT)
        watch.sample()
        served = still_serves(running)
        watch.sample()
        heads = clients.heads()
    answered = sum(1 for head in heads if not isinstance(head, Exception))
    statuses = [head.status for head in heads if not isinstance(head, Exception)]
    outcome = (f"{answered} of {len(heads)} answered ({statuses_text(statuses)})"
               f"{'' if all_answered else ', not all began'}; a new client: {served}")
    return [("2 ranges", outcome, watch.figures())]


def attack_linger(running, options):
    rows = []
    with Watch(running.pid) as watch:
        answer = close_then_pipeline(running.host, running.port, pipelined=options.pipelined_after_close)
    rows.append(("3a close + pipelined", f"{answer.status}, body {answer.body_received:,} of "
                 f"{answer.content_length or 0:,} B, then {answer.ended}", watch.figures()))
    with Watch(running.pid) as watch:
        statuses, ended = pipeline_past_max_requests(running.host, running.port, count=options.pipelined)
    rows.append(("3b past max requests", f"{len(statuses):,} answers of {options.max_requests:,}, "
                 f"then {ended}", watch.figures()))
    with Watch(running.pid) as watch:
        sent = flood_after_close(running.host, running.port)
    rows.append(("3c sending after close", f"closed after {sent / MIB:.1f} MiB sent" if sent is not None
                 else f"still open after {FLOOD_LIMIT_BYTES // MIB} MiB", watch.figures()))
    return rows


def attack_slow(running, options):
    with Watch(running.pid) as watch, StalledClients(running.host, running.port,
                                                      request_bytes("GET", f"/{TEN_MIB_FILE}"),
                                                      options.slow_clients) as clients:
        all_answered = clients.wait_until_answered(ANSWER_TIMEOUT * 3)
        wait_until_idle(watch)
        figures = watch.figures()
        heads = clients.heads()
    statuses = [head.status for head in heads if not isinstance(head, Exception)]
    growth = (figures["rss_peak"] - figures["rss_before"]) / len(heads)
    outcome = (f"{statuses_text(statuses)}{'' if all_answered else ', not all began'}; "
               f"RSS {growth / KIB:,.0f} KiB a client")
    return [("4 slow readers", outcome, figures)]


def wait_until_idle(watch, idle_cpu_seconds=0.02, window=0.5, timeout=30.0):
    """Wait until the server used under ``idle_cpu_seconds`` in a ``window``
    (it has done what the clients let it do), ``timeout`` at the most."""
    deadline = time.monotonic() + timeout
    previous = watch.sample()
    while time.monotonic() < deadline:
        time.sleep(window)
        reading = watch.sample()
        if reading is None or reading["cpu_seconds"] - previous["cpu_seconds"] < idle_cpu_seconds:
            return
        previous = reading


def answer_text(answer):
    """"400: too many chunks in the body": the status, and reactor_http's detail if it gave one."""
    if answer.status is None:
        return "no answer"
    first_line = answer.body.decode("latin-1").split("\n")[0]
    detail = first_line.partition(": ")[2] if first_line.startswith(f"{answer.status} ") else ""
    return f"{answer.status}: {detail}" if detail else str(answer.status)


def attack_cost(running, options):
    rows = []
    for key, run in (("5a CRLF flood", lambda: crlf_flood(running.host, running.port)),
                     ("5b 1 MiB in 1-byte chunks", lambda: one_byte_chunks(running.host, running.port, MIB)),
                     ("5c 4,000 1-byte chunks", lambda: one_byte_chunks(running.host, running.port, 4000,
                                                                         follow_up=True))):
        with Watch(running.pid) as watch:
            answer = run()
        text = f"{answer_text(answer)} after {answer.sent / MIB:.2f} MiB sent"
        if answer.follow_up is not None or key.startswith("5c"):
            text += f"; then GET on the same connection: {answer.follow_up or 'no answer'}"
        rows.append((key, text, watch.figures()))
    return rows


@dataclasses.dataclass(frozen=True)
class Attack:
    key: str
    run: object
    reactor_flags: tuple = ()
    nginx_edits: dict = dataclasses.field(default_factory=dict)
    descriptor_limit: bool = False


ATTACKS = {attack.key: attack for attack in (
    Attack("1", attack_paths, ("--cache-bytes", "4194304", "--cache-valid", "60")),
    Attack("2", attack_ranges, ("--cache-valid", "60"), descriptor_limit=True),
    Attack("3", attack_linger, ("--max-requests", "1000"),
           {"keepalive_requests 100000;": "keepalive_requests 1000;"}),
    Attack("4", attack_slow, ("--no-sendfile",), {"sendfile on;": "sendfile off;"}),
    Attack("5", attack_cost),
)}


# -- the run and its report ------------------------------------------------------------------


def run_attacks(options, log):
    """Every attack against every server: the report (rows and what was run)."""
    report = {"command": options.command, "servers": {}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="reactor-attacks-") as work_directory:
        os.chmod(work_directory, 0o755)
        root = build_root(os.path.join(work_directory, "root"))
        for name in options.server_list:
            spec = options.server_specs[name]
            reason = bench.why_unavailable(spec)
            report["servers"][name] = {"version": reason or bench.server_version(spec)}
            if reason:
                log(f"{name}: skipped, {reason}")
                continue
            for key in options.attack_list:
                attack = ATTACKS[key]
                log(f"{name}: attack {key}")
                try:
                    running = start(spec, attack, root, work_directory)
                except ServerError as error:
                    report["rows"].append({"attack": key, "server": name, "outcome": f"did not start: {error}"})
                    continue
                try:
                    warm_up(running)
                    rows = attack.run(running, options)
                except (OSError, Mismatch) as error:  # a server that broke the exchange: said, and on to the next
                    rows = [(key, f"the client failed: {type(error).__name__}: {error}", {})]
                finally:
                    exited = running.process.process.poll()
                    running.process.stop()
                for label, outcome, figures in rows:
                    if exited is not None:
                        outcome += f"; the server exited during the attack (status {exited})"
                    report["rows"].append({"attack": label, "server": name, "outcome": outcome, **figures})
    report["rows"].sort(key=lambda row: (row["attack"], options.server_list.index(row["server"])))
    return report


def report_table(report, markdown=False):
    headers = ["attack", "server", "what the client saw", "RSS before (MiB)", "RSS growth at peak (MiB)",
               "descriptors before / peak", "server CPU (s)"]
    rows = []
    for row in report["rows"]:
        measured = "rss_before" in row
        rows.append([row["attack"], row["server"], row["outcome"],
                     format_number(row["rss_before"] / MIB) if measured else "-",
                     format_number((row["rss_peak"] - row["rss_before"]) / MIB) if measured else "-",
                     f"{format_count(row['fds_before'])} / {format_count(row['fds_peak'])}" if measured else "-",
                     f"{row['cpu_seconds']:.3f}" if measured else "-"])
    versions = "\n".join(f"- {name}: {entry['version']}" for name, entry in report["servers"].items())
    return render_table(headers, rows, markdown) + "\n\n" + versions + "\n"


def build_parser():
    parser = argparse.ArgumentParser(prog="attacks.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", default="1,2,3,4,5", help="which attacks, e.g. 1,3 (default: all)")
    parser.add_argument("--servers", default="reactor_http,nginx",
                        help="reactor_http, nginx, and the names given to --reactor-http-checkout")
    parser.add_argument("--reactor-http-checkout", action="append", default=[], type=bench._checkout,
                        metavar="NAME=DIR", help="also attack the reactor_http of another checkout, as NAME "
                                                 "(added to --servers unless named there); repeatable")
    parser.add_argument("--paths", type=int, default=3000, help="attack 1: requests (default: 3000)")
    parser.add_argument("--range-clients", type=int, default=80,
                        help=f"attack 2: clients under the {DESCRIPTOR_LIMIT}-descriptor limit (default: 80)")
    parser.add_argument("--pipelined-after-close", type=int, default=2000,
                        help="attack 3a: requests after the one with Connection: close (default: 2000)")
    parser.add_argument("--pipelined", type=int, default=3000,
                        help="attack 3b: pipelined requests, past --max-requests 1000 (default: 3000)")
    parser.add_argument("--slow-clients", type=int, default=300, help="attack 4: clients (default: 300)")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    options = parser.parse_args(argv)
    options.command = " ".join(shlex.quote(part) for part in ["python3", "scripts/attacks.py", *argv])
    options.max_requests = 1000
    options.attack_list = [key.strip() for key in options.attacks.split(",") if key.strip()]
    unknown = [key for key in options.attack_list if key not in ATTACKS]
    if unknown or not options.attack_list:
        parser.error(f"unknown attack(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ATTACKS)}")
    options.server_specs = {"reactor_http": bench.SERVERS["reactor_http"], "nginx": bench.SERVERS["nginx"]}
    for spec in options.reactor_http_checkout:
        options.server_specs[spec.name] = spec
    options.server_list = [name.strip() for name in options.servers.split(",") if name.strip()]
    options.server_list += [spec.name for spec in options.reactor_http_checkout
                            if spec.name not in options.server_list]
    unknown = [name for name in options.server_list if name not in options.server_specs]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(options.server_specs)}")
    if importlib.util.find_spec("psutil") is None:
        parser.exit(2, "attacks.py: error: psutil is needed to watch the servers: pip install psutil\n")
    if "2" in options.attack_list and shutil.which("prlimit") is None:
        parser.exit(2, "attacks.py: error: attack 2 needs prlimit (util-linux)\n")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    report = run_attacks(options, log)
    print(options.command)
    print(report_table(report))
    if options.markdown:
        with open(options.markdown, "w", encoding="utf-8") as file:
            file.write(f"    {options.command}\n\n" + report_table(report, markdown=True))
    if options.json:
        save_json(report, options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
