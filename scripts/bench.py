#!/usr/bin/env python3
"""Benchmark reactor_http against the static file servers people use, on this machine.

What it does: builds a document root in a temporary directory (1 KiB index.html,
4 KiB style.css, 64 KiB image.png, 10 MiB and 100 MiB binaries), then starts each
server in turn on 127.0.0.1 on a free port, pinned to one CPU with `taskset`,
and drives it with `wrk` pinned to another CPU. Each scenario gets a warm-up run
(discarded), then --runs measured runs; the tables show medians with the min-max
spread, the JSON keeps every run. Access logs are off for every server.

    S1   1 KiB file, keep-alive: wrk -t1 -c50 --latency           req/s, p99
    S1b  S1 with ten browser-like request headers (wrk -H ...)      req/s, p99
    S2   1 KiB file, a new connection each (Connection: close)      req/s
    S3   10 MiB file, wrk -c8                                       MB/s (10^6 bytes)
    S4   404 keep-alive                                             req/s
    S5   --idle-connections idle keep-alive connections held by a separate client
         process (one request answered on each, then left open): the server's
         RSS per connection, threads and descriptors (psutil)
    S6   1 KiB file, 16 pipelined requests per write (a wrk Lua script)  responses/s
    TLS-S1, TLS-S2, TLS-S3, TLS-S4   S1, S2, S3 and S4 over TLS (https://), against
         a second process of the same server started with a certificate (below)

TLS: a self-signed ECDSA P-256 certificate for 127.0.0.1 made with the openssl
command for the run, the same file for every server; TLS 1.2 and 1.3 allowed,
each server's OpenSSL defaults otherwise (TLS 1.3 negotiated, with the cipher
the report names; session tickets on). The report says, per server, whether
it resumes a session a client offers back; wrk 4.1 makes a new SSL object for
each connection and offers none, so every TLS-S2 connection is a full
handshake for every server. reactor_http and nginx speak TLS here; the other
peers' cells say "no TLS".

For every measured run, the server's CPU time (user + system of the process and
all its descendants, so nginx's worker counts) is read before and after, and
divided by the requests completed: server CPU-microseconds per request. wrk's own
CPU time is measured too: a run where wrk's core was at 90% or more is marked
"*" (wrk-bound: the figure is the client's limit, not the server's).

Variants of reactor_http run beside the plain one (one worker, --quiet):
reactor_http_log with its access log on (written to a file), for what logging
costs; reactor_http_live with the live page (--dashboard-path) open in one
client, whose feed the harness reads throughout, and reactor_http_metrics with
--metrics-path scraped every second, for what watching costs; and
reactor_http_workers with one worker process per CPU of --worker-cpus
(default: all of them, so on a 2-core machine wrk shares one), for how CPU per
request holds as workers are added. --reactor-http-checkout
NAME=DIR adds the reactor_http of another checkout (the commit before a
change, say), started the same way, measured in the same run and compared in
the ratio tables: a change and what it changed, one invocation.
--reactor-http-python NAME=INTERPRETER does the same for this checkout's
reactor_http under another Python (it needs nothing outside the standard
library, so any CPython from 3.10 on runs it from the checkout): one row per
interpreter, same run, same machine. The interpreter must answer `-c 'import
sys; print(sys.version)'` before anything starts; its full sys.version is in
the row's label and in the JSON, and the plain reactor_http row then names
the harness's own Python too. Both options are repeatable, and each NAME is a
server of its own beside the others.

Peers run from the launchers in scripts/bench_peers/ (one file per server, each
configured as its users would for static files) and are skipped, with a note,
when they are not installed. `ceiling` is not a server: a minimal epoll loop
answering every request with pre-built bytes, the interpreter's ceiling here.

Commands (from the repository's root):

    # once: a virtual environment with the peers, psutil and matplotlib
    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -e '.[bench]'

    # the full run (all servers, all scenarios, 3 runs of 10 s; about 40 minutes)
    /tmp/benchvenv/bin/python scripts/bench.py --json bench.json --png docs/benchmarks.png \\
        --markdown bench.md

    # a smoke run: 1 run of 3 s per scenario, two servers
    python3 scripts/bench.py --quick --servers reactor_http,nginx --scenarios S1,S4

    # the tables and the chart again from a saved report, measuring nothing
    /tmp/benchvenv/bin/python scripts/bench.py --from-json bench.json --png docs/benchmarks.png

    # one worker against one worker per CPU, and the access log's cost
    python3 scripts/bench.py --servers reactor_http,reactor_http_workers,reactor_http_log \
        --scenarios S1,S2,S4

    # this tree against the commit before a change, in one run
    git clone -q . /tmp/before && git -C /tmp/before checkout -q COMMIT
    python3 scripts/bench.py --servers reactor_http --reactor-http-checkout before=/tmp/before \
        --scenarios S1,S2,S4

    # one row per Python: this tree under each interpreter (and the harness's own), in one run
    python3 scripts/bench.py --servers reactor_http,nginx_tuned --scenarios S1,S4 \
        --reactor-http-python py3.10=~/.pyenv/versions/3.10.13/bin/python3 \
        --reactor-http-python py3.12=~/.pyenv/versions/3.12.1/bin/python3

Needs wrk and taskset (util-linux) on PATH, Linux, psutil; matplotlib for --png.

`bench.py idle-client ...` is the S5 client, which the harness starts itself.
"""

import argparse
import dataclasses
import datetime
import errno
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import re
import resource
import selectors
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from harness import REPO
from harness.http import Mismatch, fetch, frame_response, request_bytes
from harness.report import (
    KIB,
    MIB,
    escape_markdown,
    format_number,
    format_ratio,
    load_json,
    machine_description,
    program_version,
    render_table,
    save_json,
    write_report,
)
from harness.sampling import (
    busy_percent,
    cpu_ticks,
    find_program,
    parse_cpu_list,
    pinned,
    tree_cpu_seconds,
    tree_snapshot,
)
from harness.server import (
    ReactorHttpProcess,
    ServerError,
    ServerProcess,
    finish_helper,
    free_port,
    python_environment,
    reactor_http_version,
)

from reactor_http.server.limits import raise_descriptor_limit

PEERS = os.path.join(REPO, "scripts", "bench_peers")
# The oldest Python reactor_http runs on (setup.cfg's python_requires).
MINIMUM_PYTHON = (3, 10)

# The document root: name -> size in bytes.
DOCUMENT_FILES = {
    "index.html": 1 * KIB,
    "style.css": 4 * KIB,
    "image.png": 64 * KIB,
    "file-10m.bin": 10 * MIB,
    "file-100m.bin": 100 * MIB,
}
MISSING_PATH = "/no-such-file.html"

# What a current desktop browser sends on a navigation, less Host and
# Connection (wrk adds Host; HTTP/1.1 is persistent by default): ten fields,
# about 700 bytes, against wrk's bare "GET / HTTP/1.1" + Host.
BROWSER_HEADERS = (
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Cookie: sessionid=4f9c2a7d1e8b4c3a9f6e5d2c1b0a9876; csrftoken=Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz; "
    "theme=dark; _ga=GA1.1.1234567890.1732780800",
    "Referer: http://127.0.0.1/docs/getting-started.html",
    "Cache-Control: max-age=0",
    "Sec-Fetch-Dest: document",
    "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: same-origin",
)

PIPELINE_DEPTH = 16


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str = "/index.html"
    connections: int = 50
    headers: tuple = ()
    pipeline_depth: int = 1
    metric: str = "requests_per_second"  # or "megabytes_per_second", or "idle" for S5
    expected_status: int = 200
    ceiling: bool = True  # whether the ceiling loop's answer means anything here
    tls: bool = False     # over https://, against the server's TLS process

    def over_tls(self):
        return dataclasses.replace(self, name="TLS-" + self.name, title=self.title + ", TLS", tls=True,
                                   ceiling=False)


