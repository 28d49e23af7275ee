"""The server: accepting connections, keeping within limits, stopping gracefully.

Accepting is just another readiness callback: when a listening socket is
readable, accept a batch of connections and give each its own Connection.
The server holds the set of open connections and nothing else of theirs: it
knows no HTTP (the parts are built and wired together in wiring.py).

Accepting is switched off in two cases, and back on when both are over: at
the connection limit (until a connection closes), and after running out of
descriptors (for a back-off interval). Meanwhile new connections wait in the
kernel's listen backlog; none is accepted only to be dropped.

The one exception is ``--max-connections-per-client``: a connection from a
client that already holds that many is closed as soon as it is accepted
(access/limits.py keeps the counts; here is where connections are accepted
and closed, so here is where they are counted). nginx's limit_conn answers
503 instead, but only after reading a request: that means holding the
connection for up to --header-timeout (and a TLS handshake) for the very
client the limit is meant to stop, so here it costs the client nothing but a
closed connection and the server one accept and one close. Trusted proxies
(--trusted-proxy) are not counted: every client behind one shares its address.

Stopping has two speeds. The first SIGTERM or SIGINT begins a graceful stop
(``begin_shutdown``). From that moment the readiness path (``--health-path``)
answers 503, so that a load balancer stops sending new work here. With
``--shutdown-delay``, the server goes on serving as usual for that long, the
time a load balancer needs to see the 503 (Caddy's shutdown_delay). Then the
drain (``_begin_drain``): the listeners close, so new connections are
refused; idle keep-alive connections close; a connection with a request in
hand finishes its response (saying ``Connection: close``) and then closes;
when none is left, the loop stops. After ``--shutdown-timeout`` from the start
of the drain, or at a second signal, whatever is left is closed at once
(``stop_now``).
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from typing import TYPE_CHECKING

from ..access.clients import ClientAddresses, client_key
from ..access.limits import ConnectionCounts
from ..connection.connection import Connection
from ..connection.states import State
from ..loop.reactor import EVENT_READ
from .listeners import listener_url
from .logs import log_error

if TYPE_CHECKING:
    from ..loop.reactor import Timer
    from .telemetry import Telemetry
    from .wiring import Parts

# Accept at most this many connections per readiness event, so a flood of new
# connections cannot starve the ones already open.
ACCEPT_BATCH = 64
# Out of descriptors (EMFILE): stop accepting for this long instead of spinning
# on a listening socket that stays readable. Open connections go on being served.
ACCEPT_BACKOFF_SECONDS = 0.5
# How long, at exit, to wait for executor jobs that are still running (a
# file operation takes milliseconds; one that takes longer is a hung disk).
EXECUTOR_EXIT_WAIT_SECONDS = 2.0
# How often "at the connection limit" may be logged while it lasts.
LIMIT_LOG_INTERVAL_SECONDS = 10.0

_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class Server:
    """Accepts connections for the parts wiring.py built, on one reactor thread."""

    def __init__(self, parts: Parts):
        self.parts = parts
        self.config = config = parts.config
        self.reactor = parts.reactor
        self.connections: set[Connection] = set()
        self.accepted = 0  # connections accepted since start
        self.started_at = time.monotonic()
        self.started_at_wall = time.time()  # for process_start_time_seconds
        self.telemetry: Telemetry | None = None  # set by wiring.build_server
        self.max_connections = parts.descriptors.connections
        if self.max_connections < config.max_connections:
            log_error(f"the descriptor limit ({parts.descriptors.soft_limit}) leaves room for "
                      f"{self.max_connections} connections (--max-connections is {config.max_connections})")
        parts.context.forget = self._forget
        # --max-connections-per-client: open connections by client_key (None: no limit).
        self.per_client: ConnectionCounts | None = None
        self._not_counted: ClientAddresses | None = None  # trusted proxies
        self._per_client_logged_at: float | None = None
        if config.max_connections_per_client is not None:
            self.per_client = ConnectionCounts(config.max_connections_per_client)
            if config.trusted_proxies:
                self._not_counted = ClientAddresses(config.trusted_proxies)
        self.listeners: list[socket.socket] = []
        # Per listener: whether each socket it accepts needs TCP_NODELAY set
        # (None: not known until its first connection; see adopt).
        self._set_nodelay: dict[socket.socket, bool | None] = {}
        self._accepting = False
        self._backoff_timer: Timer | None = None  # set while accepting is paused after EMFILE
        self._limit_logged_at: float | None = None
        self._closing = False   # no more accepting: stopping, or stopped
        self._shutdown_timer: Timer | None = None
        self._delay_timer: Timer | None = None  # set during --shutdown-delay
        # A graceful stop has begun: the readiness path answers 503 (see health.py).
        self.stop_requested = False
        self.abandoned_jobs = False  # executor jobs still ran when the server stopped
        # Every --cache-valid seconds (or every second, if that is sooner),
        # drop the cache entries that can answer nothing any more, closing the
        # large files they hold open, even when no request comes to do it.
        self._expiry_interval = max(config.cache_valid, 1.0)
        self._expiry_timer: Timer | None = self.reactor.call_later(self._expiry_interval, self._expire_cache)

    @property
    def draining(self) -> bool:
        """Whether a graceful stop is under way."""
        return self.parts.context.stopping

    # -- listening ---------------------------------------------------------------

    def adopt(self, listener: socket.socket) -> None:
        """Serve connections from a listening socket opened elsewhere
        (listeners.open_listeners, or a worker's own)."""
        listener.setblocking(False)
        self._set_nodelay[listener] = False
        if listener.family in (socket.AF_INET, socket.AF_INET6):
            # Responses go out in one send: Nagle must not hold the last
            # packet. Set on the listener, the option is inherited by the
            # sockets it accepts on Linux and the BSDs, which saves a system
            # call per connection; the first connection shows whether it was.
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._set_nodelay[listener] = None
            except OSError:
                self._set_nodelay[listener] = True
        self.listeners.append(listener)
        if self._accepting:
            self._register_listener(listener)
        else:
            self._start_accepting()

    def urls(self) -> list[str]:
        """Where each listening socket answers (http://, https:// or unix:)."""
        tls = self.parts.context.tls_context is not None
        return [listener_url(listener, tls=tls) for listener in self.listeners]

    def _start_accepting(self) -> None:
        if self._accepting or self._backoff_timer is not None or self._closing:
            return
        if len(self.connections) >= self.max_connections:
            return
        for listener in self.listeners:
            self._register_listener(listener)
        self._accepting = True

    def _register_listener(self, listener: socket.socket) -> None:
        self.reactor.register(listener, EVENT_READ, functools.partial(self.on_acceptable, listener))

    def _stop_accepting(self) -> None:
        if self._accepting:
            for listener in self.listeners:
                self.reactor.unregister(listener)
            self._accepting = False

    def _back_off_accepting(self, seconds: float) -> None:
        self._stop_accepting()
        if self._backoff_timer is None:
            self._backoff_timer = self.reactor.call_later(seconds, self._end_backoff)

    def _end_backoff(self) -> None:
        self._backoff_timer = None
        self._start_accepting()

    def on_acceptable(self, listener: socket.socket, mask: int) -> None:
        """Reactor callback: connections are waiting on a listening socket."""
        fd_limit = self.reactor.fd_limit
        set_nodelay = self._set_nodelay[listener]
        context = self.parts.context
        connections = self.connections
        per_client = self.per_client
        for _ in range(ACCEPT_BATCH):
            if len(connections) >= self.max_connections:
                self._stop_accepting()
                self._log_connection_limit()
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    log_error(f"cannot accept: {error.strerror}; pausing accepts for "
                              f"{ACCEPT_BACKOFF_SECONDS} s")
                    self._back_off_accepting(ACCEPT_BACKOFF_SECONDS)
                    return
                continue  # ECONNABORTED and friends: that client is gone already
            if fd_limit is not None and sock.fileno() >= fd_limit:
                # select() cannot watch this descriptor: refuse the connection.
                sock.close()
                continue
            try:
                sock.setblocking(False)
                if set_nodelay is None:  # this listener's first connection
                    set_nodelay = self._set_nodelay[listener] = \
                        not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                if set_nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset before we got to it
                sock.close()
                continue
            # A Unix socket's peer has no address: "unix:", as nginx logs it.
            client = address[0] if isinstance(address, tuple) else "unix:"
            if per_client is not None and not self._admit(client):
                sock.close()
                continue
            connection = Connection(context, sock, client)
            self.accepted += 1
            connections.add(connection)
            connection.start()

    def _counted(self, client: str) -> bool:
        return self._not_counted is None or not self._not_counted.is_trusted(client)

    def _admit(self, client: str) -> bool:
        """--max-connections-per-client: count a new connection, or refuse it."""
        assert self.per_client is not None
        if not self._counted(client) or self.per_client.admit(client_key(client)):
            return True
        now = self.reactor.now
        if self._per_client_logged_at is None or now - self._per_client_logged_at >= LIMIT_LOG_INTERVAL_SECONDS:
            self._per_client_logged_at = now
            log_error(f"closed a connection from {client}: it holds {self.per_client.limit} already "
                      f"(--max-connections-per-client; said at most every {LIMIT_LOG_INTERVAL_SECONDS:g} s)")
        return False

    def _expire_cache(self) -> None:
        self.parts.site.cache.expire()
        self._expiry_timer = self.reactor.call_later(self._expiry_interval, self._expire_cache)

    def _log_connection_limit(self) -> None:
        now = self.reactor.now
        if self._limit_logged_at is None or now - self._limit_logged_at >= LIMIT_LOG_INTERVAL_SECONDS:
            self._limit_logged_at = now
            log_error(f"at the connection limit ({self.max_connections}): pausing accepts until "
                      f"a connection closes")

    def _forget(self, connection: Connection) -> None:
        """Called by a connection when it closes."""
        self.connections.discard(connection)
        if self.per_client is not None and self._counted(connection.client):
            self.per_client.release(client_key(connection.client))
        if self.draining:
            if not self.connections:
                self.reactor.stop()  # the last response is out: the graceful stop is done
        elif not self._accepting:
            self._start_accepting()

    # -- stopping ------------------------------------------------------------------

    def on_stop_signal(self) -> None:
        """SIGTERM or SIGINT (on the loop thread): the first begins a graceful
        stop, a second one stops at once."""
        if self.stop_requested:
            log_error("second signal: stopping now")
            self.stop_now()
        else:
            self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """Begin a graceful stop: the readiness path answers 503 from now on;
        the drain follows after --shutdown-delay (at once without one)."""
        self.stop_requested = True
        delay = self.config.shutdown_delay
        if delay > 0 and not self._closing:
            log_error(f"stopping in {delay:g} s: {self.config.health_path or 'the readiness path'} answers "
                      "503 meanwhile, and requests are served as usual")
            self._delay_timer = self.reactor.call_later(delay, self._end_delay)
        else:
            self._begin_drain()

    def _end_delay(self) -> None:
        self._delay_timer = None
        self._begin_drain()

    def _begin_drain(self) -> None:
        """Stop accepting, close idle connections, let the others finish their
        response; stop the loop when none is left, or at the shutdown timeout."""
        self.parts.context.stopping = True
        self._stop_serving_new_connections()
        for connection in list(self.connections):
            connection.on_shutdown()
        if self.connections:
            busy = len(self.connections)
            log_error(f"stopping: waiting for {busy} connection{'s' if busy != 1 else ''} to finish "
                      f"(at most {self.config.shutdown_timeout:g} s; a second signal stops at once)")
            self._shutdown_timer = self.reactor.call_later(self.config.shutdown_timeout,
                                                           self._on_shutdown_timeout)
        else:
            self.reactor.stop()

    def _on_shutdown_timeout(self) -> None:
        self._shutdown_timer = None
        log_error(f"shutdown timeout: closing {len(self.connections)} connection(s) still open")
        self.stop_now()

    def stop_now(self) -> None:
        """Close every connection and stop the loop (loop thread; from another
        thread use call_soon_threadsafe)."""
        self.stop_requested = True
        self.parts.context.stopping = True
        self._stop_serving_new_connections()
        for connection in list(self.connections):
            connection.close()
        self.reactor.stop()

    def _stop_serving_new_connections(self) -> None:
        self._closing = True
        self._stop_accepting()
        if self._backoff_timer is not None:
            self.reactor.cancel(self._backoff_timer)
            self._backoff_timer = None
        # Closed, not just ignored: a new connection is refused at once
        # rather than left waiting in a backlog nobody will accept from.
        for listener in self.listeners:
            listener.close()

    # -- running -------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the loop on this thread until it is stopped; then release everything."""
        try:
            self.reactor.run()
        finally:
            self._close_everything()

    def _close_everything(self) -> None:
        self._stop_serving_new_connections()
        for timer in (self._shutdown_timer, self._expiry_timer, self._delay_timer):
            if timer is not None:
                self.reactor.cancel(timer)
        self._shutdown_timer = self._expiry_timer = self._delay_timer = None
        for connection in list(self.connections):
            connection.close()
        parts = self.parts
        parts.site.cache.close()
        parts.access_log.close()
        # Running jobs (short file operations) are waited for, so that none
        # posts its completion to a reactor whose wake-up channel is closed.
        # A job that does not end (a hung disk) is abandoned with the
        # channel left open; the process must then exit without joining
        # its thread (see cli.serve).
        if parts.executor.shutdown_and_wait(EXECUTOR_EXIT_WAIT_SECONDS):
            self.reactor.close()
        else:
            self.abandoned_jobs = True
            log_error("a file operation is still running (a hung disk?): exiting without it")

    # -- watching --------------------------------------------------------------------

    def connections_by_state(self) -> dict[str, int]:
        """{state name: count} over the open connections."""
        counts = dict.fromkeys((state.value for state in State if state is not State.CLOSED), 0)
        for connection in self.connections:
            counts[connection.state.value] = counts.get(connection.state.value, 0) + 1
        return counts
