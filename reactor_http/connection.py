"""One client connection: an explicit state machine driven by the reactor.

The reactor calls ``on_ready`` when the socket is readable or writable; the
executor's completions arrive through ``on_response`` and ``on_chunk``; the
one timer calls ``on_timer``. Each of them looks at the current state, does
the work that state allows, and moves to the next state through ``_enter``,
the single place where the state changes, checked against TRANSITIONS.

    HANDSHAKE_WANT_READ   TLS only: the handshake waits for bytes from the client
    HANDSHAKE_WANT_WRITE  TLS only: the handshake has bytes to send and the socket is full
    IDLE              keep-alive: waiting for the first byte of a request
    READING_REQUEST   some of a request (head, or a body we discard) has arrived
    WAITING_EXECUTOR  a job on the executor (open a file, read a chunk) will answer
    WRITING           sending a response; blocked sends wait for writability
    CLOSING           error response sent, write side shut: draining input, then close
    CLOSED            the socket is closed; late completions are dropped

The socket's interest in the selector follows from the state alone (see
INTEREST), and is changed only when it differs from what is registered.
"""

import enum
import os
import socket

from . import tls
from .http_parser import ProtocolError, RequestParser
from .files import read_chunk
from .logs import log_error
from .reactor import EVENT_READ, EVENT_WRITE
from .responses import error_response

RECV_BYTES = 64 * 1024
# The portable send path reads a file in chunks of this size on the executor.
CHUNK_BYTES = 256 * 1024
# sendfile is asked for at most this much per call, so one fast reader on a
# huge file cannot keep the loop thread from everyone else for long.
SENDFILE_BYTES = 4 * 1024 * 1024

# Sending the head with MSG_MORE tells Linux that file bytes follow, so head
# and first bytes of the body can share a packet.
_MSG_MORE = getattr(socket, "MSG_MORE", 0)

# Errors that mean the peer has gone: close quietly, they are not our bugs.
_PEER_GONE = (ConnectionError, TimeoutError)
# "Try again when the socket is ready": a TLS socket says it with its own errors.
_WOULD_BLOCK = (BlockingIOError, InterruptedError, *tls.WANT_ERRORS)


class State(enum.Enum):
    HANDSHAKE_WANT_READ = "handshake-want-read"
    HANDSHAKE_WANT_WRITE = "handshake-want-write"
    IDLE = "idle"
    READING_REQUEST = "reading-request"
    WAITING_EXECUTOR = "waiting-executor"
    WRITING = "writing"
    CLOSING = "closing"
    CLOSED = "closed"

    # Members are singletons, so identity is a fine hash, and a C one: Enum's
    # own __hash__ is Python code, run for every transition check.
    __hash__ = object.__hash__


# Every legal transition, with the reason it happens. ``_enter`` refuses any
# other, so this table is the whole truth about the connection's life.
TRANSITIONS = {
    (State.HANDSHAKE_WANT_READ, State.HANDSHAKE_WANT_WRITE): "the TLS handshake has bytes to send",
    (State.HANDSHAKE_WANT_WRITE, State.HANDSHAKE_WANT_READ): "the TLS handshake needs the client's reply",
    (State.HANDSHAKE_WANT_READ, State.IDLE): "TLS handshake done",
    (State.HANDSHAKE_WANT_WRITE, State.IDLE): "TLS handshake done",
    (State.HANDSHAKE_WANT_READ, State.WRITING): "plain HTTP on the TLS port: answered with 400",
    (State.HANDSHAKE_WANT_READ, State.CLOSED): "handshake failed or timed out, peer gone, or stopping",
    (State.HANDSHAKE_WANT_WRITE, State.CLOSED): "handshake failed or timed out, peer gone, or stopping",
    (State.IDLE, State.READING_REQUEST): "bytes of a request arrived",
    (State.IDLE, State.CLOSED): "peer closed, keep-alive timeout, or server stopping",
    (State.READING_REQUEST, State.WAITING_EXECUTOR): "request parsed; file work submitted",
    (State.READING_REQUEST, State.WRITING): "answered at once: from the cache, an error, a batch",
    (State.READING_REQUEST, State.CLOSED): "peer closed mid-request, or server stopping",
    (State.WAITING_EXECUTOR, State.WRITING): "executor job completed",
    (State.WAITING_EXECUTOR, State.CLOSED): "peer gone or server stopping",
    (State.WRITING, State.WAITING_EXECUTOR): "need the next file chunk, or next pipelined request",
    (State.WRITING, State.WRITING): "next pipelined request answered at once",
    (State.WRITING, State.IDLE): "response sent; keep-alive",
    (State.WRITING, State.READING_REQUEST): "response sent; part of the next request is buffered",
    (State.WRITING, State.CLOSING): "response sent; closing after an error",
    (State.WRITING, State.CLOSED): "response sent with Connection: close, or send failed",
    (State.CLOSING, State.CLOSED): "peer closed, or linger timeout",
}

