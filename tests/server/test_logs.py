"""The access log: escaping, batching, the formats, and (end to end)
--access-log with SIGHUP, --log-format and --trusted-proxy. (Who the client
behind a proxy is, access/clients.py decides: tests/access/test_clients.py.)"""

import io
import json
import os
import re
import signal

import pytest
from hypothesis import given, strategies
from support.clients import get, request_once
from support.environment import wait_until
from support.fakes import FakeClock

from reactor_http.http1.parser import RequestParser
from reactor_http.loop.reactor import Reactor
from reactor_http.server import logs


def make_log():
    clock = FakeClock()
    reactor = Reactor(clock=clock)
    stream = io.StringIO()
    return logs.AccessLog(reactor, stream), reactor, clock, stream


@given(strategies.text(alphabet=strategies.characters(max_codepoint=0x2ff)))
def test_escape_fast_path_agrees_with_the_full_translation(text):
    assert logs.escape(text) == text.translate(logs._ESCAPES)


def test_escape_leaves_nothing_a_terminal_would_act_on():
    escaped = logs.escape('GET /\x1b[31mred\x07 "quoted" back\\slash \x7f\xe9 HTTP/1.1')
    assert escaped == 'GET /\\x1b[31mred\\x07 \\"quoted\\" back\\\\slash \\x7f\\xe9 HTTP/1.1'
    assert all(0x20 <= ord(character) < 0x7f for character in escaped)


def test_lines_wait_for_the_flush_timer():
    access_log, reactor, clock, stream = make_log()
    access_log.log("127.0.0.1", None, "GET / HTTP/1.1", 200, 12)
    access_log.log("127.0.0.1", None, "GET /missing HTTP/1.1", 404, 0)
    reactor.run_once(max_timeout=0)
    assert stream.getvalue() == ""  # buffered: no write per request
    clock.now += logs.FLUSH_SECONDS
    reactor.run_once(max_timeout=0)
    written = stream.getvalue().splitlines()
    assert len(written) == 2
    assert written[0].endswith('"GET / HTTP/1.1" 200 12')
    assert written[1].endswith('"GET /missing HTTP/1.1" 404 -')


def test_a_full_buffer_is_written_at_once_and_the_timer_writes_the_rest():
    access_log, reactor, clock, stream = make_log()
    for number in range(logs.FLUSH_LINES + 3):
        access_log.log("10.0.0.1", None, f"GET /{number} HTTP/1.1", 200, 1)
    assert len(stream.getvalue().splitlines()) == logs.FLUSH_LINES
    clock.now += logs.FLUSH_SECONDS
    reactor.run_once(max_timeout=0)
    assert len(stream.getvalue().splitlines()) == logs.FLUSH_LINES + 3


def test_flush_writes_what_waits_and_a_later_timer_finds_nothing():
    access_log, reactor, clock, stream = make_log()
    access_log.log("127.0.0.1", None, "GET / HTTP/1.1", 200, 1)
    access_log.flush()  # what the server does when it stops
    assert len(stream.getvalue().splitlines()) == 1
    clock.now += logs.FLUSH_SECONDS
    reactor.run_once(max_timeout=0)
    assert len(stream.getvalue().splitlines()) == 1


def test_disabled_log_writes_nothing():
    access_log, reactor, clock, stream = make_log()
    access_log.enabled = False
    access_log.log("127.0.0.1", None, "GET / HTTP/1.1", 200, 1)
    access_log.flush()
    assert stream.getvalue() == ""


# -- formats ----------------------------------------------------------------------------------



def parsed(head):
    parser = RequestParser()
    parser.feed(head)
    return parser.next_request()


def one_line(log_format, request, client="192.0.2.7", status=200, size=1234, request_line=None, seconds=0.0,
             **options):
    clock = FakeClock()
    stream = io.StringIO()
    access_log = logs.AccessLog(Reactor(clock=clock), stream, log_format=log_format, **options)
    access_log.log(client, request, request_line if request_line is not None else request.request_line,
                   status, size, seconds)
    access_log.flush()
    return stream.getvalue()


BROWSER_REQUEST = (b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nReferer: https://example.com/page\r\n"
                   b"User-Agent: Mozilla/5.0 (X11)\r\n\r\n")


