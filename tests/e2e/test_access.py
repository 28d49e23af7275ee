"""Keeping people out, end to end: the real server on a port of its own, real
clients over sockets, password files made by the real tools.

- Basic authentication with a file made by Apache's ``htpasswd`` (Debian's
  apache2-utils: skipped locally without it, a failure under CI=true) and by
  ``reactor-http hash-password``; curl with and without ``-u``; the file
  changed while the server runs, and SIGHUP; the Authorization value in no
  log line, whatever the --log-format.
- Address rules, the rate limit and the connection limit, with several
  loopback addresses as distinct clients (127.0.0.2, 127.0.0.3: the client
  socket is bound to that source address before it connects).

Nothing here asserts how long something took: where the server must notice
something (a changed file, a closed connection), the test waits for it with a
generous deadline.
"""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from support.cli import run_cli
from support.clients import RawClient, curl, get
from support.environment import DEMO_ROOT, REPO, demo_bytes, require_program, wait_until

DEADLINE = 20
CHALLENGE = 'Basic realm="reactor_http", charset="UTF-8"'


# -- helpers -------------------------------------------------------------------------------------


def htpasswd(*args):
    """Run Apache's htpasswd (batch mode: the password on the command line)."""
    completed = subprocess.run([require_program("htpasswd"), *args], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr


def hash_password_line(user, password, env=None):
    """The line ``reactor-http hash-password USER`` prints, the password on stdin."""
    completed = subprocess.run([sys.executable, "-m", "reactor_http", "hash-password", user],
                               input=password + "\n", capture_output=True, text=True, timeout=60, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": REPO, **(env or {})})
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    return completed.stdout


def status_with(server, *credentials):
    """curl's status code for /, with ``-u USER:PASSWORD`` if given."""
    args = ["-u", credentials[0]] if credentials else []
    return int(curl("-o", os.devnull, "-w", "%{http_code}", *args, server.url + "/"))


def connect_from(server, source):
    """A client connected from ``source`` (a loopback address of its own)."""
    sock = socket.create_connection((server.host, server.port), timeout=10, source_address=(source, 0))
    return RawClient(sock)


def ask_from(server, source, path="/", extra=""):
    client = connect_from(server, source)
    try:
        return client.request(get(path, extra=extra))
    finally:
        client.close()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def users(tmp_path):
    """A password file as people make them: alice with htpasswd -B (bcrypt),
    carol with reactor-http hash-password (scrypt)."""
    path = str(tmp_path / "htpasswd")
    htpasswd("-c", "-b", "-B", path, "alice", "secret")
    with open(path, "a", encoding="utf-8") as file:
        file.write(hash_password_line("carol", "hunter2"))
    return path


# -- Basic authentication ----------------------------------------------------------------------------


def test_basic_authentication_with_curl(start_server, users):
    server = start_server("--auth-file", users)
    assert curl("-u", "alice:secret", server.url + "/") == demo_bytes("index.html")
    assert status_with(server, "carol:hunter2") == 200
    assert status_with(server, "alice:Secret") == 401
    assert status_with(server, "carol:secret") == 401
    assert status_with(server, "mallory:secret") == 401
    assert status_with(server) == 401
    # The challenge (RFC 7617 §2, §2.1; RFC 9110 §15.5.2).
    client = connect_from(server, "127.0.0.1")
    try:
        status, headers, body = client.request(get("/style.css"))
        assert (status, headers["www-authenticate"], body) == (401, CHALLENGE, b"401 Unauthorized\n")
        # The connection goes on: the same client, now with its credentials.
        status, _, body = client.request(get("/style.css", extra=f"Authorization: {basic('alice', 'secret')}\r\n"))
        assert (status, body) == (200, demo_bytes("style.css"))
    finally:
        client.close()
    assert not [line for line in server.stderr_lines if "warning" in line]  # bcrypt and scrypt: none


def test_realm_path_and_apr1(start_server, tmp_path, users):
    """--auth-realm names the realm; --auth-path protects one part of the site
    however its path is spelt; an apr1 line (htpasswd -m) works, with one
    warning at start naming its line."""
    root = tmp_path / "site"
    (root / "private").mkdir(parents=True)
    (root / "index.html").write_bytes(b"public\n")
    (root / "private" / "secret.txt").write_bytes(b"secret\n")
    htpasswd("-b", "-m", users, "bob", "builder")
    server = start_server("--auth-file", users, "--auth-path", "/private/", "--auth-realm", "staff only",
                          root=str(root))
    assert curl(server.url + "/") == b"public\n"
    for path in ("/private/secret.txt", "/private/", "/private", "/%70rivate/secret.txt", "//private//secret.txt"):
        status, headers, _ = ask_from(server, "127.0.0.1", path)
        assert (status, headers["www-authenticate"]) == (401, 'Basic realm="staff only", charset="UTF-8"'), path
    assert curl("-u", "bob:builder", server.url + "/private/secret.txt") == b"secret\n"
    warnings = [line for line in server.stderr_lines if "apr1" in line]
    assert len(warnings) == 1 and "line 3 holds an apr1 MD5 hash" in warnings[0], server.stderr_lines


def test_a_file_changed_while_running_is_read_again(start_server, users):
    """A user added is let in, a user removed is refused (its remembered
    success forgotten), without a restart: the file is looked at at most once
    a second."""
    server = start_server("--auth-file", users)
    assert status_with(server, "alice:secret") == 200
    assert status_with(server, "dave:pw2") == 401
    htpasswd("-b", "-B", users, "dave", "pw2")
    wait_until(lambda: status_with(server, "dave:pw2") == 200, DEADLINE, "the new user was never let in")
    htpasswd("-D", users, "alice")
    wait_until(lambda: status_with(server, "alice:secret") == 401, DEADLINE, "the removed user still gets in")
    assert status_with(server, "carol:hunter2") == 200


def test_sighup_reads_the_file_again(start_server, tmp_path):
    """An edit that keeps the file's inode, size and time (which the server
    cannot see by looking) is read after SIGHUP."""
    path = tmp_path / "htpasswd"
    path.write_text(hash_password_line("zed1", "one"))
    server = start_server("--auth-file", str(path))
    assert status_with(server, "zed1:one") == 200
    before = os.stat(path)
    new = hash_password_line("zed2", "two").encode()
    assert len(new) == before.st_size  # scrypt lines of same-length names are the same length
    with open(path, "r+b") as file:
        file.write(new)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    # Looking shows nothing new, however often the server looks.
    assert status_with(server, "zed2:two") == 401
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: status_with(server, "zed2:two") == 200, DEADLINE, "SIGHUP did not read the file")
    assert status_with(server, "zed1:one") == 401


@pytest.mark.parametrize("log_format", ["common", "combined", "json"])
def test_the_authorization_value_is_in_no_log(start_server, users, log_format):
    server = start_server("--auth-file", users, "--log-format", log_format)
    sent = [basic("alice", "secret"), basic("alice", "wrong-password"), "Basic bm90LWJhc2U2NA!!",
            "Digest username=\"alice\", response=\"6629fae49393a05397450978507c4ef1\""]
    for value in sent:
        ask_from(server, "127.0.0.1", "/", extra=f"Authorization: {value}\r\nUser-Agent: probe/1.0\r\n"
                                                 f"Referer: http://example.com/\r\n")
    assert server.stop() == 0
    output = "".join(server.stdout_lines) + "".join(server.stderr_lines)
    logged = [line for line in server.stdout_lines if "probe/1.0" in line or '"GET / HTTP/1.1"' in line]
    assert len(logged) == len(sent), server.stdout_lines
    for secret in (*sent, *(value.split(" ", 1)[1] for value in sent), "secret", "wrong-password",
                   "6629fae49393a05397450978507c4ef1"):
        assert secret not in output, secret
    assert "uthorization" not in output
    if log_format == "json":
        assert sorted(json.loads(line)["status"] for line in logged) == [200, 401, 401, 401]


def test_refused_files_are_one_line_and_exit_2(tmp_path, users):
    """{SHA} (htpasswd -s) is refused, naming the line; without the bcrypt
    package a bcrypt line says what to install."""
    sha = str(tmp_path / "sha")
    htpasswd("-c", "-b", "-s", sha, "carol", "pw")
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, "--port", "0", "--auth-file", sha)
    assert (status, stdout) == (2, "")
    assert stderr.splitlines() == [stderr.strip()] and "line 1" in stderr and "{SHA}" in stderr
    assert "GpHW" not in stderr  # never the hash

    no_bcrypt = tmp_path / "no-bcrypt"
    no_bcrypt.mkdir()
    (no_bcrypt / "sitecustomize.py").write_text("import sys\nsys.modules['bcrypt'] = None\n")
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, "--port", "0", "--auth-file", users,
                                     env={"PYTHONPATH": os.pathsep.join((str(no_bcrypt), REPO))})
    assert (status, stdout) == (2, "")
    assert stderr.strip() == (f"reactor-http: error: --auth-file {users} line 1: a bcrypt hash (htpasswd -B) "
                              f"needs the bcrypt package: pip install 'reactor_http[auth]'")
    # The server itself runs without it (the helper needs nothing either).
    assert hash_password_line("x", "y", env={"PYTHONPATH": os.pathsep.join((str(no_bcrypt), REPO))})