# Where a connection's life begins (the state diagram draws these).
INITIAL_STATES = {
    State.IDLE: "accepted",
    State.HANDSHAKE_WANT_READ: "accepted on a TLS listener",
}

# What the socket waits for in each state. 0 means "not registered at all":
# while the executor works there is nothing to wait for, and not reading is
# what pushes back on a client that pipelines faster than we answer.
INTEREST = {
    State.HANDSHAKE_WANT_READ: EVENT_READ,
    State.HANDSHAKE_WANT_WRITE: EVENT_WRITE,
    State.IDLE: EVENT_READ,
    State.READING_REQUEST: EVENT_READ,
    State.WAITING_EXECUTOR: 0,
    State.WRITING: EVENT_WRITE,  # registered only while a send is blocked
    State.CLOSING: EVENT_READ,
    State.CLOSED: 0,
}


class Connection:
    """One accepted socket and the requests that arrive on it, in order."""

    __slots__ = (
        "sock", "client", "state", "_server", "_reactor", "_config", "_parser",
        "_interest", "_timer", "_deadline", "_request", "_response", "_head_only",
        "_keep_alive", "_linger", "_log_line", "_out", "_file", "_body_sent", "_job_in_flight",
        "_requests_seen", "_batch", "_tls", "_tls_open",
    )

    def __init__(self, server, sock, client, tls_context=None):
        self.sock = sock
        self.client = client  # the peer's address as text, for the access log
        # A TLS connection starts with the handshake; the socket is wrapped
        # once its first byte shows it is TLS (see _handshake).
        self.state = State.IDLE if tls_context is None else State.HANDSHAKE_WANT_READ
        self._tls = tls_context   # the SSLContext, or None for plain HTTP
        self._tls_open = False    # handshake done, close_notify not yet sent
        self._server = server
        self._reactor = server.reactor
        self._config = config = server.config
        self._parser = RequestParser(config.max_request_line, config.max_header_bytes,
                                     config.max_header_count, config.max_body, memo=server.head_memo)
        self._interest = 0
        self._timer = None
        self._deadline = None
        self._request = None
        self._response = None
        self._head_only = False
        self._keep_alive = True
        self._linger = False
        self._log_line = ""
        self._out = b""          # head and in-memory body bytes not yet sent
        self._file = None        # FileBody still to send after _out
        self._body_sent = 0
        self._job_in_flight = False
        self._requests_seen = 0
        self._batch = []          # answers to pipelined requests, not yet sent

    def start(self):
        """Begin waiting for the first request (or the TLS handshake). A
        client that connects and says nothing is held only for the header
        (or handshake) timeout, as nginx does."""
        self._set_deadline(self._config.header_timeout if self._tls is None
                           else self._config.handshake_timeout)
        self._update_interest()

    # -- the state machine's one door ------------------------------------------

    def _enter(self, new_state):
        if (self.state, new_state) not in TRANSITIONS:
            raise RuntimeError(f"illegal connection transition {self.state} -> {new_state}")
        self.state = new_state

    def _update_interest(self):
        wanted = INTEREST[self.state]
        if self.state is State.WRITING and not self._out and self._file is None:
            wanted = 0
        if wanted == self._interest:
            return
        if wanted == 0:
            self._reactor.unregister(self.sock)
        elif self._interest == 0:
            self._reactor.register(self.sock, wanted, self.on_ready)
        else:
            self._reactor.modify(self.sock, wanted, self.on_ready)
        self._interest = wanted

    # -- readiness ---------------------------------------------------------------

    def on_ready(self, mask):
        """Reactor callback: the socket is readable and/or writable."""
        try:
            if mask & EVENT_READ:
                self.on_readable()
            elif mask & EVENT_WRITE:
                self.on_writable()
        except Exception as error:  # a bug here must cost one connection, not the server
            log_error(f"error on connection from {self.client}", error)
            self.close()

    def on_readable(self):
        state = self.state
        if state is not State.IDLE and state is not State.READING_REQUEST:
            if state is State.CLOSING:
                self._drain_while_closing()
            elif state is State.HANDSHAKE_WANT_READ:
                self._handshake()
            return  # else not reading now: the bytes wait in the kernel (backpressure)
        try:
            data = self.sock.recv(RECV_BYTES)
        except _WOULD_BLOCK:
            return
        except (*_PEER_GONE, OSError):
            self.close()
            return
        if not data:  # end of file: the client is done with us
            self.close()
            return
        self._parser.feed(data)
        if self.state is not State.IDLE:
            self._advance()
            return
        self._enter(State.READING_REQUEST)
        self._advance()
        if self.state is State.READING_REQUEST:
            # The header timeout runs from the first byte, and is not reset
            # by later bytes: one byte every few seconds does not buy time.
            # It is armed only now, when the request turned out incomplete
            # (most arrive whole and are answered at once); the loop's clock
            # is read once per turn, so the deadline is the same as if it
            # had been set before _advance.
            self._set_deadline(self._config.header_timeout)

    def on_writable(self):
        if self.state is State.WRITING:
            if self._write() and self._finish_response():
                self._advance()
        elif self.state is State.HANDSHAKE_WANT_WRITE:
            self._handshake()

    # -- TLS ---------------------------------------------------------------------

    def _handshake(self):
        """Take the TLS handshake one step further, as far as the socket
        allows without blocking; the state says which readiness it waits for."""
        if not tls.is_wrapped(self.sock):
            # Nothing read yet. Peek at the first byte: a TLS client starts
            # with a handshake record; someone typing http:// does not.
            try:
                first = self.sock.recv(1, socket.MSG_PEEK)
            except _WOULD_BLOCK:
                return
            except OSError:
                self.close()
                return
            if not first:
                self.close()
                return
            if not tls.starts_handshake(first):
                self._refuse_plain_text(first)
                return
            if self._interest:  # the new socket object is registered afresh
                self._reactor.unregister(self.sock)
                self._interest = 0
            try:
                self.sock = tls.wrap(self._tls, self.sock)
            except OSError:  # reset in between
                self.close()
                return
        try:
            self.sock.do_handshake()
        except tls.WANT_READ:
            self._wait_in(State.HANDSHAKE_WANT_READ)
            return
        except tls.WANT_WRITE:
            self._wait_in(State.HANDSHAKE_WANT_WRITE)
            return
        except OSError:  # a failed handshake (ssl.SSLError) or a reset: the peer's problem
            self.close()
            return
        self._tls_open = True
        self._enter(State.IDLE)
        self._set_deadline(self._config.header_timeout)
        self._update_interest()
        if self.sock.pending():  # the request came with the handshake's last flight
            self.on_readable()

    def _wait_in(self, state):
        if self.state is not state:
            self._enter(state)
        self._update_interest()

    def _refuse_plain_text(self, first):
        """Bytes that are not TLS on a TLS listener. If they look like an HTTP
        request, answer 400 in plain HTTP (the client can read that, as with
        nginx's "plain HTTP request was sent to HTTPS port"); anything else is
        noise, and is closed on."""
        if not tls.looks_like_http(first):
            self.close()
            return
        try:
            self._parser.feed(self.sock.recv(RECV_BYTES))  # read, so closing sends no reset
        except OSError:
            pass
        self._tls = None  # this connection speaks plain HTTP from now on, for its one answer
        self._respond(error_response(400, "this port speaks HTTPS; use an https:// URL", close=True),
                      self._parser.first_line(), close=True)

    # -- requests in, responses out --------------------------------------------

    def _advance(self):
        """Answer every complete request that is buffered, in order, until one
        has to wait (for the executor, the socket or more bytes)."""
        while True:
            try:
                request = self._parser.next_request()
            except ProtocolError as error:
                self._request = None
                response = error_response(error.status, error.detail, close=True)
                if error.method == "HEAD":
                    response.without_body()
                self._respond(response, error.request_line or self._parser.first_line(), close=True)
                return
            if request is None:
                if self._batch and not self._send_batch():
                    return  # the socket is full: on_writable finishes the batch
                if self.state is not State.READING_REQUEST:
                    if self._parser.buffered:
                        # Part of a pipelined request is buffered: its head timeout starts now.
                        self._enter(State.READING_REQUEST)
                        self._set_deadline(self._config.header_timeout)
                    else:
                        self._wait_for_next_request()
                        return
                self._update_interest()
                return
            self._request = request
            self._requests_seen += 1
            response = self._server.handle(request, self.on_response, self.client)
            if response is None:
                self._enter(State.WAITING_EXECUTOR)
                self._job_in_flight = True
                self._deadline = None  # no client timeout while the disk works
                self._update_interest()
                return
            # If more bytes are buffered, another request may follow at once:
            # collect this answer in the batch, to send them all in one send().
            if not self._respond(response, request.request_line, batch=self._parser.buffered > 0):
                return

    def on_response(self, response):
        """Executor completion: the plan for the current request is ready."""
        self._job_in_flight = False
        if self.state is not State.WAITING_EXECUTOR:
            response.release()  # we closed while the job ran: just free the file
            return
        try:
            if self._respond(response, self._request.request_line):
                self._advance()
        except Exception as error:
            log_error(f"error on connection from {self.client}", error)
            self.close()

    def _respond(self, response, request_line, close=False, batch=False):
        """Start sending a response. Returns True if it was sent completely (or,
        with ``batch``, added to the batch) and the connection is ready for the
        next request."""
        request = self._request
        if request is not None:
            self._head_only = request.method == "HEAD"
            # A body we did not read (Expect: 100-continue): answer, then close,
            # so that the body can never be taken for the next request. And a
            # connection has a request budget, as nginx's keepalive_requests.
            # When the server is stopping, the answer says it closes.
            keep_alive = (request.keep_alive and not request.body_unread
                          and self._requests_seen < self._config.max_requests_per_connection
                          and not self._server.draining)
        else:
            self._head_only = False
            keep_alive = False
        keep_alive = keep_alive and not (close or response.close)
        if self._head_only:
            response.without_body()
        if keep_alive:
            connection_field = "Connection: keep-alive\r\n" if request.version == "HTTP/1.0" else ""
        else:
            connection_field = "Connection: close\r\n"
        # Linger (drain input before closing) when the client may still be
        # sending: after an error, or when it announced a body we did not read.
        self._linger = not keep_alive and (request is None or request.body_unread or response.status >= 400)
        self._keep_alive = keep_alive
        self._response = response
        self._log_line = request_line
        data = self._server.renderer.wire_bytes(response, connection_field)
        if batch and keep_alive and response.file is None and not response.parts:
            # Pipelined requests answered from memory: keep the bytes, and send
            # the whole batch with one system call when the requests run out.
            self._batch.append(data)
            self._server.access_log.log(self.client, request, request_line, response.status,
                                        len(response.body))
            self._response = self._request = None
            return True
        if self._batch:  # answers batched before this one go first
            self._batch.append(data)
            data = b"".join(self._batch)
            self._batch.clear()
        self._body_sent = len(response.body) - len(data)  # counts up to the body bytes sent
        self._out = data
        self._file = response.file
        self._enter(State.WRITING)
        if self._write():
            return self._finish_response()
        return False

    def _send_batch(self):
        """Send the batched answers to pipelined requests. Returns True when
        they are all sent."""
        self._response = None  # already logged, one by one
        self._keep_alive = True
        self._linger = False
        self._body_sent = 0
        self._out = b"".join(self._batch)
        self._batch.clear()
        self._enter(State.WRITING)
        return self._write() and self._finish_response(after_batch=True)

    def _write(self):
        """Send what we can without blocking. Returns True when the response
        is completely sent; False when it waits (for the socket or a chunk)
        or the connection was closed."""
        try:
            while True:
                if self._out:
                    response = self._response  # None while a batch of answers is sent
                    more_follows = self._file is not None or (response is not None and bool(response.parts))
                    # (A TLS socket takes no flags: it writes records, not segments.)
                    sent = self.sock.send(self._out, _MSG_MORE if more_follows and self._tls is None else 0)
                    self._body_sent += sent
                    if sent < len(self._out):
                        self._out = memoryview(self._out)[sent:]
                        self._wait_for_writable()
                        return False
                    self._out = b""
                file_body = self._file
                if file_body is not None and file_body.remaining:
                    if not self._server.use_sendfile:
                        self._read_next_chunk()
                        return False
                    sent = os.sendfile(self.sock.fileno(), file_body.fd, file_body.offset,
                                       min(file_body.remaining, SENDFILE_BYTES))
                    if sent == 0:
                        # The file is shorter than the Content-Length we sent:
                        # it was truncated under us. Close rather than send a
                        # body that does not match its head.
                        log_error(f"file shrank while being sent to {self.client}; connection closed")
                        self.close()
                        return False
                    file_body.offset += sent
                    file_body.remaining -= sent
                    self._body_sent += sent
                    continue
                if file_body is not None:
                    file_body.close()  # done with it: free the descriptor now
                    self._file = None
                if not self._next_part():
                    return True
        except _WOULD_BLOCK:
            self._wait_for_writable()
            return False
        except (*_PEER_GONE, OSError):
            self.close()
            return False

    def _wait_for_writable(self):
        """The kernel's send buffer is full: wait until it has room. The send
        timeout runs from now, so it measures a client that stops reading,
        not a long download."""
        self._set_deadline(self._config.send_timeout)
        self._update_interest()

    def _next_part(self):
        """Load the next part of a multipart body into _out or _file."""
        parts = self._response.parts if self._response is not None else None
        if not parts:
            return False
        part = parts.pop(0)
        if isinstance(part, bytes):
            self._out = part
        else:
            self._file = part
        return True

    def _read_next_chunk(self):
        """The portable send path: have the executor read the next chunk."""
        file_body = self._file
        self._enter(State.WAITING_EXECUTOR)
        self._job_in_flight = True
        self._deadline = None
        self._update_interest()
        self._server.executor.submit(read_chunk, (file_body.fd, file_body.offset,
                                                  min(file_body.remaining, CHUNK_BYTES)), self.on_chunk)

    def on_chunk(self, outcome):
        """Executor completion: a chunk of the file, for the portable send path."""
        self._job_in_flight = False
        if self.state is not State.WAITING_EXECUTOR:
            self._release_file()  # closed meanwhile; now nobody uses the fd
            return
        chunk = outcome.value
        if outcome.error is not None or not chunk:
            if outcome.error is not None:
                log_error(f"read error while sending to {self.client}", outcome.error)
            else:
                log_error(f"file shrank while being sent to {self.client}; connection closed")
            self.close()
            return
        self._file.offset += len(chunk)
        self._file.remaining -= len(chunk)
        self._out = chunk
        self._enter(State.WRITING)
        if self._write() and self._finish_response():
            self._advance()

    def _finish_response(self, after_batch=False):
        """The response is sent: log it, then keep the connection or close it.
        Returns True if the connection waits for the next request (or, after
        a batch, may go on to read one)."""
        if self._response is not None:
            self._log_response()
        if self._file is not None:
            self._release_file()
        self._response = None
        self._request = None
        if not self._keep_alive:
            if self._linger:
                self._begin_lingering_close()
            else:
                self.close()
            return False
        if self._parser.buffered or after_batch:
            return True  # a pipelined request may be waiting: _advance decides
        self._wait_for_next_request()
        return False

    def _wait_for_next_request(self):
        """Keep-alive: wait, idle, for the next request. Or close, if the
        server is stopping: a response begun before that may have promised
        keep-alive, but nothing more will be answered here."""
        if self._server.draining:
            self.close()
            return
        self._enter(State.IDLE)
        self._set_deadline(self._config.keepalive_timeout)
        self._update_interest()

    def on_shutdown(self):
        """The server is stopping: an idle connection closes now (unless a
        request has just arrived on it, which is then answered with
        Connection: close); one busy with a request finishes it, then closes."""
        if self.state is State.IDLE:
            try:
                # The plain socket's own recv, also under TLS (whose recv
                # takes no flags): any byte waiting, encrypted or not, counts.
                arrived = socket.socket.recv(self.sock, 1, socket.MSG_PEEK)
            except OSError:  # nothing waiting (BlockingIOError), or the peer is gone
                arrived = False
            if not arrived:
                self.close()
        elif self.state is State.HANDSHAKE_WANT_READ or self.state is State.HANDSHAKE_WANT_WRITE:
            self.close()

    def _log_response(self):
        sent = self._body_sent
        self._server.access_log.log(self.client, self._request, self._log_line, self._response.status,
                                    sent if sent > 0 else 0)

    # -- closing -------------------------------------------------------------------

    def _begin_lingering_close(self):
        """Shut our side, then read and discard until the client closes or the
        linger timeout ends. Closing at once could make the kernel answer the
        client's unread bytes with RST, which can destroy the error response
        before the client reads it."""
        self._say_goodbye()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._enter(State.CLOSING)
        self._set_deadline(self._config.linger_timeout)
        self._update_interest()

    def _drain_while_closing(self):
        try:
            for _ in range(16):  # bounded: a fast sender must not hold the loop
                if not self.sock.recv(RECV_BYTES):
                    self.close()
                    return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()

    def close(self):
        """Close now. Safe to call more than once and from any state."""
        if self.state is State.CLOSED:
            return
        if self._response is not None:
            # Log what was sent of an interrupted response, as nginx does
            # (while writing, or waiting for the next chunk of a file).
            self._log_response()
        self._enter(State.CLOSED)
        if self._interest:
            self._reactor.unregister(self.sock)
            self._interest = 0
        if self._timer is not None:
            self._reactor.cancel(self._timer)
            self._timer = None
        self._say_goodbye()
        self.sock.close()
        self._release_file()
        self._out = b""
        self._batch.clear()
        self._server.forget(self)

    def _say_goodbye(self):
        """TLS: send close_notify, so the client knows the end is the end and
        not a cut connection. Best effort: its reply is not waited for."""
        if self._tls_open:
            self._tls_open = False
            tls.send_close_notify(self.sock)

    def _release_file(self):
        # Discussion: while an executor job reads from the file descriptor, we
        # must not close it: the number could be reused at once by a new
        # socket, and the job would read from that instead. So the job's
        # completion closes it, if the connection closed meanwhile.
        if self._job_in_flight:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._response is not None and self.state is State.CLOSED:
            self._response.release()

    # -- time ------------------------------------------------------------------------

    def _set_deadline(self, seconds):
        """Arm the connection's single timeout. Moving the deadline later costs
        only an assignment: the timer, when it fires, sees the new deadline
        and sleeps again. So a busy keep-alive connection does not create and
        cancel a timer per request."""
        deadline = self._reactor.now + seconds
        self._deadline = deadline
        if self._timer is None or self._timer.when > deadline:
            if self._timer is not None:
                self._reactor.cancel(self._timer)
            self._timer = self._reactor.call_later(seconds, self.on_timer)

    def on_timer(self):
        """Timer callback: the deadline may have passed."""
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.state is State.CLOSED:
            return
        remaining = deadline - self._reactor.clock()
        if remaining > 0:
            self._timer = self._reactor.call_later(remaining, self.on_timer)
            return
        self._deadline = None
        self.on_timeout()

    def on_timeout(self):
        state = self.state
        try:
            if state is State.READING_REQUEST:
                self._request = None
                self._respond(error_response(408, "the request head took too long", close=True),
                              self._parser.first_line(), close=True)
            else:
                # IDLE: keep-alive over. WRITING: the client stopped reading
                # (send timeout). CLOSING: linger over. All close quietly.
                self.close()
        except Exception as error:
            log_error(f"error on connection from {self.client}", error)
            self.close()