def test_common_format():
    line = one_line("common", parsed(BROWSER_REQUEST))
    assert line.startswith('192.0.2.7 - - [')
    assert line.endswith('] "GET /a?b=1 HTTP/1.1" 200 1234\n')


def test_combined_format_adds_referer_and_user_agent():
    line = one_line("combined", parsed(BROWSER_REQUEST))
    assert line.endswith('] "GET /a?b=1 HTTP/1.1" 200 1234 "https://example.com/page" "Mozilla/5.0 (X11)"\n')
    # Without the fields, and for a head that did not parse at all: "-".
    assert one_line("combined", parsed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(' "-" "-"\n')
    assert one_line("combined", None, request_line="BROKEN", status=400).endswith('"BROKEN" 400 1234 "-" "-"\n')


def test_json_format():
    record = json.loads(one_line("json", parsed(BROWSER_REQUEST)))
    assert record.pop("time").endswith("+00:00")
    assert record == {"client": "192.0.2.7", "request": "GET /a?b=1 HTTP/1.1", "method": "GET",
                      "target": "/a?b=1", "protocol": "HTTP/1.1", "status": 200, "bytes": 1234,
                      "seconds": 0.0, "referer": "https://example.com/page", "user_agent": "Mozilla/5.0 (X11)"}


# What the parser lets through in field values: quotes, backslashes and
# obs-text (bytes 0x80-0xff: here the UTF-8 of U+202E, which turns text
# around on a terminal). Control characters never get past it; a request
# line that did not parse is logged as received, so it can hold anything.
HOSTILE_REQUEST = (b"GET /x HTTP/1.1\r\nHost: x\r\nReferer: \"quoted\" \xe2\x80\xae turned\r\n"
                   b"User-Agent: back \\ slash \"\r\n\r\n")
HOSTILE_LINE = 'GET /\x7f"x\x1b[2J\x1b]0;owned\x07\xe9 HTTP/1.1'


@pytest.mark.parametrize("log_format", logs.FORMATS)
def test_nothing_from_the_client_reaches_the_log_unescaped(log_format):
    """Control characters, terminal escapes, quotes, backslashes and bytes
    beyond ASCII, in the request line and in the logged fields: every line is
    printable ASCII, and its fields cannot be split by a quote."""
    line = one_line(log_format, parsed(HOSTILE_REQUEST), request_line=HOSTILE_LINE, status=400)
    assert line.endswith("\n") and line.count("\n") == 1
    assert all(0x20 <= ord(character) < 0x7f for character in line[:-1]), repr(line)
    if log_format == "json":
        record = json.loads(line)
        assert record["request"] == HOSTILE_LINE  # escaped, yet exact
        assert record["referer"] == '"quoted" \xe2\x80\xae turned'
    else:
        # The quoted fields are the request line (and Referer, User-Agent): each
        # inner quote is escaped, so splitting on unescaped quotes finds exactly them.
        fields = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
        assert len(fields) == (3 if log_format == "combined" else 1), line


# -- end to end: --access-log, SIGHUP, --log-format, --trusted-proxy ---------------------------


def access_lines(path):
    try:
        with open(path, encoding="utf-8") as file:
            return [line for line in file if '"GET ' in line]
    except FileNotFoundError:
        return []


def request(server, path, extra=""):
    return request_once(server, get(path, extra=extra))


def test_sighup_reopens_the_access_log_for_logrotate(start_server, tmp_path):
    """logrotate moves the file away, then sends SIGHUP: lines before it are
    in the moved file, lines after it in a new file at the path."""
    path = str(tmp_path / "access.log")
    server = start_server("--access-log", path)
    assert not any('"GET /first' in line for line in server.stdout_lines)
    request(server, "/first")
    wait_until(lambda: any("/first" in line for line in access_lines(path)), 10, "/first not logged")
    os.rename(path, path + ".1")
    request(server, "/second")  # still written to the renamed file: it is the open one
    wait_until(lambda: any("/second" in line for line in access_lines(path + ".1")), 10, "/second not logged")
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: os.path.exists(path), 10, "SIGHUP did not reopen the log")
    request(server, "/third")
    wait_until(lambda: any("/third" in line for line in access_lines(path)), 10, "/third not logged")
    assert server.stop() == 0
    assert [line.split('"')[1] for line in access_lines(path + ".1")] == ["GET /first HTTP/1.1", "GET /second HTTP/1.1"]
    assert [line.split('"')[1] for line in access_lines(path)] == ["GET /third HTTP/1.1"]
    # Nothing went to stdout but the banner and "Stopped.".
    assert [line for line in server.stdout_lines if '"GET' in line] == []


