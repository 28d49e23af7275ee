"""docs/deploying.md's files, checked by the tools they are for, as the page shows them.

Each tagged block of the page (```ini reactor-http.service and so on) is read
from the page itself, so the page cannot say one thing and the tests check
another. Paths a test machine does not have (/srv/www, /var/log, /run) are
swapped for temporary ones; nothing else is changed.
"""

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from support.cli import page_command_line, replaced
from support.clients import RawClient, get
from support.environment import REPO, require_program, skip_locally_fail_in_ci, wait_until

PAGE = os.path.join(REPO, "docs", "deploying.md")
FILE_BLOCK = re.compile(r"^```(\w+) ([\w.-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INSTALLED_SCRIPT = "/usr/local/bin/reactor-http"
INDEX = b"<h1>deployed</h1>\n"


def page_files():
    with open(PAGE, encoding="utf-8") as file:
        return {name: text for _, name, text in FILE_BLOCK.findall(file.read())}


def console_script():
    """The reactor-http command that `pip install` made beside this interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "reactor-http")
    if not os.access(script, os.X_OK):
        skip_locally_fail_in_ci(f"{script} is not installed (pip install -e '.[test]')")
    return script


def command_line(text):
    return page_command_line(text, programs=("reactor-http", INSTALLED_SCRIPT))


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(INDEX)
    (root / "404.html").write_bytes(b"<h1>not here</h1>\n")
    return str(root)


def short_socket_path(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    return str(directory / "http.sock")  # AF_UNIX paths must be short


def unix_get(path, request=None):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    client = RawClient(sock)
    try:
        return client.request(request or get("/index.html"))
    finally:
        client.close()


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.readlines()
    except FileNotFoundError:
        return []


def stop(process, timeout=30):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def test_the_page_has_its_files():
    assert set(page_files()) == {"install.sh", "reactor-http.socket", "reactor-http.service", "logrotate.conf",
                                 "behind-a-proxy.sh", "nginx-site.conf", "with-tls.sh", "site.toml"}


def test_the_install_commands_make_the_command_the_unit_runs(tmp_path):
    """install.sh, run from a clone with its paths moved under tmp_path: a
    virtual environment of its own (no global pip install, which PEP 668
    systems refuse) and the command linked where the unit runs it."""
    script = page_files()["install.sh"]
    venv, link = tmp_path / "opt" / "reactor-http", tmp_path / "bin" / "reactor-http"
    (tmp_path / "bin").mkdir()
    assert "/opt/reactor-http" in script and INSTALLED_SCRIPT in script
    script = script.replace(INSTALLED_SCRIPT, str(link)).replace("/opt/reactor-http", str(venv))
    completed = subprocess.run(["bash", "-euc", script], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    version = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("reactor_http "), version
    assert os.path.realpath(link).startswith(str(venv))


# -- systemd -------------------------------------------------------------------------------


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    analyze = require_program("systemd-analyze")
    files = page_files()
    (tmp_path / "reactor-http.socket").write_text(files["reactor-http.socket"])
    (tmp_path / "reactor-http.service").write_text(
        files["reactor-http.service"].replace(INSTALLED_SCRIPT, console_script()))
    completed = subprocess.run([analyze, "verify", str(tmp_path / "reactor-http.socket"),
                                str(tmp_path / "reactor-http.service")],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # systemd only warns about unknown keys and bad values; none may be there.
    warnings = [line for line in (completed.stdout + completed.stderr).splitlines()
                if "reactor-http" in line and line.strip()]
    assert warnings == [], warnings


def test_the_service_runs_under_socket_activation(tmp_path, site):
    """ExecStart's command line, as systemd would run it: the listening socket
    from systemd-socket-activate (descriptor 3, LISTEN_FDS), --workers auto
    sharing it, the access log in its file; SIGTERM stops it with exit 0."""
    activate = require_program("systemd-socket-activate")
    service = page_files()["reactor-http.service"]
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    access_log = str(tmp_path / "access.log")
    arguments = replaced(command_line(exec_start[len("ExecStart="):]), root=site, access_log=access_log)
    path = short_socket_path(tmp_path)
    process = subprocess.Popen([activate, "-l", path, console_script(), *arguments], cwd=str(tmp_path),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        wait_until(lambda: os.path.exists(path), 20, "systemd-socket-activate did not listen")
        status, headers, body = unix_get(path)  # the first connection starts the server
        assert (status, body) == (200, INDEX)
        assert headers["cache-control"] == "max-age=3600"
        for _ in range(5):
            assert unix_get(path)[0] == 200
        wait_until(lambda: len([line for line in read_lines(access_log) if '"GET /index.html' in line]) == 6,
                   20, lambda: f"access log: {read_lines(access_log)}")
        # --log-format combined: the Referer and User-Agent fields end each line.
        assert all(line.rstrip("\n").endswith('"-" "-"') for line in read_lines(access_log))
    finally:
        status = stop(process)
        output = process.stdout.read() + process.stderr.read()
    assert status == 0, output
    assert "Traceback" not in output
    assert f"unix:{path}" in output  # the banner: serving on systemd's socket, nothing else
    assert "http://" not in output


def test_the_logrotate_file_parses(tmp_path):
    logrotate = require_program("logrotate")
    text = page_files()["logrotate.conf"]
    log_directory = tmp_path / "log"
    log_directory.mkdir()
    (log_directory / "access.log").write_text("127.0.0.1 - - [x] \"GET / HTTP/1.1\" 200 1\n")
    (tmp_path / "logrotate.conf").write_text(text.replace("/var/log/reactor-http", str(log_directory)))
    completed = subprocess.run([logrotate, "--debug", "--state", str(tmp_path / "state"),
                                str(tmp_path / "logrotate.conf")], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "error" not in completed.stderr.lower(), completed.stderr
    # The postrotate command's options are systemctl's own.
    systemctl = require_program("systemctl")
    help_text = subprocess.run([systemctl, "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--kill-whom=" in help_text and "--signal=" in help_text
    assert "systemctl kill --kill-whom=main --signal=HUP reactor-http.service" in text


# -- behind nginx ----------------------------------------------------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_nginx_in_front_with_the_page_configuration(tmp_path, site, start_server, world_readable_tmp):
    """nginx with the page's site configuration, reactor_http with the page's
    command line: pages and ranges pass through, and the access log names the
    client nginx reports (127.0.0.1), not the Unix socket's "unix:". nginx's
    workers run as another user (nobody, as Debian's run as www-data), so the
    socket file's default mode must let them in."""
    nginx = require_program("nginx")
    files = page_files()
    path = os.path.join(world_readable_tmp, "http.sock")
    access_log = str(tmp_path / "access.log")
    arguments = replaced(command_line(files["behind-a-proxy.sh"]), root=site, unix=path,
                         access_log=access_log)
    # start_server adds --port 0 (unused: --unix alone means no TCP listener) and --root.
    server = start_server(*arguments, root=site)
    server.unix_path()
    port = free_port()
    site_conf = (files["nginx-site.conf"].replace("unix:/run/reactor-http/http.sock", f"unix:{path}")
                 .replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};"))
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    temporary = {name: prefix / name for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # not the socket file's owner
    (prefix / "nginx.conf").write_text(
        "daemon off;\nworker_processes 1;\n" + user +
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        "http {\n    access_log off;\n"
        + "".join(f"    {name}_temp_path {directory};\n" if name != "client" else
                  f"    client_body_temp_path {directory};\n" for name, directory in temporary.items())
        + site_conf + "}\n")
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        def reachable():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return process.poll() is not None  # exited: stop waiting, fail below
        wait_until(reachable, 20, "nginx did not start")
        assert process.poll() is None, process.stdout.read()
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        client = RawClient(sock)
        status, headers, body = client.request(get("/index.html", extra="X-Forwarded-For: 203.0.113.9\r\n"))
        assert (status, body) == (200, INDEX)
        status, headers, body = client.request(get("/index.html", extra="Range: bytes=4-11\r\n"))
        assert (status, body, headers["content-range"]) == (206, INDEX[4:12], f"bytes 4-11/{len(INDEX)}")
        status, _, _ = client.request(get("/missing"))
        assert status == 404
        client.close()
        wait_until(lambda: len(read_lines(access_log)) >= 3, 20, lambda: f"log: {read_lines(access_log)}")
        lines = read_lines(access_log)
        # nginx appended the peer it saw (127.0.0.1) to X-Forwarded-For; the
        # client's own claim (203.0.113.9) stands left of it and is not believed.
        assert all(line.startswith("127.0.0.1 - - [") for line in lines), lines
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- TLS ---------------------------------------------------------------------------------------


def test_the_tls_command_line(tmp_path, site, start_server):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "fullchain.pem", tmp_path / "privkey.pem", tmp_path / "ca.pem"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    arguments = replaced(command_line(page_files()["with-tls.sh"]), root=site, bind="127.0.0.1", port="0",
                         certfile=str(chain), keyfile=str(key))
    server = start_server(*arguments, root=site)
    assert server.scheme == "https"
    import ssl
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert RawClient(sock).request(get("/index.html"))[::2] == (200, INDEX)


# -- the configuration file ----------------------------------------------------------------------


def test_the_toml_file_is_what_print_config_reports(tmp_path):
    text = page_files()["site.toml"]
    path = tmp_path / "site.toml"
    path.write_text(text)
    completed = subprocess.run([sys.executable, "-m", "reactor_http", "--config", str(path), "--print-config"],
                               cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                               text=True, timeout=30)
    assert completed.returncode == 0, completed.stderr
    printed = completed.stdout
    for line in text.splitlines():
        key, _, value = line.partition(" = ")
        if key in ("keepalive-timeout", "shutdown-timeout"):
            value = repr(float(value))
        assert f"{key} = {value}  # {path}" in printed, (line, printed)
