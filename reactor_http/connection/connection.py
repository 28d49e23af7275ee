"""One client connection: a state machine that its tables drive.

The tables in states.py are the machine: WAITS says what each state waits for
and which method handles the socket becoming readable or writable in it;
TRANSITIONS lists every legal move. This class carries them out:

- ``on_ready`` (the reactor's callback) looks the handler up by the current
  state and runs it;
- ``_enter`` is the one place the state changes, checked against TRANSITIONS;
  ``_wait_in`` is where the connection goes back to the loop: it enters a
  state, arms that state's timeout, and sets the socket's interest from it;
- every way in (readiness, a job's completion, a chunk read, the timer, the
  server stopping) passes through one guard, ``_guarded`` (which ``on_ready``,
  the hottest, does inline), and every error nobody expected ends in
  ``_fail``: it costs this connection, and never the process.

A request's life: ``_receive`` reads bytes and feeds the parser; ``_serve``
answers every complete request that is buffered (the handler answers now, or
after a job on the executor), queues the answers in the Writer, sends them,
and decides what follows from the Ending that persistence.after_response
chose for the last answer: the next request, a close, or a lingering close.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..http1.errors import ProtocolError
from ..http1.fast_path import wire_bytes
from ..http1.parser import RequestParser
from ..http1.persistence import KEEP_ALIVE, Ending, after_response
from ..http1.responses import NO_CONTENT_STATUSES, error_response
from ..loop.reactor import EVENT_READ
from . import tls
from .states import ALLOWED, INTEREST, WAITS, State
from .writer import FileChanged, Flushed, Writer, read_chunk

if TYPE_CHECKING:
    from ..http1.handler import Continuation
    from ..http1.parser import Request
    from ..http1.responses import EventStream, Response
    from ..loop.executor import Outcome
    from ..loop.reactor import Timer
    from .context import ConnectionContext

# One recv asks for this much: a whole head, or many pipelined ones.
RECV_BYTES = 64 * 1024
# Answers to pipelined requests are sent together once they hold this much:
# a few hundred bytes of requests can ask for many kilobytes of answers, and
# a batch must not grow with them (the rest wait for the next batch).
MAX_BATCH_BYTES = 256 * 1024
# Lingering reads at most this much per readiness event (so a fast sender
# cannot hold the loop), and at most this much in all before it gives up.
LINGER_READS_PER_EVENT = 16
LINGER_MAX_BYTES = 4 * 1024 * 1024

# Errors that mean the peer has gone or broken the protocol: close quietly,
# they are not our bugs. Any other OSError (EBADF, say) is one of ours, and
# goes to the guard, which logs it.
PEER_GONE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, *tls.PEER_ERRORS)
# "Try again when the socket is ready": a TLS socket says it with its own errors.
WOULD_BLOCK: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError, *tls.WANT_ERRORS)

# What _answer_buffered_requests did: queued answers to send, found the next
# request incomplete (nothing queued), or left the handler waiting for a job.
_QUEUED, _INCOMPLETE, _WAITING = range(3)


class Connection:
    """One accepted socket and the requests that arrive on it, in order."""

    __slots__ = ("sock", "client", "state", "_context", "_parser", "_writer", "_interest", "_timer",
                 "_deadline", "_requests_seen", "_request", "_ending", "_unlogged", "_discarded", "_started",
                 "_stream", "_stream_sent")

    def __init__(self, context: ConnectionContext, sock: socket.socket, client: str):
        config = context.config
        self.sock = sock
        self.client = client  # the peer's address as text, for the access log and the handler
        self.state = State.IDLE if context.tls_context is None else State.HANDSHAKE_WANT_READ
        self._context = context
        self._parser = RequestParser(config.max_request_line, config.max_header_bytes,
                                     config.max_header_count, config.max_body, memo=context.head_memo)
        self._writer = Writer(sock, context.use_sendfile, budget=context.chunk_budget,
                              read_on_loop=context.read_chunks_on_loop)
        self._interest = 0             # what the selector watches for now
        self._timer: Timer | None = None
        self._deadline: float | None = None
        self._requests_seen = 0
        self._request: Request | None = None  # the request the handler is answering
        self._ending: Ending = KEEP_ALIVE      # what follows the answer queued last
        # The answer queued last, whose access-log line waits until it is
        # sent (or the connection closes): (request, request line, status,
        # body length, when its request began). It is always the last thing
        # queued in the writer.
        self._unlogged: tuple | None = None
        self._started = 0.0            # the loop's clock when the request being read began
        self._discarded = 0            # bytes dropped while lingering or streaming
        self._stream: EventStream | None = None  # the streaming response being sent, if any
        self._stream_sent = 0          # the bytes of its events queued so far

    def __repr__(self) -> str:
        # What --slow-callback-ms names when a callback of this connection held the loop.
        return f"<Connection from {self.client}, {self.state.value}>"

    # -- the ways in -------------------------------------------------------------------

    def start(self) -> None:
        """Begin waiting for the first request (or the TLS handshake). A
        client that connects and says nothing is held only for the header
        (or handshake) timeout, as nginx does."""
        self._guarded(self._start)

    def on_ready(self, mask: int) -> None:
        """Reactor callback: the socket is readable or writable. What that
        means is looked up by the state (see WAITS)."""
        handlers = _ON_READABLE if mask & EVENT_READ else _ON_WRITABLE
        # Performance: the hottest way in does what _guarded does, inline.
        try:
            handlers[self.state](self)
        except Exception as error:
            self._fail(error)

    def on_timer(self) -> None:
        """Timer callback: the deadline may have passed."""
        self._guarded(self._check_deadline)

    def on_shutdown(self) -> None:
        """The server is stopping: an idle connection closes now (unless a
        request has just arrived on it, which is then answered with
        Connection: close); one busy with a request finishes it, then closes."""
        self._guarded(self._stop_if_idle)

    def run_blocking(self, job: Callable[..., Any], args: tuple, then: Continuation,
                     shared: bool = False) -> None:
        """The Exchange interface (http1/handler.py): the handler's way to the
        executor. ``then`` runs, guarded, on the loop thread."""
        self._context.executor.submit(job, args, functools.partial(self._guarded, self._on_job_done, then),
                                      shared)

    def _guarded(self, step: Callable[..., Any], *args: Any) -> None:
        """The one door in. An exception nobody expected costs this connection
        only: the traceback is logged once, and the client gets a 500 if no
        byte of the answer it waits for has been queued yet."""
        try:
            step(*args)
        except Exception as error:
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        self._context.log_error(f"unexpected error on the connection from {self.client}", error)
        if self.state is State.READING_REQUEST or self.state is State.WAITING_EXECUTOR:
            # The handler failed (or the parser, or the rendering of an
            # answer): nothing of this answer is queued. Earlier answers
            # still go out, then a 500, then the connection ends.
            request, self._request = self._request, None
            line = request.request_line if request is not None else self._parser.first_line()
            try:
                self._queue(None, error_response(500, close=True), line)
                if self._send():
                    self._after_sent()
                return
            except Exception as second:
                self._context.log_error(f"and the 500 for {self.client} failed too", second)
        self.close()

    # -- the state machine's one door --------------------------------------------------

    def _enter(self, new_state: State) -> None:
        if new_state not in ALLOWED[self.state]:  # the moves of TRANSITIONS, by the state moved from
            raise RuntimeError(f"illegal connection transition {self.state} -> {new_state}")
        self.state = new_state

    def _wait_in(self, state: State, restart_timeout: bool = True) -> None:
        """Go back to the loop in ``state``: enter it, arm its timeout (or
        keep the one running, when ``restart_timeout`` is False) and watch
        the socket for what the state waits for."""
        if state is not self.state:
            self._enter(state)
        seconds = self._context.timeouts.get(state)
        if seconds is None:
            self._deadline = None  # nothing the client does is awaited: no timeout
        elif restart_timeout:
            self._set_deadline(seconds)
        self._update_interest()

    def _update_interest(self) -> None:
        wanted = INTEREST[self.state]
        if wanted == self._interest:
            return
        reactor = self._context.reactor
        if wanted == 0:
            reactor.unregister(self.sock)
        elif self._interest == 0:
            reactor.register(self.sock, wanted, self.on_ready)
        else:
            reactor.modify(self.sock, wanted, self.on_ready)
        self._interest = wanted

    def _start(self) -> None:
        # Discussion: reading at once, in case the request is already here,
        # looks cheaper (no registration, no turn of the loop). Measured with
        # a new connection per request at full speed, the request had not yet
        # arrived at accept 96 times in 100, and the eager recv only added a
        # system call that said "not yet" (docs/benchmarks.md). So a new
        # connection waits for readiness like any other.
        config = self._context.config
        self._set_deadline(config.header_timeout if self.state is State.IDLE else config.handshake_timeout)
        self._update_interest()

    # -- readable: requests in ---------------------------------------------------------

    def _receive(self) -> None:
        """IDLE, READING_REQUEST: read what has arrived, answer what it completes."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except WOULD_BLOCK:
            return
        except PEER_GONE:
            self.close()
            return
        if not data:  # end of file: the client is done with us
            self.close()
            return
        self._parser.feed(data)
        if self.state is State.IDLE:
            self._started = self._context.reactor.now  # what the access log's time counts from
            self._enter(State.READING_REQUEST)
            self._serve()
            if self.state is State.READING_REQUEST:
                # The head is incomplete: its timeout runs from its first byte,
                # which came this turn. Performance: armed only now, since
                # most requests arrive whole and are answered at once.
                self._wait_in(State.READING_REQUEST)
        else:
            self._serve()

    def _serve(self) -> None:
        """READING_REQUEST: answer the complete requests that are buffered,
        send the answers, and go on for as long as that needs no waiting."""
        while self._answer_buffered_requests() is _QUEUED:
            if not self._send() or not self._after_sent():
                return

    def _answer_buffered_requests(self) -> int:
        """Queue an answer for each complete request that is buffered, until
        one must go out before anything more is read (it holds a file, or
        ends the connection). Says whether answers were queued, the next
        request is incomplete, or the handler waits for the executor."""
        parser = self._parser
        handler = self._context.handler
        queued = _INCOMPLETE
        batch_bytes = 0
        while True:
            try:
                request = parser.next_request()
            except ProtocolError as error:
                self._queue(None, error_response(error.status, error.detail, close=True),
                            error.request_line or parser.first_line(), head_only=error.method == "HEAD")
                return _QUEUED
            if request is None:
                return queued
            self._requests_seen += 1
            self._request = request
            response = handler.handle(request, self)
            if response is None:
                self._wait_in(State.WAITING_EXECUTOR)
                return _WAITING
            batch_bytes += self._queue(request, response, request.request_line)
            self._request = None  # only now: if queueing failed, the guard's 500 names this request
            if (not self._ending.keep_alive or response.file is not None or not parser.buffer
                    or batch_bytes >= MAX_BATCH_BYTES):
                return _QUEUED
            queued = _QUEUED

    def _on_job_done(self, then: Continuation, outcome: Outcome) -> None:
        """A handler's job completed (guarded, on the loop thread)."""
        if outcome.error is not None:
            raise outcome.error  # the guard logs it and answers 500
        response = then(outcome.value)
        if self.state is not State.WAITING_EXECUTOR:
            if response is not None:
                response.release()  # closed while the job ran: just free the file
            return
        if response is None:
            return  # the handler asked for another job
        request = self._request
        assert request is not None
        self._queue(request, response, request.request_line)
        self._request = None
        if self._send() and self._after_sent():
            self._serve()

    def _queue(self, request: Request | None, response: Response, request_line: str,
               head_only: bool | None = None) -> int:
        """Decide what follows this answer, render it, and queue it. Returns
        the bytes it put in memory (its head and in-memory body)."""
        context = self._context
        parser = self._parser
        ending = self._ending = after_response(
            request, response, self._requests_seen, context.config.max_requests_per_connection,
            context.stopping, bool(parser.buffer))
        if head_only is None:
            head_only = request is not None and request.method == "HEAD"
        try:
            data = wire_bytes(context.renderer, response, ending.connection_field, head_only)
        except Exception:
            response.release()  # it will never be sent: its file must not leak
            raise
        unlogged = self._unlogged
        if unlogged is not None:  # the answer queued before this one: logged as sent in full
            context.access_log.log(self.client, unlogged[0], unlogged[1], unlogged[2], unlogged[3],
                                   context.reactor.now - unlogged[4])
        writer = self._writer
        writer.add(data)
        if response.stream is not None and not head_only:
            # It is the last answer on this connection (it says close): once
            # its head is sent, _after_sent turns to its events.
            self._stream = response.stream
            self._stream.attach(functools.partial(self._guarded, self._on_stream_event))
        if head_only or response.status in NO_CONTENT_STATUSES:
            response.release()
            body_length = 0
        else:
            body_length = response.content_length
            if response.file is not None:
                writer.add_file(response.file)
        self._unlogged = (request, request_line, response.status, body_length, self._started)
        return len(data)

    # -- writable: answers out ---------------------------------------------------------

    def _send(self) -> bool:
        """Send what is queued. Returns True once all of it has gone; False
        while it waits (for the socket, or a chunk of a file) or after the
        connection closed."""
        if self.state is not State.WRITING:
            self._enter(State.WRITING)
        try:
            flushed = self._writer.flush()
        except PEER_GONE:
            self.close()
            return False
        except FileChanged:
            self._file_changed()
            return False
        if flushed is Flushed.DONE:
            return True
        if flushed is Flushed.BLOCKED:
            # The send timeout runs from now: it measures a client that
            # stops reading, not a long download.
            self._wait_in(State.WRITING)
        else:
            self._read_next_chunk()
        return False

    def _continue_sending(self) -> None:
        """WRITING, writable: there is room in the socket's buffer again."""
        if self._send() and self._after_sent():
            self._serve()

    def _read_next_chunk(self) -> None:
        """The portable path: have the executor read the next chunk of the file."""
        self._wait_in(State.WAITING_CHUNK)
        self._context.executor.submit(read_chunk, self._writer.chunk_job(),
                                      functools.partial(self._guarded, self._on_chunk))

    def _on_chunk(self, outcome: Outcome) -> None:
        """A chunk job completed (guarded, on the loop thread)."""
        if not self._writer.chunk_arrived():
            return  # closed meanwhile; the file is closed now that no job uses it
        if outcome.error is not None:
            raise outcome.error  # a read error: logged by the guard, and the connection closed
        try:
            self._writer.take_chunk(outcome.value)
        except FileChanged:
            self._file_changed()
            return
        self._enter(State.WRITING)
        self._continue_sending()

    def _file_changed(self) -> None:
        # The file is shorter than the Content-Length we sent: it was
        # truncated under us. Close rather than send a body that does not
        # match its head.
        self._context.log_error(f"file shrank while being sent to {self.client}; connection closed", None)
        self.close()

    def _after_sent(self) -> bool:
        """Everything queued has been sent: do what the last answer's Ending
        says. Returns True if the next request is already buffered (the
        caller goes on serving), False if the connection waits or ended."""
        if self._stream is not None:
            self._send_stream()  # logged when it ends, with every byte it sent
            return False
        unlogged = self._unlogged
        if unlogged is not None:
            self._unlogged = None
            context = self._context
            context.access_log.log(self.client, unlogged[0], unlogged[1], unlogged[2], unlogged[3],
                                   context.reactor.now - unlogged[4])
        ending = self._ending
        if ending.keep_alive:
            if self._context.stopping:
                # The answer promised keep-alive, but the server began to
                # stop meanwhile: nothing more will be answered here.
                self.close()
                return False
            if self._parser.buffer:
                self._started = self._context.reactor.now
                self._wait_in(State.READING_REQUEST)  # its header timeout starts now
                return True
            self._wait_in(State.IDLE)
            return False
        if ending.linger:
            self._linger()
        else:
            self.close()
        return False

    # -- a streaming response ------------------------------------------------------------

    def _on_stream_event(self) -> None:
        """The stream has bytes to send (guarded, on the loop thread). While
        the connection is still WRITING they wait in the stream, which keeps
        a bounded amount: _after_sent takes them once the socket drains."""
        if self.state is State.STREAMING:
            self._send_stream()

    def _send_stream(self) -> None:
        """Send what the stream has; then wait in STREAMING for more. A client
        that stops reading leaves the connection in WRITING, where the send
        timeout closes it."""
        stream = self._stream
        assert stream is not None
        while True:
            data = stream.take()
            if not data:
                if self._context.stopping:
                    # The server began to stop while this was still being
                    # sent (a slow reader, in WRITING): the stream ends here.
                    self.close()
                    return
                self._wait_in(State.STREAMING)
                return
            self._stream_sent += len(data)
            self._writer.add(data)
            if not self._send():
                return  # blocked (WRITING), or closed

    # -- the TLS handshake -------------------------------------------------------------

    def _continue_handshake(self) -> None:
        """HANDSHAKE_WANT_READ readable, HANDSHAKE_WANT_WRITE writable: take the
        handshake as far as the socket allows without blocking."""
        if not tls.is_wrapped(self.sock):
            # Nothing read yet. Peek at the first byte: a TLS client starts
            # with a handshake record; someone typing http:// does not.
            try:
                first = self.sock.recv(1, socket.MSG_PEEK)
            except WOULD_BLOCK:
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
                self._context.reactor.unregister(self.sock)
                self._interest = 0
            try:
                self.sock = tls.wrap(self._context.tls_context, self.sock)
            except OSError:  # reset in between
                self.close()
                return
            self._writer.use_tls(self.sock)
        try:
            step = tls.handshake_step(self.sock)
        except OSError:  # a failed handshake (ssl.SSLError) or a reset: the peer's problem
            self.close()
            return
        if step is tls.Step.WANT_READ:
            self._wait_in(State.HANDSHAKE_WANT_READ, restart_timeout=False)
        elif step is tls.Step.WANT_WRITE:
            self._wait_in(State.HANDSHAKE_WANT_WRITE, restart_timeout=False)
        else:
            self._enter(State.IDLE)
            self._set_deadline(self._context.config.header_timeout)
            self._update_interest()
            if tls.pending(self.sock):  # the request came with the handshake's last flight
                self._receive()

    def _refuse_plain_text(self, first: bytes) -> None:
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
        self._queue(None, error_response(400, "this port speaks HTTPS; use an https:// URL", close=True),
                    self._parser.first_line())
        if self._send():
            self._after_sent()

    # -- closing -------------------------------------------------------------------------

    def _linger(self) -> None:
        """Shut our side, then read and drop what comes until the client
        closes, the linger timeout passes or LINGER_MAX_BYTES arrived (RFC
        9112 §9.6). Closing at once could make the kernel answer the client's
        unread bytes with a reset, which can destroy the answer before the
        client reads it."""
        self._say_goodbye()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._parser.clear()  # what it held will never be read: let it go
        self._wait_in(State.LINGERING)

    def _discard_input(self) -> None:
        """LINGERING, STREAMING, readable: drop what arrived (a bounded amount
        per event, and in all), and close at the client's end of file."""
        for _ in range(LINGER_READS_PER_EVENT):
            try:
                data = self.sock.recv(RECV_BYTES)
            except WOULD_BLOCK:
                return
            except OSError:  # reset, or anything else: we are closing anyway
                self.close()
                return
            self._discarded += len(data)
            if not data or self._discarded > LINGER_MAX_BYTES:
                self.close()
                return

    def _stop_if_idle(self) -> None:
        if self.state is State.IDLE:
            try:
                # The plain socket's own recv, also under TLS (whose recv
                # takes no flags): any byte waiting, encrypted or not, counts.
                arrived = socket.socket.recv(self.sock, 1, socket.MSG_PEEK)
            except OSError:  # nothing waiting (BlockingIOError), or the peer is gone
                arrived = b""
            if not arrived:
                self.close()
        elif (self.state is State.HANDSHAKE_WANT_READ or self.state is State.HANDSHAKE_WANT_WRITE
              or self.state is State.STREAMING):
            self.close()

    def close(self) -> None:
        """Close now. Safe to call more than once and from any state."""
        if self.state is State.CLOSED:
            return
        self._log_interrupted()
        was = self.state
        self._enter(State.CLOSED)
        reactor = self._context.reactor
        if self._interest:
            reactor.unregister(self.sock)
            self._interest = 0
        if self._timer is not None:
            reactor.cancel(self._timer)
            self._timer = None
        if was is not State.LINGERING and was is not State.HANDSHAKE_WANT_READ \
                and was is not State.HANDSHAKE_WANT_WRITE:
            self._say_goodbye()
        self.sock.close()
        self._writer.close()
        if self._stream is not None:
            self._stream.detach()
        self._context.forget(self)

    def _say_goodbye(self) -> None:
        """TLS: send close_notify, so the client knows the end is the end and
        not a cut connection. Best effort: its reply is not waited for."""
        if tls.is_wrapped(self.sock):
            tls.send_close_notify(self.sock)

    def _log_interrupted(self) -> None:
        """Log the answer queued last when the connection ends before it was
        all sent, with as much of its body as went out (as nginx does).
        (Answers sent in full are logged by _queue and _after_sent.)"""
        unlogged = self._unlogged
        if unlogged is None:
            return
        self._unlogged = None
        request, request_line, status, body_length, started = unlogged
        if self._stream is not None:
            body_length = self._stream_sent  # a stream's body is every event it sent
        # It was queued last: the bytes the writer has not sent are the end of its body.
        writer = self._writer
        body_length -= min(body_length, max(0, writer.bytes_queued - writer.bytes_sent))
        context = self._context
        context.access_log.log(self.client, request, request_line, status, body_length,
                               context.reactor.now - started)

    # -- time ------------------------------------------------------------------------------

    def _set_deadline(self, seconds: float) -> None:
        """Arm the connection's single timeout. Performance: moving the
        deadline later costs only an assignment: the timer, when it fires,
        sees the new deadline and sleeps again. So a busy keep-alive
        connection does not create and cancel a timer per request."""
        reactor = self._context.reactor
        deadline = reactor.now + seconds
        self._deadline = deadline
        if self._timer is None or self._timer.when > deadline:
            if self._timer is not None:
                reactor.cancel(self._timer)
            self._timer = reactor.call_later(seconds, self.on_timer)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.state is State.CLOSED:
            return
        remaining = deadline - self._context.reactor.clock()
        if remaining > 0:
            self._timer = self._context.reactor.call_later(remaining, self.on_timer)
            return
        self._deadline = None
        self._on_timeout()

    def _on_timeout(self) -> None:
        if self.state is State.READING_REQUEST:
            self._request = None
            self._queue(None, error_response(408, "the request head took too long", close=True),
                        self._parser.first_line())
            if self._send():
                self._after_sent()
        else:
            # IDLE: keep-alive over. WRITING: the client stopped reading (send
            # timeout). LINGERING: linger over. A handshake: too slow. All
            # close quietly.
            self.close()

    def _ignore(self) -> None:
        """A readiness event the state did not ask for (a stale one): nothing to do."""


# The handlers by state, looked up by on_ready: the method names in WAITS,
# resolved once.
_ON_READABLE = {state: getattr(Connection, wait.on_readable or "_ignore") for state, wait in WAITS.items()}
_ON_WRITABLE = {state: getattr(Connection, wait.on_writable or "_ignore") for state, wait in WAITS.items()}
