"""The readiness path (``--health-path``): whether to send this server new work.

A load balancer (nginx, HAProxy), a container orchestrator's readiness probe
or a CDN's origin check asks this path every second or so. It answers 200
while the server is serving, and 503 from the moment a graceful stop begins
(SIGTERM), through ``--shutdown-delay`` and the drain that follows: the
balancer takes the server out of its pool before the listeners close, so no
client is sent to a port that refuses it. docs/scaling.md shows the timeline
and the balancer settings that use it.

It answers on the loop thread, from one flag the server keeps, before the
access guard: a balancer cannot log in, and the answer says nothing but
"serving" or "stopping". Nothing is cached (``no-store``): a readiness
answer is true for an instant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..http1.responses import Response, error_response

if TYPE_CHECKING:
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request

_FIELDS = "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"
_SERVING = b"ok\n"
_STOPPING = b"stopping\n"


class HealthCheck:
    """Answers the readiness path itself and hands every other request on."""

    def __init__(self, stopping: Callable[[], bool], next_handler: Handler, path: str):
        self._stopping = stopping
        self._next = next_handler
        self._path = path

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        target = request.target
        if target != self._path and not target.startswith(self._path + "?"):
            return self._next.handle(request, exchange)
        if request.method not in ("GET", "HEAD"):
            return error_response(405, None, "Allow: GET, HEAD\r\n")
        if self._stopping():
            # RFC 9110 §15.6.4: 503, the server is unable to handle requests
            # for now; Retry-After is not given, since this one will not be back.
            return Response(503, _FIELDS, _STOPPING)
        return Response(200, _FIELDS, _SERVING)