def test_a_warning_without_tls_only_off_loopback(users):
    from reactor_http.config import Config
    from reactor_http.server.cli import _exposed_without_tls
    assert _exposed_without_tls(Config(auth_file=users)) is None  # 127.0.0.1
    assert _exposed_without_tls(Config(auth_file=users, binds=("::1", "127.0.0.2"))) is None
    assert _exposed_without_tls(Config(auth_file=users, binds=("127.0.0.1", "0.0.0.0"))) == "0.0.0.0"
    assert _exposed_without_tls(Config(auth_file=users, binds=("::",), certfile=users)) is None
    assert _exposed_without_tls(Config(auth_file=users, unix="/run/x.sock")) is None


def test_hash_password_refuses_what_the_file_cannot_hold():
    status, stdout, stderr = run_cli("hash-password", "a:b")
    assert (status, stdout) == (2, "") and "no ':'" in stderr
    status, stdout, stderr = run_cli("hash-password", "alice")  # stdin empty: no password
    assert (status, stdout) == (2, "") and "empty" in stderr


# -- address rules, rates and connections per client ---------------------------------------------------


def test_deny_one_loopback_address(start_server):
    """The same request bytes from an allowed client twice (the second is
    answered from the fast path's memory), then from the denied one: 403,
    never the remembered answer."""
    server = start_server("--deny", "127.0.0.3")
    assert ask_from(server, "127.0.0.2", "/style.css")[0] == 200
    assert ask_from(server, "127.0.0.2", "/style.css")[2] == demo_bytes("style.css")
    status, headers, body = ask_from(server, "127.0.0.3", "/style.css")
    assert (status, body) == (403, b"403 Forbidden\n")
    assert ask_from(server, "127.0.0.1", "/style.css")[0] == 200
    line = server.wait_for_log(lambda text: text.startswith("127.0.0.3 "))
    assert '"GET /style.css HTTP/1.1" 403' in line


