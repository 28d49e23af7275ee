"""The wiring: every part of a server, built in one place, in the order they depend on each other.

    reactor  <-  executor  (jobs complete on the reactor's thread)
    site (static files)  <-  status page, metrics, live page (each answers its own path,
                                                              hands on the rest)
                         <-  access guard (403, 429, 401, or hands on; only if configured)
                         <-  readiness path (answers its own path, hands on the rest)
    renderer, memos, access log
    connection context  (what every connection is given: the parts above)
    server  (accepts connections with that context, limits them, stops them)

The command line (cli.py) and each worker process (workers.py) call
``build_server``; neither builds a part of its own (and banner.py says what
the server says at start, for one process and for workers alike).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..access.guard import AccessGuard, build_guard
from ..connection.context import ConnectionContext
from ..http1.fast_path import AnswerMemo, HeadMemo
from ..http1.responses import HeadRenderer
from ..loop.executor import BlockingExecutor
from ..loop.reactor import Histogram, Reactor, describe_callback, make_selector
from ..static.site import StaticSite, response_fields
from .dashboard import DashboardPage, LiveFeed
from .health import HealthCheck
from .limits import DescriptorPlan, plan_descriptors
from .logs import AccessLog, log_error
from .metrics import MetricsPage
from .server import Server
from .status import StatusPage, status_document
from .telemetry import RESPONSE_BUCKETS, Telemetry

if TYPE_CHECKING:
    from ..config import Config
    from ..http1.handler import Handler
    from .board import WorkerBoard


@dataclass
class Parts:
    """A server's parts, as built by ``build_parts``."""

    config: Config
    reactor: Reactor
    executor: BlockingExecutor
    site: StaticSite
    access_log: AccessLog
    context: ConnectionContext
    descriptors: DescriptorPlan
    access: AccessGuard | None = None  # set by build_server when an access feature is configured


def build_parts(config: Config, tls_context: Any = None, access_stream: TextIO | None = None) -> Parts:
    """Build every part of one server (one reactor thread). ``tls_context``
    (an ssl.SSLContext) makes every connection start with a TLS handshake;
    ``access_stream`` overrides where the access log goes (tests)."""
    reactor = Reactor(make_selector(config.selector))
    if config.slow_callback_ms is not None:
        # Before anything registers a callback: each is timed from the start.
        reactor.slow_callback_seconds = config.slow_callback_ms / 1000
        reactor.on_slow_callback = _log_slow_callback
    executor = BlockingExecutor(reactor, config.blocking_threads, config.disk_delay, config.file_work_on_loop)
    # Shared out once the process holds what it always will (listeners, the
    # selector, the wake-up channel), before any connection.
    descriptors = plan_descriptors(config.max_connections, config.blocking_threads)
    site = StaticSite(config, AnswerMemo(), reactor.clock, descriptors.cache_open_files, descriptors.sending_files)
    access_log = AccessLog(reactor, access_stream, enabled=not config.quiet,
                           path=config.access_log if access_stream is None else None,
                           log_format=config.log_format, trusted_proxies=config.trusted_proxies,
                           log_time=config.log_time, color=config.color)
    context = ConnectionContext(
        reactor=reactor, executor=executor, config=config, handler=site, access_log=access_log,
        log_error=log_error, renderer=HeadRenderer(response_fields(config)), head_memo=HeadMemo(),
        tls_context=tls_context,
        # sendfile would send a file's bytes past TLS's encryption.
        use_sendfile=config.use_sendfile and hasattr(os, "sendfile") and tls_context is None,
        # A simulated slow disk must slow every read, cached or not.
        read_chunks_on_loop=not config.disk_delay and not config.file_work_on_loop)
    return Parts(config, reactor, executor, site, access_log, context, descriptors)


def build_server(config: Config, tls_context: Any = None, access_stream: TextIO | None = None,
                 worker: int = 0, board: WorkerBoard | None = None) -> Server:
    """A Server on freshly built parts, the status page in front of the site
    if ``--status-path`` asks for one, and the access guard in front of both
    if an access feature (--auth-file, --allow/--deny, --rate-limit) is asked
    for: without one there is no guard at all, so the path of a request is
    the same as if the package did not exist. Raises PasswordFileError
    (access/passwords.py) if the --auth-file cannot be used. ``worker`` and
    ``board`` are a worker's index and the board the workers share (workers.py)."""
    parts = build_parts(config, tls_context, access_stream)
    server = Server(parts)
    telemetry = server.telemetry = Telemetry(server, worker, board)
    handler: Handler = parts.site
    if config.status_path:
        handler = StatusPage(lambda: status_document(server), handler, config.status_path,
                             config.status_allow)
    if config.metrics_path:
        parts.access_log.count_for_metrics(Histogram(RESPONSE_BUCKETS))
        handler = MetricsPage(telemetry.current, handler, config.metrics_path, config.status_allow)
    if config.dashboard_path:
        handler = DashboardPage(LiveFeed(telemetry), handler, config.dashboard_path, config.status_allow)
    if config.dashboard_path or (board is not None and config.metrics_path):
        telemetry.start()  # the page's ticks; the board's posts
    if config.status_path or config.metrics_path or config.dashboard_path or config.slow_callback_ms:
        parts.reactor.start_lag_probe()  # someone will look at the lag
    parts.access = build_guard(config, handler, parts.reactor.clock, log_error)
    handler = parts.access or handler
    if config.health_path:
        # In front of the guard: a load balancer cannot log in (health.py).
        handler = HealthCheck(lambda: server.stop_requested, handler, config.health_path)
    parts.context.handler = handler
    return server


def _log_slow_callback(callback: Any, seconds: float) -> None:
    log_error(f"slow callback: {describe_callback(callback)} held the loop for {seconds * 1000:.1f} ms")


def selector_name(reactor: Reactor) -> str:
    return reactor.selector.__class__.__name__.replace("Selector", "").lower()
