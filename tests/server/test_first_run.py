"""The first thirty seconds: what a person new to reactor_http meets.

Each test reproduces something a newcomer met (issue 14) and checks what
happens now: the habits brought from python -m http.server, http-server and
serve; a terminal closed under the server, or a pipe whose reader left; a
mistake on the command line; the banner; the warnings at start; the Unix
socket's mode; the access log's times and colours. Every test runs the real
server in a subprocess.
"""

import fcntl
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios

import psutil
import pytest
from harness.server import free_port, parse_banner
from support.cli import assert_one_line_usage_error, run_cli
from support.clients import RawClient, get
from support.environment import BECOME_NOBODY_CODE, NOBODY_UID, REPO, wait_until, world_traversable

INDEX = b"<h1>first run</h1>\n"


def server_command(*args):
    return [sys.executable, "-m", "reactor_http", *args]


def environment(**extra):
    return {**os.environ, "PYTHONPATH": REPO, **extra}


class Started:
    """A server started from a command line of our own (no --port/--root
    added), its stdout read as it comes. The banner is written in one write,
    so the read that brings its first line brings all of it."""

    def __init__(self, *args, cwd=REPO, env=None):
        self.process = subprocess.Popen(server_command(*args), cwd=cwd, env=env or environment(),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self._pending = b""
        self.stdout_lines = []
        self._read_lines(lambda: any(parse_banner(line) for line in self.stdout_lines))
        self.banners = [banner for banner in map(parse_banner, self.stdout_lines) if banner]

    def _read_lines(self, done, timeout=30):
        descriptor = self.process.stdout.fileno()
        while not done():
            ready, _, _ = select.select([descriptor], [], [], timeout)
            chunk = os.read(descriptor, 65536) if ready else b""
            if not chunk:
                self.process.kill()
                _, stderr = self.process.communicate(timeout=30)
                raise AssertionError(f"no more output: {self.stdout_lines} {stderr}")
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            self.stdout_lines.extend(line.decode() for line in lines)

    def more_lines(self, count):
        """Every stdout line so far, once ``count`` more have come (log lines)."""
        wanted = len(self.stdout_lines) + count
        self._read_lines(lambda: len(self.stdout_lines) >= wanted)
        return self.stdout_lines

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        return stdout, stderr


@pytest.fixture
def started():
    servers = []

    def start(*args, **options):
        server = Started(*args, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate(timeout=30)


def fetch(host, port, path="/"):
    with socket.create_connection((host, port), timeout=10) as sock:
        client = RawClient(sock)
        return client.request(get(path))


def port_is_free(port):
    """Nothing listens on ``port`` (the server has let it go): a new server
    could take it at once (SO_REUSEADDR, as every server sets, ignores the
    closed connections' TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def folder(tmp_path):
    """A folder of files, with no index.html: what people share first."""
    root = tmp_path / "share"
    root.mkdir()
    (root / "notes.txt").write_bytes(b"notes\n")
    (root / ".secret").write_bytes(b"hidden\n")
    return root


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_bytes(INDEX)
    return root


# -- 1. a folder without index.html --------------------------------------------------------------


def test_a_folder_without_index_says_how_to_list_it(started, folder):
    """The listing stays off (README: "A folder of files"), and both the
    banner and the page say in one sentence how to turn it on."""
    server = started("--port", "0", "--root", str(folder))
    banner = server.banners[0]
    assert any("no index.html" in line and "--autoindex" in line for line in server.stdout_lines), \
        server.stdout_lines
    status, headers, body = fetch(banner.host, banner.port, "/")
    assert status == 404
    assert b"no index.html" in body and b"--autoindex" in body, body
    server.stop()


def test_with_autoindex_the_folder_is_listed_without_its_dotfiles(started, folder):
    server = started("--port", "0", "--root", str(folder), "--autoindex")
    banner = server.banners[0]
    assert any("listed" in line for line in server.stdout_lines), server.stdout_lines
    status, headers, body = fetch(banner.host, banner.port, "/")
    assert status == 200
    assert b"notes.txt" in body and b".secret" not in body
    server.stop()


# -- 2. the habits people bring ------------------------------------------------------------------


def test_a_bare_port_serves_the_current_folder_as_http_server_does(started, site):
    """python -m reactor_http 8000, as python -m http.server 8000."""
    port = free_port()
    server = started(str(port), cwd=str(site))
    banner = server.banners[0]
    assert (banner.port, os.path.realpath(banner.root)) == (port, os.path.realpath(site))
    assert fetch(banner.host, port)[::2] == (200, INDEX)
    server.stop()


@pytest.mark.parametrize("form", [
    ["-p", "0", "{site}"],               # serve www, http-server www
    ["{site}", "-p", "0"],
    ["-d", "{site}", "-p", "0", "-b", "127.0.0.1"],   # python -m http.server -d www -b ...
    ["--directory", "{site}", "--port", "0", "--bind", "127.0.0.1"],
    ["0", "{site}"],                     # a port and a folder, in either order
    ["{site}", "0"],
])
def test_short_flags_and_a_folder_argument(started, site, form):
    server = started(*(word.format(site=site) for word in form))
    banner = server.banners[0]
    assert os.path.realpath(banner.root) == os.path.realpath(site)
    assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
    server.stop()


def test_a_number_that_is_also_a_folder_is_refused_as_ambiguous(tmp_path):
    (tmp_path / "8000").mkdir()
    line = assert_one_line_usage_error(*run_cli("8000", cwd=str(tmp_path)))
    assert "'8000' is both a port number and a folder" in line
    assert "--port 8000" in line and "--root 8000" in line


@pytest.mark.parametrize("args, words", [
    (["8000", "8001"], ["two port numbers", "'8000'", "'8001'"]),
    (["8000", "--port", "9000"], ["'8000'", "--port", "give one"]),
    (["www", "--root", "www"], ["'www'", "--root", "give one"]),
    (["99999"], ["99999", "0-65535"]),
])
def test_places_that_contradict_are_one_line(args, words):
    line = assert_one_line_usage_error(*run_cli(*args))
    for word in words:
        assert word in line, line


# -- 3. a terminal closed, a pipe whose reader left ----------------------------------------------


def on_a_terminal(*args, cwd=REPO):
    """The server on a pseudo-terminal that is its controlling terminal, as
    in a terminal window: (process, the master side, what it printed up to
    its banner)."""
    master, slave = pty.openpty()

    def own_the_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(server_command(*args), cwd=cwd, env=environment(TERM="xterm"),
                               stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_the_terminal)
    os.close(slave)
    text = read_terminal_until(master, lambda text: "Press Ctrl+C" in text)
    return process, master, text


def read_terminal_until(master, done, timeout=30):
    text = ""
    while not done(text):
        ready, _, _ = select.select([master], [], [], timeout)
        assert ready, f"nothing more on the terminal after {timeout} s: {text!r}"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every slave side closed, the process gone
            chunk = b""
        assert chunk, f"the terminal closed: {text!r}"
        text += chunk.decode("utf-8", "replace")
    return text


def banner_in(text):
    return next(banner for banner in map(parse_banner, text.replace("\r", "").splitlines()) if banner)


@pytest.mark.parametrize("workers", [None, "2"])
def test_closing_the_terminal_stops_the_server_and_frees_the_port(site, workers):
    """The terminal the server runs in is closed (the window, an ssh session):
    it stops gracefully with exit status 0, though it can no longer write its
    "Stopped." there, and lets the port go; with workers, none is started
    again. On that terminal the access log was coloured (--color auto)."""
    extra = ("--workers", workers) if workers else ()
    process, master, text = on_a_terminal("--port", "0", "--root", str(site), *extra)
    try:
        banner = banner_in(text)
        children = psutil.Process(process.pid).children(recursive=True)
        assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
        logged = read_terminal_until(master, lambda text: '"GET / HTTP/1.1" 200' in text)
        assert "\x1b[32m" in logged, repr(logged)  # 2xx in green, on a terminal
    finally:
        os.close(master)  # the hang-up: SIGHUP to the terminal's session
    assert process.wait(timeout=60) == 0
    assert port_is_free(banner.port)
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def test_a_reader_that_leaves_costs_nothing_but_the_log(site):
    """reactor-http | head -1: the reader exits after the banner. The
    server's next log write meets EPIPE: it stops writing there (its stdout
    now goes to /dev/null), keeps serving, and exits 0 when stopped."""
    process = subprocess.Popen(server_command("--port", "0", "--root", str(site)), cwd=REPO,
                               env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        banner = parse_banner(process.stdout.readline().decode())
        process.stdout.close()  # the reader has gone
        assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
        wait_until(lambda: os.readlink(f"/proc/{process.pid}/fd/1") == os.devnull, 30,
                   "the server's stdout was never set aside")
        for _ in range(3):
            assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        stderr = process.stderr.read().decode()
        status = process.wait(timeout=30)
    assert status == 0, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr, stderr


def test_in_a_service_sighup_reopens_the_log_and_keeps_serving(site, tmp_path):
    """No terminal (stdin, stdout and stderr are not one): SIGHUP is
    logrotate's "reopen the log", and the server goes on."""
    log = tmp_path / "access.log"
    process = subprocess.Popen(
        server_command("--port", "0", "--root", str(site), "--access-log", str(log)), cwd=REPO,
        env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        banner = parse_banner(process.stdout.readline())
        assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
        wait_until(lambda: log.exists() and log.read_text().count("\n") == 1, 30, "no log line")
        os.rename(log, tmp_path / "access.log.1")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: log.exists(), 30, "the log was not opened again")
        assert fetch(banner.host, banner.port)[::2] == (200, INDEX)
        wait_until(lambda: log.read_text().count("\n") == 1, 30, "no line in the new log")
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


# -- 4. mistakes on the command line -------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--prot", "18190"], ["unknown flag --prot", "did you mean --port?"]),
    (["--rot", "www"], ["did you mean --root?"]),
    (["--autoindx"], ["did you mean --autoindex?"]),
    (["--max-body-bytes", "1M"], ["unknown flag --max-body-bytes"]),
    (["--port", "abc"], ["--port: 'abc' is not a port number", "0-65535"]),
    (["--cache-bytes", "64 megs"], ["--cache-bytes: '64 megs'", "64M"]),
    (["--keepalive-timeout", "a while"], ["--keepalive-timeout: 'a while'", "500ms, 30s, 2m"]),
    (["--bind", "0.0.0.0:8000"], ["--bind: '0.0.0.0:8000' has a port in it", "--bind 0.0.0.0 --port 8000"]),
    (["--unix-mode", "rw-rw-rw-"], ["--unix-mode:", "octal"]),
])
def test_every_mistake_is_one_line_naming_the_flag(args, words):
    line = assert_one_line_usage_error(*run_cli(*args))
    for word in words:
        assert word in line, line


