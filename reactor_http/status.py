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

import ipaddress
import json
import os
import time

from . import __version__
from .responses import Response, error_response

_METHODS = ("GET", "HEAD")


class StatusPage:
    """Answers the status path itself and hands every other request to the site."""

    def __init__(self, server, site, path, allowed_networks):
        self._server = server
        self._site = site
        self._path = path
        self._allowed = tuple(allowed_networks)

    def handle(self, request, respond, client):
        target = request.target
        if target != self._path and not target.startswith(self._path + "?"):
            return self._site.handle(request, respond, client)
        if not self._allows(client):
            return error_response(403, "the status page is not open to this address")
        if request.method not in _METHODS:
            return error_response(405, None, "Allow: GET, HEAD\r\n")
        body = json.dumps(status_document(self._server), indent=1, sort_keys=True).encode() + b"\n"
        # no-store: a status is true for an instant (RFC 9111 §5.2.2.5).
        return Response(200, "Content-Type: application/json\r\n"
                             "X-Content-Type-Options: nosniff\r\n"
                             "Cache-Control: no-store\r\n", body)

    def _allows(self, client):
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False  # a Unix socket's peer ("unix:") has no address to allow
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack listener
        return any(address in network for network in self._allowed)


def status_document(server):
    """The server's state as a dict of plain values."""
    cache = server.site.cache
    looked_up = cache.hits + cache.misses
    executor = server.executor
    log = server.access_log
    return {
        "server": f"reactor_http {__version__}",
        "pid": os.getpid(),
        "uptime_seconds": round(time.monotonic() - server.started_at, 3),
        "stopping": server.draining,
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
        "cache": {
            "entries": len(cache),
            "bytes": cache.bytes_used,
            "open_files": cache.open_files,
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": round(cache.hits / looked_up, 4) if looked_up else None,
        },
    }