_PLAIN_SCENARIOS = (
    Scenario("S1", "1 KiB, keep-alive"),
    Scenario("S1b", "1 KiB, keep-alive, browser headers", headers=BROWSER_HEADERS),
    Scenario("S2", "1 KiB, new connection each", headers=("Connection: close",)),
    Scenario("S3", "10 MiB file", path="/file-10m.bin", connections=8,
             metric="megabytes_per_second", ceiling=False),
    Scenario("S4", "404, keep-alive", path=MISSING_PATH, expected_status=404, ceiling=False),
    Scenario("S5", "idle keep-alive connections", metric="idle"),
    Scenario("S6", f"1 KiB, {PIPELINE_DEPTH} pipelined per write", pipeline_depth=PIPELINE_DEPTH),
)
SCENARIOS = {scenario.name: scenario for scenario in (
    *_PLAIN_SCENARIOS,
    *(scenario.over_tls() for scenario in _PLAIN_SCENARIOS if scenario.name in ("S1", "S2", "S3", "S4")),
)}

METRIC_UNITS = {"requests_per_second": "req/s", "megabytes_per_second": "MB/s"}


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    launcher: str = None            # file in scripts/bench_peers/; None for reactor_http
    modules: tuple = ()             # importable modules it needs
    distributions: tuple = ()       # packages whose versions the report names
    program: str = None             # an external program it needs
    # reactor_http's variants, each beside the plain run in the same invocation:
    access_log: bool = False        # the access log on (into a file), not --quiet
    on_worker_cpus: bool = False    # --workers N on --worker-cpus, N = how many CPUs that is
    checkout: str = None            # another checkout's reactor_http (--reactor-http-checkout)
    watched: str = None             # "live": the live page open in one client; "metrics": scraped each second
    python: str = None              # another interpreter for this checkout's (--reactor-http-python)
    python_version: str = None      # its sys.version, whitespace collapsed to single spaces
    python_executable: str = None   # its sys.executable (a pyenv shim's is the Python it chose)
    launcher_args: tuple = ()       # more flags for the launcher
    speaks_tls: bool = False        # its launcher takes --certfile and --keyfile

    @property
    def is_reactor_http(self):
        return self.launcher is None


SERVERS = {spec.name: spec for spec in (
    ServerSpec("reactor_http", "reactor_http", speaks_tls=True),
    ServerSpec("reactor_http_log", "reactor_http, access log on (to a file)", access_log=True, speaks_tls=True),
    ServerSpec("reactor_http_live", "reactor_http, live page open in one client (--dashboard-path)",
               watched="live", speaks_tls=True),
    ServerSpec("reactor_http_metrics", "reactor_http, --metrics-path scraped every second",
               watched="metrics", speaks_tls=True),
    ServerSpec("reactor_http_workers", "reactor_http, one worker per CPU of --worker-cpus",
               on_worker_cpus=True, speaks_tls=True),
    ServerSpec("ceiling", "ceiling: bare epoll loop, fixed answer", "ceiling.py"),
    ServerSpec("nginx", "nginx, 1 worker, sendfile", "nginx.py", program="nginx", speaks_tls=True),
    ServerSpec("nginx_tuned", "nginx, 1 worker, sendfile, open_file_cache", "nginx.py", program="nginx",
               launcher_args=("--open-file-cache",), speaks_tls=True),
    ServerSpec("waitress", "waitress + whitenoise", "waitress_whitenoise.py",
               ("waitress", "whitenoise"), ("waitress", "whitenoise")),
    ServerSpec("http_server_11", "http.server, HTTP/1.1 + TCP_NODELAY", "http_server_11.py"),
    ServerSpec("twisted", "twisted static.File", "twisted_static.py", ("twisted",), ("twisted",)),
    ServerSpec("aiohttp", "aiohttp add_static", "aiohttp_static.py", ("aiohttp",), ("aiohttp",)),
    ServerSpec("tornado", "tornado StaticFileHandler", "tornado_static.py", ("tornado",), ("tornado",)),
    ServerSpec("http_server_10", "python -m http.server (HTTP/1.0)", "http_server_10.py"),
    ServerSpec("uvicorn", "uvicorn + starlette StaticFiles", "uvicorn_starlette.py",
               ("uvicorn", "starlette"), ("uvicorn", "starlette", "uvloop", "httptools")),
)}

# A run where wrk's own core was this busy measured wrk, not the server.
CLIENT_BOUND_PERCENT = 90.0
# A run where something else took this much of the server's CPU was disturbed.
NOISY_PERCENT = 20.0


class BenchError(Exception):
    """Something that stops one server's measurement (it is reported, the rest go on)."""


# http.server's stock handler answers in HTTP/1.0; the other servers in HTTP/1.1.
PEER_VERSIONS = ("HTTP/1.0", "HTTP/1.1")


# -- the document root -------------------------------------------------------------------

def build_document_root(directory):
    """Write the benchmark's files (deterministic bytes) into directory; readable by
    anyone, since nginx's worker drops to an unprivileged user when run as root."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    generator = random.Random(1)  # the same bytes every run
    chunk = generator.randbytes(MIB)
    for name, size in DOCUMENT_FILES.items():
        path = os.path.join(directory, name)
        with open(path, "wb") as file:
            if name == "index.html":
                file.write(_html_page(size))
            elif name == "style.css":
                file.write(_css(size))
            elif name == "image.png":
                file.write((b"\x89PNG\r\n\x1a\n" + chunk)[:size])
            else:
                for _ in range(size // MIB):
                    file.write(chunk)
        os.chmod(path, 0o644)
    return directory


def _html_page(size):
    page = ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>Benchmark page</title>\n<link rel=\"stylesheet\" href=\"style.css\">\n"
            "</head>\n<body>\n<h1>A 1 KiB page</h1>\n<p><img src=\"image.png\" alt=\"\"></p>\n")
    closing = "</body>\n</html>\n"
    filler = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30
    body = page + filler
    body = body[:size - len(closing) - len("</p>\n")] + "</p>\n" + closing
    assert len(body) == size
    return body.encode("ascii")


def _css(size):
    rule = "body { margin: 0 auto; max-width: 40em; font: 16px/1.5 sans-serif; color: #222; }\n"
    text = (rule * (size // len(rule) + 1))[:size - 1] + "\n"
    return text.encode("ascii")


# -- wrk -----------------------------------------------------------------------------------

# wrk counts a "request" when it has parsed a *response* (response_complete() in
# wrk.c increments the thread's `complete` counter once per response), and it
# knows how many responses one write should bring back by parsing the string
# request() returns (script_verify_request counts the requests in it and sets
# the pipeline depth). So with 16 requests in one write, wrk's request count, and
# its Requests/sec, count responses, not batches: responses per second is
# summary.requests / summary.duration, with no factor of 16 anywhere.
# tests/test_bench_harness.py checks this against the server's own access log.
#
# Latency: wrk records one sample per write (for S6, from the write to the last
# of its 16 responses), then, before done() sees them, "corrects" the histogram
# for coordinated omission (stats_correct in wrk.c and stats.c): for each sample
# longer than twice the mean interval between responses on a connection, it adds
# synthetic samples below it. The p99 of S1-S4 is that corrected figure, as wrk
# prints it. With pipelining the interval is per response, 16 times shorter than
# a batch, so the synthetic samples land below the histogram's minimum, where
# wrk's percentile walk never looks: S6's percentiles are garbage (often 0). For
# S6 the harness reports the mean batch time from Little's law instead: with
# every connection always waiting on one batch, mean time per batch =
# connections x depth / responses per second.
WRK_SCRIPT = """\
-- Written by scripts/bench.py: {depth} request(s) per write, then one JSON line for the harness.
local depth = {depth}
local path = "{path}"

init = function(args)
  if depth > 1 then
    batch = string.rep(wrk.format(nil, path), depth)
  end
end

if depth > 1 then
  request = function() return batch end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH_JSON {{\\"duration_us\\": %.0f, \\"requests\\": %.0f, \\"bytes\\": %.0f, " ..
    "\\"connect_errors\\": %.0f, \\"read_errors\\": %.0f, \\"write_errors\\": %.0f, " ..
    "\\"status_errors\\": %.0f, \\"timeouts\\": %.0f, \\"p50_us\\": %.0f, \\"p99_us\\": %.0f, " ..
    "\\"max_us\\": %.0f}}\\n",
    summary.duration, summary.requests, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, latency:percentile(50),
    latency:percentile(99), latency.max))
