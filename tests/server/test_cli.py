"""The server as a process: its flags, exit statuses, banner, signals,
listening addresses, readiness backends and what it never imports.

Every test here runs the real ``python -m reactor_http`` (or the installed
``reactor-http`` script) in a subprocess. Usage errors exit 2 with one line on
stderr and no traceback; a signal stops the server with exit 0.
"""

import os
import re
import selectors
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from support.cli import EXIT_USAGE, assert_one_line_usage_error, run_cli
from support.clients import RawClient, get, read_head
from support.environment import (
    BECOME_NOBODY_CODE,
    DEMO_ROOT,
    NOBODY_UID,
    REPO,
    ipv6_loopback_available,
    make_sparse_file,
    skip_locally_fail_in_ci,
    world_traversable,
)

from reactor_http import __version__
from reactor_http.loop.reactor import SELECTOR_CLASSES

MIB = 1 << 20

ALL_FLAGS = (
    "--port", "--bind", "--root", "--blocking-threads", "--quiet", "--selector", "--show-hidden",
    "--no-sendfile", "--keepalive-timeout", "--header-timeout", "--send-timeout",
    "--max-request-line", "--max-header-bytes", "--max-headers",
)


def make_site(directory, big_bytes=None):
    """A small document root: index.html, and big.bin when asked for."""
    (directory / "index.html").write_bytes(b"<h1>index</h1>\n")
    if big_bytes is not None:
        (directory / "big.bin").write_bytes(big_bytes)
    return str(directory)


def fetch(address, path="/", family=socket.AF_INET):
    """One GET on a new connection to ``address``: (status, headers, body)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address)
    client = RawClient(sock)
    try:
        return client.request(get(path))
    finally:
        client.close()


def demo_index():
    with open(os.path.join(DEMO_ROOT, "index.html"), "rb") as file:
        return file.read()


# -- flags and usage errors ----------------------------------------------------------


def test_help_lists_every_flag():
    """--help exits 0 and documents every flag the server has."""
    status, stdout, stderr = run_cli("--help")
    assert status == 0, stderr
    assert stderr == ""
    assert stdout.startswith("usage: reactor-http")
    for flag in ALL_FLAGS:
        # A whole flag, not a prefix of a longer one (--max-header-bytes vs --max-headers).
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", stdout), f"{flag} missing from --help"


def test_version_prints_the_package_version():
    status, stdout, stderr = run_cli("--version")
    assert (status, stdout, stderr) == (0, f"reactor_http {__version__}\n", "")


def test_missing_root_is_a_one_line_usage_error(tmp_path):
    missing = str(tmp_path / "no-such-directory")
    line = assert_one_line_usage_error(*run_cli("--port", "0", "--root", missing))
    assert missing in line and "does not exist" in line


def test_root_that_is_a_file_is_a_one_line_usage_error(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_bytes(b"not a directory\n")
    line = assert_one_line_usage_error(*run_cli("--port", "0", "--root", str(a_file)))
    assert str(a_file) in line and "not a directory" in line


def test_port_in_use_is_a_one_line_usage_error():
    """Another socket already listens on the port: the server says so and exits 2."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        line = assert_one_line_usage_error(
            *run_cli("--bind", "127.0.0.1", "--port", str(port), "--root", DEMO_ROOT))
    assert str(port) in line


@pytest.mark.parametrize("flag, value", [
    ("--port", "70000"),
    ("--port", "-1"),
    ("--port", "http"),
    ("--blocking-threads", "0"),
    ("--selector", "nope"),
    ("--keepalive-timeout", "0"),
    ("--header-timeout", "-1"),
    ("--send-timeout", "nan"),
    ("--max-request-line", "0"),
    ("--max-header-bytes", "0"),
    ("--max-headers", "0"),
])
def test_bad_flag_values_exit_2(flag, value):
    """argparse refuses the value before anything is bound: exit 2, one line
    that names the flag and the value."""
    line = assert_one_line_usage_error(*run_cli("--port", "0", "--root", DEMO_ROOT, flag, value))
    assert line.startswith(f"reactor-http: error: {flag}: "), line
    assert repr(value) in line or value in line, line


