"""Shared fixtures: the real server in a subprocess on an ephemeral port."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ROOT = os.path.join(REPO, "www")
IN_CI = os.environ.get("CI") == "true"

# "Serving ROOT at http://127.0.0.1:PORT/ (...)", https:// with TLS, or unix:PATH.
_BANNER = re.compile(r"Serving (.+?) at (?:(https?)://(\[[^\]]+\]|[^:/]+):(\d+)/|unix:(\S+))")


# -- which connection transitions the end-to-end servers went through ------------------------
#
# Every server started by ServerProcess (unless a test brings its own
# PYTHONPATH, for fault injection) runs this sitecustomize first: it wraps
# Connection._enter, the one place the state changes, and appends each
# transition the first time that process makes it to a file of its own.
# tests/test_transition_coverage.py, run after everything else, checks that
# together they made every transition in the table.

TRANSITIONS_SEEN_DIR = None  # made on first use, one per test session

_TRANSITION_RECORDER_CODE = """
import os
import reactor_http.connection as connection

_directory = os.environ.get("TEST_TRANSITIONS_SEEN_DIR")
_seen = set()
_enter = connection.Connection._enter


def recording_enter(self, new_state):
    old_state = self.state
    _enter(self, new_state)
    if (old_state, new_state) not in _seen:
        _seen.add((old_state, new_state))
        with open(os.path.join(_directory, str(os.getpid())), "a") as record:
            record.write(old_state.name + " " + new_state.name + "\\n")


if _directory:  # a process started without the variable records nothing
    connection.Connection._enter = recording_enter
"""


def transitions_seen_dir():
    global TRANSITIONS_SEEN_DIR
    if TRANSITIONS_SEEN_DIR is None:
        import tempfile
        TRANSITIONS_SEEN_DIR = tempfile.mkdtemp(prefix="reactor-http-transitions-")
        os.chmod(TRANSITIONS_SEEN_DIR, 0o777)  # servers running as nobody record too
        recorder = os.path.join(TRANSITIONS_SEEN_DIR, "recorder")
        os.mkdir(recorder)
        os.chmod(recorder, 0o755)
        with open(os.path.join(recorder, "sitecustomize.py"), "w", encoding="utf-8") as file:
            file.write(_TRANSITION_RECORDER_CODE)
        os.chmod(os.path.join(recorder, "sitecustomize.py"), 0o644)
    return TRANSITIONS_SEEN_DIR


def transitions_seen():
    """Every (old, new) state-name pair the end-to-end servers of this session made."""
    seen = set()
    if TRANSITIONS_SEEN_DIR is None:
        return seen
    for name in os.listdir(TRANSITIONS_SEEN_DIR):
        path = os.path.join(TRANSITIONS_SEEN_DIR, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as file:
                seen.update(tuple(line.split()) for line in file if line.strip())
    return seen


# Test modules that make up the end-to-end suite: the coverage check needs
# them all to have run in the same session.
END_TO_END_MODULES = ("test_e2e_http", "test_e2e_static", "test_wire_hostile", "test_resource_limits",
                      "test_faults", "test_cli", "test_shutdown", "test_tls", "test_listeners")
_collected_modules = set()


def pytest_collection_modifyitems(session, config, items):
    """Run tests marked ``after_everything`` last, and remember which modules
    this session runs."""
    _collected_modules.update(item.module.__name__.rpartition(".")[2] for item in items)
    items.sort(key=lambda item: item.get_closest_marker("after_everything") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "after_everything: run after every other test of the session")


def whole_end_to_end_suite_collected():
    return set(END_TO_END_MODULES) <= _collected_modules


def pytest_sessionfinish(session, exitstatus):
    if TRANSITIONS_SEEN_DIR is not None:
        shutil.rmtree(TRANSITIONS_SEEN_DIR, ignore_errors=True)


def require_program(name):
    """Skip when a program is missing locally; fail under CI=true, never skip silently."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