end
"""


def write_wrk_script(path, request_path="/index.html", depth=1):
    """Write the Lua script for one scenario; returns path."""
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*", request_path):
        raise ValueError(f"unexpected request path {request_path!r}")
    with open(path, "w") as file:
        file.write(WRK_SCRIPT.format(depth=depth, path=request_path))
    return path


def wrk_command(wrk, url, connections, seconds, script, headers=(), client_cpus=None):
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script]
    for header in headers:
        command += ["-H", header]
    command.append(url)
    if client_cpus:
        command = ["taskset", "-c", client_cpus, *command]
    return command


def parse_wrk_output(text):
    """The JSON line our Lua done() printed -> dict; BenchError if it is missing."""
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise BenchError(f"wrk printed no result:\n{text[-2000:]}")


# -- one server ----------------------------------------------------------------------------

@dataclasses.dataclass
class RunningServer:
    """A server started for measuring, and what measuring it reads."""

    process: ServerProcess
    psutil_process: object  # psutil.Process: taskset execs the server, so the pid is the server's
    port: int
    cpus: list              # the CPUs it is pinned to

def server_cpus_for(spec, options):
    """The taskset CPU list a server runs on."""
    return options.worker_cpus if spec.on_worker_cpus else options.server_cpus


def start_server(spec, port, root, options, work_directory, certificate=None):
    """The server of ``spec`` on ``port``, pinned to its CPUs, in a session of
    its own (stopping it stops nginx's worker too), its output in a log file;
    speaking TLS with ``certificate`` (its (certfile, keyfile)) when given."""
    launcher = pinned((), server_cpus_for(spec, options))
    suffix = "-tls" if certificate else ""
    process_options = {"log_path": os.path.join(work_directory, f"{spec.name}{suffix}.log"), "new_session": True}
    tls_flags = ["--certfile", certificate[0], "--keyfile", certificate[1]] if certificate else []
    if spec.is_reactor_http:
        flags = ["--port", str(port), "--root", root, *tls_flags]
        if not spec.access_log:
            flags.append("--quiet")
        # The access log goes to stdout, which the harness sends to a file.
        if spec.on_worker_cpus:
            flags += ["--workers", str(len(parse_cpu_list(options.worker_cpus)))]
        elif options.reactor_workers:
            flags += ["--workers", str(options.reactor_workers)]
        flags += shlex.split(options.reactor_args or "")
        if spec.watched == "live":
            flags += ["--dashboard-path", LIVE_PAGE]
        elif spec.watched == "metrics":
            flags += ["--metrics-path", METRICS_PATH]
        if spec.python:  # as ReactorHttpProcess does, with that interpreter for sys.executable
            return ServerProcess([*launcher, spec.python, "-m", "reactor_http", *flags], cwd=REPO,
                                 env=python_environment(REPO), **process_options)
        return ReactorHttpProcess(flags, checkout=spec.checkout or REPO, launcher=launcher, **process_options)
    command = [sys.executable, os.path.join(PEERS, spec.launcher), "--port", str(port), "--root", root,
               *spec.launcher_args, *tls_flags]
    if spec.program == "nginx":
        command += ["--prefix", os.path.join(work_directory, spec.name + suffix)]
    return ServerProcess([*launcher, *command], cwd=REPO, env=python_environment(REPO), **process_options)


def why_unavailable(spec):
    """None if the server can run here, else the reason it is skipped."""
    missing = [module for module in spec.modules if importlib.util.find_spec(module) is None]
    if missing:
        return f"not installed ({', '.join(missing)}): pip install -e '.[bench]'"
    if spec.program and find_program(spec.program) is None:
        return f"{spec.program} is not installed"
    return None


def server_version(spec):
    if spec.is_reactor_http:
        checkout = spec.checkout or REPO
        version = reactor_http_version(checkout)
        commit = program_version(["git", "-C", checkout, "rev-parse", "--short", "HEAD"])
        if commit and re.fullmatch(r"[0-9a-f]+", commit):
            version = f"{version[:-1]}, commit {commit})"
        return f"{version}, on Python {spec.python_version}" if spec.python else version
    if spec.program == "nginx":
        return program_version([find_program("nginx"), "-v"])
    versions = []
    for distribution in spec.distributions:
        try:
            versions.append(f"{distribution} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(versions) or f"Python {platform.python_version()}"


def make_certificate(directory):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, made with the
    openssl command: (certfile, keyfile). BenchError without openssl."""
    openssl = find_program("openssl")
    if openssl is None:
        raise BenchError("openssl is not installed (apt-get install openssl): no certificate for TLS")
    certfile, keyfile = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    completed = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", keyfile, "-out", certfile, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise BenchError(f"openssl req failed: {completed.stderr.strip()[-300:]}")
    return certfile, keyfile


def check_tls_answers(port, index_bytes):
    """check_answers over TLS (the certificate is the run's own: not verified);
    returns what was negotiated and whether the server resumed a session that
    the client offered back."""
    import ssl
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def get(path, session=None):
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), session=session)
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = bytearray()
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except ssl.SSLEOFError:  # closed without close_notify: the answer is complete anyway
                    break
                if not chunk:
                    break
                data += chunk
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else None
            negotiated = {"version": sock.version(), "cipher": sock.cipher()[0],
                          "session": sock.session, "reused": sock.session_reused}
            return negotiated, status, body
        finally:
            sock.close()

    first, status, body = get("/index.html")
    if status != 200 or body != index_bytes:
        raise BenchError(f"GET https://.../index.html gave {status} with {len(body)} bytes")
    for path, wanted, length in ((MISSING_PATH, 404, None), ("/file-10m.bin", 200, 10 * MIB)):
        _, status, body = get(path)
        if status != wanted or (length is not None and len(body) != length):
            raise BenchError(f"GET https://...{path} gave {status} with {len(body)} bytes")
    second, _, _ = get("/index.html", session=first["session"])
    return {"version": first["version"], "cipher": first["cipher"], "resumes_sessions": second["reused"]}


def check_answers(port, index_bytes, check_404=True):
    """Before measuring, make sure the server gives the right bytes for the
    scenarios' paths: a fast wrong answer (a 403 page, an index listing) would
    look like a fast server."""
    def status_and_body(path):
        try:
            head, body = fetch("127.0.0.1", port, path, timeout=30, versions=PEER_VERSIONS)
        except Mismatch as error:
            raise BenchError(f"GET {path}: {error}") from None
        return head.status, body

    status, body = status_and_body("/index.html")
    if status != 200 or body != index_bytes:
        raise BenchError(f"GET /index.html gave {status} with {len(body)} bytes, "
                         f"not 200 with the {len(index_bytes)}-byte page")
    if check_404:
        status, _ = status_and_body(MISSING_PATH)
        if status != 404:
            raise BenchError(f"GET {MISSING_PATH} gave {status}, not 404")
        status, body = status_and_body("/file-10m.bin")
        if status != 200 or len(body) != 10 * MIB:
            raise BenchError(f"GET /file-10m.bin gave {status} with {len(body)} bytes")


# -- measuring -----------------------------------------------------------------------------

