"""What a connection needs from the server around it, and nothing more.

A Connection is given one ConnectionContext, shared by every connection of a
server, instead of the server itself: the reactor it registers with, the
executor it hands jobs to, the settings, the handler that answers requests,
the logs, and a few things made once per server (the head renderer, the
parsed-head memo, the TLS context). So a connection can be built, and each of
its states driven, in a unit test with fakes (tests/connection/), no server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .writer import ChunkBudget

if TYPE_CHECKING:
    from ..config import Config
    from ..http1.fast_path import HeadMemo
    from ..http1.handler import Handler
    from ..http1.parser import Request
    from ..http1.responses import HeadRenderer
    from ..loop.executor import BlockingExecutor
    from ..loop.reactor import Reactor
    from .states import State


class AccessLog(Protocol):
    def log(self, client: str, request: Request | None, request_line: str, status: int,
            body_bytes: int, seconds: float = 0.0) -> None:
        """Record one response: who asked, what, the status, the body bytes
        sent, and the seconds from its request's first byte to its last."""


@dataclass
class ConnectionContext:
    reactor: Reactor
    executor: BlockingExecutor
    config: Config
    handler: Handler
    access_log: AccessLog
    log_error: Callable[[str, BaseException | None], None]
    renderer: HeadRenderer
    head_memo: HeadMemo | None = None
    tls_context: Any = None          # an ssl.SSLContext: every connection starts with a handshake
    use_sendfile: bool = True
    # Called once by each connection as it closes (the server forgets it).
    forget: Callable[[Any], None] = lambda connection: None
    # Set by the server when a graceful stop begins: answers then say
    # Connection: close, and idle connections close.
    stopping: bool = False
    # The seconds each state's timeout lasts (from WAITS and the config).
    timeouts: dict[State, float] = field(default_factory=dict)
    # The file bytes the portable path may hold in memory, all connections together.
    chunk_budget: ChunkBudget = field(default_factory=ChunkBudget)
    # Whether the portable path reads chunks the page cache holds on the loop
    # thread (writer.py); off where every read must go through the executor
    # (the --disk-delay and --file-work-on-loop experiments).
    read_chunks_on_loop: bool = True

    def __post_init__(self) -> None:
        from .states import WAITS
        self.timeouts = {state: getattr(self.config, wait.timeout)
                         for state, wait in WAITS.items() if wait.timeout is not None}
