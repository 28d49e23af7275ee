"""After a response: keep the connection, close it, or linger (reactor_http.http1.persistence).

One table, one row per case: the request (as bytes, parsed as the
connection would parse them), the response, the facts about the
connection, and the Ending that must follow, with the Connection field it
puts in the response's head.

- Keep-alive, RFC 9112 §9.3: HTTP/1.1 persists unless "close" is among the
  Connection options; HTTP/1.0 persists only if the client sent
  "keep-alive", and is then told so with "Connection: keep-alive".
- Tear-down, RFC 9112 §9.6: a server that closes while the client may still
  be sending shuts down its side and reads on (lingers) rather than closing
  at once, since unread input makes the close a reset that can destroy the
  response before the client reads it.
- Policy: close after max_requests on one connection, when stopping, when the
  response asks to, and after a request whose body was never read
  ("Expect: 100-continue", RFC 9110 §10.1.1).
"""

import pytest
from support.parsing import head

from reactor_http.http1.parser import RequestParser
from reactor_http.http1.persistence import CLOSE, KEEP_ALIVE, KEEP_ALIVE_ANNOUNCED, LINGER, after_response
from reactor_http.http1.responses import Response, error_response

CLOSE_FIELD = "Connection: close\r\n"
KEEP_ALIVE_FIELD = "Connection: keep-alive\r\n"

GET_1_1 = head(b"GET / HTTP/1.1", b"Host: a")
GET_1_1_KEEP_ALIVE = head(b"GET / HTTP/1.1", b"Host: a", b"Connection: keep-alive")
GET_1_1_CLOSE = head(b"GET / HTTP/1.1", b"Host: a", b"Connection: close")
GET_1_0 = head(b"GET / HTTP/1.0")
GET_1_0_KEEP_ALIVE = head(b"GET / HTTP/1.0", b"Connection: keep-alive")
GET_1_0_CLOSE = head(b"GET / HTTP/1.0", b"Connection: close")
POST_EXPECT = head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Expect: 100-continue")
POST_EXPECT_CLOSE = head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Expect: 100-continue",
                         b"Connection: close")

OK = Response(200, body=b"ok")
NOT_FOUND = error_response(404)
BAD_REQUEST_CLOSE = error_response(400, close=True)
OK_CLOSE = Response(200, body=b"ok", close=True)
SERVER_ERROR = error_response(500)

# The facts after the first request of a connection that allows 100, at rest.
FIRST = {"requests_seen": 1, "max_requests": 100, "stopping": False, "unread_input": False}