@pytest.mark.parametrize("flag", ["--keepalive-timeout", "--header-timeout", "--send-timeout"])
def test_infinite_timeouts_are_refused(flag):
    """"inf" is a float but not a usable timeout: no selector can sleep that
    long, so it must be refused like any other bad value, not crash later."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reactor_http", "--port", "0", "--root", DEMO_ROOT, flag, "inf"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Either it exits without a word on stdout, or it prints the banner: serving.
    banner = process.stdout.readline()
    if banner:
        process.kill()
    stdout, stderr = process.communicate(timeout=30)
    assert banner == "", f"{flag} inf was accepted: {banner!r}"
    status = process.returncode
    assert status == EXIT_USAGE, stderr
    assert "Traceback" not in stderr
    line = assert_one_line_usage_error(status, stdout, stderr)
    assert line.startswith(f"reactor-http: error: {flag}: 'inf'"), line


def test_timeouts_longer_than_a_selector_can_sleep_still_serve(start_server, client_for):
    """116 days is a legal timeout, yet longer than epoll can sleep in one call
    (a C int of milliseconds, about 24.8 days). The loop must still serve."""
    server = start_server("--keepalive-timeout", "1e7", "--header-timeout", "1e7")
    for _ in range(2):
        status, headers, body = client_for(server).request(get("/"))
        assert (status, body) == (200, demo_index())
    assert server.process.poll() is None, "".join(server.stderr_lines)


@pytest.mark.parametrize("name", sorted(name for name, selector_class in SELECTOR_CLASSES.items()
                                        if selector_class is None))
def test_selector_missing_on_this_platform_is_a_one_line_usage_error(name):
    """A backend the flag knows but this platform lacks (kqueue on Linux)."""
    line = assert_one_line_usage_error(*run_cli("--port", "0", "--root", DEMO_ROOT, "--selector", name))
    assert name in line


# -- the banner ------------------------------------------------------------------------


def test_banner_names_the_real_port_and_the_root(start_server, client_for):
    """The first stdout line gives the URL with the port the kernel chose for
    --port 0, and the absolute root, even when --root was relative."""
    server = start_server(root="www")  # relative to the server's working directory, REPO
    banner = server.stdout_lines[0]
    process = psutil.Process(server.pid)
    connections = getattr(process, "net_connections", None) or process.connections  # psutil < 6
    listening = {connection.laddr.port for connection in connections(kind="tcp")
                 if connection.status == psutil.CONN_LISTEN}
    assert listening == {server.port}
    assert server.port != 0
    assert f"http://127.0.0.1:{server.port}/" in banner
    assert f" {os.path.realpath(DEMO_ROOT)} " in banner
    status, headers, body = client_for(server).request(get("/"))
    assert (status, body) == (200, demo_index())


# -- signals ---------------------------------------------------------------------------


def start_situation(situation, server, client_for):
    """Put the server in the situation the signal should find it in."""
    if situation == "idle-keep-alive":
        # A finished request on a connection the client keeps open.
        client = client_for(server)
        status, headers, body = client.request(get("/index.html"))
        assert (status, body) == (200, b"<h1>index</h1>\n")
        assert headers.get("connection") != "close"  # HTTP/1.1 default: it stays open
        return client
    if situation.startswith("mid-download"):
        # Read the head and some of the body, then stop reading: the server's
        # sends block on a full socket buffer, far from the end of the file.
        client = client_for(server)
        client.send(get("/big.bin"))
        status, headers, first_bytes = read_head(client.sock)
        assert (status, headers["content-length"]) == (200, str(256 * MIB))
        received = len(first_bytes)
        while received < MIB:
            chunk = client.sock.recv(65536)
            assert chunk, "the server closed before sending 1 MiB"
            received += len(chunk)
        client.received = received
        return client
    return None


@pytest.mark.parametrize("situation", ["no-clients", "idle-keep-alive", "mid-download",
                                       "mid-download-no-sendfile"])
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_server_cleanly(start_server, client_for, tmp_path, signal_number, situation):
    """SIGTERM and SIGINT (Ctrl+C) stop the loop: exit 0, "Stopped.", no
    traceback, and every open connection is closed. (A download whose client
    has stopped reading is closed at the shutdown timeout, here 1 s; a
    download that goes on is waited for: see test_shutdown.)"""
    make_site(tmp_path)
    make_sparse_file(tmp_path / "big.bin", 256 * MIB)
    flags = ("--shutdown-timeout", "1")
    flags += ("--no-sendfile",) if situation.endswith("no-sendfile") else ()
    server = start_server(*flags, root=str(tmp_path))
    client = start_situation(situation, server, client_for)

    status = server.stop(signal_number)

    stderr = "".join(server.stderr_lines)
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert server.stdout_lines[-1] == "Stopped.\n"
    if situation == "idle-keep-alive":
        assert client.is_closed_by_peer()
    elif client is not None:
        # The rest of what was in flight, then end-of-file (or a reset):
        # fewer bytes than announced, so the signal did arrive mid-download.
        received = client.received
        try:
            while chunk := client.sock.recv(MIB):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert MIB <= received < 256 * MIB


# A second Ctrl+C while the process finishes: main() has returned, the reactor
# and its wake-up channel are closed, but the signal handlers are still there.
_SIGNAL_AFTER_STOP = """
import os, signal, sys
from reactor_http.server.cli import main
status = main(sys.argv[1:])
os.kill(os.getpid(), signal.SIGINT)
print("exit status", status, flush=True)
sys.exit(status)
"""


def test_a_second_signal_while_finishing_is_harmless(tmp_path):
    """An impatient second Ctrl+C, arriving after the loop has stopped and
    closed its wake-up channel, must neither crash nor change the exit status."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_AFTER_STOP, "--port", "0", "--root", make_site(tmp_path)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        assert banner.startswith("Serving "), banner
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in stderr, stderr
    assert stdout == "Stopped.\nexit status 0\n"
    assert process.returncode == 0