class Bench:
    def __init__(self, options, wrk, work_directory, root, log=print):
        self.options = options
        self.wrk = wrk
        self.work_directory = work_directory
        self.root = root
        self.log = log
        self.certificate = None  # (certfile, keyfile), made when a TLS scenario first needs it
        with open(os.path.join(root, "index.html"), "rb") as file:
            self.index_bytes = file.read()
        self.scripts = {}
        for scenario in SCENARIOS.values():
            if scenario.metric != "idle":
                self.scripts[scenario.name] = write_wrk_script(
                    os.path.join(work_directory, f"{scenario.name}.lua"),
                    scenario.path, scenario.pipeline_depth)

    def run_wrk(self, server, scenario, seconds):
        """One wrk run against server; returns the run's figures."""
        url = f"{'https' if scenario.tls else 'http'}://127.0.0.1:{server.port}{scenario.path}"
        command = wrk_command(self.wrk, url, scenario.connections, seconds,
                              self.scripts[scenario.name], scenario.headers, self.options.client_cpus)
        cpu_before = tree_cpu_seconds(server.psutil_process)
        ticks_before = cpu_ticks()
        # wrk is this harness's only child that exits during a run, so the change
        # in RUSAGE_CHILDREN across its wait is wrk's own CPU time.
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            output, errors = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise BenchError(f"wrk did not finish within {seconds + 60} s") from None
        wall = time.monotonic() - started
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks_after = cpu_ticks()
        cpu_after = tree_cpu_seconds(server.psutil_process)
        if process.returncode != 0:
            raise BenchError(f"wrk exited with status {process.returncode}: {errors.strip()}")
        if not server.process.alive():
            raise BenchError(f"the server exited during {scenario.name}: {server.process.log_tail()}")
        figures = parse_wrk_output(output)
        seconds_measured = figures["duration_us"] / 1e6
        requests = figures["requests"]
        rate = requests / seconds_measured if seconds_measured else 0.0
        pipelined = scenario.pipeline_depth > 1
        user_cpu, system_cpu = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
        server_cpu = user_cpu + system_cpu
        client_cpu = ((children_after.ru_utime + children_after.ru_stime)
                      - (children_before.ru_utime + children_before.ru_stime))
        server_percent = 100.0 * server_cpu / wall
        server_cores_percent = busy_percent(ticks_before, ticks_after, server.cpus)
        # wrk counts every response with status > 399 as a "status error"; S4
        # expects exactly those.
        unexpected_status = (requests - figures["status_errors"] if scenario.expected_status >= 400
                             else figures["status_errors"])
        return {
            "requests": requests,
            "seconds": seconds_measured,
            "requests_per_second": rate,
            "megabytes_per_second": figures["bytes"] / seconds_measured / 1e6 if seconds_measured else 0.0,
            # A percentile of 0 is wrk's walk missing its own corrected samples (see WRK_SCRIPT).
            "p50_ms": figures["p50_us"] / 1000 if figures["p50_us"] and not pipelined else None,
            "p99_ms": figures["p99_us"] / 1000 if figures["p99_us"] and not pipelined else None,
            "max_ms": figures["max_us"] / 1000,
            "batch_mean_ms": (1000 * scenario.connections * scenario.pipeline_depth / rate
                              if pipelined and rate else None),
            "socket_errors": {key: figures[key] for key in
                              ("connect_errors", "read_errors", "write_errors", "timeouts")},
            "unexpected_status": unexpected_status,
            "server_cpu_seconds": server_cpu,
            "cpu_us_per_request": 1e6 * server_cpu / requests if requests else None,
            "user_us_per_request": 1e6 * user_cpu / requests if requests else None,
            "system_us_per_request": 1e6 * system_cpu / requests if requests else None,
            "server_cpu_percent": server_percent,
            "client_cpu_percent": 100.0 * client_cpu / wall,
            # Time the server's CPUs spent on anything but this server: other
            # work on a shared machine, the hypervisor's steal, interrupts.
            "other_load_on_server_cpus_percent": max(0.0, server_cores_percent - server_percent),
        }

    def measure_scenario(self, server, scenario):
        options = self.options
        if options.warmup:
            self.run_wrk(server, scenario, options.warmup)  # discarded
        runs = []
        for number in range(1, options.runs + 1):
            run = self.run_wrk(server, scenario, options.duration)
            runs.append(run)
            unit = METRIC_UNITS[scenario.metric]
            self.log(f"  {scenario.name} run {number}/{options.runs}: "
                     f"{format_number(run[scenario.metric])} {unit}, "
                     + (f"p99 {format_number(run['p99_ms'])} ms, " if run["p99_ms"] else "")
                     + (f"batch {format_number(run['batch_mean_ms'])} ms, " if run["batch_mean_ms"] else "")
                     + f"{format_number(run['cpu_us_per_request'])} CPU-us/request, "
                     f"server {run['server_cpu_percent']:.0f}% / wrk {run['client_cpu_percent']:.0f}% "
                     f"of a core")
        return summarise_runs(runs)

    def measure_idle(self, server):
        """S5: hold N idle keep-alive connections from a separate process and look
        at the server's memory, threads and descriptors."""
        count = self.options.idle_connections
        time.sleep(0.5)  # let the previous scenario's connections finish closing
        before = tree_snapshot(server.psutil_process, server.port)
        command = ["taskset", "-c", self.options.client_cpus, sys.executable, os.path.abspath(__file__),
                   "idle-client", "--port", str(server.port), "--count", str(count)]
        client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            opened = json.loads(client.stdout.readline() or "null")
            if opened is None:
                raise BenchError("the idle client failed")
            # Measure at once: some servers close idle connections after a few
            # seconds (uvicorn: 5 s), and what they still hold is what is measured.
            after = tree_snapshot(server.psutil_process, server.port)
            client.stdin.write("check\n")
            client.stdin.flush()
            still_open = json.loads(client.stdout.readline() or "null") or {}
        finally:
            finish_helper(client, 60)
        held = after["established"]
        result = {
            "requested": count,
            "answered": opened["answered"],
            "failed": opened["failed"],
            "unanswered": opened["unanswered"],
            "open_seconds": opened["seconds"],
            "held_by_server": held,
            "still_open_after_measurement": still_open.get("open"),
            "rss_before_bytes": before["rss"],
            "rss_after_bytes": after["rss"],
            "rss_per_connection_kib": (after["rss"] - before["rss"]) / held / KIB if held else None,
            "threads_before": before["threads"],
            "threads": after["threads"],
            "fds": after["fds"],
        }
        self.log(f"  S5: {held} of {count} connections held, "
                 + (f"{result['rss_per_connection_kib']:.1f} KiB RSS each, " if held else "")
                 + f"{after['threads']} threads, {after['fds']} descriptors")
        return result

    def measure_server(self, spec, scenarios):
        """Every scenario for one server: the plain ones on one process of it,
        the TLS ones on another, started with the run's certificate."""
        plain = [scenario for scenario in scenarios if not scenario.tls]
        secure = [scenario for scenario in scenarios if scenario.tls]
        results = self.measure_process(spec, plain) if plain else {}
        if secure and not spec.speaks_tls:
            results.update({scenario.name: {"skipped": "no TLS"} for scenario in secure})
        elif secure:
            try:
                if self.certificate is None:
                    self.certificate = make_certificate(self.work_directory)
            except BenchError as error:
                results.update({scenario.name: {"error": str(error)} for scenario in secure})
            else:
                results.update(self.measure_process(spec, secure, self.certificate))
        return results

    def measure_process(self, spec, scenarios, certificate=None):
        import psutil
        port = free_port()
        process = start_server(spec, port, self.root, self.options, self.work_directory, certificate)
        server = RunningServer(process, psutil.Process(process.pid), port,
                               parse_cpu_list(server_cpus_for(spec, self.options)))
        results = {}
        watcher = None
        try:
            process.wait_until_listening("127.0.0.1", port)
            if certificate:
                results["tls"] = check_tls_answers(port, self.index_bytes)
            else:
                check_answers(port, self.index_bytes, check_404=spec.name != "ceiling")
            if spec.watched:
                watcher = Watcher(port, spec.watched, certificate is not None)
                watcher.start()
            for scenario in scenarios:
                if spec.name == "ceiling" and not scenario.ceiling:
                    results[scenario.name] = {"skipped": "the ceiling loop answers every request alike"}
                    continue
                try:
                    if scenario.metric == "idle":
                        results[scenario.name] = self.measure_idle(server)
                    else:
                        results[scenario.name] = self.measure_scenario(server, scenario)
                except (BenchError, OSError, ValueError, KeyError) as error:
                    # One cell fails, not the whole invocation.
                    self.log(f"  {scenario.name} failed: {error!r}")
                    results[scenario.name] = {"error": str(error) or repr(error)}
                    if not process.alive():
                        break
        finally:
            if watcher is not None:
                results["watched"] = watcher.stop()  # proof that it watched: what it received
            process.stop(timeout=10)
        if spec.access_log and not certificate:
            # Proof that the variant did log: its lines are in the server's output.
            with open(process.log_path, "rb") as file:
                results["access_log"] = {"lines": sum(1 for line in file if b'] "GET ' in line)}
        return results


