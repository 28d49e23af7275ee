#!/usr/bin/env python3
"""The soak: reactor_http under a long mixed load, every response verified, its resources watched.

    python3 scripts/soak.py --requests 20000        # or --seconds 900
    python3 scripts/soak.py --seconds 120 --server-arg=--no-sendfile

It starts ``python -m reactor_http --quiet`` on a tree of files it writes (or
drives a server already running on this machine: --url, with the --root that
server serves), runs client processes with several threads each, and samples
the server once a second with psutil: open descriptors, threads, resident
memory. The load mixes small and large files, 404s, redirects, single and
multi ranges, conditional requests, pipelined batches, HTTP/1.0 and
Connection: close, abrupt disconnects by FIN and RST, and slow readers; every
response is checked against the files on disk (harness.verify): the status,
the framing, and the body byte for byte. A fast wrong answer counts as an
error, never as a request served.

After a warm-up it takes a baseline; at the end it checks that the
descriptors came back to it, that the threads never exceeded the loop plus
the executor's pool, and that memory stayed within --rss-growth-mib. It
prints a table and can write JSON (--json). Exit status 0 when every check
held, 1 otherwise, 2 for bad arguments.

Traffic goes to loopback addresses only: --url must name this machine.

The integrity check of whole files and ranges under 200 clients is
scripts/integrity.py; the table of the faults tested is scripts/faults.py.
tests/e2e/test_soak.py runs a short soak.
"""

import argparse
import concurrent.futures
import ipaddress
import multiprocessing
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

from harness.http import ClientConnection, Mismatch, request_bytes
from harness.report import KIB, MIB, format_size, render_table, save_json
from harness.sampling import ProcessSampler, descriptor_targets, socket_descriptor_count
from harness.server import serve_quietly
from harness.verify import (
    SiteFile,
    Tally,
    check_error,
    check_partial,
    check_whole,
    disjoint_ranges,
    range_field,
    write_random_file,
)

# The server's own thresholds, so the soak's files sit on both sides of them.
from reactor_http.connection.writer import CHUNK_BYTES, SENDFILE_BYTES
from reactor_http.static.files import SMALL_FILE_BYTES

# The server is sampled once a second during the load.
SAMPLE_SECONDS = 1.0


# -- the server's resources -------------------------------------------------------------------


def settle(process, listeners, still_seconds, timeout=30.0):
    """Wait until the server holds no socket but its listeners and its
    descriptor count has not moved for ``still_seconds``; return (fds,
    threads, rss). ``still_seconds`` must outlast the file cache's expiry
    (see _still_seconds): the large files it keeps open are closed only when
    their entries expire, so a reading taken sooner counts descriptors that
    are about to go, and the end of the run would look like fewer than the
    baseline."""
    import psutil
    deadline = time.monotonic() + timeout
    still_since, previous = None, None
    while True:
        if process.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(process.pid, msg="the server has exited")
        with process.oneshot():
            reading = (process.num_fds(), process.num_threads(), process.memory_info().rss)
        now = time.monotonic()
        quiet = socket_descriptor_count(process.pid) == listeners
        if not quiet or previous is None or previous[0] != reading[0]:
            still_since = now
        elif now - still_since >= still_seconds:
            return reading
        if now >= deadline:
            return reading
        previous = reading
        time.sleep(0.2)


# -- the soak: mixed load from several processes, every response verified -----------------------

SOAK_SMALL_SIZES = [0, 1, 2, 100, 512, 1000, 1024, 1500, 4096, 8191, 16384, 30000, 65535, 65536]
SOAK_LARGE_SIZES = [SMALL_FILE_BYTES + 1, 200 * KIB, CHUNK_BYTES + 1, MIB, 3 * MIB + 7,
                    SENDFILE_BYTES + 1, 8 * MIB]