def test_the_same_typo_in_a_file_or_the_environment_gets_the_same_suggestion(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text("prot = 8000\n")
    line = assert_one_line_usage_error(*run_cli("--config", str(path)))
    assert "unknown setting 'prot' (did you mean 'port'?)" in line
    line = assert_one_line_usage_error(*run_cli(env=environment(REACTOR_HTTP_PROT="8000")))
    assert "REACTOR_HTTP_PROT (did you mean REACTOR_HTTP_PORT?)" in line


@pytest.mark.parametrize("args, key, shown", [
    (["--cache-bytes", "64M"], "cache-bytes", "67108864"),
    (["--cache-bytes", "1GiB"], "cache-bytes", str(1 << 30)),
    (["--max-body", "16k"], "max-body", "16384"),
    (["--max-header-bytes", "8KiB"], "max-header-bytes", "8192"),
    (["--keepalive-timeout", "500ms"], "keepalive-timeout", "0.5"),
    (["--keepalive-timeout", "2m"], "keepalive-timeout", "120.0"),
    (["--workers", "auto"], "workers", '"auto"'),
])
def test_sizes_and_durations_take_units(args, key, shown):
    status, stdout, stderr = run_cli(*args, "--print-config")
    assert status == 0, stderr
    assert f"{key} = {shown}  # command line" in stdout, stdout


# -- 5. the banner -------------------------------------------------------------------------------


def test_on_loopback_the_banner_says_only_this_machine_can_connect(started, site):
    server = started("--port", "0", "--root", str(site))
    assert any("Only this machine can connect" in line and "--bind 0.0.0.0" in line
               for line in server.stdout_lines), server.stdout_lines
    server.stop()


def test_on_every_interface_the_banner_gives_an_address_for_here_and_for_others(started, site):
    server = started("--port", "0", "--root", str(site), "--bind", "0.0.0.0")
    port = server.banners[0].port
    lines = server.stdout_lines
    assert f"Open http://127.0.0.1:{port}/ here." in lines, lines
    others = [line for line in lines if line.startswith("From another device")
              or line.startswith("Other machines can connect")]
    assert len(others) == 1, lines
    for url in others[0].partition(": ")[2].split(", ") if others[0].startswith("From") else ():
        host = url.split("//")[1].rsplit(":", 1)[0]
        assert fetch(host, port)[::2] == (200, INDEX)  # each address it names answers
    assert fetch("127.0.0.1", port)[::2] == (200, INDEX)
    server.stop()


def test_workers_print_the_same_banner(started, site):
    one = started("--port", "0", "--root", str(site))
    many = started("--port", "0", "--root", str(site), "--workers", "2")
    assert "2 workers" in many.banners[0].line
    advice = [line for line in one.stdout_lines if parse_banner(line) is None]
    assert [line for line in many.stdout_lines if parse_banner(line) is None] == advice
    one.stop()
    many.stop()


# -- 6. warnings and errors at start -------------------------------------------------------------


def warnings_of(server):
    server.process.send_signal(signal.SIGTERM)
    _, stderr = server.process.communicate(timeout=30)
    return [line for line in stderr.splitlines() if line.startswith("reactor-http: warning: ")]


@pytest.mark.parametrize("flags, words", [
    (["--fallback", "/app.html"], ["--fallback=/app.html", "no such file"]),
    (["--error-page", "404=/missing.html"], ["--error-page 404=/missing.html", "no such file"]),
])
def test_a_flag_naming_a_missing_file_is_warned_of(started, site, flags, words):
    warnings = warnings_of(started("--port", "0", "--root", str(site), *flags))
    assert len(warnings) == 1 and all(word in warnings[0] for word in words), warnings


def test_an_empty_root_is_warned_of(started, tmp_path):
    (tmp_path / "empty").mkdir()
    warnings = warnings_of(started("--port", "0", "--root", str(tmp_path / "empty")))
    assert len(warnings) == 1 and "is empty" in warnings[0], warnings


def test_the_root_folder_to_every_interface_is_warned_of(started):
    warnings = warnings_of(started("--port", "0", "--root", "/", "--bind", "0.0.0.0"))
    assert any("serving / to every machine on the network" in line for line in warnings), warnings


def test_a_working_setup_starts_without_a_warning(started, site):
    assert warnings_of(started("--port", "0", "--root", str(site))) == []


def as_nobody(tmp_path):
    """The environment that makes the server run as user nobody."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the server as another user")
    if not world_traversable(os.path.join(REPO, "reactor_http")):
        pytest.skip(f"user nobody cannot reach the package in {REPO}")
    shim = tmp_path / "become-nobody"
    shim.mkdir()
    os.chmod(shim, 0o755)
    (shim / "sitecustomize.py").write_text(BECOME_NOBODY_CODE)
    os.chmod(shim / "sitecustomize.py", 0o644)
    return environment(PYTHONPATH=os.pathsep.join((str(shim), REPO)), PYTHONDONTWRITEBYTECODE="1")


def test_a_root_the_server_cannot_read_is_warned_of(started, world_readable_tmp, tmp_path):
    root = os.path.join(world_readable_tmp, "closed")
    os.mkdir(root)
    os.chmod(root, 0o700)  # root's, and closed to nobody
    warnings = warnings_of(started("--port", "0", "--root", root, env=as_nobody(tmp_path)))
    assert any("may not read" in line and "403" in line for line in warnings), warnings


def test_a_privileged_port_says_what_to_do(tmp_path):
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as file:
        if int(file.read()) <= 80:
            pytest.skip("this kernel lets every user listen on port 80")
    line = assert_one_line_usage_error(*run_cli("--port", "80", env=as_nobody(tmp_path)))
    assert "port 80" in line and "Permission denied" in line and "try --port 8080" in line, line


def test_a_port_in_use_names_who_holds_it():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        line = assert_one_line_usage_error(*run_cli("--port", str(port)))
    assert f"port {port}" in line and f"process {os.getpid()} (" in line, line


# -- 7. the Unix socket's mode -------------------------------------------------------------------


def connect_as_nobody(path):
    """Whether user nobody can GET / on the Unix socket at ``path``: the
    status line's code, or the error."""
    code = (f"import os, socket\nos.setgroups([]); os.setgid({NOBODY_UID}); os.setuid({NOBODY_UID})\n"
            "sock = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            f"    sock.connect({path!r})\n"
            "except OSError as error:\n"
            "    print(error.strerror); raise SystemExit\n"
            "sock.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
            "print(sock.recv(100).split()[1].decode())\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.mark.parametrize("flags, mode, nobody_gets", [
    ((), 0o666, "200"),
    (("--unix-mode", "600"), 0o600, "Permission denied"),
])
def test_the_unix_socket_lets_a_proxy_of_another_user_in(started, site, world_readable_tmp, flags, mode,
                                                         nobody_gets):
    if os.geteuid() != 0:
        pytest.skip("needs root, to connect as another user")
    path = os.path.join(world_readable_tmp, "http.sock")
    server = started("--unix", path, "--root", str(site), *flags)
    assert os.stat(path).st_mode & 0o777 == mode
    assert connect_as_nobody(path) == nobody_gets
    server.stop()