class ServerProcess:
    """A running `python -m reactor_http` and what it printed."""

    def __init__(self, args, root, cwd=None, env=None, preexec_fn=None, launcher=(), pass_fds=()):
        self.root = root
        command = [*launcher, sys.executable, "-m", "reactor_http", "--port", "0", "--root", root, *args]
        seen_dir = transitions_seen_dir()
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(seen_dir, "recorder"), REPO)),
                           PYTHONUNBUFFERED="1", TEST_TRANSITIONS_SEEN_DIR=seen_dir)
        if env:
            environment.update(env)
        self.process = subprocess.Popen(
            command, cwd=cwd or REPO, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
            pass_fds=pass_fds)
        self.stdout_lines = []
        self.stderr_lines = []
        self._banner = threading.Event()
        self._stdout_reader = threading.Thread(target=self._pump, args=(self.process.stdout, self.stdout_lines, True), daemon=True)
        self._stderr_reader = threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr_lines, False), daemon=True)
        self._stdout_reader.start()
        self._stderr_reader.start()
        if not self._banner.wait(30):
            self.stop()
            raise RuntimeError(f"server did not start: {self.stderr_lines}")
        if not self.stdout_lines or not _BANNER.search(self.stdout_lines[0]):
            self.stop()
            raise RuntimeError(f"server did not start: {''.join(self.stderr_lines)}")
        # One banner line per listener, TCP ones first: host and port are the first's.
        match = _BANNER.search(self.stdout_lines[0])
        self.scheme = match.group(2)
        self.host = match.group(3).strip("[]") if match.group(3) else None
        self.port = int(match.group(4)) if match.group(4) else None
        self.pid = self.process.pid

    def banners(self, count, timeout=10):
        """The first ``count`` banner lines (one per listener), once printed."""
        def found():
            lines = [line for line in list(self.stdout_lines) if _BANNER.search(line)]
            return lines[:count] if len(lines) >= count else None
        return wait_until(found, timeout, lambda: f"fewer than {count} banners: {self.stdout_lines}")

    def unix_path(self, listeners=1):
        """The Unix socket path the banners name (``listeners``: how many banner
        lines to wait for)."""
        for line in self.banners(listeners):
            path = _BANNER.search(line).group(5)
            if path:
                return path
        raise AssertionError(f"no unix: banner in {self.stdout_lines}")

    def _pump(self, stream, lines, is_stdout):
        for line in stream:
            lines.append(line)
            if is_stdout and _BANNER.search(line):
                self._banner.set()
        if is_stdout:
            self._banner.set()

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def connect(self, timeout=10):
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def wait_for_log(self, predicate, timeout=10):
        """Wait until an access-log line satisfies predicate; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout_lines):
                if predicate(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no such log line in {self.stdout_lines[-20:]}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout_reader.join(5)
        self._stderr_reader.join(5)
        return self.process.returncode


@pytest.fixture
def start_server():
    """Factory: start_server(*flags, root=...) -> ServerProcess; all stopped at teardown."""
    servers = []

    def start(*args, root=DEMO_ROOT, **kwargs):
        server = ServerProcess(list(args), root, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        stderr = "".join(server.stderr_lines)
        assert "Traceback" not in stderr or getattr(server, "tracebacks_expected", False), stderr


def stop_and_check(server):
    """Stop a (module-shared) server and prove it never printed a traceback."""
    server.stop()
    stderr = "".join(server.stderr_lines)
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module", params=["epoll", "poll"])
def shared_selector(request):
    """The readiness backend of a module's shared servers (both are tested)."""
    return request.param


@pytest.fixture(params=["epoll", "poll"])
def selector(request):
    """Run a test under each readiness backend (the portable path must work too)."""
    return request.param


@pytest.fixture
def server(start_server, selector):
    """The demo site served with the given selector."""
    return start_server("--selector", selector)


class RawClient:
    """A raw-socket HTTP client that reads responses exactly as framed on the wire."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"server closed; unparsed bytes: {self.buffer[:200]!r}")
        self.buffer += data

    def read_response(self, head_request=False):
        """One response: (status, headers with lower-case names, body bytes)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated field {name}"
            headers[name.lower()] = value.strip()
        status = int(status)
        length = 0 if head_request or status in (204, 304) else int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def request(self, data, head_request=False):
        self.send(data)
        return self.read_response(head_request)

    def is_closed_by_peer(self, timeout=10):
        """True if the server closes (EOF or reset) with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"
        return True

    def close(self):
        self.sock.close()


@pytest.fixture
def client_for():
    """Factory: client_for(server) -> RawClient on a new connection; closed at teardown."""
    clients = []

    def connect(server, timeout=10):
        client = RawClient(server.connect(), timeout)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def request_once(server, data, head_request=False):
    """Send ``data`` on a new connection and read one response: (status, headers, body)."""
    client = RawClient(server.connect())
    try:
        return client.request(data, head_request=head_request)
    finally:
        client.close()


def get(path="/", host="x", extra=""):
    """Bytes of a simple HTTP/1.1 GET."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("latin-1")


def skip_locally_fail_in_ci(reason):
    """Skip a test whose prerequisite this machine lacks; under CI=true, fail instead,
    so that a CI run never passes by skipping what it was meant to check."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def make_sparse_file(path, size):
    """A file of ``size`` zero bytes that takes no disk space: one hole."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def ipv6_loopback_available():
    """Whether this machine can listen on ::1 (containers often have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def read_head(sock, limit=65536):
    """Read one response head from a socket without reading its body into memory.

    Returns (status, headers with lower-case names, the body bytes that came in
    the same reads as the head)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed before a complete head: {buffer[:200]!r}")
        buffer += data
        assert len(buffer) <= limit, "response head too long"
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[:2]
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status), headers, rest