LIVE_PAGE = "/_reactor"
METRICS_PATH = "/metrics"


class Watcher(threading.Thread):
    """What watches reactor_http_live and reactor_http_metrics during their
    runs, in this process: one client reading the live page's feed (an event a
    second), or one scraping the metrics every second, as Prometheus would."""

    def __init__(self, port, kind, tls):
        super().__init__(daemon=True)
        self.port, self.kind, self.tls = port, kind, tls
        self.received = 0  # events, or scrapes
        self.error = None
        self._stopping = threading.Event()

    def _connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if self.tls:
            import ssl
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        return sock

    def run(self):
        try:
            if self.kind == "live":
                with self._connect() as sock:
                    sock.sendall(f"GET {LIVE_PAGE}/events HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                    sock.settimeout(0.5)
                    while not self._stopping.is_set():
                        try:
                            data = sock.recv(65536)
                        except TimeoutError:
                            continue
                        if not data:
                            break
                        self.received += data.count(b"event: tick")
            else:
                while not self._stopping.wait(1.0):
                    with self._connect() as sock:
                        sock.sendall(f"GET {METRICS_PATH} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
                                     .encode())
                        answer = b""
                        while True:
                            data = sock.recv(65536)
                            if not data:
                                break
                            answer += data
                    if b"reactor_http_responses_total" in answer:
                        self.received += 1
        except OSError as error:
            self.error = repr(error)

    def stop(self):
        self._stopping.set()
        self.join(10)
        return {"kind": self.kind, "received": self.received, "error": self.error}


def summarise_runs(runs):
    """Median, min and max of every numeric figure, plus the runs themselves."""
    summary = {"runs": runs}
    for key in ("requests_per_second", "megabytes_per_second", "p50_ms", "p99_ms", "max_ms",
                "batch_mean_ms",
                "cpu_us_per_request", "user_us_per_request", "system_us_per_request",
                "server_cpu_percent", "client_cpu_percent",
                "other_load_on_server_cpus_percent"):
        values = [run[key] for run in runs if run[key] is not None]
        if values:
            summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    summary["client_bound"] = summary["client_cpu_percent"]["median"] >= CLIENT_BOUND_PERCENT
    summary["errors"] = sum(sum(run["socket_errors"].values()) + run["unexpected_status"] for run in runs)
    summary["noisy"] = summary["other_load_on_server_cpus_percent"]["median"] >= NOISY_PERCENT
    return summary


def compute_ratios(results, scenarios, reference="reactor_http"):
    """reference / peer for each scenario's main figure and CPU per request, and
    for S5's RSS per connection; from medians of the same invocation."""
    ratios = {}
    own = results.get(reference)
    if not own:
        return ratios
    for peer, peer_results in results.items():
        if peer == reference:
            continue
        for scenario in scenarios:
            mine, theirs = own.get(scenario.name, {}), peer_results.get(scenario.name, {})
            entry = {}
            if scenario.metric == "idle":
                if mine.get("rss_per_connection_kib") and theirs.get("rss_per_connection_kib"):
                    entry["rss_per_connection"] = (mine["rss_per_connection_kib"]
                                                   / theirs["rss_per_connection_kib"])
            else:
                for key in (scenario.metric, "cpu_us_per_request"):
                    if key in mine and key in theirs and theirs[key]["median"]:
                        entry["throughput" if key == scenario.metric else key] = (
                            mine[key]["median"] / theirs[key]["median"])
            if entry:
                ratios.setdefault(peer, {})[scenario.name] = entry
    return ratios


# -- the idle-connection client (S5), run as a separate process ---------------------------

MAX_CONNECTING = 256  # connections in flight at once: fast, without overflowing most listen queues
OPEN_DEADLINE_SECONDS = 600  # S5 opens what it can in this long, whatever happens


def hold_idle_connections(host, port, count, path, stall_seconds, report, commands):
    """Open count connections, send one request on each and read its answer,
    then keep them open. Reports one JSON line when done opening, one more after
    a "check" command (how many the server has not closed), and closes them all
    at "close" or end of input."""
    raise_descriptor_limit(count)
    request = request_bytes("GET", path, host=f"{host}:{port}")
    selector = selectors.DefaultSelector()
    held, connecting = [], set()  # connecting: opened, not yet answered
    handshaking = set()  # connect() not complete yet
    opened = answered = failed = 0
    started = last_progress = time.monotonic()

    def give_up(sock):
        nonlocal failed
        selector.unregister(sock)
        connecting.discard(sock)
        handshaking.discard(sock)
        sock.close()
        failed += 1

    while answered + failed < count:
        while opened < count and len(connecting) < MAX_CONNECTING:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            opened += 1
            if sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
                sock.close()
                failed += 1
                continue
            connecting.add(sock)
            handshaking.add(sock)
            selector.register(sock, selectors.EVENT_WRITE, bytearray())
        # Give up when nothing was answered for stall_seconds: waitress stops
        # accepting at 100 connections, and the rest wait in its listen queue
        # for ever. But not while a handshake is pending: a full listen queue
        # (http.server has 5 places) drops SYNs, which the kernel retries after
        # 1, 2, 4, ... 64 s, then fails the connect (a failure is progress).
        if not handshaking and time.monotonic() - last_progress > stall_seconds:
            break
        if time.monotonic() - started > OPEN_DEADLINE_SECONDS:
            break
        for key, events in selector.select(timeout=0.5):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    give_up(sock)
                    last_progress = time.monotonic()
                    continue
                handshaking.discard(sock)
                try:
                    sock.send(request)
                except OSError:
                    give_up(sock)
                    continue
                selector.modify(sock, selectors.EVENT_READ, key.data)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                give_up(sock)
                last_progress = time.monotonic()
                continue
            key.data.extend(data)
            try:
                framed = frame_response(key.data, versions=PEER_VERSIONS)
            except Mismatch:
                give_up(sock)
                last_progress = time.monotonic()
                continue
            if framed is not None and len(key.data) >= framed[1]:
                selector.unregister(sock)
                connecting.discard(sock)
                held.append(sock)
                answered += 1
                last_progress = time.monotonic()
    unanswered = len(connecting)
    for sock in connecting:  # measure what the answered connections cost, nothing else
        selector.unregister(sock)
        sock.close()
    report({"answered": answered, "failed": failed, "unanswered": unanswered,
            "seconds": round(time.monotonic() - started, 3)})
    for line in commands:
        if line.strip() == "check":
            still_open = 0
            for sock in held:
                try:
                    still_open += sock.recv(1, socket.MSG_PEEK) != b""
                except BlockingIOError:
                    still_open += 1  # nothing to read and no end of stream: open
                except OSError:
                    pass
            report({"open": still_open, "closed": len(held) - still_open})
        elif line.strip() == "close":
            break
    for sock in held:
        sock.close()


def idle_client_main(argv):
    parser = argparse.ArgumentParser(prog="bench.py idle-client",
                                     description="S5's client: hold idle keep-alive connections.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--path", default="/index.html")
    parser.add_argument("--stall-seconds", type=float, default=30.0,
                        help="give up opening when nothing was answered for this long")
    args = parser.parse_args(argv)

    def report(value):
        print(json.dumps(value), flush=True)

    hold_idle_connections(args.host, args.port, args.count, args.path, args.stall_seconds,
                          report, sys.stdin)
    return 0


# -- reporting -----------------------------------------------------------------------------

def _cell(summary, key, runs, marks=True):
    if not summary:
        return "-"
    if "skipped" in summary:
        return "n/a"
    if "error" in summary:
        return "failed"
    figure = summary.get(key)
    if figure is None:
        return "-"
    text = format_number(figure["median"])
    if runs > 1:
        text += f" ({format_number(figure['min'])}-{format_number(figure['max'])})"
    if marks:
        text += (("*" if summary.get("client_bound") else "") + ("!" if summary.get("errors") else "")
                 + ("~" if summary.get("noisy") else ""))
    return text


def _split_cell(summary):
    if not summary or "user_us_per_request" not in summary:
        return "-"
    return (f"{format_number(summary['user_us_per_request']['median'])} + "
            f"{format_number(summary['system_us_per_request']['median'])}")


def report_tables(report, markdown=False):
    """The report's tables as text (aligned columns, or Markdown)."""
    scenarios = [SCENARIOS[name] for name in report["options"]["scenarios"]]
    load_scenarios = [scenario for scenario in scenarios if scenario.metric != "idle"]
    runs = report["options"]["runs"]
    results = report["results"]
    measured = [name for name in report["servers"] if name in results]
    label = {name: report["servers"][name]["label"] for name in report["servers"]}
    meta = report["meta"]
    machine = meta["machine"]
    options = report["options"]
    versions = "; ".join(f"{name}: {entry['version']}" for name, entry in report["servers"].items()
                         if entry.get("version"))
    sections = [
        f"Measured {meta['date']} on {machine['cpu_model']} ({machine['cpus']} CPUs, Linux "
        f"{machine['kernel']}), {machine['implementation']} {machine['python']}, {meta['wrk']}. "
        f"Server on CPU {options['server_cpus']}, client on CPU {options['client_cpus']}; "
        f"{options['warmup']} s warm-up, then {runs} x {options['duration']} s per scenario; "
        f"S5 with {options['idle_connections']:,} connections. Versions: {versions}. "
        f"Command: {meta['command']}"]

    def section(title, headers, rows, note=None):
        heading = f"### {title}" if markdown else title
        parts = [heading, "", render_table(headers, rows, markdown)]
        if note:
            parts += ["", escape_markdown(note) if markdown else note]
        sections.append("\n".join(parts))

    if load_scenarios:
        spread = f"median (min-max) of {runs} runs" if runs > 1 else "one run"
        sections.append("Scenarios: " + "; ".join(f"{s.name} {s.title}" for s in scenarios) + ".")
        section(f"Throughput: {spread}",
                ["server"] + [f"{s.name} {METRIC_UNITS[s.metric]}" for s in load_scenarios],
                [[label[name]] + [_cell(results[name].get(s.name), s.metric, runs) for s in load_scenarios]
                 for name in measured],
                "* wrk's core at 90% or more: the client's limit, not the server's.  "
                "! socket errors, timeouts or unexpected statuses (see the JSON).  "
                f"~ other work took {NOISY_PERCENT:.0f}% or more of the server's CPU.  "
                f"S6 counts responses ({PIPELINE_DEPTH} per write).")
        latency_scenarios = [s for s in load_scenarios if s.metric != "megabytes_per_second"]
        section("Latency, ms (median)",
                ["server"] + [f"{s.name} p99" if s.pipeline_depth == 1 else f"{s.name} batch mean"
                              for s in latency_scenarios],
                [[label[name]] + [_cell(results[name].get(s.name),
                                        "p99_ms" if s.pipeline_depth == 1 else "batch_mean_ms", 1, marks=False)
                                  for s in latency_scenarios] for name in measured],
                "p99 as wrk 4 computes it (with its coordinated-omission correction). "
                f"S6: mean time from a write of {PIPELINE_DEPTH} requests to the last response, from "
                "Little's law (wrk's percentiles are wrong when pipelining).")
        noise = [run["other_load_on_server_cpus_percent"] for name in measured
                 for summary in results[name].values() for run in summary.get("runs", ())]
        if noise:
            sections.append(
                f"Other load on the server's CPU during measured runs (other processes, steal, "
                f"interrupts): median {statistics.median(noise):.0f}%, max {max(noise):.0f}% of the core.")
        section("Server CPU-microseconds per request (median; lower is better)",
                ["server"] + [s.name for s in load_scenarios],
                [[label[name]] + [_cell(results[name].get(s.name), "cpu_us_per_request", 1, marks=False)
                                  for s in load_scenarios] for name in measured],
                "User + system time of the server process and its children, over requests "
                "completed. S3 and TLS-S3: per 10 MiB response (divide by 10.5 for CPU-us per MB).")
        section("The same, split: user (the server's own code) + system (the kernel: system "
                "calls, and on loopback most of TCP)",
                ["server"] + [s.name for s in load_scenarios],
                [[label[name]] + [_split_cell(results[name].get(s.name)) for s in load_scenarios]
                 for name in measured])
    handshakes = [[label[name], results[name]["tls"].get("version", "-"), results[name]["tls"].get("cipher", "-"),
                   "yes" if results[name]["tls"].get("resumes_sessions") else "no"]
                  for name in measured if isinstance(results[name].get("tls"), dict)]
    if handshakes:
        section("TLS as negotiated by a Python client (the same certificate for every server)",
                ["server", "version", "cipher", "resumes a session offered back"], handshakes,
                "wrk 4.1 offers no session when it reconnects: every TLS-S2 connection is a full handshake.")
    if "S5" in report["options"]["scenarios"]:
        rows = []
        for name in measured:
            idle = results[name].get("S5", {})
            if "skipped" in idle or "error" in idle or not idle:
                rows.append([label[name], idle.get("error", "n/a")[:60] if idle else "-"] + ["-"] * 5)
                continue
            rows.append([label[name], f"{idle['held_by_server']:,} / {idle['requested']:,}",
                         format_number(idle["open_seconds"]),
                         format_number(idle["rss_per_connection_kib"]),
                         f"{idle['rss_after_bytes'] / MIB:,.1f}", f"{idle['threads']:,}", f"{idle['fds']:,}"])
        section("S5: idle keep-alive connections",
                ["server", "held / opened", "seconds to open", "RSS per connection, KiB", "RSS, MiB",
                 "threads", "fds"],
                rows, "Held: ESTABLISHED on the server's port when memory was read, right after "
                      "the client finished opening (seconds to open: from the first connect to the "
                      "last answer, or to giving up). RSS per connection: (RSS then - RSS before) / held.")
    if report["ratios"]:
        rows = []
        for peer, by_scenario in report["ratios"].items():
            row = [label[peer]]
            for scenario in scenarios:
                entry = by_scenario.get(scenario.name, {})
                row.append(format_ratio(entry.get("rss_per_connection" if scenario.metric == "idle"
                                                  else "throughput")))
            rows.append(row)
        section("reactor_http / peer, same invocation (throughput: higher is better for reactor_http; "
                "S5 memory: lower is better)",
                ["peer"] + [s.name for s in scenarios], rows)
        rows = [[label[peer]] + [format_ratio(by_scenario.get(s.name, {}).get("cpu_us_per_request"))
                                 for s in load_scenarios]
                for peer, by_scenario in report["ratios"].items()]
        if load_scenarios:
            section("reactor_http / peer, CPU-microseconds per request (lower is better for reactor_http)",
                    ["peer"] + [s.name for s in load_scenarios], rows)
    variants = [name for name in measured if name != "reactor_http" and name.startswith("reactor_http")]
    if variants and "reactor_http" in results and load_scenarios:
        plain = results["reactor_http"]
        rows = []
        for name in variants:
            row = [label[name]]
            for scenario in load_scenarios:
                mine, theirs = results[name].get(scenario.name, {}), plain.get(scenario.name, {})
                if scenario.metric in mine and scenario.metric in theirs:
                    cell = format_ratio(mine[scenario.metric]["median"] / theirs[scenario.metric]["median"])
                    if "cpu_us_per_request" in mine and "cpu_us_per_request" in theirs:
                        cell += (f" ({format_number(mine['cpu_us_per_request']['median'])} vs "
                                 f"{format_number(theirs['cpu_us_per_request']['median'])} us)")
                    row.append(cell)
                else:
                    row.append("-")
            rows.append(row)
        section("reactor_http's variants / plain reactor_http (one worker, --quiet), same invocation: "
                "throughput ratio (server CPU-microseconds per request, variant vs plain)",
                ["variant"] + [s.name for s in load_scenarios], rows,
                "Access log: the cost of logging every request is 1 - ratio. Workers: CPU per "
                "request should stay flat as workers are added; throughput can only scale where "
                "wrk has CPUs of its own.")
    skipped = [f"{report['servers'][name]['label']}: {report['servers'][name]['skipped']}"
               for name in report["servers"] if report["servers"][name].get("skipped")]
    if skipped:
        sections.append(("### Skipped\n\n" if markdown else "Skipped:\n") + "\n".join(
            f"- {line}" for line in skipped))
    return "\n\n".join(sections) + "\n"


def render_chart(report, path):
    """A bar chart per scenario; returns None, or why no chart was drawn."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    import matplotlib.ticker

    results = report["results"]
    panels = []
    for name in report["options"]["scenarios"]:
        scenario = SCENARIOS[name]
        bars = []
        for server in report["servers"]:
            summary = results.get(server, {}).get(name, {})
            if scenario.metric == "idle":
                value = summary.get("rss_per_connection_kib")
                if value is not None:
                    held = summary["held_by_server"]
                    note = f" ({held:,} held)" if held < summary["requested"] else ""
                    bars.append((server, value, value, value, note))
            elif scenario.metric in summary:
                figure = summary[scenario.metric]
                bars.append((server, figure["median"], figure["min"], figure["max"], ""))
        if bars:
            unit = "RSS per idle connection, KiB (lower is better)" if scenario.metric == "idle" else (
                f"{METRIC_UNITS[scenario.metric]} (higher is better)")
            panels.append((f"{name}: {scenario.title}", unit, bars))
    if not panels:
        return "nothing to chart"
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows, columns, figsize=(13, 3.1 * rows + 0.6), squeeze=False)
    labels = {name: report["servers"][name]["label"] for name in report["servers"]}
    pythons = report["options"].get("reactor_http_pythons", {})
    checkouts = {name for name, entry in report["servers"].items()  # other checkouts, other Pythons
                 if entry.get("checkout") or name in pythons}
    for axis, (title, unit, bars) in zip(axes.flat, panels, strict=False):  # spare axes stay blank
        names = [labels[server] for server, *_ in bars]
        values = [value for _, value, _, _, _ in bars]
        lower = [value - low for _, value, low, _, _ in bars]
        upper = [high - value for _, value, _, high, _ in bars]
        colours = ["#c0392b" if server.startswith("reactor_http") else "#e08e7f" if server in checkouts
                   else "#999999" if server == "ceiling" else "#34689a" for server, *_ in bars]
        positions = range(len(bars))
        axis.barh(positions, values, xerr=[lower, upper], color=colours, capsize=2,
                  error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        axis.set_yticks(list(positions), names, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10, loc="left")
        axis.set_xlabel(unit, fontsize=8)
        axis.tick_params(axis="x", labelsize=8)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"
                                                                       if value >= 10 else f"{value:g}"))
        for position, value, (*_, note) in zip(positions, values, bars, strict=True):
            axis.text(value + upper[position], position, " " + format_number(value) + note,
                      va="center", fontsize=7)
        axis.margins(x=0.18)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    meta = report["meta"]
    figure.suptitle(f"Static file servers, one CPU each ({meta['machine']['cpu_model']}, "
                    f"{meta['date'][:10]}); medians, whiskers min-max over "
                    f"{report['options']['runs']} run(s) of {report['options']['duration']} s", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None


# -- the command line ----------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmark reactor_http against other static file servers with wrk "
                    "(server and client pinned to separate CPUs).",
        epilog="Scenarios: " + "; ".join(f"{s.name} {s.title}" for s in SCENARIOS.values())
               + ". Servers: " + ", ".join(SERVERS) + ". See the module docstring for the "
               "commands, and docs/benchmarks.md for the method.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated servers to run, in this order (those not installed "
                             "are skipped with a note)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--runs", type=_positive_int, default=None,
                        help="measured runs per scenario (default: 3; 1 with --quick)")
    parser.add_argument("--duration", type=_positive_int, default=None, metavar="SECONDS",
                        help="seconds per measured run (default: 10; 3 with --quick)")
    parser.add_argument("--warmup", type=_non_negative_int, default=None, metavar="SECONDS",
                        help="seconds of the discarded warm-up run per scenario, 0 for none "
                             "(default: 3; 1 with --quick)")
    parser.add_argument("--idle-connections", type=_positive_int, default=None, metavar="N",
                        help="connections S5 holds open (default: 10000; 1000 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 run of 3 s, 1 s warm-up, 1000 idle connections")
    parser.add_argument("--server-cpus", default="0", metavar="CPUS",
                        help="taskset CPU list for the server")
    parser.add_argument("--client-cpus", default="1", metavar="CPUS",
                        help="taskset CPU list for wrk and the S5 client")
    parser.add_argument("--worker-cpus", default=None, metavar="CPUS",
                        help="taskset CPU list for reactor_http_workers, which runs one worker per "
                             "CPU in it (default: every CPU this process may use; on a 2-core "
                             "machine wrk then shares a core with a worker)")
    parser.add_argument("--reactor-workers", type=_positive_int, metavar="N",
                        help="pass --workers N to reactor_http (only when given)")
    parser.add_argument("--reactor-args", metavar="FLAGS",
                        help="more flags for reactor_http, one shell-quoted string")
    parser.add_argument("--reactor-http-checkout", action="append", default=[], type=_checkout,
                        metavar="NAME=DIR",
                        help="also measure the reactor_http of another checkout (e.g. the commit before "
                             "a change: git clone -q . /tmp/before && git -C /tmp/before checkout -q "
                             "COMMIT), as server NAME, with reactor_http's flags (--quiet, "
                             "--reactor-workers, --reactor-args), side by side with the others in the "
                             "same run and in the ratio tables; added to --servers unless named there; "
                             "repeatable")
    parser.add_argument("--reactor-http-python", action="append", default=[], type=_python,
                        metavar="NAME=INTERPRETER",
                        help="also measure this checkout's reactor_http run by another Python "
                             "(e.g. py3.10=~/.pyenv/versions/3.10.13/bin/python3; a bare name is looked "
                             "up on PATH), as server NAME, with reactor_http's flags, side by side with "
                             "the others in the same run and in the ratio tables: one row per interpreter, "
                             "labelled with its full sys.version (and the plain reactor_http's row with "
                             "the harness's); the interpreter must run and be Python "
                             f"{'.'.join(map(str, MINIMUM_PYTHON))} or later; added to --servers unless "
                             "named there; repeatable, and beside --reactor-http-checkout")
    parser.add_argument("--json", metavar="PATH", help="write every figure, run by run, as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    parser.add_argument("--png", metavar="PATH", help="draw a bar chart (needs matplotlib)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="measure nothing: print the tables (and write --markdown, --png) "
                             "of an earlier --json report")
    return parser


def _checkout(text):
    """NAME=DIR -> a ServerSpec running DIR's reactor_http as NAME."""
    name, directory = _server_name(text, "NAME=DIR")
    directory = os.path.abspath(os.path.expanduser(directory))
    if not os.path.isfile(os.path.join(directory, "reactor_http", "__main__.py")):
        raise argparse.ArgumentTypeError(f"{directory} is not a checkout of reactor_http "
                                         "(no reactor_http/__main__.py)")
    return ServerSpec(name, f"reactor_http, checkout {name} ({directory})", checkout=directory, speaks_tls=True)


def _server_name(text, shape):
    """NAME of NAME=VALUE, and VALUE; ArgumentTypeError for a malformed or taken name."""
    name, equals, value = text.partition("=")
    if not equals or not value or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise argparse.ArgumentTypeError(f"expected {shape} with NAME of letters, digits, . _ -, not {text!r}")
    if name in SERVERS:
        raise argparse.ArgumentTypeError(f"{name} is a server already; choose another name")
    return name, value


def _python(text):
    """NAME=INTERPRETER -> a ServerSpec running this checkout's reactor_http
    under INTERPRETER as NAME, once the interpreter has said what it is."""
    name, interpreter = _server_name(text, "NAME=INTERPRETER")
    given = os.path.expanduser(interpreter)
    path = os.path.abspath(given) if os.sep in given else shutil.which(given)
    if path is None or not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{name}: no interpreter at {interpreter!r}")
    if not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"{name}: {path} is not executable")
    # Run as the server will be: this path (a wrapper script runs the server
    # too), this checkout first on the path, from its directory.
    try:
        completed = subprocess.run([path, "-c", "import sys; print(sys.executable); print(sys.version)"],
                                   capture_output=True, text=True, timeout=60, cwd=REPO,
                                   env=python_environment(REPO))
    except (OSError, subprocess.SubprocessError) as error:
        raise argparse.ArgumentTypeError(f"{name}: {path} does not run: {error}") from None
    lines = completed.stdout.splitlines()
    found = re.match(r"(\d+)\.(\d+)\.\d+", lines[1]) if completed.returncode == 0 and len(lines) > 1 else None
    if found is None:
        said = " ".join((completed.stdout + completed.stderr).split())[-300:]
        raise argparse.ArgumentTypeError(f"{name}: {path} -c 'import sys; print(sys.version)' did not "
                                         f"report a Python version (exit status {completed.returncode}): {said!r}")
    version = " ".join(" ".join(lines[1:]).split())  # before 3.10, sys.version has a line break
    if (int(found.group(1)), int(found.group(2))) < MINIMUM_PYTHON:
        raise argparse.ArgumentTypeError(f"{name}: {path} is Python {version}; reactor_http needs "
                                         f"{'.'.join(map(str, MINIMUM_PYTHON))} or later")
    return ServerSpec(name, f"reactor_http on Python {version}", python=path, python_version=version,
                      python_executable=lines[0], speaks_tls=True)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def resolve_options(parser, options):
    quick = options.quick
    for name, normal, fast in (("runs", 3, 1), ("duration", 10, 3), ("warmup", 3, 1),
                               ("idle_connections", 10000, 1000)):
        if getattr(options, name) is None:
            setattr(options, name, fast if quick else normal)
    options.server_specs = dict(SERVERS)
    for flag, specs in (("--reactor-http-checkout", options.reactor_http_checkout),
                        ("--reactor-http-python", options.reactor_http_python)):
        for spec in specs:
            if spec.name in options.server_specs:
                parser.error(f"{flag}: {spec.name} is given twice (each NAME of --reactor-http-checkout "
                             "and --reactor-http-python names one server)")
            options.server_specs[spec.name] = spec
    options.server_list = [name.strip() for name in options.servers.split(",") if name.strip()]
    unknown = [name for name in options.server_list if name not in options.server_specs]
    if unknown or not options.server_list:
        parser.error(f"unknown server(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(options.server_specs)}")
    options.server_list += [spec.name for spec in (*options.reactor_http_checkout, *options.reactor_http_python)
                            if spec.name not in options.server_list]
    options.scenario_list = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    unknown = [name for name in options.scenario_list if name not in SCENARIOS]
    if unknown or not options.scenario_list:
        parser.error(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(SCENARIOS)}")
    # S5 runs last for each server: it leaves the most behind (threads, memory).
    options.scenario_list.sort(key=lambda name: SCENARIOS[name].metric == "idle")
    if options.worker_cpus is None:
        options.worker_cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    for flag in ("server_cpus", "client_cpus", "worker_cpus"):
        try:
            cpus = parse_cpu_list(getattr(options, flag))
        except ValueError as error:
            parser.error(f"--{flag.replace('_', '-')}: {error}")
        available = os.sched_getaffinity(0)
        if not set(cpus) <= available:
            parser.error(f"--{flag.replace('_', '-')} {getattr(options, flag)}: this machine has "
                         f"CPUs {','.join(map(str, sorted(available)))}")
    if set(parse_cpu_list(options.server_cpus)) & set(parse_cpu_list(options.client_cpus)):
        print("bench.py: warning: server and client share a CPU; figures will mix both",
              file=sys.stderr)
    return options


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["idle-client"]:
        return idle_client_main(argv[1:])
    parser = build_parser()
    options = resolve_options(parser, parser.parse_args(argv))
    if options.from_json:
        report = load_json(options.from_json)
        if "ratios" not in report:  # saved while running: a run cut short has none yet
            scenarios = [SCENARIOS[name] for name in report["options"]["scenarios"]]
            report["ratios"] = compute_ratios(report["results"], scenarios)
        return write_outputs(report, options, print)

    missing = [name for name in ("wrk", "taskset") if find_program(name) is None]
    if missing:
        print(f"bench.py: error: {' and '.join(missing)} not found on PATH; install "
              + " and ".join({"wrk": "wrk (apt-get install wrk)",
                              "taskset": "taskset (apt-get install util-linux)"}[name] for name in missing),
              file=sys.stderr)
        return 2
    if not sys.platform.startswith("linux"):
        print("bench.py: error: Linux only (taskset, /proc, epoll)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("psutil") is None:
        print("bench.py: error: psutil is needed to read the servers' CPU time and memory: "
              "pip install psutil (or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    wrk = find_program("wrk")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    # Every server inherits this: enough descriptors for S5's connections.
    descriptors = raise_descriptor_limit()
    if "S5" in options.scenario_list and descriptors < options.idle_connections + 100:
        log(f"warning: the descriptor limit is {descriptors}; S5 wants {options.idle_connections} "
            "connections")

    scenarios = [SCENARIOS[name] for name in options.scenario_list]
    report = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_description(),
            "wrk": (program_version([wrk, "-v"]) or "wrk").split(" Copyright")[0],
            "command": " ".join(shlex.quote(part) for part in [os.path.relpath(__file__, REPO), *argv]),
            "load_average_start": os.getloadavg(),
            "descriptor_limit": descriptors,
        },
        "options": {"servers": options.server_list, "scenarios": options.scenario_list,
                    "runs": options.runs, "duration": options.duration, "warmup": options.warmup,
                    "idle_connections": options.idle_connections, "server_cpus": options.server_cpus,
                    "client_cpus": options.client_cpus, "worker_cpus": options.worker_cpus,
                    "reactor_workers": options.reactor_workers,
                    "reactor_args": options.reactor_args,
                    "reactor_http_checkouts": {spec.name: spec.checkout for spec in options.reactor_http_checkout},
                    "reactor_http_pythons": {spec.name: {"interpreter": spec.python,
                                                         "executable": spec.python_executable,
                                                         "version": spec.python_version}
                                             for spec in options.reactor_http_python}},
        "servers": {},
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="reactor-bench-") as work_directory:
        os.chmod(work_directory, 0o755)
        root = build_document_root(os.path.join(work_directory, "root"))
        bench = Bench(options, wrk, work_directory, root, log)
        for name in options.server_list:
            spec = options.server_specs[name]
            entry = report["servers"][name] = {"label": spec.label}
            if spec.checkout:
                entry["checkout"] = spec.checkout
            if spec.is_reactor_http:  # which Python ran it: the harness's unless --reactor-http-python
                entry["python"] = spec.python_version or " ".join(sys.version.split())
                entry["interpreter"] = spec.python or sys.executable
            if spec.on_worker_cpus:
                cpus = parse_cpu_list(options.worker_cpus)
                shared = set(cpus) & set(parse_cpu_list(options.client_cpus))
                entry["label"] = (f"reactor_http, {len(cpus)} workers on CPUs {options.worker_cpus}"
                                  + (" (wrk shares CPU " + ",".join(map(str, sorted(shared))) + ")"
                                     if shared else ""))
            if options.reactor_http_python and spec.is_reactor_http and not spec.python:
                entry["label"] += f" on Python {entry['python']}"  # beside the other Pythons' rows
            reason = why_unavailable(spec)
            if reason:
                entry["skipped"] = reason
                log(f"{name}: skipped, {reason}")
                continue
            entry["version"] = server_version(spec)
            log(f"{name} ({entry['version']}), load average {os.getloadavg()[0]:.2f}")
            try:
                report["results"][name] = bench.measure_server(spec, scenarios)
            except (BenchError, ServerError) as error:
                entry["skipped"] = f"failed: {error}"
                log(f"{name}: failed: {error}")
            if options.json:  # as it goes: a long run interrupted keeps what it measured
                save_json(report, options.json)
    report["meta"]["load_average_end"] = os.getloadavg()
    report["ratios"] = compute_ratios(report["results"], scenarios)
    if options.json:
        save_json(report, options.json)
    return write_outputs(report, options, log)


def write_outputs(report, options, log):
    write_report(report, report_tables, options.markdown, render_chart, options.png, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