def build_soak_tree(root, seed=7):
    """The soak's files under ``root``/soak: small (cached, answered from
    memory), large (sendfile or chunks), and a directory with an index.html."""
    rng = random.Random(seed)
    base = os.path.join(root, "soak")
    shutil.rmtree(base, ignore_errors=True)
    for number, size in enumerate(SOAK_SMALL_SIZES + [rng.randrange(0, SMALL_FILE_BYTES) for _ in range(16)]):
        write_random_file(os.path.join(base, "small", f"s{number:02d}.bin"), size, rng)
    for number, size in enumerate(SOAK_LARGE_SIZES):
        write_random_file(os.path.join(base, "large", f"l{number:02d}.bin"), size, rng)
    write_random_file(os.path.join(base, "dir", "index.html"), 2000, rng)
    return base


def load_soak_tree(root):
    """(small files, large files, the directory's index) as SiteFiles."""
    def listing(directory):
        return sorted(os.listdir(os.path.join(root, "soak", directory)))
    small = [SiteFile(root, f"soak/small/{name}") for name in listing("small")]
    large = [SiteFile(root, f"soak/large/{name}") for name in listing("large")]
    return small, large, SiteFile(root, "soak/dir/index.html")


# What a soak client does, by weight. Each "keepalive" or "pipelined" action is
# several requests from REQUEST_MIX on one connection.
ACTION_WEIGHTS = {"keepalive": 46, "pipelined": 30, "close": 8, "abrupt": 10, "slow": 1, "http10": 5}
REQUEST_MIX = {"small": 44, "not_found": 10, "head": 5, "range_small": 8, "range_large": 6,
               "multirange": 5, "conditional_304": 8, "conditional_200": 4, "if_range_stale": 2,
               "redirect": 3, "directory": 3, "large": 2}


