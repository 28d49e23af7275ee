"""The live page (``--dashboard-path``): the reactor's inside, charted once a second as it runs.

Three things are served under the path (say ``/_reactor``):

- ``/_reactor``: one HTML page, with its own small script and style sheet
  (``/_reactor/live.js``, ``/_reactor/live.css``: no CDN, no framework), shipped
  in ``reactor_http/server/live/``;
- ``/_reactor/events``: the feed the page listens to, as Server-Sent Events
  (the WHATWG HTML standard's ``text/event-stream``): a response that never
  ends by itself, one ``tick`` event a second carrying every worker's
  snapshot (telemetry.py), after one ``history`` event with the last minutes,
  so that a page opened late starts with full charts;
- nothing else: other paths under it are 404.

A feed is a long-lived response, which the connection holds in a state of
its own, STREAMING (connection/states.py). What it may cost is bounded
whatever the client does: each subscriber keeps at most the history (once)
and the newest tick waiting; a tick that comes while the previous one is
still waiting replaces it (the page draws what it gets, and a slow reader
simply sees fewer points). A client that stops reading stays in WRITING with
its socket full until --send-timeout closes it. At most MAX_FEEDS feeds are
open at once; beyond that, 503.

Like the status page, everything here answers only --status-allow addresses
(loopback by default).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..http1.responses import Response, error_response
from .status import client_allowed

if TYPE_CHECKING:
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request
    from .telemetry import Telemetry

# Feeds open at once, all clients together.
MAX_FEEDS = 256
# Ticks kept for a page opened late: five minutes.
HISTORY_TICKS = 300

_ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "live")
_TYPES = {"live.js": "text/javascript; charset=utf-8", "live.css": "text/css; charset=utf-8"}


def _page_fields(content_type: str) -> str:
    # no-store: the page is small, and a cached old script would misread a new feed.
    return f"Content-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"


class Subscription:
    """One open feed: what waits to be sent to its connection (an EventStream,
    http1/responses.py). Loop thread only."""

    __slots__ = ("_feed", "_history", "_latest", "_notify", "dropped")

    def __init__(self, feed: LiveFeed, history: bytes):
        self._feed = feed
        self._history = history  # sent first, once
        self._latest = b""       # the newest tick not yet taken
        self._notify: Callable[[], object] | None = None
        self.dropped = 0         # ticks replaced before they were taken (a slow reader)

    def attach(self, notify: Callable[[], object]) -> None:
        self._notify = notify

    def push(self, event: bytes) -> None:
        if self._latest:
            self.dropped += 1
        self._latest = event
        if self._notify is not None:
            self._notify()

    def take(self) -> bytes:
        data = self._history + self._latest
        self._history = self._latest = b""
        return data

    def detach(self) -> None:
        self._notify = None
        self._history = self._latest = b""
        self._feed.unsubscribe(self)


class LiveFeed:
    """Turns each tick into one event, and hands it to every subscriber."""

    def __init__(self, telemetry: Telemetry):
        self.subscriptions: set[Subscription] = set()
        self._history: collections.deque[bytes] = collections.deque(maxlen=HISTORY_TICKS)
        telemetry.listeners.append(self._on_tick)

    def subscribe(self) -> Subscription | None:
        """A new feed, or None when MAX_FEEDS are open."""
        if len(self.subscriptions) >= MAX_FEEDS:
            return None
        history = b"[" + b",".join(self._history) + b"]"
        subscription = Subscription(self, b"retry: 2000\n" + _event("history", history))
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def _on_tick(self, snapshots: list[dict[str, Any]]) -> None:
        tick = json.dumps([_for_the_page(snapshot) for snapshot in snapshots], separators=(",", ":")).encode()
        self._history.append(tick)
        event = _event("tick", tick)
        for subscription in list(self.subscriptions):
            subscription.push(event)


def _event(name: str, data: bytes) -> bytes:
    # One event: its name, its data on one line (JSON has no raw newline), a blank line.
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _for_the_page(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What the page charts, from a snapshot (the histograms stay out: the
    page shows each second's worst instead)."""
    loop = snapshot["loop"]
    return {
        "worker": snapshot["worker"], "pid": snapshot["pid"], "time": snapshot["time"],
        "stopping": snapshot["stopping"], "connections": snapshot["connections"],
        "accepted": snapshot["accepted"], "responses": snapshot["responses"],
        "body_bytes": snapshot["body_bytes"], "executor": snapshot["executor"],
        "cache": {"hits": snapshot["cache"]["hits"], "misses": snapshot["cache"]["misses"],
                  "bytes": snapshot["cache"]["bytes"]},
        "loop": {"worst_lag": loop["worst_lag"], "busiest_turn": loop["busiest_turn"],
                 "busy_seconds": loop["busy_seconds"], "turns": loop["turns"],
                 "slow_callbacks": loop["slow_callbacks"]},
        "process": snapshot["process"],
    }


class DashboardPage:
    """Answers the page, its two files and its feed; hands every other request on."""

    def __init__(self, feed: LiveFeed, next_handler: Handler, path: str, allowed_networks: tuple):
        self._feed = feed
        self._next = next_handler
        self._path = path.rstrip("/") or "/"
        self._prefix = self._path.rstrip("/") + "/"
        self._allowed = tuple(allowed_networks)
        # Read now, at start: never a disk read on the loop thread later.
        self._files = {name: _read_asset(name) for name in ("page.html", *_TYPES)}
        self._page = self._files["page.html"].replace(b"{{PATH}}", self._prefix.encode())

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        target = request.target.partition("?")[0]
        if target != self._path and not target.startswith(self._prefix):
            return self._next.handle(request, exchange)
        if not client_allowed(exchange.client, self._allowed):
            return error_response(403, "the live page is not open to this address")
        if request.method not in ("GET", "HEAD"):
            return error_response(405, None, "Allow: GET, HEAD\r\n")
        name = "" if target == self._path else target[len(self._prefix):]
        if name == "":
            return Response(200, _page_fields("text/html; charset=utf-8"), self._page)
        if name in _TYPES:
            return Response(200, _page_fields(_TYPES[name]), self._files[name])
        if name == "events":
            if request.method == "HEAD":  # the same head, and no feed behind it
                return Response(200, _EVENT_FIELDS, stream=_NO_EVENTS)
            subscription = self._feed.subscribe()
            if subscription is None:
                return error_response(503, f"{MAX_FEEDS} live feeds are open already", "Retry-After: 10\r\n")
            return Response(200, _EVENT_FIELDS, stream=subscription)
        return error_response(404)



def _read_asset(name: str) -> bytes:
    with open(os.path.join(_ASSETS, name), "rb") as file:
        return file.read()


class _NoEvents:
    """The stream of a HEAD request's answer: never attached, never taken."""

    def attach(self, notify: Callable[[], object]) -> None:
        pass

    def take(self) -> bytes:
        return b""

    def detach(self) -> None:
        pass


_NO_EVENTS = _NoEvents()

# X-Accel-Buffering: no tells nginx, if it proxies the feed, to pass each
# event on at once rather than buffer the response.
_EVENT_FIELDS = ("Content-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\n")