# (case, request bytes or None, response, facts that differ from FIRST, ending, Connection field)
TABLE = [
    # RFC 9112 §9.3: HTTP/1.1 persists by default, and needs no Connection field to say so.
    ("1.1 default", GET_1_1, OK, {}, KEEP_ALIVE, ""),
    ("1.1 keep-alive", GET_1_1_KEEP_ALIVE, OK, {}, KEEP_ALIVE, ""),
    ("1.1 pipelined input waiting", GET_1_1, OK, {"unread_input": True}, KEEP_ALIVE, ""),
    ("1.1 error that leaves the stream usable", GET_1_1, NOT_FOUND, {}, KEEP_ALIVE, ""),
    # The client said close: closed at once, unless it may still be sending (§9.6).
    ("1.1 close", GET_1_1_CLOSE, OK, {}, CLOSE, CLOSE_FIELD),
    ("1.1 close, input unread", GET_1_1_CLOSE, OK, {"unread_input": True}, LINGER, CLOSE_FIELD),
    ("1.1 close, error", GET_1_1_CLOSE, NOT_FOUND, {}, LINGER, CLOSE_FIELD),
    ("1.1 close, server error", GET_1_1_CLOSE, SERVER_ERROR, {}, LINGER, CLOSE_FIELD),
    ("1.1 close, response asks to close", GET_1_1_CLOSE, OK_CLOSE, {}, CLOSE, CLOSE_FIELD),
    ("1.1 close, stopping", GET_1_1_CLOSE, OK, {"stopping": True}, CLOSE, CLOSE_FIELD),
    ("1.1 close, last request allowed", GET_1_1_CLOSE, OK, {"requests_seen": 100}, CLOSE, CLOSE_FIELD),
    # RFC 9112 §9.3: HTTP/1.0 closes unless asked, and is told when it is kept.
    ("1.0 default", GET_1_0, OK, {}, CLOSE, CLOSE_FIELD),
    ("1.0 close", GET_1_0_CLOSE, OK, {}, CLOSE, CLOSE_FIELD),
    ("1.0 default, input unread", GET_1_0, OK, {"unread_input": True}, LINGER, CLOSE_FIELD),
    ("1.0 default, error", GET_1_0, NOT_FOUND, {}, LINGER, CLOSE_FIELD),
    ("1.0 keep-alive", GET_1_0_KEEP_ALIVE, OK, {}, KEEP_ALIVE_ANNOUNCED, KEEP_ALIVE_FIELD),
    ("1.0 keep-alive, error", GET_1_0_KEEP_ALIVE, NOT_FOUND, {}, KEEP_ALIVE_ANNOUNCED, KEEP_ALIVE_FIELD),
    # The server's policy ends a connection the client wanted kept: it may
    # have pipelined more, so the server lingers (§9.6).
    ("1.1 one request before the limit", GET_1_1, OK, {"requests_seen": 99}, KEEP_ALIVE, ""),
    ("1.1 limit reached", GET_1_1, OK, {"requests_seen": 100}, LINGER, CLOSE_FIELD),
    ("1.1 limit of one", GET_1_1, OK, {"max_requests": 1}, LINGER, CLOSE_FIELD),
    ("1.0 keep-alive, limit reached", GET_1_0_KEEP_ALIVE, OK, {"requests_seen": 100}, LINGER, CLOSE_FIELD),
    ("1.1 stopping", GET_1_1, OK, {"stopping": True}, LINGER, CLOSE_FIELD),
    ("1.0 keep-alive, stopping", GET_1_0_KEEP_ALIVE, OK, {"stopping": True}, LINGER, CLOSE_FIELD),
    ("1.1 response asks to close", GET_1_1, BAD_REQUEST_CLOSE, {}, LINGER, CLOSE_FIELD),
    ("1.1 a 200 that asks to close", GET_1_1, OK_CLOSE, {}, LINGER, CLOSE_FIELD),
    # RFC 9110 §10.1.1: the body of an "Expect: 100-continue" request was
    # never read, so it must not be taken for the next request.
    ("1.1 expect, answered at once", POST_EXPECT, OK, {}, LINGER, CLOSE_FIELD),
    ("1.1 expect, error", POST_EXPECT, error_response(405), {}, LINGER, CLOSE_FIELD),
    ("1.1 expect and close", POST_EXPECT_CLOSE, OK, {}, LINGER, CLOSE_FIELD),
    # No request (the head could not be parsed): the client may be mid-request.
    ("no request", None, BAD_REQUEST_CLOSE, {}, LINGER, CLOSE_FIELD),
    ("no request, error not asking to close", None, NOT_FOUND, {}, LINGER, CLOSE_FIELD),
    ("no request, input unread", None, BAD_REQUEST_CLOSE, {"unread_input": True}, LINGER, CLOSE_FIELD),
]


def parsed(data):
    """The Request a connection's parser hands out for these bytes."""
    parser = RequestParser()
    parser.feed(data)
    request = parser.next_request()
    assert request is not None
    return request


@pytest.mark.parametrize("request_bytes, response, facts, ending, field",
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_after_response(request_bytes, response, facts, ending, field):
    request = None if request_bytes is None else parsed(request_bytes)
    assert after_response(request, response, **{**FIRST, **facts}) is ending
    assert ending.connection_field == field


def test_the_table_reaches_every_ending():
    assert {row[4] for row in TABLE} == {KEEP_ALIVE, KEEP_ALIVE_ANNOUNCED, CLOSE, LINGER}


def test_the_expect_requests_are_really_handed_out_before_their_bodies():
    """The rows for "Expect: 100-continue" are about a body left unread."""
    assert parsed(POST_EXPECT).expects_continue and parsed(POST_EXPECT_CLOSE).expects_continue


@pytest.mark.parametrize("ending, keep_alive, linger, field", [
    (KEEP_ALIVE, True, False, ""),
    (KEEP_ALIVE_ANNOUNCED, True, False, KEEP_ALIVE_FIELD),
    (CLOSE, False, False, CLOSE_FIELD),
    (LINGER, False, True, CLOSE_FIELD),
])
def test_each_ending_says_what_it_means(ending, keep_alive, linger, field):
    """HTTP/1.1 persistence needs no field; a kept HTTP/1.0 connection is
    told "keep-alive"; every ending that closes is announced as close."""
    assert (ending.keep_alive, ending.linger, ending.connection_field) == (keep_alive, linger, field)