class SoakClient:
    """One thread's share of the soak: a persistent connection for keep-alive
    and pipelined work, a new one for close, abrupt and slow-reader actions."""

    def __init__(self, host, port, files, rng, tally, aborted):
        self.host, self.port = host, port
        self.small, self.large, self.index = files
        self.nonempty_small = [site_file for site_file in self.small if site_file.size]
        self.rng = rng
        self.tally = tally
        self.aborted = aborted      # [count]: requests abandoned on purpose
        self.connection = None
        self.validators = {}        # url -> (ETag, Last-Modified), learned from responses
        self._actions = list(ACTION_WEIGHTS)
        self._action_weights = list(ACTION_WEIGHTS.values())
        self._kinds = list(REQUEST_MIX)
        self._kind_weights = list(REQUEST_MIX.values())

    # -- requests and what they must get ------------------------------------------------------

    def make_request(self, kind=None):
        """(kind, method, request bytes, check(head, body)) for one request."""
        rng = self.rng
        kind = kind or rng.choices(self._kinds, self._kind_weights)[0]
        if kind == "not_found":
            url = f"/soak/missing/{rng.randrange(1000)}.bin"
            return kind, "GET", request_bytes("GET", url), lambda head, body: check_error(head, body, 404)
        if kind == "redirect":
            def check_redirect(head, body):
                if head.headers.get("location") != "/soak/dir/":
                    raise Mismatch(f"redirect to {head.headers.get('location')!r}")
                return check_error(head, body, 301)
            return kind, "GET", request_bytes("GET", "/soak/dir"), check_redirect
        if kind == "directory":
            return kind, "GET", request_bytes("GET", "/soak/dir/"), self._whole_check(self.index, "GET")
        if kind in ("large", "range_large", "multirange"):
            site_file = rng.choice(self.large)
        else:
            site_file = rng.choice(self.small)
        if kind in ("small", "large", "head"):
            method = "HEAD" if kind == "head" else "GET"
            return kind, method, request_bytes(method, site_file.url), self._whole_check(site_file, method)
        if kind.startswith("range") or kind == "multirange":
            if site_file.size == 0:
                site_file = rng.choice(self.nonempty_small)
            if kind == "multirange":
                specs = disjoint_ranges(rng, site_file.size, rng.randrange(2, 6))
            elif rng.random() < 0.2:
                specs = [(None, rng.randrange(1, site_file.size + 1))]
            else:
                specs = [disjoint_ranges(rng, site_file.size, 1)[0]]
            wire = request_bytes("GET", site_file.url, [range_field(specs)])

            def check_range(head, body):
                self._learn(site_file, head)
                got = check_partial(head, body, specs, site_file.content, site_file.size)
                return sum(last - first + 1 for first, last in got)
            return kind, "GET", wire, check_range
        # Conditional requests need the file's validators: learn them first.
        known = self.validators.get(site_file.url)
        if known is None:
            return "small", "GET", request_bytes("GET", site_file.url), self._whole_check(site_file, "GET")
        etag, last_modified = known
        if kind == "conditional_304":
            field = f"If-None-Match: {etag}" if rng.random() < 0.6 else f"If-Modified-Since: {last_modified}"

            def check_not_modified(head, body):
                if head.status != 304 or head.headers.get("etag") != etag:
                    raise Mismatch(f"{head.status} with ETag {head.headers.get('etag')} for {field!r}")
                return 0
            return kind, "GET", request_bytes("GET", site_file.url, [field]), check_not_modified
        if kind == "conditional_200":
            field = 'If-None-Match: "not-the-etag"'
            return kind, "GET", request_bytes("GET", site_file.url, [field]), self._whole_check(site_file, "GET")
        # If-Range with a validator that no longer matches: the whole file, 200 (§13.1.5).
        if site_file.size == 0:
            site_file = rng.choice(self.nonempty_small)
        fields = ['If-Range: "stale-0"', range_field([(0, 0)])]
        return kind, "GET", request_bytes("GET", site_file.url, fields), self._whole_check(site_file, "GET")

    def _learn(self, site_file, head):
        """Remember the file's validators; they must never change (the files do not)."""
        validators = (head.headers.get("etag"), head.headers.get("last-modified"))
        known = self.validators.setdefault(site_file.url, validators)
        if known != validators:
            raise Mismatch(f"validators of {site_file.url} changed: {known} -> {validators}")

    def _whole_check(self, site_file, method):
        def check(head, body):
            checked = check_whole(head, body, site_file, method)
            self._learn(site_file, head)
            return checked
        return check

    # -- actions ---------------------------------------------------------------------------------

    def _persistent(self):
        if self.connection is None:
            self.connection = ClientConnection.connect(self.host, self.port)
        return self.connection

    def _drop_persistent(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _finish(self, head):
        """After a response on the persistent connection: a server that says
        close (--max-requests) must then close; reconnect next time."""
        if head.headers.get("connection") == "close":
            if not self.connection.closed_by_server():
                raise Mismatch("Connection: close, and the connection stayed open")
            self._drop_persistent()

    def action_keepalive(self, budget):
        count = min(budget, self.rng.randrange(1, 17))
        for _ in range(count):
            kind, method, wire, check = self.make_request()
            connection = self._persistent()
            connection.send(wire)
            head, body = connection.read_response(method)
            self.tally.count(kind, check(head, body))
            self._finish(head)
        return count

    def action_pipelined(self, budget):
        requests = [self.make_request() for _ in range(min(budget, self.rng.randrange(2, 25)))]
        connection = self._persistent()
        connection.send(b"".join(wire for _, _, wire, _ in requests))
        for number, (kind, method, _, check) in enumerate(requests):
            head, body = connection.read_response(method)
            self.tally.count(kind, check(head, body))
            if head.headers.get("connection") == "close":
                # --max-requests reached mid-batch: the rest are never answered.
                if not connection.closed_by_server():
                    raise Mismatch("Connection: close, and the connection stayed open")
                self._drop_persistent()
                return number + 1
        return len(requests)

    def action_http10(self, budget):
        return self.action_close(budget, version="HTTP/1.0")

    def action_close(self, budget, version="HTTP/1.1"):
        """A request on a new connection that asks to close (HTTP/1.0 closes by default)."""
        kind, method, wire, check = self.make_request(self.rng.choice(("small", "not_found", "range_small")))
        if version == "HTTP/1.1":
            wire = wire.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        else:
            wire = wire.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        connection = ClientConnection.connect(self.host, self.port)
        try:
            connection.send(wire)
            # The server answers a 1.0 request with its own version, HTTP/1.1 (RFC 9110 §2.5).
            head, body = connection.read_response(method)
            checked = check(head, body)
            if head.headers.get("connection") != "close" or not connection.closed_by_server():
                raise Mismatch(f"{version} request asking to close: the connection stayed open")
            self.tally.count("close" if version == "HTTP/1.1" else "http10", checked)
        finally:
            connection.close()
        return 1

    def action_abrupt(self, budget):
        """Leave in the middle: after part of a head, right after a request, or
        mid-body, by FIN or RST. Whatever arrived must be a correct prefix."""
        site_file = self.rng.choice(self.large)
        way = self.rng.randrange(4)
        connection = ClientConnection.connect(self.host, self.port)
        try:
            if way == 0:
                connection.send(b"GET /soak/small/s03.bin HTTP/1.1\r\nHo")
                connection.close()
            elif way == 1:
                connection.send(request_bytes("GET", site_file.url))
                connection.reset()
            else:
                connection.send(request_bytes("GET", site_file.url))
                head = connection.read_head()
                if head.status != 200:
                    raise Mismatch(f"status {head.status} for {site_file.url}")
                prefix = connection.read_body(min(site_file.size, self.rng.randrange(1, 300 * KIB)))
                if prefix != site_file.content[:len(prefix)]:
                    raise Mismatch(f"the first bytes of {site_file.url} differ from the file")
                self.tally.bytes_verified += len(prefix)
                if way == 2:
                    connection.reset()
        finally:
            connection.close()
        self.aborted[0] += 1
        return 1

    def action_slow(self, budget):
        """A reader with a small window that takes small bites: the server must
        wait for it (writability), not drop it, and send every byte right."""
        site_file = self.rng.choice([f for f in self.large if f.size <= 2 * MIB])
        connection = ClientConnection.connect(self.host, self.port, receive_buffer=16 * KIB)
        try:
            connection.send(request_bytes("GET", site_file.url, ["Connection: close"]))
            head = connection.read_head()
            body = bytearray(connection.buffer)
            connection.buffer.clear()
            while len(body) < site_file.size:
                chunk = connection.sock.recv(16 * KIB)
                if not chunk:
                    break
                body += chunk
                time.sleep(0.001)
            self.tally.count("slow", check_whole(head, body, site_file, "GET"))
        finally:
            connection.close()
        return 1

    def run(self, quota, deadline):
        done = 0
        while done < quota and time.monotonic() < deadline:
            action = self.rng.choices(self._actions, self._action_weights)[0]
            try:
                done += getattr(self, "action_" + action)(quota - done)
            except (Mismatch, OSError, ValueError, KeyError) as error:
                done += 1
                self.tally.errors.append(f"{action}: {type(error).__name__}: {error}")
                self._drop_persistent()
                if len(self.tally.errors) > 1000:
                    break  # something is badly wrong: stop adding noise
        self._drop_persistent()
        return done


def soak_worker(job):
    """One client process: ``job["threads"]`` SoakClients. Returns its tally as a dict."""
    small, large, index = load_soak_tree(job["root"])
    deadline = time.monotonic() + job["seconds"] if job["seconds"] else float("inf")
    tallies, aborted, done = [], [], []

    def client_thread(number):
        tally, abandoned = Tally(), [0]
        client = SoakClient(job["host"], job["port"], (small, large, index),
                            random.Random(job["seed"] * 1000 + number), tally, abandoned)
        try:
            done.append(client.run(job["quota"], deadline))
        except Exception as error:  # a bug in the harness must show, not vanish with its thread
            tally.errors.append(f"client thread {number} died: {error!r}")
        tallies.append(tally)
        aborted.append(abandoned[0])

    threads = [threading.Thread(target=client_thread, args=(number,)) for number in range(job["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return {"requests": sum(done), "responses": total.responses, "aborted": sum(aborted),
            "bytes_verified": total.bytes_verified, "kinds": total.kinds, "errors": total.errors[:50],
            "error_count": len(total.errors)}


def run_clients(pool, host, port, root, processes, threads, requests, seconds, seed):
    """Spread ``requests`` (or ``seconds``) over processes x threads; merge what they verified."""
    clients = processes * threads
    quota = -(-requests // clients) if requests else float("inf")
    jobs = [{"host": host, "port": port, "root": root, "threads": threads, "quota": quota,
             "seconds": seconds, "seed": seed * 100 + number} for number in range(processes)]
    result = {"requests": 0, "responses": 0, "aborted": 0, "bytes_verified": 0, "kinds": {},
              "errors": [], "error_count": 0}
    for part in pool.map(soak_worker, jobs):
        for key in ("requests", "responses", "aborted", "bytes_verified", "error_count"):
            result[key] += part[key]
        for kind, number in part["kinds"].items():
            result["kinds"][kind] = result["kinds"].get(kind, 0) + number
        result["errors"].extend(part["errors"])
    result["kinds"] = dict(sorted(result["kinds"].items()))
    return result


def touch_every_file(host, port, root):
    """GET every file of the soak tree once, checked. The cache keeps large
    files open; after this the baseline holds a descriptor for each of them,
    as the end of the run will."""
    small, large, index = load_soak_tree(root)
    errors = []
    for site_file in small + large + [index]:
        connection = ClientConnection.connect(host, port)
        try:
            connection.send(request_bytes("GET", site_file.url))
            head, body = connection.read_response()
            check_whole(head, body, site_file)
        except (Mismatch, OSError) as error:
            errors.append(f"warm-up GET {site_file.url}: {type(error).__name__}: {error}")
        finally:
            connection.close()
    return errors


def fill_executor_pool(host, port, process, cap, attempts=10):
    """Start every executor thread now, so that the baseline has them all: the
    pool makes a thread when a job finds none idle, and never ends one. A burst
    of requests for distinct missing paths, all sent before any is read, keeps
    every thread busy at once."""
    for attempt in range(attempts):
        if process.num_threads() >= cap:
            return
        connections = [ClientConnection.connect(host, port) for _ in range(4 * cap)]
        try:
            for number, connection in enumerate(connections):
                connection.send(request_bytes("GET", f"/soak/missing/warm-{attempt}-{number}"))
            for connection in connections:
                head, body = connection.read_response()
                check_error(head, body, 404)
        finally:
            for connection in connections:
                connection.close()


def _loopback_only(host):
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as error:
        raise SystemExit(f"soak: cannot resolve {host!r}: {error}") from None
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise SystemExit(f"soak: {host} is not a loopback address; this harness loads only "
                             f"servers on this machine")


def _server_setting(flags, flag_name, field):
    """The value of one flag among the server's flags, converted as the
    server converts it, else the server's default for ``field``."""
    from reactor_http.config import Config
    from reactor_http.server.settings import BY_FIELD
    for number, flag in enumerate(flags):
        text = None
        if flag == flag_name and number + 1 < len(flags):
            text = flags[number + 1]
        elif flag.startswith(flag_name + "="):
            text = flag.partition("=")[2]
        if text is not None:
            return BY_FIELD[field].convert(text)
    return getattr(Config(), field)


def _still_seconds(flags):
    """How long the descriptor count must stay put before it is read: the
    cache's validity plus its once-a-validity expiry sweep, and a margin."""
    valid = _server_setting(flags, "--cache-valid", "cache_valid")
    return 2 * max(valid, 1.0) + 0.5


def run_soak(options):
    """The whole soak: server, warm-up, baseline, load with sampling, checks. Returns the report."""
    import psutil
    if options.url:
        _loopback_only(urllib.parse.urlsplit(options.url).hostname or "")
    own_root = options.root is None
    root = options.root or tempfile.mkdtemp(prefix="reactor-http-soak-")
    server = None
    try:
        build_soak_tree(root)
        if options.url:
            parsed = urllib.parse.urlsplit(options.url)
            host, port = parsed.hostname, parsed.port or 80
            pid = options.pid
            flags = list(psutil.Process(pid).cmdline()) if pid else []
        else:
            server = serve_quietly(root, options.server_arg)
            host, port, pid, flags = server.banner.host, server.banner.port, server.pid, options.server_arg
        process = psutil.Process(pid) if pid else None
        listeners = socket_descriptor_count(pid) if pid else 0
        thread_cap = 1 + _server_setting(flags, "--blocking-threads", "blocking_threads")
        still_seconds = _still_seconds(flags)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with concurrent.futures.ProcessPoolExecutor(options.processes, mp_context=context) as pool:
            warmup = run_clients(pool, host, port, root, options.processes, options.threads,
                                 options.warmup_requests, None, options.seed + 1)
            touch_errors = touch_every_file(host, port, root)
            warmup["errors"] += touch_errors
            warmup["error_count"] += len(touch_errors)
            if process:
                fill_executor_pool(host, port, process, thread_cap)
            baseline = settle(process, listeners, still_seconds) if process else None
            baseline_targets = descriptor_targets(pid) if process else None
            sampler = ProcessSampler(pid, SAMPLE_SECONDS) if process else None
            if sampler:
                sampler.sample()
                sampler.start()
            began = time.monotonic()
            load = run_clients(pool, host, port, root, options.processes, options.threads,
                               options.requests, options.seconds, options.seed)
            elapsed = time.monotonic() - began
            if sampler:
                sampler.stop()
        try:
            final = settle(process, listeners, still_seconds) if process else None
        except psutil.Error:  # the server is gone: reported below, not a crash of the harness
            final, process = None, None
            checks_if_gone = {"server still running": False}
        else:
            checks_if_gone = {}
        report = {
            "server": f"{host}:{port}", "server_flags": list(flags),
            "processes": options.processes, "threads_per_process": options.threads,
            "warmup": {key: warmup[key] for key in ("requests", "error_count")},
            "seconds": round(elapsed, 2),
            "requests": load["requests"], "responses": load["responses"], "aborted": load["aborted"],
            "errors": load["error_count"] + warmup["error_count"],
            "error_samples": (warmup["errors"] + load["errors"])[:20],
            "bytes_verified": load["bytes_verified"],
            "requests_per_second": round(load["requests"] / elapsed, 1) if elapsed else 0.0,
            "kinds": load["kinds"],
        }
        checks = {"no errors": report["errors"] == 0, **checks_if_gone}
        if options.requests:
            checks[f"at least {options.requests} requests"] = load["requests"] >= options.requests
        if process and sampler.samples:
            samples = sampler.samples
            fds = [sample["fds"] for sample in samples]
            threads = [sample["threads"] for sample in samples]
            rss = [sample["rss"] for sample in samples]
            report["resources"] = {
                "samples": len(samples),
                "fds": {"baseline": baseline[0], "min": min(fds), "max": max(fds), "end": final[0]},
                "threads": {"baseline": baseline[1], "min": min(threads), "max": max(threads),
                            "end": final[1], "cap": thread_cap},
                "rss_mib": {"baseline": _mib(baseline[2]), "min": _mib(min(rss)), "max": _mib(max(rss)),
                            "end": _mib(final[2]), "growth_bound": options.rss_growth_mib},
            }
            report["resources"]["descriptors"] = {"baseline": baseline_targets,
                                                  "end": descriptor_targets(pid)}
            if options.samples:  # (seconds since the first, fds, threads, rss bytes)
                report["resources"]["series"] = [
                    (round(sample["t"] - samples[0]["t"], 2), sample["fds"], sample["threads"], sample["rss"])
                    for sample in samples]
            checks["descriptors back to baseline"] = final[0] == baseline[0]
            checks["threads within loop + executor"] = max(threads + [final[1]]) <= thread_cap
            checks["threads back to baseline"] = final[1] == baseline[1]
            growth = _mib(max(rss + [final[2]]) - baseline[2])
            checks[f"RSS growth {growth} MiB <= {options.rss_growth_mib} MiB"] = growth <= options.rss_growth_mib
        if server is not None:
            checks["server still running"] = server.alive() and "server still running" not in checks_if_gone
            tracebacks = "".join(server.stderr_lines).count("Traceback")
            checks["no traceback in the server's stderr"] = tracebacks == 0
            report["server_stderr_tail"] = server.stderr_lines[-10:]
        report["checks"] = checks
        report["passed"] = all(checks.values())
        return report
    finally:
        if server is not None:
            server.stop()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


def _mib(value):
    return round(value / MIB, 1)


# -- output -----------------------------------------------------------------------------------


def soak_table(report):
    rows = [
        ("requests (verified responses + deliberate aborts)",
         f"{report['requests']:,} ({report['responses']:,} + {report['aborted']:,})"),
        ("errors", f"{report['errors']:,}"),
        ("bytes verified", f"{report['bytes_verified']:,} ({format_size(report['bytes_verified'])})"),
        ("duration", f"{report['seconds']} s"),
        ("requests per second", f"{report['requests_per_second']:,}"),
        ("clients", f"{report['processes']} processes x {report['threads_per_process']} threads"),
    ]
    resources = report.get("resources")
    if resources:
        fds, threads, rss = resources["fds"], resources["threads"], resources["rss_mib"]
        rows += [
            ("server descriptors: baseline / min-max / end",
             f"{fds['baseline']} / {fds['min']}-{fds['max']} / {fds['end']}"),
            ("server threads: baseline / min-max / end (cap)",
             f"{threads['baseline']} / {threads['min']}-{threads['max']} / {threads['end']} ({threads['cap']})"),
            ("server RSS MiB: baseline / min-max / end",
             f"{rss['baseline']} / {rss['min']}-{rss['max']} / {rss['end']}"),
            ("psutil samples (one a second)", resources["samples"]),
        ]
    rows.append(("by kind", ", ".join(f"{kind} {number:,}" for kind, number in report["kinds"].items())))
    rows += [(f"check: {name}", "pass" if held else "FAIL") for name, held in report["checks"].items()]
    return render_table(("measure", "value"), rows, markdown=True)


# -- the command line -------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="soak.py", description="Soak reactor_http under a mixed load, sampled with psutil. "
                                    "Every response is verified against the files on disk.")
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="stop after N requests in all (default 20000 unless --seconds)")
    parser.add_argument("--seconds", type=float, default=None, metavar="S",
                        help="stop after S seconds")
    parser.add_argument("--processes", type=int, default=2, metavar="N",
                        help="client processes (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=8, metavar="N",
                        help="client threads per process, each with its own connections "
                             "(default: %(default)s)")
    parser.add_argument("--warmup-requests", type=int, default=2000, metavar="N",
                        help="requests before the baseline is taken (default: %(default)s)")
    parser.add_argument("--rss-growth-mib", type=float, default=32.0, metavar="MIB",
                        help="the most the server's RSS may grow over its post-warm-up "
                             "baseline (default: %(default)s)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                        help="a flag for the server it starts, e.g. --server-arg=--no-sendfile "
                             "(repeatable)")
    parser.add_argument("--url", help="drive the server already running at this loopback URL "
                                      "instead of starting one (needs --root)")
    parser.add_argument("--root", help="with --url, the directory that server serves; the "
                                       "soak writes its files under ROOT/soak/")
    parser.add_argument("--pid", type=int, help="with --url, the server's process id, to sample it")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--samples", action="store_true", help="put every psutil sample in the JSON")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    return parser


def main(argv=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.url and not options.root:
        parser.error("--url needs --root (the directory that server serves)")
    if options.requests is None and options.seconds is None:
        options.requests = 20000
    if options.processes < 1 or options.threads < 1:
        parser.error("--processes and --threads must be at least 1")
    report = run_soak(options)
    print(soak_table(report))
    if not report["passed"]:
        for sample in report["error_samples"]:
            print("error:", sample, file=sys.stderr)
    if options.json:
        save_json(report, options.json, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
