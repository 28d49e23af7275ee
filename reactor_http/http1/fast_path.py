"""The fast path: what makes a repeated request cheap, argued in one place.

Most requests a busy server gets are byte-for-byte repeats of one it answered a
moment ago: a browser reloading a stylesheet, a health check, a benchmark. Three
memos let such a request cost one ``recv`` and one ``send``, with every check of
the slow path still made once for those bytes:

1. ``HeadMemo``: the exact bytes of a request head -> the Request they parse to.
   Used by the parser, before it parses.
2. ``AnswerMemo``: a Request -> the Response a handler gave it, for as long as
   the handler's check says that answer still holds. Used by the static site,
   before it looks at the path.
3. ``WireCache``: a remembered Response -> the bytes of its head and body as
   last rendered. Used by the connection, before it renders.

Why this is safe (each memo keeps the results of a pure function):

- Parsing is a function of the head bytes alone, and a Request is frozen: the
  same object may be handed to any number of connections. (Its body, if any, is
  read by each connection's parser, never stored in the Request.)
- A handler remembers an answer only when it follows from the request's bytes
  and from the one piece of state its validity check watches (for the static
  site: one cache entry), never from the client's address or the clock.
  A remembered Response holds no file, so sending it consumes and releases
  nothing; and no one changes a Response once made, but for ``remember`` giving
  it its WireCache, once, before anyone else can hold it.
- The bytes on the wire are a function of the response, the second of the Date
  field, the Connection field and whether the body goes too (HEAD): the
  WireCache is keyed by all four.

Every memo is bounded, in entries and in bytes, oldest out first, and lives on
the loop thread only: no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .parser import Request
    from .responses import HeadRenderer, Response


class HeadMemo:
    """Parsed heads, by their exact bytes, shared by every parser of a server."""

    MAX_ENTRIES = 512
    MAX_HEAD_BYTES = 4096  # longer heads (big cookies) are parsed every time

    __slots__ = ("_requests", "get")

    def __init__(self) -> None:
        self._requests: dict[bytes, Request] = {}
        # get(head_bytes) -> the Request, or None. Performance: the dict's own
        # method, called by the parser with no Python frame of ours between.
        self.get = self._requests.get

    def put(self, head_bytes: bytes, request: Request) -> None:
        if len(head_bytes) > self.MAX_HEAD_BYTES:
            return
        requests = self._requests
        if len(requests) >= self.MAX_ENTRIES:
            del requests[next(iter(requests))]  # dicts keep insertion order: the oldest
        requests[head_bytes] = request

    def __len__(self) -> int:
        return len(self._requests)


class WireCache:
    """The bytes last rendered for one remembered response, and what they were
    rendered for: the Date second, the Connection field, head only or not."""

    __slots__ = ("second", "connection_field", "head_only", "data")

    def __init__(self) -> None:
        self.second = -1
        self.connection_field = ""
        self.head_only = False
        self.data = b""


class AnswerMemo:
    """A handler's answers by request, each with the check that says whether
    it still holds."""

    MAX_ENTRIES = 512
    # The bytes remembered answers may hold, counting each body twice (the
    # response's and the rendered copy in its WireCache), the request that is
    # the key (its line and target, its fields), and a fixed share for the
    # head and the objects around them.
    MAX_BYTES = 8 * 1024 * 1024
    ENTRY_OVERHEAD_BYTES = 1024

    __slots__ = ("_answers", "bytes_used")

    def __init__(self) -> None:
        # request -> (response, lookup, key, value, cost)
        self._answers: dict[Request, tuple[Response, Callable[[Any], Any], Any, Any, int]] = {}
        self.bytes_used = 0

    def recall(self, request: Request) -> Response | None:
        """The remembered answer to this very Request, if it still holds."""
        entry = self._answers.get(request)
        if entry is None:
            return None
        if entry[1](entry[2]) is entry[3]:
            return entry[0]
        self._forget(request)
        return None

    def remember(self, request: Request, response: Response, lookup: Callable[[Any], Any], key: Any,
                 value: Any) -> None:
        """Give ``response`` again for ``request`` while ``lookup(key)`` is
        ``value`` (for the static site: while the cache holds the very entry
        the answer was made from). The caller promises what the module
        docstring says."""
        if response.file is not None or response.wire is not None:
            return  # holds a file, or is remembered already for another request
        cost = 2 * len(response.body) + request_size(request) + self.ENTRY_OVERHEAD_BYTES
        if cost > self.MAX_BYTES:
            return
        if request in self._answers:
            self._forget(request)
        answers = self._answers
        while answers and (len(answers) >= self.MAX_ENTRIES or self.bytes_used + cost > self.MAX_BYTES):
            self._forget(next(iter(answers)))
        response.wire = WireCache()  # the one change a Response ever sees, before it is shared
        answers[request] = (response, lookup, key, value, cost)
        self.bytes_used += cost

    def _forget(self, request: Request) -> None:
        self.bytes_used -= self._answers.pop(request)[4]

    def __len__(self) -> int:
        return len(self._answers)


def request_size(request: Request) -> int:
    """What a Request holds, roughly but never less: its line and target, and
    each field's name and value with a dictionary entry's share around them."""
    return (len(request.request_line) + len(request.target)
            + sum(len(name) + len(value) + 128 for name, value in request.headers.items()))


def wire_bytes(renderer: HeadRenderer, response: Response, connection_field: str, head_only: bool) -> bytes:
    """Head and in-memory body as one bytes object, for one ``send``: taken
    from the response's WireCache while it was rendered for the same second,
    Connection field and method, else rendered (and, for a remembered
    response, kept)."""
    wire = response.wire
    if wire is None:
        return renderer.render(response, connection_field, head_only)
    second = int(time.time())
    if wire.second == second and wire.connection_field == connection_field and wire.head_only == head_only:
        return wire.data
    data = renderer.render(response, connection_field, head_only)
    wire.second, wire.connection_field, wire.head_only, wire.data = second, connection_field, head_only, data
    return data