def test_an_allow_list_refuses_everyone_else(start_server):
    server = start_server("--allow", "127.0.0.2")
    assert ask_from(server, "127.0.0.2")[0] == 200
    assert ask_from(server, "127.0.0.3")[0] == 403
    assert ask_from(server, "127.0.0.1")[0] == 403


def test_first_match_wins(start_server):
    server = start_server("--deny", "127.0.0.3", "--allow", "127.0.0.0/29")
    assert [ask_from(server, source)[0] for source in ("127.0.0.2", "127.0.0.3", "127.0.0.9")] == [200, 403, 403]


def test_the_client_a_trusted_proxy_reports(start_server):
    server = start_server("--trusted-proxy", "127.0.0.1", "--deny", "203.0.113.7")
    assert ask_from(server, "127.0.0.1", extra="X-Forwarded-For: 203.0.113.7\r\n")[0] == 403
    assert ask_from(server, "127.0.0.1", extra="X-Forwarded-For: 198.51.100.1\r\n")[0] == 200
    # Not the trusted proxy: its claim is not believed.
    assert ask_from(server, "127.0.0.2", extra="X-Forwarded-For: 203.0.113.7\r\n")[0] == 200
    line = server.wait_for_log(lambda text: text.startswith("203.0.113.7 "))
    assert '" 403 ' in line