# -- listening addresses ---------------------------------------------------------------


def test_bind_all_ipv4_addresses_answers_on_loopback(start_server):
    server = start_server("--bind", "0.0.0.0")
    assert f"http://0.0.0.0:{server.port}/" in server.stdout_lines[0]
    status, headers, body = fetch(("127.0.0.1", server.port))
    assert (status, body) == (200, demo_index())


def test_bind_ipv6_loopback(start_server):
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback")
    server = start_server("--bind", "::1")
    assert f"http://[::1]:{server.port}/" in server.stdout_lines[0]
    status, headers, body = fetch(("::1", server.port), family=socket.AF_INET6)
    assert (status, body) == (200, demo_index())


def test_bind_all_ipv6_addresses_is_dual_stack(start_server):
    """"::" answers IPv6 and IPv4 clients on one socket (IPV6_V6ONLY off),
    whatever the system default (net.ipv6.bindv6only)."""
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback")
    server = start_server("--bind", "::")
    assert f"http://[::]:{server.port}/" in server.stdout_lines[0]
    status, headers, body = fetch(("::1", server.port), family=socket.AF_INET6)
    assert (status, body) == (200, demo_index())
    status, headers, body = fetch(("127.0.0.1", server.port))
    assert (status, body) == (200, demo_index())


# -- readiness backends ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "epoll", "poll", "select"])
def test_each_selector_backend_serves(start_server, client_for, tmp_path, name):
    """Every backend serves a page, a 404 and a file far larger than a socket
    buffer, which needs write interest and several wake-ups to send."""
    if name != "auto" and SELECTOR_CLASSES.get(name) is None:
        pytest.skip(f"no {name} selector on this platform")
    big = os.urandom(4 * MIB)
    server = start_server("--selector", name, root=make_site(tmp_path, big))
    expected = name if name != "auto" else selectors.DefaultSelector.__name__.replace("Selector", "").lower()
    assert f"(selector: {expected}," in server.stdout_lines[0]

    client = client_for(server)
    status, headers, body = client.request(get("/"))
    assert (status, body) == (200, b"<h1>index</h1>\n")
    status, headers, body = client.request(get("/missing.txt"))
    assert status == 404
    status, headers, body = client.request(get("/big.bin"))
    assert (status, headers["content-length"]) == (200, str(len(big)))
    assert body == big


# -- no asyncio ------------------------------------------------------------------------


