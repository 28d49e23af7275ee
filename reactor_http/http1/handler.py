"""The seam between a connection and whatever answers its requests.

A connection knows how to read requests and send responses; it does not know
what a request means. That is a Handler's job (the static site, and the status
page in front of it). The two meet here, and only here: the connection calls
``handle``, and the handler sees the connection only as an Exchange.

The contract, one rule: ``handle`` returns the Response now, or it returns
None after asking ``exchange.run_blocking(job, args, then)`` exactly once.
The job runs on the executor; ``then(value)`` runs later on the loop thread
with what the job returned, and follows the same rule: a Response, or None
after one more ``run_blocking``. So a request that needs the disk twice (find
the file, then open it) is two jobs chained, and the loop thread never waits.
If a job raises, ``then`` is not called: the connection answers 500 and logs
the traceback, as it does when ``handle`` or ``then`` raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .parser import Request
from .responses import Response

# What ``then`` returns: the answer, or None when it asked for another job.
Continuation = Callable[[Any], Response | None]


class Exchange(Protocol):
    """The connection, as a handler sees it."""

    client: str  # the peer's address as text ("unix:" on a Unix socket)

    def run_blocking(self, job: Callable[..., Any], args: tuple, then: Continuation,
                     shared: bool = False) -> None:
        """Run ``job(*args)`` on the executor, then ``then(its result)`` on the
        loop thread. With ``shared`` (``args`` hashable), a job equal to one
        still running is not run again: ``then`` gets that one's result, so it
        must treat the result as shared with other requests."""


class Handler(Protocol):
    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        """The response now, or None after one ``exchange.run_blocking``."""