def test_rate_limit_per_client(start_server):
    """A bucket of 1 + burst requests per client, refilled at one a minute:
    the first three are served (the later ones from the fast path's memory),
    then 429 with Retry-After on the same keep-alive connection, while
    another client is served. (A token may come back during the test, at one
    a minute: so a 429 is expected within a few more requests.)"""
    server = start_server("--rate-limit", "1/m", "--rate-burst", "2")
    client = connect_from(server, "127.0.0.2")
    try:
        for _ in range(3):
            assert client.request(get("/style.css"))[0] == 200
        for _ in range(5):
            status, headers, body = client.request(get("/style.css"))
            if status == 429:
                break
        assert (status, body) == (429, b"429 Too Many Requests\n")
        assert 1 <= int(headers["retry-after"]) <= 60
        assert client.request(get("/"))[0] == 429  # the connection goes on
    finally:
        client.close()
    assert ask_from(server, "127.0.0.3", "/style.css")[0] == 200


def test_max_connections_per_client(start_server):
    """A third connection from 127.0.0.2 is closed as it is accepted; one from
    127.0.0.3 is served; once one of the two closes, 127.0.0.2 may connect again."""
    server = start_server("--max-connections-per-client", "2")
    first, second = connect_from(server, "127.0.0.2"), connect_from(server, "127.0.0.2")
    try:
        for client in (first, second):
            assert client.request(get("/"))[0] == 200  # accepted and counted
        third = connect_from(server, "127.0.0.2")
        try:
            third.send(get("/"))
            assert third.is_closed_by_peer()
        finally:
            third.close()
        assert ask_from(server, "127.0.0.3")[0] == 200
        assert first.request(get("/style.css"))[0] == 200  # the two go on
        first.close()

        def served_again():
            client = connect_from(server, "127.0.0.2")
            try:
                return client.request(get("/"))[0] == 200
            except (AssertionError, OSError):  # closed as it was accepted: not yet
                return False
            finally:
                client.close()
        wait_until(served_again, DEADLINE, "127.0.0.2 was refused after one of its connections closed")
    finally:
        first.close()
        second.close()
    assert any("closed a connection from 127.0.0.2" in line for line in server.stderr_lines), server.stderr_lines


# -- docs/deploying.md's example, as the page shows it -------------------------------------------------


def deploying_example():
    """The command line of docs/deploying.md's "Keeping people out" section."""
    with open(os.path.join(REPO, "docs", "deploying.md"), encoding="utf-8") as file:
        page = file.read()
    section = page[page.index("## Keeping people out"):]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    command = next(block for block in blocks if block.startswith("reactor-http --root"))
    import shlex
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "reactor-http"
    return words[1:]


def test_the_deploying_page_example(start_server, tmp_path, users):
    arguments = deploying_example()
    root = tmp_path / "www"
    (root / "private").mkdir(parents=True)
    (root / "index.html").write_bytes(b"public\n")
    (root / "private" / "report.txt").write_bytes(b"report\n")
    socket_path = str(tmp_path / "http.sock")
    replacements = {"--root": str(root), "--unix": socket_path, "--auth-file": users}
    for flag, value in replacements.items():
        arguments[arguments.index(flag) + 1] = value
    server = start_server(*arguments, root=str(root))
    path = server.unix_path()

    def ask(target, client, extra=""):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        raw = RawClient(sock)
        try:
            return raw.request(get(target, extra=f"X-Forwarded-For: {client}\r\n{extra}"))[0]
        finally:
            raw.close()
    assert ask("/", "198.51.100.1") == 200
    assert ask("/private/report.txt", "198.51.100.1") == 401
    assert ask("/private/report.txt", "198.51.100.1", f"Authorization: {basic('alice', 'secret')}\r\n") == 200
    assert ask("/", "192.0.2.9") == 403  # the network the example denies
