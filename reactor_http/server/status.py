"""The status page (``--status-path``): what the reactor is doing right now, as JSON.

It answers on the loop thread, from counters the server keeps anyway: the
connections by state, responses and bytes sent, the executor's jobs and the
file cache's hits. Reading it costs one pass over the open connections, so it
is for people and monitoring, not for every request. The same document is
written to stderr on SIGUSR1 (see cli.py).

Like nginx's stub_status it is off unless asked for, and it answers only the
addresses ``--status-allow`` lists (loopback by default); others get 403.
With --workers, each worker answers for itself (its pid is in the document).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..http1.responses import Response, error_response

if TYPE_CHECKING:
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request
    from .server import Server

_METHODS = ("GET", "HEAD")


class StatusPage:
    """Answers the status path itself and hands every other request to the site."""

    def __init__(self, document: Callable[[], dict[str, Any]], site: Handler, path: str,
                 allowed_networks: tuple):
        self._document = document
        self._site = site
        self._path = path
        self._allowed = tuple(allowed_networks)

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        target = request.target
        if target != self._path and not target.startswith(self._path + "?"):
            return self._site.handle(request, exchange)
        if not self._allows(exchange.client):
            return error_response(403, "the status page is not open to this address")
        if request.method not in _METHODS:
            return error_response(405, None, "Allow: GET, HEAD\r\n")
        body = json.dumps(self._document(), indent=1, sort_keys=True).encode() + b"\n"
        # no-store: a status is true for an instant (RFC 9111 §5.2.2.5).
        return Response(200, "Content-Type: application/json\r\n"
                             "X-Content-Type-Options: nosniff\r\n"
                             "Cache-Control: no-store\r\n", body)

    def _allows(self, client: str) -> bool:
        return client_allowed(client, self._allowed)


def client_allowed(client: str, networks: tuple) -> bool:
    """Whether a peer address is in one of ``networks`` (--status-allow): the
    rule of the status page, the metrics and the live page alike."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False  # a Unix socket's peer ("unix:") has no address to allow
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack listener
    return any(address in network for network in networks)


def status_document(server: Server) -> dict[str, Any]:
    """The server's state as a dict of plain values."""
    parts = server.parts
    cache = parts.site.cache
    looked_up = cache.hits + cache.misses
    executor = parts.executor
    log = parts.access_log
    return {
        "server": f"reactor_http {__version__}",
        "pid": os.getpid(),
        "uptime_seconds": round(time.monotonic() - server.started_at, 3),
        "stopping": server.stop_requested,
        "connections": {
            "open": len(server.connections),
            "by_state": server.connections_by_state(),
            "accepted": server.accepted,
            "limit": server.max_connections,
        },
        "responses": {"sent": log.responses, "body_bytes": log.body_bytes},
        "executor": {
            "threads": server.config.blocking_threads,
            "jobs_in_flight": executor.jobs_in_flight,
            "jobs_queued": executor.jobs_queued,
        },
        "loop": {
            "turns": server.reactor.stats.turns,
            "busy_seconds": round(server.reactor.stats.busy_seconds, 6),
            # The worst since the live page last took them (or since start).
            "busiest_turn_seconds": round(server.reactor.stats.busiest_turn, 6),
            "worst_lag_seconds": round(server.reactor.stats.worst_lag, 6),
        },
        "cache": {
            "entries": len(cache),
            "bytes": cache.bytes_used,
            "open_files": cache.open_files,
            "files_being_sent": parts.site.representations.sending.in_use,
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": round(cache.hits / looked_up, 4) if looked_up else None,
        },
    }
