"""Writing to a terminal or a pipe that may have gone away.

A server started in a terminal outlives it if nobody stops it; one started as
``reactor-http | head`` sees its reader exit. Either way its next write fails
(EIO from a hung-up terminal, EPIPE from a closed pipe), and an unguarded
``print`` would crash the server, or, retried on every line, keep it busy
failing. ``write`` makes one failure final: the stream's descriptor is
pointed at /dev/null, so that nothing, not even the interpreter's last flush
at exit, writes there again, and the server finishes what it was doing and
exits with the status it would have had.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def started_in_terminal() -> bool:
    """Whether standard input, output or error is a terminal: then a SIGHUP
    means the terminal was closed, and the server should stop, as python -m
    http.server does. A service has none, and SIGHUP means "reopen the log"."""
    return any(_is_terminal(stream) for stream in (sys.stdin, sys.stdout, sys.stderr))


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        return False


def write(stream: TextIO | None, text: str) -> bool:
    """Write and flush ``text``. Returns False, once the stream has failed
    (and from then on, since it then writes to /dev/null, True again)."""
    if stream is None:
        return False
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):
        silence(stream)
        return False


def silence(stream: TextIO) -> None:
    """Point the stream's descriptor at /dev/null (what is buffered is dropped)."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)
    try:
        stream.flush()  # what was buffered now goes nowhere, and no error is left pending
    except (OSError, ValueError):
        pass
