"""Settings from the command line, REACTOR_HTTP_* variables and a TOML file.

In-process tests of reactor_http.server.settings (precedence, conversion, every kind
of setting, one clear error per bad key or value), then the real command line
for what a user sees: exit status 2 with one line, and --print-config.
"""

import ipaddress
import os
import subprocess
import sys

import pytest
from support.cli import run_cli
from support.clients import RawClient, get
from support.environment import DEMO_ROOT, REPO

from reactor_http.config import Config
from reactor_http.server import settings

EXIT_USAGE = 2


def load(argv=(), environ=None):
    return settings.load(list(argv), environ or {})


def write_toml(tmp_path, text, name="site.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- one table for everything -------------------------------------------------------------------


def test_every_config_field_but_the_internal_ones_is_a_setting():
    """A Config field without a setting could only be set in code: the table
    and the dataclass must not drift apart."""
    internal = {"linger_timeout"}  # not a flag on purpose: RST avoidance, not a policy
    fields = {field.name for field in Config.__dataclass_fields__.values()}
    assert fields - internal == set(settings.BY_FIELD)


def test_defaults_are_configs_defaults():
    assert load().config == Config()
    assert load().sources == {}


# -- precedence ---------------------------------------------------------------------------------


def test_command_line_beats_environment_beats_file(tmp_path):
    path = write_toml(tmp_path, 'max-connections = 10\nmax-requests = 20\nmax-headers = 30\n')
    loaded = load(["--config", path, "--max-connections", "11"],
                  {"REACTOR_HTTP_MAX_CONNECTIONS": "12", "REACTOR_HTTP_MAX_REQUESTS": "21"})
    config = loaded.config
    assert (config.max_connections, config.max_requests_per_connection, config.max_header_count) == (11, 21, 30)
    assert loaded.sources["max_connections"] == "command line"
    assert loaded.sources["max_requests_per_connection"] == "REACTOR_HTTP_MAX_REQUESTS"
    assert loaded.sources["max_header_count"] == path


def test_config_file_path_may_come_from_the_environment(tmp_path):
    path = write_toml(tmp_path, "port = 9999\n")
    assert load([], {"REACTOR_HTTP_CONFIG": path}).config.port == 9999


# -- each kind of setting, from each source ------------------------------------------------------


def test_switches_from_each_source(tmp_path):
    path = write_toml(tmp_path, "gzip = true\nno-sendfile = true\nautoindex = false\n")
    config = load(["--config", path]).config
    assert (config.gzip, config.use_sendfile, config.autoindex) == (True, False, False)
    config = load([], {"REACTOR_HTTP_SHOW_HIDDEN": "yes", "REACTOR_HTTP_NO_PRECOMPRESSED": "1",
                       "REACTOR_HTTP_QUIET": "false"}).config
    assert (config.show_hidden, config.precompressed, config.quiet) == (True, False, False)
    assert load(["--no-reuseport"]).config.reuse_port is False


def test_lists_from_each_source(tmp_path):
    path = write_toml(tmp_path, 'header = ["X-Frame-Options: DENY", "X-A: 1, 2"]\n'
                                'error-page = "404=/404.html"\n')
    config = load(["--config", path]).config
    assert config.headers == (("X-Frame-Options", "DENY"), ("X-A", "1, 2"))
    assert config.error_pages == ((404, "/404.html"),)
    # The environment's lists are shell words, so items may hold spaces and commas.
    config = load([], {"REACTOR_HTTP_HEADER": "'X-A: 1, 2' 'X-B: two words'",
                       "REACTOR_HTTP_TRUSTED_PROXY": "10.0.0.0/8 ::1"}).config
    assert config.headers == (("X-A", "1, 2"), ("X-B", "two words"))
    assert config.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))
    # On the command line a list flag repeats, and the command line replaces, not extends.
    config = load(["--bind", "127.0.0.1", "--bind", "::1"], {"REACTOR_HTTP_BIND": "0.0.0.0"}).config
    assert config.binds == ("127.0.0.1", "::1")