# -- helpers for the hostile-client suites (test_wire_hostile, test_resource_limits) --

# The reason phrase the server sends with each status it can produce.
REASON_PHRASES = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported",
}

# IMF-fixdate, the one Date format a server may send (RFC 9110 §5.6.7).
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT")


def demo_bytes(relative_path):
    """The bytes of a file of the demo site, e.g. demo_bytes("style.css")."""
    with open(os.path.join(DEMO_ROOT, relative_path), "rb") as file:
        return file.read()


def check_response_fields(status, headers, body=None):
    """Assert the fields every response carries (Date and Server; with content,
    nosniff and a Content-Length matching the body), and that an error or
    redirect body is one short plain-text line starting with the status."""
    assert IMF_FIXDATE.fullmatch(headers["date"]), headers["date"]
    assert headers["server"].startswith("reactor_http"), headers["server"]
    if status in (204, 304):
        return  # no content: no Content-Length needed (RFC 9110 §8.6), nothing to sniff
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-length" in headers
    if body is None:
        return
    assert int(headers["content-length"]) == len(body)
    if status >= 400 or status == 301:
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert body.startswith(f"{status} {REASON_PHRASES[status]}".encode()), body
        assert body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) < 200, body


def check_still_serving(server, timeout=10):
    """Assert a fresh connection gets the index page: whatever happened before
    cost its own connection only."""
    client = RawClient(server.connect(timeout), timeout)
    try:
        status, _, body = client.request(get("/"))
    finally:
        client.close()
    assert (status, body) == (200, demo_bytes("index.html"))


def wait_until(condition, timeout, message, interval=0.05):
    """Poll ``condition()`` until it returns a true value (returned) or the
    generous deadline passes (AssertionError with ``message()`` or ``message``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


# -- helpers for the browser test (test_browser) ------------------------------------

# Debian's packages `chromium` and `chromium-driver` put them here; the driver
# is used as installed, so Selenium never tries to download one.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Headless, and quiet: no first-run UI, no background traffic of its own
# (updates, sync, QUIC probes) to show up in the server's log or the network.
CHROMIUM_ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync", "--disable-quic",
)


def require_browser():
    """The selenium.webdriver module, once Chromium, its driver and Selenium are
    all there: skip locally when one is missing, fail under CI=true."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        skip_locally_fail_in_ci(f"{' and '.join(missing)} not installed "
                                "(Debian packages chromium, chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        skip_locally_fail_in_ci("the selenium package is not installed (pip install selenium)")
    return webdriver


def start_chromium(user_data_directory, capabilities=None, window_size=(1024, 768)):
    """A headless Chromium driven through the system chromedriver, with a fresh
    profile in ``user_data_directory`` (so nothing is cached from an earlier
    run). The caller quits it."""
    webdriver = require_browser()
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={user_data_directory}")
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


# -- helpers for the reliability suites (test_integrity, test_faults, test_soak) ----------


def import_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sitecustomize_env(directory, code, record_transitions=True):
    """Write ``code`` as ``directory``/sitecustomize.py and return the environment
    that makes a server started by start_server run it before `-m reactor_http`:
    fault injection (a slow disk, a jumping clock) without touching the package.
    Python runs one sitecustomize only, so it also records the connection's
    transitions, as every end-to-end server does (see the top of this file)."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "sitecustomize.py")
    with open(path, "w", encoding="utf-8") as file:
        if record_transitions:
            file.write(_TRANSITION_RECORDER_CODE)
        file.write(code)
    os.chmod(path, 0o644)
    return {"PYTHONPATH": os.pathsep.join((str(directory), REPO)), "PYTHONDONTWRITEBYTECODE": "1",
            "TEST_TRANSITIONS_SEEN_DIR": transitions_seen_dir()}


NOBODY_UID = 65534

# As in test_cli: import what the server needs while the interpreter can still
# read its own installation, then become nobody before `-m reactor_http` runs.
BECOME_NOBODY_CODE = f"""
import concurrent.futures.thread
import encodings.idna
import os
import runpy
import shutil
import reactor_http.cli
os.setgroups([])
os.setgid({NOBODY_UID})
os.setuid({NOBODY_UID})
"""


def world_traversable(path):
    """Whether every directory from / to ``path`` lets others in."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


@pytest.fixture
def world_readable_tmp():
    """A fresh directory under /tmp that user nobody can enter (tmp_path's
    parents may be 0o700); emptied and removed at teardown whatever modes the
    test left inside."""
    import tempfile
    directory = tempfile.mkdtemp(prefix="reactor-http-reliability-", dir="/tmp")
    os.chmod(directory, 0o755)
    yield directory
    for path, directories, files in os.walk(directory):
        for name in directories + files:
            try:
                os.chmod(os.path.join(path, name), 0o755)
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)
