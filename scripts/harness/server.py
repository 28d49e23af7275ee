"""A server in a subprocess: started, its banner read, stopped.

ServerProcess runs any command (a peer of the benchmark, the concurrency
baseline); ReactorHttpProcess runs ``python -m reactor_http`` from a checkout,
this one or another (an older commit, measured beside this one). Output is
either kept line by line (pumped by two threads: the tests and the soak read
it) or sent to a log file that nobody reads while a benchmark measures.
"""

import dataclasses
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from . import REPO

# One line per listener: "Serving ROOT at http://HOST:PORT/ (DETAILS). Press
# Ctrl+C to stop.", https:// with TLS, "unix:PATH" for a Unix socket. The
# details name the selector ("selector: epoll, 8 blocking threads", after
# "2 workers, SO_REUSEPORT; " with workers).
BANNER = re.compile(r"Serving (?P<root>.+?) at (?:(?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/"
                    r"|unix:(?P<unix_path>\S+))(?: \((?P<details>[^)]*)\))?")
_SELECTOR = re.compile(r"selector: (\w+)")


class ServerError(RuntimeError):
    """A server that would not start, or stopped answering."""


@dataclasses.dataclass(frozen=True)
class Banner:
    """What one banner line says."""

    line: str
    root: str
    scheme: str | None      # http or https; None for a Unix socket
    host: str | None        # without the brackets of an IPv6 address
    port: int | None
    unix_path: str | None
    selector: str | None    # None where the details do not name one


def parse_banner(line):
    """The Banner in ``line``, or None if it holds none."""
    match = BANNER.search(line)
    if match is None:
        return None
    selector = _SELECTOR.search(match.group("details") or "")
    return Banner(line=line, root=match.group("root"), scheme=match.group("scheme"),
                  host=match.group("host").strip("[]") if match.group("host") else None,
                  port=int(match.group("port")) if match.group("port") else None,
                  unix_path=match.group("unix_path"), selector=selector.group(1) if selector else None)