def test_numbers_strings_and_optional_values(tmp_path):
    path = write_toml(tmp_path, 'keepalive-timeout = 2.5\nroot = "www"\nworkers = 3\ntrace = true\n')
    config = load(["--config", path]).config
    assert (config.keepalive_timeout, config.root, config.workers) == (2.5, "www", 3)
    assert config.trace == frozenset(("reactor", "timer", "conn", "executor"))
    assert load(["--trace=conn"]).config.trace == frozenset(("conn",))
    assert load([], {"REACTOR_HTTP_TRACE": "executor,timer"}).config.trace == frozenset(("executor", "timer"))
    # auto stays auto (0) in the settings, so --print-config says "auto";
    # the command line turns it into one worker per CPU when it starts them.
    assert load(["--workers", "auto"]).config.workers == 0


# -- errors: one clear message naming the key ----------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("portt = 1\n", ["unknown setting 'portt'", "did you mean 'port'"]),
    ("max_connections = 5\n", ["unknown setting 'max_connections'", "did you mean 'max-connections'"]),
    ("port = 70000\n", ["port:", "0-65535", "70000"]),
    ("port = true\n", ["port:", "must be a string or a number"]),
    ("gzip = 1\n", ["gzip:", "true or false"]),
    ("header = ['Content-Length: 5']\n", ["header:", "sets Content-Length itself"]),
    ("header = [3, {a = 1}]\n", ["header:", "list of strings"]),
    ("keepalive-timeout = 'inf'\n", ["keepalive-timeout:", "'inf'", "number of seconds"]),
    ("keepalive-timeout = '2 weeks'\n", ["keepalive-timeout:", "500ms, 30s, 2m"]),
    ("cache-bytes = '64 megs'\n", ["cache-bytes:", "64M"]),
    ("status-allow = ['not a network']\n", ["status-allow:", "not an IP address or CIDR block"]),
    ("port = \n", ["not valid TOML"]),
])
def test_file_errors_name_the_key(tmp_path, text, words):
    path = write_toml(tmp_path, text)
    with pytest.raises(settings.SettingsError) as caught:
        load(["--config", path])
    message = str(caught.value)
    assert message.startswith(f"--config {path}: ")
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("environ, words", [
    ({"REACTOR_HTTP_PORTT": "1"}, ["unknown environment variable REACTOR_HTTP_PORTT",
                                   "did you mean REACTOR_HTTP_PORT?"]),
    ({"REACTOR_HTTP_PROT": "1"}, ["did you mean REACTOR_HTTP_PORT?"]),
    ({"REACTOR_HTTP_PORT": "http"}, ["REACTOR_HTTP_PORT:", "'http' is not a port number"]),
    ({"REACTOR_HTTP_GZIP": "maybe"}, ["REACTOR_HTTP_GZIP:", "true or false"]),
    ({"REACTOR_HTTP_HEADER": "'X-A: 1' 'bad header'"}, ["REACTOR_HTTP_HEADER:", "'bad header'"]),
    ({"REACTOR_HTTP_CORS": "ftp://x"}, ["REACTOR_HTTP_CORS:", "origin"]),
])
def test_environment_errors_name_the_variable(environ, words):
    with pytest.raises(settings.SettingsError) as caught:
        load([], environ)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(settings.SettingsError, match="No such file"):
        load(["--config", str(tmp_path / "nope.toml")])


def test_other_environment_variables_are_ignored():
    assert load([], {"REACTOR_HTTPX": "1", "HTTP_PROXY": "x", "PATH": "/bin"}).config == Config()


@pytest.mark.parametrize("value", ["X-Evil: a\r\nSet-Cookie: x", "X-Evil: \x1b[31m", "No colon here",
                                   "Bad Name: x", "X-Empty:", "Server: mine", "Cache-Control: x",
                                   "Access-Control-Allow-Origin: *"])
def test_response_headers_that_could_break_the_head_are_refused(value):
    with pytest.raises(ValueError):
        settings.response_header(value)


