"""docs/scaling.md, run: replicas behind nginx and HAProxy, restarted one by one under load.

Each tagged block of the page (```nginx nginx-upstream.conf and so on) is
read from the page itself, checked by the tool it is for (`nginx -t`,
`haproxy -c`, reactor_http's own command line), and then those same files
run: only ports and paths are swapped for ones a test can use, so the page
cannot say one thing and the tests check another.

The rolling restart: three replicas started with the page's command line,
the page's balancer in front, eight client threads requesting files through
it over keep-alive connections and checking every answer (status and bytes);
each replica in turn gets SIGTERM, exits, is started again on the same port
and must serve requests again before the next one is stopped. No request may
fail. Nothing is timed: every wait is a generous poll for a condition. And
the same client, behind nginx with its retries turned off, does count the
502s that get through: a pass is not the client's blindness.
"""

import csv
import email.utils
import hashlib
import http.client
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from harness.server import free_port
from support.cli import page_command_line, replaced
from support.environment import REPO, require_program, wait_until
from support.servers import ServerProcess

PAGE = os.path.join(REPO, "docs", "scaling.md")
FENCE = re.compile(r"^```(\w*)(?: ([\w.-]+))?\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGE_FILES = {"replica.sh", "nginx-upstream.conf", "haproxy.cfg", "cdn-origin.sh"}
# What the page's files say, and what the tests swap for their own.
PAGE_REPLICA_PORTS = ("8081", "8082", "8083")
PAGE_ROOT = "/srv/www"
HAPROXY_SOCKET = "/run/haproxy/admin.sock"
HAPROXY_BACKEND = "reactor_http_replicas"
HEALTH_PATH = "/healthz"
INSTALLED = "reactor-http"

# Generous bounds for waits that normally take well under a second.
WAIT = 30


# -- the page ----------------------------------------------------------------------------------


def page_blocks():
    """Every fenced block of the page: (language, file name or None, text)."""
    with open(PAGE, encoding="utf-8") as file:
        return [(language, name or None, text) for language, name, text in FENCE.findall(file.read())]


def page_files():
    return {name: text for _, name, text in page_blocks() if name}


def swapped(text, replacements):
    """``text`` with each key of ``replacements`` replaced by its value, all at
    once; a key the text no longer holds fails the test (the page changed)."""
    for old in replacements:
        assert old in text, f"{old!r} is no longer in the page's file; the test needs updating:\n{text}"
    pattern = re.compile("|".join(re.escape(old) for old in sorted(replacements, key=len, reverse=True)))
    return pattern.sub(lambda match: replacements[match.group(0)], text)


def command_line(text):
    return page_command_line(text, programs=(INSTALLED,))


def replica_arguments(name="replica.sh", **values):
    return replaced(command_line(page_files()[name]), **values)


def test_the_page_has_its_files_and_every_other_block_is_prose():
    """Every block in a configuration language is one of the files the tests
    run; the rest (the timeline) are ```text, which nothing can run."""
    blocks = page_blocks()
    assert {name for _, name, _ in blocks if name} == PAGE_FILES
    unnamed = [(language, text[:60]) for language, name, text in blocks if not name]
    assert all(language == "text" for language, _ in unnamed), unnamed
    assert len([name for _, name, _ in blocks if name]) == len(PAGE_FILES)  # none twice


def test_the_page_and_the_files_agree_on_the_readiness_path_and_the_delay():
    files = page_files()
    arguments = command_line(files["replica.sh"])
    assert arguments[arguments.index("--health-path") + 1] == HEALTH_PATH
    assert f"uri {HEALTH_PATH} " in files["haproxy.cfg"]
    assert arguments[arguments.index("--shutdown-delay") + 1] == "3s"
    assert "inter 500ms fall 2 rise 2" in files["haproxy.cfg"]
    for port in PAGE_REPLICA_PORTS:
        assert f"127.0.0.1:{port} " in files["nginx-upstream.conf"]
        assert f"127.0.0.1:{port}\n" in files["haproxy.cfg"]


# -- a site, and small HTTP helpers -------------------------------------------------------------


def make_site(root):
    """A small site: a page, a stylesheet, and a file large enough (256 KiB)
    that some responses are still being sent when a replica drains."""
    os.makedirs(root, exist_ok=True)
    files = {
        "/index.html": b"<h1>scaled</h1>\n",
        "/style.css": b"body { margin: 0 auto; max-width: 40em; }\n" * 20,
        "/big.bin": hashlib.sha256(b"seed").digest() * (256 * 1024 // 32),
    }
    for path, data in files.items():
        with open(os.path.join(root, path.lstrip("/")), "wb") as file:
            file.write(data)
    return files


def fetch(port, path, headers=None, method="GET"):
    """One request on a new connection: (status, headers with lower-case names, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body
    finally:
        connection.close()


def accepts_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def load_requests(server):
    """How many requests other than the readiness path's this replica logged."""
    return sum(1 for line in list(server.stdout_lines) if '"GET ' in line and f"GET {HEALTH_PATH}" not in line)


def check_clean_exit(server):
    stderr = "".join(server.stderr_lines)
    assert "Traceback" not in stderr, stderr
    return stderr


@pytest.fixture
def cleanup():
    """Callbacks run at teardown, last registered first, each whatever the others do."""
    callbacks = []
    yield callbacks.append
    errors = []
    for callback in reversed(callbacks):
        try:
            callback()
        except Exception as error:  # noqa: BLE001 - report them all, below
            errors.append(error)
    if errors:
        raise errors[0]


class Replicas:
    """The page's replicas: its command line, one port each, restartable on that port."""

    def __init__(self, cleanup, roots, arguments=None):
        self.arguments = arguments or replica_arguments()
        self.roots = dict(roots)                       # name -> root
        self.ports = {name: free_port() for name in self.roots}
        self.servers = {}
        self.retired = {name: [] for name in self.roots}
        cleanup(self.stop_all)
        for name in self.roots:
            self.start(name)

    def start(self, name):
        arguments = replaced(self.arguments, root=self.roots[name], port=str(self.ports[name]))
        self.servers[name] = ServerProcess(arguments, self.roots[name])
        return self.servers[name]

    def stop_all(self):
        """Stop every replica at once (each takes --shutdown-delay to go)."""
        for server in self.servers.values():
            if server.alive():
                server.process.send_signal(signal.SIGTERM)
        for server in self.servers.values():
            try:
                server.process.wait(2 * WAIT)
            except subprocess.TimeoutExpired:
                pass  # stop() below kills it
            server.stop()
            check_clean_exit(server)


# -- the balancers ------------------------------------------------------------------------------


def stop_process(process, sig):
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(20)
            return
        except subprocess.TimeoutExpired:
            pass
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def replica_addresses(ports):
    """The page's replica addresses, each swapped for one with a port of the test's."""
    return {f"127.0.0.1:{page}": f"127.0.0.1:{port}" for page, port in zip(PAGE_REPLICA_PORTS, ports, strict=True)}


def nginx_files(directory, ports, balancer_port, changes=None):
    """The page's nginx-upstream.conf, its ports swapped (and ``changes``
    made), inside the smallest nginx.conf that runs it unprivileged: in the
    foreground, everything under ``directory``. Returns the nginx.conf path."""
    site = swapped(page_files()["nginx-upstream.conf"],
                   {**replica_addresses(ports), "listen 80;": f"listen 127.0.0.1:{balancer_port};",
                    **(changes or {})})
    with open(os.path.join(directory, "site.conf"), "w", encoding="utf-8") as file:
        file.write(site)
    temporary = "".join(f"    {kind}_temp_path {directory}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\n"
                   f"error_log {directory}/error.log;\nevents {{}}\n"
                   f"http {{\n    access_log off;\n{temporary}    include {directory}/site.conf;\n}}\n")
    return path


def nginx_check(nginx, directory, configuration):
    return subprocess.run([nginx, "-t", "-p", directory, "-e", f"{directory}/error.log", "-c", configuration],
                          capture_output=True, text=True, timeout=60)


def start_nginx(cleanup, directory, ports, balancer_port, changes=None):
    nginx = require_program("nginx")
    configuration = nginx_files(directory, ports, balancer_port, changes)
    checked = nginx_check(nginx, directory, configuration)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-p", directory, "-e", f"{directory}/error.log", "-c", configuration],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    cleanup(lambda: stop_process(process, signal.SIGQUIT))  # SIGQUIT: nginx's graceful stop
    wait_until(lambda: accepts_connections(balancer_port) or process.poll() is not None, WAIT,
               "nginx did not start")
    assert process.poll() is None, read_text(os.path.join(directory, "error.log"))
    return process


def haproxy_file(directory, ports, balancer_port):
    """The page's haproxy.cfg, its ports and runtime API socket swapped.
    Returns (configuration path, socket path)."""
    socket_path = os.path.join(directory, "admin.sock")
    text = swapped(page_files()["haproxy.cfg"],
                   {**replica_addresses(ports), "bind :80\n": f"bind 127.0.0.1:{balancer_port}\n",
                    HAPROXY_SOCKET: socket_path})
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    return path, socket_path


def haproxy_check(haproxy, configuration):
    return subprocess.run([haproxy, "-c", "-f", configuration], capture_output=True, text=True, timeout=60)


def haproxy_servers(socket_path):
    """``show stat`` on the runtime API: {server name: its row}, for the page's backend."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode().lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {row["svname"]: row for row in rows
            if row["pxname"] == HAPROXY_BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")}


def start_haproxy(cleanup, directory, ports, balancer_port):
    haproxy = require_program("haproxy")
    configuration, socket_path = haproxy_file(directory, ports, balancer_port)
    checked = haproxy_check(haproxy, configuration)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log_path = os.path.join(directory, "haproxy.log")
    log = open(log_path, "wb")
    process = subprocess.Popen([haproxy, "-db", "-f", configuration], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    cleanup(log.close)
    cleanup(lambda: stop_process(process, signal.SIGUSR1))  # SIGUSR1: HAProxy's soft stop
    wait_until(lambda: (accepts_connections(balancer_port) and os.path.exists(socket_path))
               or process.poll() is not None, WAIT, "haproxy did not start")
    assert process.poll() is None, read_text(log_path)
    return process, socket_path


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


# -- the configuration files, checked by their tools ---------------------------------------------


def test_the_nginx_file_passes_nginx_t(tmp_path):
    nginx = require_program("nginx")
    directory = str(tmp_path)
    configuration = nginx_files(directory, [free_port() for _ in PAGE_REPLICA_PORTS], free_port())
    checked = nginx_check(nginx, directory, configuration)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "[warn]" not in checked.stderr, checked.stderr


def test_the_haproxy_file_passes_haproxy_c(tmp_path):
    haproxy = require_program("haproxy")
    configuration, _ = haproxy_file(str(tmp_path), [free_port() for _ in PAGE_REPLICA_PORTS], free_port())
    checked = haproxy_check(haproxy, configuration)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output


# -- the load -----------------------------------------------------------------------------------


class Load:
    """Client threads requesting ``files`` through ``port`` over keep-alive
    connections until stopped, checking each answer's status and bytes. Every
    other outcome (another status, other bytes, a connection error, a timeout)
    is a failure; the first few are kept to say what they were."""

    def __init__(self, port, files, threads=8):
        self.port = port
        self.files = files
        self.paths = sorted(files)
        self.succeeded = 0
        self.failed = 0
        self.failures = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(number,), daemon=True)
                         for number in range(threads)]

    def start(self):
        for thread in self._threads:
            thread.start()

    def stop(self):
        self._stopping.set()
        for thread in self._threads:
            thread.join(2 * WAIT)
        assert not any(thread.is_alive() for thread in self._threads), "a client thread is stuck"

    def _record(self, failure=None):
        with self._lock:
            if failure is None:
                self.succeeded += 1
            else:
                self.failed += 1
                if len(self.failures) < 20:
                    self.failures.append(failure)

    def _run(self, number):
        connection = None
        count = number
        while not self._stopping.is_set():
            path = self.paths[count % len(self.paths)]
            count += 1
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or body != self.files[path]:
                    self._record(f"{path}: {response.status}, {len(body)} bytes: {body[:80]!r}")
                else:
                    self._record()
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                self._record(f"{path}: {error!r}")
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()


# -- the rolling restart --------------------------------------------------------------------------


def rolling_restart(replicas, balancer_port, files, wait_until_out=None, wait_until_back=None):
    """Restart every replica in turn under load through the balancer; return
    the load (its counts) and, per replica, the stderr of its first process."""
    load = Load(balancer_port, files)
    load.start()
    stopped_stderr = {}
    try:
        wait_until(lambda: all(load_requests(server) > 0 for server in replicas.servers.values()), WAIT,
                   lambda: f"not every replica is getting requests: {counts(replicas)}")
        for name in list(replicas.servers):
            old = replicas.servers[name]
            served_before = load_requests(old)
            assert served_before > 0
            old.process.send_signal(signal.SIGTERM)
            if wait_until_out:
                wait_until_out(name)
            assert old.process.wait(WAIT + 20) == 0
            old.stop()  # gone already: this collects what it printed
            stopped_stderr[name] = check_clean_exit(old)
            replicas.retired[name].append(old)
            new = replicas.start(name)
            if wait_until_back:
                wait_until_back(name)
            # Served again: the balancer sends it the clients' requests.
            wait_until(lambda new=new: load_requests(new) >= 10, WAIT,
                       lambda name=name: f"{name} restarted but got no requests: {counts(replicas)}")
    finally:
        load.stop()
    return load, stopped_stderr


def counts(replicas):
    return {name: load_requests(server) for name, server in replicas.servers.items()}


def check_rolling_restart(load, stopped_stderr, replicas):
    assert load.failed == 0, (f"{load.failed} of {load.failed + load.succeeded} requests failed: "
                              f"{load.failures}")
    assert load.succeeded > 0
    for stderr in stopped_stderr.values():
        assert "stopping in 3 s" in stderr, stderr  # the page's --shutdown-delay
    # Every replica served before its restart and after it.
    assert all(load_requests(old) > 0 for olds in replicas.retired.values() for old in olds)
    assert all(load_requests(server) > 0 for server in replicas.servers.values())


@pytest.fixture
def short_tmp():
    """A directory with a short path (a Unix socket's path must be short)."""
    directory = tempfile.mkdtemp(prefix="scaling-", dir="/tmp")
    os.chmod(directory, 0o755)  # nginx's workers (nobody, when started as root) make files inside
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_rolling_restart_behind_nginx_fails_no_request(tmp_path, short_tmp, cleanup):
    """nginx has no active checks: while a replica drains, its refused
    connections and closed keep-alive connections are retried on the others
    (proxy_next_upstream), and after fail_timeout nginx tries it again."""
    require_program("nginx")
    root = str(tmp_path / "www")
    files = make_site(root)
    replicas = Replicas(cleanup, {"r1": root, "r2": root, "r3": root})
    balancer_port = free_port()
    start_nginx(cleanup, short_tmp, [replicas.ports[name] for name in ("r1", "r2", "r3")], balancer_port)
    wait_until(lambda: fetch(balancer_port, "/index.html")[0] == 200, WAIT, "nginx does not pass requests on")
    load, stopped_stderr = rolling_restart(replicas, balancer_port, files)
    check_rolling_restart(load, stopped_stderr, replicas)
    # What nginx retried on another replica (its error log says each time);
    # how many depends on the machine's speed, so it is only reported.
    errors = [line for line in read_text(os.path.join(short_tmp, "error.log")).splitlines() if "upstream" in line]
    print(len(errors), "attempts retried on another replica, e.g.", errors[:2], load.succeeded, "requests")


def test_the_load_counts_what_a_balancer_lets_through(tmp_path, short_tmp, cleanup):
    """The client can see failures: the page's nginx file without its retries
    (proxy_next_upstream off), and a replica stopped for good, lets 502s
    through to the clients, and the load counts them."""
    require_program("nginx")
    root = str(tmp_path / "www")
    files = make_site(root)
    replicas = Replicas(cleanup, {"r1": root, "r2": root, "r3": root}, replica_arguments(shutdown_delay="0"))
    balancer_port = free_port()
    start_nginx(cleanup, short_tmp, [replicas.ports[name] for name in ("r1", "r2", "r3")], balancer_port,
                {"proxy_next_upstream error timeout http_503;": "proxy_next_upstream off;"})
    load = Load(balancer_port, files)
    load.start()
    try:
        wait_until(lambda: all(load_requests(server) > 0 for server in replicas.servers.values()), WAIT,
                   lambda: f"not every replica is getting requests: {counts(replicas)}")
        replicas.servers["r1"].stop()
        wait_until(lambda: load.failed > 0, WAIT, "no failure was counted")
    finally:
        load.stop()
    assert any(": 502, " in failure for failure in load.failures), load.failures


def test_rolling_restart_behind_haproxy_fails_no_request(tmp_path, short_tmp, cleanup):
    """HAProxy asks each replica's readiness path: after SIGTERM it marks the
    replica DOWN (on the 503s of the delay, or on refused checks once it is
    gone), and UP again after the restart; retry-on and redispatch cover the
    moments in between."""
    require_program("haproxy")
    root = str(tmp_path / "www")
    files = make_site(root)
    replicas = Replicas(cleanup, {"r1": root, "r2": root, "r3": root})
    balancer_port = free_port()
    _, socket_path = start_haproxy(cleanup, short_tmp, [replicas.ports[name] for name in ("r1", "r2", "r3")],
                                   balancer_port)

    def state(name):
        return haproxy_servers(socket_path)[name]["status"]

    def all_up():
        return all(row["status"] == "UP" for row in haproxy_servers(socket_path).values())

    wait_until(all_up, WAIT, lambda: f"not every replica is UP: {haproxy_servers(socket_path)}")
    seen_going_out = {}

    def wait_until_out(name):
        seen_going_out[name] = wait_until(lambda: state(name) == "DOWN" and haproxy_servers(socket_path)[name],
                                          WAIT + 20, lambda: f"{name} is {state(name)}, not DOWN")

    def wait_until_back(name):
        wait_until(lambda: state(name) == "UP", WAIT, lambda: f"{name} is {state(name)}, not UP")

    load, stopped_stderr = rolling_restart(replicas, balancer_port, files, wait_until_out, wait_until_back)
    check_rolling_restart(load, stopped_stderr, replicas)
    rows = haproxy_servers(socket_path)
    assert all(int(row["chkdown"]) >= 1 for row in rows.values()), rows
    # How each replica was taken out: L7STS is the readiness path's 503 (during
    # the delay), L4CON a refused check (it was gone before two checks failed).
    # Either is right; which one depends on the machine's speed, so it is only reported.
    print({name: row["check_status"] for name, row in seen_going_out.items()},
          {name: (row["wretr"], row["wredis"]) for name, row in rows.items()}, load.succeeded)


# -- the timeline ---------------------------------------------------------------------------------


def test_the_readiness_path_says_stopping_while_files_are_still_served(tmp_path, cleanup):
    """The page's command line with a delay long enough that nothing here
    races it (60 s instead of 3 s): after SIGTERM, /healthz answers 503 while
    files are served as usual, on new connections and on a keep-alive one;
    a second SIGTERM then stops it at once, exit 0."""
    root = str(tmp_path / "www")
    files = make_site(root)
    server = ServerProcess(replica_arguments(root=root, port="0", shutdown_delay="60s"), root)
    cleanup(server.stop)
    status, headers, body = fetch(server.port, HEALTH_PATH)
    assert (status, body, headers["cache-control"]) == (200, b"ok\n", "no-store")
    status, headers, body = fetch(server.port, HEALTH_PATH, method="HEAD")
    assert (status, body) == (200, b"")
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    cleanup(kept.close)
    kept.request("GET", "/index.html")
    assert kept.getresponse().read() == files["/index.html"]

    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: fetch(server.port, HEALTH_PATH)[0] == 503, WAIT, "the readiness path still says 200")
    status, headers, body = fetch(server.port, HEALTH_PATH)
    assert (status, body, headers["cache-control"]) == (503, b"stopping\n", "no-store")
    assert fetch(server.port, "/big.bin")[::2] == (200, files["/big.bin"])
    kept.request("GET", "/style.css")
    response = kept.getresponse()
    assert (response.status, response.read()) == (200, files["/style.css"])
    assert not response.will_close  # keep-alive as usual during the delay
    assert server.alive()

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(WAIT) == 0
    server.stop()
    check_clean_exit(server)


# -- validators across replicas --------------------------------------------------------------------


BIG = bytes(range(256)) * 400  # 100 KiB


def copies_with_different_mtimes(base, count=3):
    """``count`` copies of one small tree, each with its own modification times
    (a day apart), as copies made at different moments have."""
    roots = {}
    now = time.time()
    for index in range(count):
        root = os.path.join(base, f"copy{index + 1}")
        os.makedirs(root)
        for name, data in (("index.html", b"<h1>same bytes</h1>\n"), ("big.bin", BIG)):
            path = os.path.join(root, name)
            with open(path, "wb") as file:
                file.write(data)
            mtime = now - 10 * 86400 + index * 86400
            os.utime(path, (mtime, mtime))
        roots[f"r{index + 1}"] = root
    return roots


def http_date(seconds):
    return email.utils.formatdate(seconds, usegmt=True)


def test_validators_work_across_replicas_with_etag_content(tmp_path, cleanup):
    """Copies with different mtimes: replica 1's ETag gets 304 and 206 from the
    others; Last-Modified differs, and If-None-Match wins over
    If-Modified-Since (RFC 9110 §13.1.3)."""
    replicas = Replicas(cleanup, copies_with_different_mtimes(str(tmp_path)))
    ports = replicas.ports
    status, headers, body = fetch(ports["r1"], "/big.bin")
    assert (status, body) == (200, BIG)
    etag, last_modified = headers["etag"], headers["last-modified"]
    assert etag.startswith('"'), etag  # strong: If-Range may use it
    for name in ("r2", "r3"):
        status, other, _ = fetch(ports[name], "/big.bin", method="HEAD")
        assert other["etag"] == etag
        assert other["last-modified"] != last_modified  # each copy's own mtime
        status, headers, body = fetch(ports[name], "/big.bin", {"If-None-Match": etag})
        assert (status, body, headers["etag"]) == (304, b"", etag)
        status, headers, body = fetch(ports[name], "/big.bin", {"Range": "bytes=100-199", "If-Range": etag})
        assert (status, body, headers["content-range"]) == (206, BIG[100:200], f"bytes 100-199/{len(BIG)}")

    # r3's copy is newer than r1's: an If-Modified-Since of r1's date alone
    # would get the whole file, but If-None-Match decides, and it matches.
    status, _, body = fetch(ports["r3"], "/big.bin", {"If-Modified-Since": last_modified})
    assert (status, len(body)) == (200, len(BIG))
    status, _, body = fetch(ports["r3"], "/big.bin", {"If-None-Match": etag, "If-Modified-Since": last_modified})
    assert (status, body) == (304, b"")
    # And the other way: a date that alone would get a 304, with an ETag that does not match.
    status, _, body = fetch(ports["r1"], "/big.bin", {"If-None-Match": '"something-else"',
                                                     "If-Modified-Since": http_date(time.time())})
    assert (status, len(body)) == (200, len(BIG))


def test_validators_work_across_replicas_through_nginx(tmp_path, short_tmp, cleanup):
    """The same through the page's nginx, which sends each request to the next
    replica in turn: every conditional request gets its 304 or 206, and every
    replica answered some of them."""
    require_program("nginx")
    replicas = Replicas(cleanup, copies_with_different_mtimes(str(tmp_path)))
    etag = fetch(replicas.ports["r1"], "/big.bin", method="HEAD")[1]["etag"]
    balancer_port = free_port()
    start_nginx(cleanup, short_tmp, [replicas.ports[name] for name in ("r1", "r2", "r3")], balancer_port)
    for _ in range(6):
        status, _, body = fetch(balancer_port, "/big.bin", {"If-None-Match": etag})
        assert (status, body) == (304, b"")
        status, _, body = fetch(balancer_port, "/big.bin", {"Range": "bytes=0-9", "If-Range": etag})
        assert (status, body) == (206, BIG[:10])
    for name, server in replicas.servers.items():
        def answered(server=server):
            lines = list(server.stdout_lines)
            return any('" 304 ' in line for line in lines) and any('" 206 ' in line for line in lines)
        wait_until(answered, WAIT,
                   lambda name=name, server=server: f"{name} answered too few: {server.stdout_lines[-5:]}")


def test_default_etags_differ_across_replicas_so_validators_fail(tmp_path, cleanup):
    """Why --etag content exists: with --etag mtime (the default), copies with
    different mtimes have different ETags, so one replica's ETag is a full 200
    from another, for If-None-Match and for If-Range."""
    roots = copies_with_different_mtimes(str(tmp_path), count=2)
    replicas = Replicas(cleanup, roots, replica_arguments(etag="mtime"))
    ports = replicas.ports
    etag = fetch(ports["r1"], "/big.bin", method="HEAD")[1]["etag"]
    assert fetch(ports["r2"], "/big.bin", method="HEAD")[1]["etag"] != etag
    status, _, body = fetch(ports["r2"], "/big.bin", {"If-None-Match": etag})
    assert (status, len(body)) == (200, len(BIG))
    status, _, body = fetch(ports["r2"], "/big.bin", {"Range": "bytes=0-9", "If-Range": etag})
    assert (status, len(body)) == (200, len(BIG))  # the whole file: the ETag does not match
    assert fetch(ports["r1"], "/big.bin", {"If-None-Match": etag})[0] == 304  # on its own replica, it does


# -- a CDN in front ------------------------------------------------------------------------------------


def test_the_cdn_origin_sends_what_a_cdn_keys_on(tmp_path, cleanup):
    """cdn-origin.sh's command line: Cache-Control per pattern (also on the
    304 a revalidation gets), a strong ETag and Last-Modified, Vary:
    Accept-Encoding where a precompressed sibling exists, no-store on the
    readiness path."""
    import gzip
    root = tmp_path / "www"
    (root / "assets").mkdir(parents=True)
    css = b"body { color: #222; }\n" * 50
    contents = {"index.html": b"<h1>home</h1>\n", "about.html": b"<h1>about</h1>\n",
                "assets/app.3f2a.js": b"console.log('hi');\n", "robots.txt": b"User-agent: *\n",
                "style.css": css, "style.css.gz": gzip.compress(css)}
    for name, data in contents.items():
        (root / name).write_bytes(data)
    arguments = replaced(command_line(page_files()["cdn-origin.sh"]), root=str(root), port="0")
    server = ServerProcess(arguments, str(root))
    cleanup(server.stop)
    expected = {"/assets/app.3f2a.js": "public, max-age=31536000, immutable", "/index.html": "no-cache",
                "/about.html": "no-cache", "/robots.txt": "public, max-age=300", "/style.css": "public, max-age=300"}
    for path, cache_control in expected.items():
        status, headers, body = fetch(server.port, path)
        assert status == 200 and headers["cache-control"] == cache_control, (path, headers)
        assert headers["etag"].startswith('"') and "last-modified" in headers, headers
        assert headers["accept-ranges"] == "bytes"
        status, again, _ = fetch(server.port, path, {"If-None-Match": headers["etag"]})
        assert (status, again["cache-control"], again["etag"]) == (304, cache_control, headers["etag"])
    status, headers, body = fetch(server.port, "/style.css", {"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"], headers["vary"]) == (200, "gzip", "Accept-Encoding")
    assert gzip.decompress(body) == css
    status, headers, body = fetch(server.port, "/style.css")
    assert (status, body, headers["vary"]) == (200, css, "Accept-Encoding")
    assert "vary" not in fetch(server.port, "/robots.txt")[1]  # one representation: nothing to vary
    status, headers, body = fetch(server.port, HEALTH_PATH)
    assert (status, body, headers["cache-control"]) == (200, b"ok\n", "no-store")