def imported_module_names(stderr_lines):
    """Module names from -X importtime output ("import time: self | cumulative | name")."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr_lines if line.startswith("import time:")}


@pytest.mark.parametrize("flags", [(), ("--no-sendfile",)], ids=["sendfile", "no-sendfile"])
def test_asyncio_is_never_imported(start_server, client_for, tmp_path, flags):
    """The reactor is hand-written: from start to stop, through a page, a 404
    and a streamed file, asyncio is never imported, not even indirectly.
    PYTHONPROFILEIMPORTTIME (python -X importtime) lists every import on stderr."""
    big = os.urandom(2 * MIB)
    server = start_server(*flags, root=make_site(tmp_path, big), env={"PYTHONPROFILEIMPORTTIME": "1"})
    client = client_for(server)
    status, headers, body = client.request(get("/"))
    assert (status, body) == (200, b"<h1>index</h1>\n")
    status, headers, body = client.request(get("/missing.txt"))
    assert status == 404
    status, headers, body = client.request(get("/big.bin"))
    assert (status, body) == (200, big)
    assert server.stop() == 0

    modules = imported_module_names(server.stderr_lines)
    # The listing really is there: the server's own modules are in it.
    assert {"reactor_http.server.cli", "reactor_http.loop.reactor", "reactor_http.connection.connection"} <= modules
    assert not {name for name in modules if name == "asyncio" or name.startswith("asyncio.")}


# -- the console script ----------------------------------------------------------------


def test_console_script_runs():
    """`pip install .` provides a `reactor-http` command next to the interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "reactor-http")
    if not os.access(script, os.X_OK):
        skip_locally_fail_in_ci(f"{script} is not installed (pip install -e '.[test]')")
    status, stdout, stderr = run_cli("--help", command=[script])
    assert status == 0, stderr
    assert stdout.startswith("usage: reactor-http")
    assert "--root" in stdout
    status, stdout, stderr = run_cli("--version", command=[script])
    assert (status, stdout) == (0, f"reactor_http {__version__}\n")


# -- permissions -----------------------------------------------------------------------

def test_unreadable_file_is_403_and_the_server_keeps_serving(start_server, world_readable_tmp):
    """A file or directory the server's user may not read answers 403, and the
    same connection goes on being served (a refusal is not a server failure)."""
    base = world_readable_tmp
    root = os.path.join(base, "root")
    os.mkdir(root)
    os.chmod(root, 0o755)
    with open(os.path.join(root, "public.txt"), "wb") as file:
        file.write(b"for everyone\n")
    os.chmod(os.path.join(root, "public.txt"), 0o644)
    secret = os.path.join(root, "secret.txt")
    with open(secret, "wb") as file:
        file.write(b"for root only\n")
    private = os.path.join(root, "private")
    os.mkdir(private)
    with open(os.path.join(private, "inside.txt"), "wb") as file:
        file.write(b"behind a closed directory\n")
    os.chmod(os.path.join(private, "inside.txt"), 0o644)

    env = None
    if os.geteuid() == 0:
        # root reads everything: serve as nobody, from files owned by root.
        if not world_traversable(os.path.join(REPO, "reactor_http")):
            pytest.skip(f"user nobody cannot reach the package in {REPO}")
        os.chmod(secret, 0o600)
        os.chmod(private, 0o700)
        shim = os.path.join(base, "become-nobody")
        os.mkdir(shim)
        os.chmod(shim, 0o755)
        with open(os.path.join(shim, "sitecustomize.py"), "w") as file:
            file.write(BECOME_NOBODY_CODE)
        os.chmod(os.path.join(shim, "sitecustomize.py"), 0o644)
        env = {"PYTHONPATH": os.pathsep.join((shim, REPO)), "PYTHONDONTWRITEBYTECODE": "1"}
    else:
        os.chmod(secret, 0o000)
        os.chmod(private, 0o000)
        if os.access(secret, os.R_OK):
            pytest.skip("this user reads mode-000 files anyway (CAP_DAC_OVERRIDE)")

    server = start_server(root=root, env=env)
    if os.geteuid() == 0:
        assert psutil.Process(server.pid).uids().effective == NOBODY_UID

    client = RawClient(server.connect())
    try:
        for path in ("/secret.txt", "/private/inside.txt", "/private/"):
            status, headers, body = client.request(get(path))
            assert status == 403, (path, body)
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert body.startswith(b"403 Forbidden")
            status, headers, body = client.request(get("/public.txt"))
            assert (status, body) == (200, b"for everyone\n")
    finally:
        client.close()
    assert server.process.poll() is None
