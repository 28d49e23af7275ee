"""After a response: keep the connection, close it, or close it lingering.

A pure function of the request, the response and a few facts about the
connection, decided once, when the response is queued: its head must say
which (the Connection field) before a byte of it is sent.

- Keep-alive (RFC 9112 §9.3): HTTP/1.1 stays open unless either side says
  ``Connection: close``; HTTP/1.0 closes unless the client asked for
  ``keep-alive``, and is then told it got it.
- Policy: close anyway after ``max_requests`` on one connection (as nginx's
  keepalive_requests), when the server is stopping, when the response asks to
  (an error that leaves the stream unusable), and after a request whose body
  was never read (``Expect: 100-continue`` answered at once: the body must not
  be taken for the next request, RFC 9110 §10.1.1).
- Linger (RFC 9112 §9.6): closing a socket while the client's bytes sit unread
  in it makes the kernel answer with a reset, and a reset can destroy the
  response before the client reads it. So when the client may still be
  sending, the server shuts its own side and reads (and drops) what comes,
  until the client closes or a timeout passes. The client may still be sending
  when bytes of its are buffered unread, when a request body went unread,
  after an error (the request may be half sent), and when the client wanted to
  keep the connection and so may have pipelined more. A client that said
  ``close`` itself, with nothing unread, is closed on at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parser import Request
    from .responses import Response


class Ending:
    """What follows an answer, and the Connection field that says so. There
    are four, made once (below); ``after_response`` picks one."""

    __slots__ = ("name", "keep_alive", "linger", "connection_field")

    def __init__(self, name: str, keep_alive: bool, linger: bool, connection_field: str):
        self.name = name
        self.keep_alive = keep_alive              # wait for the next request
        self.linger = linger                      # else: shut our side and drain input, then close
        self.connection_field = connection_field  # the header line that tells the client

    def __repr__(self) -> str:
        return f"<Ending {self.name}>"


KEEP_ALIVE = Ending("keep-alive", True, False, "")
# An HTTP/1.0 client asked for keep-alive: the answer says it got it (RFC 9112 §9.3).
KEEP_ALIVE_ANNOUNCED = Ending("keep-alive (announced)", True, False, "Connection: keep-alive\r\n")
CLOSE = Ending("close", False, False, "Connection: close\r\n")
LINGER = Ending("linger", False, True, "Connection: close\r\n")


def after_response(request: Request | None, response: Response, requests_seen: int, max_requests: int,
                   stopping: bool, unread_input: bool) -> Ending:
    """What follows ``response``. ``request`` is None when the head could not
    be parsed (the response is then an error); ``unread_input`` says whether
    bytes after this request are already buffered."""
    if request is None:
        return LINGER
    if (request.keep_alive and not request.expects_continue and not response.close
            and requests_seen < max_requests and not stopping):
        return KEEP_ALIVE if request.version != "HTTP/1.0" else KEEP_ALIVE_ANNOUNCED
    if unread_input or request.expects_continue or response.status >= 400 or request.keep_alive:
        return LINGER
    return CLOSE