def test_an_access_log_that_cannot_be_opened_is_a_usage_error(tmp_path):
    import subprocess
    import sys

    from support.environment import DEMO_ROOT, REPO
    completed = subprocess.run([sys.executable, "-m", "reactor_http", "--root", DEMO_ROOT,
                                "--access-log", str(tmp_path / "no-such-dir" / "access.log")],
                               cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                               text=True, timeout=30)
    assert completed.returncode == 2
    assert "cannot open --access-log" in completed.stderr and "No such file" in completed.stderr


def test_json_log_and_trusted_proxy_end_to_end(start_server):
    """The server behind a proxy on loopback: with --trusted-proxy 127.0.0.1
    the logged client is the one X-Forwarded-For names; a Referer with a
    terminal escape is logged escaped."""
    server = start_server("--log-format", "json", "--trusted-proxy", "127.0.0.1")
    assert request(server, "/", extra="X-Forwarded-For: 203.0.113.50\r\n"
                                      "Referer: \xe2\x80\xae\"\r\n")[0] == 200
    line = server.wait_for_log(lambda text: text.startswith("{"))
    assert line.isascii() and '"referer":"\\u00e2\\u0080\\u00ae\\""' in line, line
    record = json.loads(line)
    assert (record["client"], record["status"], record["referer"]) == ("203.0.113.50", 200, '\xe2\x80\xae"')


def test_without_trusted_proxies_forwarded_fields_are_ignored(start_server):
    server = start_server("--log-format", "combined")
    request(server, "/", extra="X-Forwarded-For: 203.0.113.50\r\nUser-Agent: probe/1.0\r\n")
    line = server.wait_for_log(lambda text: '"GET / HTTP/1.1"' in text)
    assert line.startswith("127.0.0.1 - - [")
    assert line.rstrip("\n").endswith('"-" "probe/1.0"')


def test_log_time_ends_common_and_combined_lines_and_json_always_has_it():
    """The seconds a response took: nginx's $request_time, at the end of a
    common or combined line with --log-time, and in every json line."""
    for log_format in ("common", "combined"):
        plain = one_line(log_format, parsed(BROWSER_REQUEST), seconds=0.0125)
        assert plain.endswith('"\n' if log_format == "combined" else "1234\n"), plain
        line = one_line(log_format, parsed(BROWSER_REQUEST), seconds=0.0125, log_time=True)
        assert line.endswith(" 0.013\n") or line.endswith(" 0.012\n"), line
    record = json.loads(one_line("json", parsed(BROWSER_REQUEST), seconds=1.5))
    assert record["seconds"] == 1.5


@pytest.mark.parametrize("choice, tty, no_color, coloured", [
    ("auto", True, False, True), ("auto", False, False, False), ("auto", True, True, False),
    ("always", False, False, True), ("never", True, False, False),
])
def test_colour_by_status_only_on_a_terminal_unless_asked(choice, tty, no_color, coloured):
    """--color auto colours lines on a terminal, unless NO_COLOR is set
    (no-color.org); always and never mean what they say."""
    stream = io.StringIO()
    stream.isatty = lambda: tty
    environ = {"NO_COLOR": "1"} if no_color else {}
    assert logs.wants_colour(choice, stream, environ) is coloured


def test_coloured_lines_by_status_class():
    clock = FakeClock()
    stream = io.StringIO()
    access_log = logs.AccessLog(Reactor(clock=clock), stream, color="always")
    for status in (200, 304, 404, 500):
        access_log.log("192.0.2.7", None, "GET / HTTP/1.1", status, 0)
    access_log.flush()
    lines = stream.getvalue().splitlines()
    assert [line[:5] for line in lines] == ["\x1b[32m", "\x1b[36m", "\x1b[33m", "\x1b[31m"]
    assert all(line.endswith("\x1b[0m") for line in lines)
