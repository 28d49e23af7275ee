"""Unit tests for the access log: escaping, and when buffered lines are written."""

import io

from hypothesis import given, strategies

from reactor_http import logs
from reactor_http.reactor import Reactor


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


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
    access_log.log("127.0.0.1", "GET / HTTP/1.1", 200, 12)
    access_log.log("127.0.0.1", "GET /missing HTTP/1.1", 404, 0)
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
        access_log.log("10.0.0.1", f"GET /{number} HTTP/1.1", 200, 1)
    assert len(stream.getvalue().splitlines()) == logs.FLUSH_LINES
    clock.now += logs.FLUSH_SECONDS
    reactor.run_once(max_timeout=0)
    assert len(stream.getvalue().splitlines()) == logs.FLUSH_LINES + 3


def test_flush_writes_what_waits_and_a_later_timer_finds_nothing():
    access_log, reactor, clock, stream = make_log()
    access_log.log("127.0.0.1", "GET / HTTP/1.1", 200, 1)
    access_log.flush()  # what the server does when it stops
    assert len(stream.getvalue().splitlines()) == 1
    clock.now += logs.FLUSH_SECONDS
    reactor.run_once(max_timeout=0)
    assert len(stream.getvalue().splitlines()) == 1


def test_disabled_log_writes_nothing():
    access_log, reactor, clock, stream = make_log()
    access_log.enabled = False
    access_log.log("127.0.0.1", "GET / HTTP/1.1", 200, 1)
    access_log.flush()
    assert stream.getvalue() == ""