# -- 8. the access log: time taken, colour -------------------------------------------------------


@pytest.mark.parametrize("log_format", ["common", "combined"])
def test_log_time_ends_the_line_with_the_seconds_taken(started, site, log_format):
    server = started("--port", "0", "--root", str(site), "--log-format", log_format, "--log-time")
    banner = server.banners[0]
    fetch(banner.host, banner.port)
    line = server.more_lines(1)[-1]
    assert '"GET / HTTP/1.1" 200' in line
    seconds = line.rsplit(" ", 1)[1]
    assert float(seconds) >= 0 and len(seconds.partition(".")[2]) == 3, line
    server.stop()


def test_json_lines_always_carry_the_seconds(started, site):
    server = started("--port", "0", "--root", str(site), "--log-format", "json")
    banner = server.banners[0]
    fetch(banner.host, banner.port)
    record = json.loads(server.more_lines(1)[-1])
    assert record["status"] == 200 and isinstance(record["seconds"], float) and record["seconds"] >= 0
    server.stop()


@pytest.mark.parametrize("flags, env, coloured", [
    ((), {}, False),                                 # a pipe, auto: plain
    (("--color", "always"), {}, True),
    (("--color", "never"), {}, False),
    (("--color", "always"), {"NO_COLOR": "1"}, True),  # asked for by name: NO_COLOR is for auto
])
def test_colour_only_on_a_terminal_or_when_asked(started, site, flags, env, coloured):
    server = started("--port", "0", "--root", str(site), *flags, env=environment(**env))
    banner = server.banners[0]
    fetch(banner.host, banner.port, "/")
    fetch(banner.host, banner.port, "/missing")
    lines = server.more_lines(2)[-2:]
    if coloured:
        assert lines[0].startswith("\x1b[32m") and lines[1].startswith("\x1b[33m"), lines
        assert all(line.endswith("\x1b[0m") for line in lines), lines
    else:
        assert not any("\x1b" in line for line in lines), lines
    server.stop()


