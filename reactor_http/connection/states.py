"""The connection's states: what each waits for, who handles it, and every legal move.

Read this before connection.py: these tables are the state machine, and the
Connection class only carries them out.

- WAITS says, for each state, what the socket waits for (its interest in the
  selector), which timeout bounds the wait, and which method of Connection
  handles the socket becoming readable or writable in that state. The
  connection does not decide what a readiness event means: it looks it up
  here, by its state (as h11's READERS table and darkhttpd's switch do).
- TRANSITIONS lists every move from one state to another, with the reason it
  happens. ``Connection._enter``, the one place the state changes, refuses
  any move that is not here.

docs/state-diagram.md is drawn from both (scripts/state_diagram.py), and a
test fails when the drawing and these tables disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..loop.reactor import EVENT_READ, EVENT_WRITE


class State(enum.Enum):
    # TLS only: the handshake waits for the client's next bytes.
    HANDSHAKE_WANT_READ = "handshake-want-read"
    # TLS only: the handshake has bytes to send and the socket is full.
    HANDSHAKE_WANT_WRITE = "handshake-want-write"
    # Keep-alive: no byte of the next request yet.
    IDLE = "idle"
    # Part of a request (its head, or a body being framed and dropped) has
    # arrived; answers to complete requests collect here before being sent.
    READING_REQUEST = "reading-request"
    # The handler asked the executor for a blocking job (find, open a file):
    # nothing to wait for on the socket, and not reading is the backpressure
    # on a client that pipelines faster than we answer.
    WAITING_EXECUTOR = "waiting-executor"
    # Sending answers; the connection stays here only while the socket is full.
    WRITING = "writing"
    # The portable path (no sendfile: TLS, or --no-sendfile): the executor is
    # reading the next chunk of the file being sent.
    WAITING_CHUNK = "waiting-chunk"
    # A streaming response (Server-Sent Events: the live page's feed): its
    # head and every event so far are sent, and it waits for the next event.
    # The client's input is read and dropped, to notice it leaving.
    STREAMING = "streaming"
    # The last answer is sent and our side shut: reading and dropping what
    # the client still sends, until it closes (RFC 9112 §9.6).
    LINGERING = "lingering"
    # The socket is closed; late completions are dropped (and their files closed).
    CLOSED = "closed"

    # Performance: members are singletons, so identity is a fine hash, and a
    # C one: Enum's own __hash__ is Python code, run for every table look-up.
    __hash__ = object.__hash__


@dataclass(frozen=True)
class Wait:
    """What a state waits for. ``timeout`` names the Config field that bounds
    the wait; ``on_readable``/``on_writable`` name the Connection method
    that handles that readiness (None: the state never asks for it). A state
    that waits for the executor instead names the method its job's
    completion arrives at (``on_completion``)."""

    interest: int
    timeout: str | None = None
    on_readable: str | None = None
    on_writable: str | None = None
    on_completion: str | None = None


WAITS = {
    State.HANDSHAKE_WANT_READ: Wait(EVENT_READ, "handshake_timeout", on_readable="_continue_handshake"),
    State.HANDSHAKE_WANT_WRITE: Wait(EVENT_WRITE, "handshake_timeout", on_writable="_continue_handshake"),
    State.IDLE: Wait(EVENT_READ, "keepalive_timeout", on_readable="_receive"),
    State.READING_REQUEST: Wait(EVENT_READ, "header_timeout", on_readable="_receive"),
    State.WAITING_EXECUTOR: Wait(0, on_completion="_on_job_done"),
    State.WRITING: Wait(EVENT_WRITE, "send_timeout", on_writable="_continue_sending"),
    State.WAITING_CHUNK: Wait(0, on_completion="_on_chunk"),
    State.STREAMING: Wait(EVENT_READ, on_readable="_discard_input"),
    State.LINGERING: Wait(EVENT_READ, "linger_timeout", on_readable="_discard_input"),
    State.CLOSED: Wait(0),
}

# When each timeout starts, which the table cannot say on its own:
# - the handshake's runs from accept, across both handshake states;
# - a new connection waits in IDLE for its first request for header_timeout,
#   later ones for keepalive_timeout;
# - the header timeout runs from a request's first byte and is not reset by
#   later bytes: a byte every few seconds buys no time;
# - the send timeout is reset by every send that makes progress: it bounds a
#   client that stops reading, not a long download.

# Where a connection's life begins.
INITIAL_STATES = {
    State.IDLE: "accepted",
    State.HANDSHAKE_WANT_READ: "accepted on a TLS listener",
}

_GONE = "peer closed or reset, timed out, or the server stopped"

# Every legal transition, with the reason it happens (ALLOWED, below, is the
# same table by the state moved from, for Connection._enter).
TRANSITIONS = {
    (State.HANDSHAKE_WANT_READ, State.HANDSHAKE_WANT_WRITE): "the TLS handshake has bytes to send",
    (State.HANDSHAKE_WANT_WRITE, State.HANDSHAKE_WANT_READ): "the TLS handshake needs the client's reply",
    (State.HANDSHAKE_WANT_READ, State.IDLE): "TLS handshake done",
    (State.HANDSHAKE_WANT_WRITE, State.IDLE): "TLS handshake done",
    (State.HANDSHAKE_WANT_READ, State.WRITING): "plain HTTP on the TLS port: answered with 400",
    (State.HANDSHAKE_WANT_READ, State.CLOSED): "handshake failed; " + _GONE,
    (State.HANDSHAKE_WANT_WRITE, State.CLOSED): "handshake failed; " + _GONE,
    (State.IDLE, State.READING_REQUEST): "bytes of a request arrived",
    (State.IDLE, State.CLOSED): _GONE,
    (State.READING_REQUEST, State.WAITING_EXECUTOR): "the handler needs the disk",
    (State.READING_REQUEST, State.WRITING): "answered at once: from the cache, an error, a batch",
    (State.READING_REQUEST, State.CLOSED): _GONE,
    (State.WAITING_EXECUTOR, State.WRITING): "the handler's job completed: its answer",
    (State.WAITING_EXECUTOR, State.CLOSED): _GONE,
    (State.WRITING, State.WAITING_CHUNK): "portable path: the next chunk of the file is needed",
    (State.WRITING, State.IDLE): "sent; keep-alive",
    (State.WRITING, State.READING_REQUEST): "sent; keep-alive, and the next request is buffered",
    (State.WRITING, State.LINGERING): "sent the last answer; the client may still be sending",
    (State.WRITING, State.CLOSED): "sent the last answer; or " + _GONE,
    (State.WRITING, State.STREAMING): "sent; a streaming response waits for its next event",
    (State.STREAMING, State.WRITING): "the stream has an event to send",
    (State.STREAMING, State.CLOSED): "the client closed or sent too much, or the server stopped",
    (State.WAITING_CHUNK, State.WRITING): "the chunk was read",
    (State.WAITING_CHUNK, State.CLOSED): "the file shrank or could not be read; or " + _GONE,
    (State.LINGERING, State.CLOSED): "the client closed, the linger timeout passed, or too much arrived",
}

# Performance: what _enter checks, and what _update_interest sets, looked up
# without building a tuple or reading a Wait on every move.
ALLOWED = {state: frozenset(target for source, target in TRANSITIONS if source is state) for state in State}
INTEREST = {state: wait.interest for state, wait in WAITS.items()}
