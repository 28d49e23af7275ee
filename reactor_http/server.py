"""The server: listening sockets, accepting connections, and the parts wired together.

It owns the reactor, the executor, the static site and the set of open
connections. Accepting is just another readiness callback: when a listening
socket is readable, accept a batch of connections and give each its own
Connection object. Nothing here knows how HTTP works.
"""

import errno
import functools
import os
import socket

try:
    import resource  # POSIX only
except ImportError:
    resource = None

from .connection import Connection
from .executor import BlockingExecutor
from .logs import AccessLog, log_error
from .reactor import EVENT_READ, Reactor, make_selector
from .http_parser import HeadMemo
from .responses import HeadRenderer
from .static import StaticSite

# Accept at most this many connections per readiness event, so a flood of new
# connections cannot starve the ones already open.
ACCEPT_BATCH = 64
# Out of descriptors (EMFILE): stop accepting for this long instead of spinning
# on a listening socket that stays readable. Open connections go on being served.
ACCEPT_BACKOFF_SECONDS = 0.5
LISTEN_BACKLOG = 1024

_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# Descriptors the server needs besides one per connection: listeners, the
# selector, the wake-up channel, files being sent, stdio.
_SPARE_DESCRIPTORS = 64
# At least this many descriptors are kept free for files being served.
_RESERVED_DESCRIPTORS = 16
# How often "at the connection limit" may be logged while it lasts.
LIMIT_LOG_INTERVAL_SECONDS = 10.0


def connection_capacity(max_connections):
    """How many connections the descriptor limit leaves room for. Besides
    the descriptors already open, a quarter of the limit (at least 16) is
    kept for the files that connections open to send. Stopping at this
    number, rather than at EMFILE, means a connection already accepted can
    still open its file (and if even that fails, it gets a 503)."""
    if resource is None:
        return max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16  # a guess where /proc is missing: stdio, selector, waker, listener
    reserved_for_files = max(_RESERVED_DESCRIPTORS, soft // 4)
    return max(1, min(max_connections, soft - in_use - reserved_for_files))


def raise_descriptor_limit(max_connections):
    """Raise the soft RLIMIT_NOFILE towards what max_connections needs (never
    above the hard limit). Returns the soft limit now in force, or None where
    the platform has no such limit."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections * 2 + _SPARE_DESCRIPTORS  # a connection may also hold a file
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def open_listener(bind, port, reuse_port=False, listen=True):
    """A TCP socket bound to (bind, port), listening unless ``listen`` is
    False. With ``reuse_port``, other sockets may bind the same port
    (SO_REUSEPORT), and the kernel spreads new connections among those that
    listen: how worker processes share a port. Raises OSError."""
    infos = socket.getaddrinfo(bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, protocol, _, address = infos[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and address[0] == "::":
            # "::" means every address, IPv4 ones too (dual stack).
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        if listen:
            listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def listener_url(listener):
    """The http:// URL a listening socket answers on."""
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class Server:
    """A static file server on one reactor thread."""

    def __init__(self, config, access_stream=None):
        self.config = config
        self.reactor = Reactor(make_selector(config.selector))
        self.executor = BlockingExecutor(self.reactor, config.blocking_threads)
        self.site = StaticSite(config, self.executor, self.reactor.clock)
        self.renderer = HeadRenderer()
        self.head_memo = HeadMemo()  # parsed heads, shared by every connection
        self.access_log = AccessLog(self.reactor, access_stream, enabled=not config.quiet)
        self.use_sendfile = config.use_sendfile and hasattr(os, "sendfile")
        self.connections = set()
        self.max_connections = connection_capacity(config.max_connections)
        if self.max_connections < config.max_connections:
            log_error(f"the descriptor limit leaves room for {self.max_connections} connections "
                      f"(--max-connections is {config.max_connections})")
        self.listeners = []
        self._accepting = False
        self._backoff_timer = None  # set while accepting is paused after EMFILE
        self._limit_logged_at = None
        self._closing = False

    # -- listening ---------------------------------------------------------------

    def listen(self):
        """Bind and listen on the configured address. Raises OSError (address
        in use, ...) for the caller to report."""
        self.adopt(open_listener(self.config.bind, self.config.port))

    def adopt(self, listener):
        """Serve connections from a listening socket made elsewhere (a worker
        process gets its socket from the supervisor)."""
        listener.setblocking(False)
        self.listeners.append(listener)
        self._start_accepting()

    def urls(self):
        """The http:// URL of each listening socket."""
        return [listener_url(listener) for listener in self.listeners]

    # Accepting is switched off in two cases, and back on when both are over:
    # at --max-connections (until a connection closes), and after running out
    # of descriptors (for a back-off interval). Meanwhile new connections wait
    # in the kernel's listen backlog; none is accepted only to be dropped.

    def _start_accepting(self):
        if self._accepting or self._backoff_timer is not None or self._closing:
            return
        if len(self.connections) >= self.max_connections:
            return
        for listener in self.listeners:
            self.reactor.register(listener, EVENT_READ, functools.partial(self.on_acceptable, listener))
        self._accepting = True

    def _stop_accepting(self):
        if self._accepting:
            for listener in self.listeners:
                self.reactor.unregister(listener)
            self._accepting = False

    def _back_off_accepting(self, seconds):
        self._stop_accepting()
        if self._backoff_timer is None:
            self._backoff_timer = self.reactor.call_later(seconds, self._end_backoff)

    def _end_backoff(self):
        self._backoff_timer = None
        self._start_accepting()

    def on_acceptable(self, listener, mask):
        """Reactor callback: connections are waiting on a listening socket."""
        fd_limit = self.reactor.fd_limit
        is_tcp = listener.family in (socket.AF_INET, socket.AF_INET6)  # once a batch: it costs
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) >= self.max_connections:
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
                if is_tcp:
                    # Responses go out in one send; don't let Nagle hold the last packet.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset before we got to it
                sock.close()
                continue
            client = address[0] if isinstance(address, tuple) else "-"
            connection = Connection(self, sock, client)
            self.connections.add(connection)
            connection.start()

    def _log_connection_limit(self):
        now = self.reactor.now
        if self._limit_logged_at is None or now - self._limit_logged_at >= LIMIT_LOG_INTERVAL_SECONDS:
            self._limit_logged_at = now
            log_error(f"at the connection limit ({self.max_connections}): pausing accepts until "
                      f"a connection closes")

    def forget(self, connection):
        """Called by a connection when it closes."""
        self.connections.discard(connection)
        if not self._accepting:
            self._start_accepting()

    # -- running -------------------------------------------------------------------

    def serve_forever(self):
        """Run the loop on this thread until ``stop()``; then release everything."""
        try:
            self.reactor.run()
        finally:
            self._close_everything()

    def stop(self):
        """Stop serving (loop thread; from elsewhere use call_soon_threadsafe)."""
        self.reactor.stop()

    def _close_everything(self):
        self._closing = True
        self._stop_accepting()
        if self._backoff_timer is not None:
            self.reactor.cancel(self._backoff_timer)
            self._backoff_timer = None
        for listener in self.listeners:
            listener.close()
        for connection in list(self.connections):
            connection.close()
        # Wait for running jobs (short file operations), so that none posts
        # its completion to a reactor whose wake-up channel is closed.
        self.executor.shutdown(wait=True)
        self.site.cache.close()
        self.access_log.flush()
        self.reactor.close()