@pytest.mark.parametrize("value", ["*", "https://app.example.com", "http://localhost:8080",
                                   "https://[2001:db8::1]:8443"])
def test_cors_origins_accepted(value):
    assert settings.cors_origin(value) == value


@pytest.mark.parametrize("value", ["", "app.example.com", "https://app.example.com/", "null",
                                   "https://a.example.com https://b.example.com", "https://x\r\n"])
def test_cors_origins_refused(value):
    with pytest.raises(ValueError):
        settings.cors_origin(value)


# -- --print-config --------------------------------------------------------------------------------


def test_print_config_is_a_config_file_that_gives_the_same_settings(tmp_path):
    """What --print-config prints, read back with --config, is the same Config:
    every kind of value survives the round trip."""
    loaded = load(["--port", "0", "--header", 'X-Quote: say "hi"', "--error-page", "404=/404.html",
                   "--trusted-proxy", "10.0.0.0/8", "--trace=conn", "--no-sendfile", "--gzip",
                   "--cache-valid", "2.5", "--bind", "::1", "--cors", "*"],
                  {"REACTOR_HTTP_MAX_BODY": "5"})
    text = settings.render(loaded)
    assert "max-body = 5  # REACTOR_HTTP_MAX_BODY" in text
    assert "port = 0  # command line" in text
    assert "keepalive-timeout = 15.0  # default" in text
    path = write_toml(tmp_path, text)
    assert load(["--config", path]).config == loaded.config


def test_print_config_on_the_command_line_exits_0_and_serves_nothing(tmp_path):
    path = write_toml(tmp_path, 'root = "www"\nlog-format = "json"\n')
    status, stdout, stderr = run_cli("--config", path, "--print-config",
                                     env={"REACTOR_HTTP_SEND_TIMEOUT": "7"})
    assert (status, stderr) == (0, "")
    assert f'root = "www"  # {path}' in stdout
    assert f'log-format = "json"  # {path}' in stdout
    assert "send-timeout = 7.0  # REACTOR_HTTP_SEND_TIMEOUT" in stdout
    assert "Serving" not in stdout


@pytest.mark.parametrize("how", ["file", "environment"])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, how):
    if how == "file":
        args, env = ("--config", write_toml(tmp_path, "max-connections = 0\n")), None
    else:
        args, env = (), {"REACTOR_HTTP_MAX_CONNECTIONS": "0"}
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, *args, env=env)
    assert status == EXIT_USAGE
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("reactor-http: error: ")
    assert "max-connections" in lines[0] or "REACTOR_HTTP_MAX_CONNECTIONS" in lines[0]
    assert "must be at least 1, not 0" in lines[0]


def test_settings_from_a_file_take_effect(start_server, tmp_path):
    """A real server started with only --config: the file's settings are the
    ones it serves with (a header on every response, the status page)."""
    path = write_toml(tmp_path, 'header = ["X-From-File: yes"]\nstatus-path = "/_status"\n'
                                'quiet = true\n')
    server = start_server("--config", path)
    client = RawClient(server.connect())
    try:
        status, headers, _ = client.request(get("/"))
        assert (status, headers["x-from-file"]) == (200, "yes")
        status, headers, _ = client.request(get("/_status"))
        assert (status, headers["content-type"]) == (200, "application/json")
    finally:
        client.close()


def test_readme_flags_table_matches_the_settings():
    """README.md's table of flags is generated from SETTINGS; it must be current."""
    completed = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "flags_table.py"), "--check"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_help_lists_every_setting():
    status, stdout, stderr = run_cli("--help")
    assert status == 0, stderr
    for setting in settings.SETTINGS:
        assert setting.flag in stdout, setting.flag


# -- keeping people out: --allow and --deny share one ordered list --------------------------------


def test_allow_and_deny_keep_the_command_lines_order():
    config = load(["--deny", "10.0.0.66", "--allow", "10.0.0.0/8", "--deny", "all", "--allow", "unix:"]).config
    assert config.access_rules == (("deny", ipaddress.ip_network("10.0.0.66/32")),
                                   ("allow", ipaddress.ip_network("10.0.0.0/8")),
                                   ("deny", "all"), ("allow", "unix:"))