def test_no_color_turns_auto_off_on_a_terminal(site):
    process, master, _ = on_a_terminal("--port", "0", "--root", str(site))
    os.close(master)
    process.wait(timeout=60)
    env_process = None
    try:
        master, slave = pty.openpty()

        def own_the_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env_process = subprocess.Popen(
            server_command("--port", "0", "--root", str(site)), cwd=REPO,
            env=environment(NO_COLOR="1"), stdin=slave, stdout=slave, stderr=slave,
            preexec_fn=own_the_terminal)
        os.close(slave)
        banner = banner_in(read_terminal_until(master, lambda text: "Press Ctrl+C" in text))
        fetch(banner.host, banner.port)
        logged = read_terminal_until(master, lambda text: '"GET / HTTP/1.1" 200' in text)
        assert "\x1b[" not in logged, repr(logged)
    finally:
        os.close(master)
        if env_process is not None:
            env_process.wait(timeout=60)


# -- clean URLs and the 404 page by convention ---------------------------------------------------


def test_try_html_serves_about_html_for_about(started, site):
    (site / "about.html").write_bytes(b"<h1>about</h1>\n")
    (site / "docs").mkdir()
    (site / "docs" / "intro.html").write_bytes(b"<h1>intro</h1>\n")
    server = started("--port", "0", "--root", str(site), "--try-html")
    banner = server.banners[0]
    assert fetch(banner.host, banner.port, "/about")[::2] == (200, b"<h1>about</h1>\n")
    assert fetch(banner.host, banner.port, "/docs/intro")[::2] == (200, b"<h1>intro</h1>\n")
    assert fetch(banner.host, banner.port, "/about.html")[::2] == (200, b"<h1>about</h1>\n")
    assert fetch(banner.host, banner.port, "/nothing")[0] == 404
    assert fetch(banner.host, banner.port, "/about.html.html")[0] == 404
    server.stop()
    plain = started("--port", "0", "--root", str(site))
    assert fetch(plain.banners[0].host, plain.banners[0].port, "/about")[0] == 404  # only when asked
    plain.stop()


def test_a_404_html_at_the_root_is_the_404_page(started, site):
    (site / "404.html").write_bytes(b"<h1>lost</h1>\n")
    (site / "other404.html").write_bytes(b"<h1>other</h1>\n")
    server = started("--port", "0", "--root", str(site))
    status, headers, body = fetch(server.banners[0].host, server.banners[0].port, "/nowhere")
    assert (status, body) == (404, b"<h1>lost</h1>\n")
    assert headers["content-type"].startswith("text/html")
    server.stop()
    chosen = started("--port", "0", "--root", str(site), "--error-page", "404=/other404.html")
    status, _, body = fetch(chosen.banners[0].host, chosen.banners[0].port, "/nowhere")
    assert (status, body) == (404, b"<h1>other</h1>\n")  # --error-page says otherwise
    chosen.stop()