def python_environment(first_on_path, env=None):
    """This process's environment with ``first_on_path`` at the head of
    PYTHONPATH and output unbuffered (lines arrive as they are printed), then
    ``env`` over it."""
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    environment["PYTHONPATH"] = os.pathsep.join(
        path for path in (first_on_path, os.environ.get("PYTHONPATH")) if path)
    environment.update(env or {})
    return environment


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on now, for a server that must be told its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A server command in a subprocess and what it printed.

    Without ``log_path`` its stdout and stderr are kept in ``stdout_lines`` and
    ``stderr_lines``; with it, both go to that file. ``new_session`` starts it
    in a session of its own, so that stopping it stops what it started too
    (nginx's worker)."""

    def __init__(self, command, *, cwd=None, env=None, log_path=None, new_session=False,
                 preexec_fn=None, pass_fds=()):
        self.command = list(command)
        self.log_path = log_path
        self.new_session = new_session
        self.stdout_lines = []
        self.stderr_lines = []
        self.banner = None
        self._readers = []
        if log_path:
            self._log_file = open(log_path, "wb")
            output = {"stdout": self._log_file, "stderr": subprocess.STDOUT}
        else:
            self._log_file = None
            output = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        self.process = subprocess.Popen(
            self.command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=new_session,
            preexec_fn=preexec_fn, pass_fds=pass_fds, **output)
        self.pid = self.process.pid
        if not log_path:
            for stream, lines in ((self.process.stdout, self.stdout_lines), (self.process.stderr, self.stderr_lines)):
                reader = threading.Thread(target=self._pump, args=(stream, lines), daemon=True)
                reader.start()
                self._readers.append(reader)

    @staticmethod
    def _pump(stream, lines):
        for line in stream:
            lines.append(line)

    def output(self):
        """Everything printed so far: the log file, or stdout then stderr."""
        if self._log_file is None:
            return "".join(self.stdout_lines) + "".join(self.stderr_lines)
        self._log_file.flush()
        try:
            with open(self.log_path, "rb") as file:
                return file.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, limit=1500):
        return self.output()[-limit:].strip()

    def printed_banners(self):
        """The banners printed so far, in order (one per listener, TCP ones first)."""
        lines = list(self.stdout_lines) if self._log_file is None else self.output().splitlines()
        return [banner for banner in map(parse_banner, lines) if banner is not None]

    def wait_for_banners(self, count=1, timeout=30):
        """The first ``count`` banners, once printed. ServerError if the server
        exits (or closes its output) first, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            banners = self.printed_banners()
            if len(banners) >= count:
                return banners[:count]
            if self.process.poll() is not None or (self._readers and not self._readers[0].is_alive()):
                if len(self.printed_banners()) >= count:  # printed just before it ended
                    continue
                raise ServerError(f"the server did not start (exit status {self.process.poll()}): "
                                  f"{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise ServerError(f"fewer than {count} banner(s) after {timeout} s: {self.log_tail()}")
            time.sleep(0.02)

    def wait_until_serving(self, timeout=30):
        """Wait for the first banner, keep it as ``banner`` and return it; stop
        the server and raise ServerError if it never comes."""
        try:
            self.banner = self.wait_for_banners(1, timeout)[0]
        except ServerError:
            self.stop()
            raise
        return self.banner

    def wait_until_listening(self, host, port, timeout=30):
        """Wait until ``host``:``port`` accepts a connection: for a server that
        prints no banner. ServerError if it exits first, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"exited with status {self.process.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"not listening after {timeout} s: {self.log_tail()}")

    def alive(self):
        return self.process.poll() is None

    def _send(self, signal_number):
        try:
            if self.new_session:
                os.killpg(self.process.pid, signal_number)  # the session it leads: its children too
            else:
                self.process.send_signal(signal_number)
        except ProcessLookupError:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send ``sig``, then SIGKILL if it has not exited ``timeout`` seconds
        later. Returns the exit status."""
        if self.process.poll() is None:
            self._send(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._send(signal.SIGKILL)
                self.process.wait()
        for reader in self._readers:
            reader.join(5)
        if self._log_file is not None:
            self._log_file.close()
        return self.process.returncode


class ReactorHttpProcess(ServerProcess):
    """``python -m reactor_http FLAGS`` from ``checkout`` (its directory is
    the working directory and first on PYTHONPATH), after ``launcher`` (taskset)."""

    def __init__(self, flags, *, checkout=REPO, launcher=(), env=None, cwd=None, **options):
        self.checkout = checkout
        super().__init__([*launcher, sys.executable, "-m", "reactor_http", *flags], cwd=cwd or checkout,
                         env=python_environment(checkout, env), **options)


def reactor_http_version(checkout=REPO):
    """"reactor_http VERSION (sources HASH)" for the package in ``checkout``,
    read without importing it: the hash covers every .py file of the package,
    since the tree changes between runs more often than the version number."""
    package = os.path.join(checkout, "reactor_http")
    digest = hashlib.sha256()
    for directory, subdirectories, names in os.walk(package):
        subdirectories.sort()
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                digest.update(os.path.relpath(path, package).encode())
                with open(path, "rb") as file:
                    digest.update(file.read())
    with open(os.path.join(package, "__init__.py"), encoding="utf-8") as file:
        version = re.search(r'__version__ = "([^"]+)"', file.read())
    return f"reactor_http {version.group(1) if version else '?'} (sources {digest.hexdigest()[:12]})"


def serve_quietly(root, flags=(), **options):
    """``python -m reactor_http --port 0 --root ROOT --quiet FLAGS``, once its
    banner says where it serves (``banner.host``, ``banner.port``)."""
    server = ReactorHttpProcess(["--port", "0", "--root", root, "--quiet", *flags], **options)
    server.wait_until_serving()
    return server


def finish_helper(process, timeout):
    """End a helper process the harness talks to on its standard input (a
    load client): close that input, which tells it to finish, and wait; kill
    it if it has not ended ``timeout`` seconds later."""
    try:
        process.stdin.close()
    except OSError:
        pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