def test_allow_and_deny_from_a_file_keep_the_keys_order(tmp_path):
    path = write_toml(tmp_path, 'deny = ["192.0.2.7"]\nallow = ["192.0.2.0/24", "::1"]\n')
    assert [action for action, _ in load(["--config", path]).config.access_rules] == ["deny", "allow", "allow"]
    path = write_toml(tmp_path, 'allow = "192.0.2.0/24"\ndeny = "all"\n', name="other.toml")
    assert load(["--config", path]).config.access_rules == (("allow", ipaddress.ip_network("192.0.2.0/24")),
                                                            ("deny", "all"))


def test_allow_and_deny_from_the_environment_deny_first(tmp_path):
    loaded = load([], {"REACTOR_HTTP_ALLOW": "10.0.0.0/8", "REACTOR_HTTP_DENY": "10.0.0.66 192.0.2.1"})
    assert [str(network) for _, network in loaded.config.access_rules] == [
        "10.0.0.66/32", "192.0.2.1/32", "10.0.0.0/8"]
    assert loaded.sources["access_rules"] == "REACTOR_HTTP_DENY and REACTOR_HTTP_ALLOW"
    # The rules come whole from one place: the command line replaces the lot.
    path = write_toml(tmp_path, 'deny = ["192.0.2.7"]\n')
    config = load(["--config", path, "--allow", "127.0.0.1"], {"REACTOR_HTTP_DENY": "10.0.0.1"}).config
    assert config.access_rules == (("allow", ipaddress.ip_network("127.0.0.1/32")),)


def test_print_config_keeps_the_rules_and_the_limits(tmp_path):
    loaded = load(["--deny", "10.0.0.66", "--allow", "10.0.0.0/8", "--rate-limit", "600/m", "--rate-burst", "9",
                   "--max-connections-per-client", "4", "--auth-realm", "staff only"])
    text = settings.render(loaded)
    assert 'deny = ["10.0.0.66/32"]  # command line\nallow = ["10.0.0.0/8"]  # command line' in text
    assert 'rate-limit = "600/m"  # command line' in text
    assert load(["--config", write_toml(tmp_path, text)]).config == loaded.config


def test_print_config_says_when_a_file_cannot_keep_the_order():
    text = settings.render(load(["--deny", "10.0.0.66", "--allow", "10.0.0.0/8", "--deny", "all"]))
    assert "# given in this order: deny 10.0.0.66/32, allow 10.0.0.0/8, deny all;" in text


@pytest.mark.parametrize("argv, words", [
    (["--allow", "everyone"], ["--allow", "not an IP address, a CIDR block, 'all' or 'unix:'"]),
    (["--rate-limit", "50"], ["--rate-limit", "50/s or 600/m"]),
    (["--rate-limit", "0/s"], ["--rate-limit", "at least 1"]),
    (["--auth-realm", 'say "hi"'], ["--auth-realm", "without"]),
    (["--max-connections-per-client", "0"], ["--max-connections-per-client", "at least 1"]),
    (["--error-page", "401=/401.html"], ["--error-page", "401 is answered by --auth-file"]),
])
def test_access_settings_refused(argv, words):
    status, stdout, stderr = run_cli("--root", DEMO_ROOT, *argv)
    assert (status, stdout) == (EXIT_USAGE, "")
    for word in words:
        assert word in stderr, stderr


@pytest.mark.parametrize("argv, problem", [
    (["--auth-path", "/private/"], "--auth-path needs --auth-file"),
    (["--rate-burst", "5"], "--rate-burst needs --rate-limit"),
])
def test_access_settings_that_need_another(argv, problem):
    with pytest.raises(settings.SettingsError, match=problem):
        load(argv)


def test_hash_password_is_in_the_help():
    status, stdout, _ = run_cli("--help")
    assert status == 0 and "hash-password USER" in stdout
