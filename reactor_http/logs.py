"""The access log (one Common Log Format line per response) and the error log.

Access-log lines are collected during a turn of the loop and written together
at its end: one write system call per turn rather than one per request, and
still on screen within a moment of the response.
"""

import sys
import time
import traceback

# Bytes that must not reach a terminal or a log parser as themselves: control
# characters (terminal escapes), the quote that delimits the request line, the
# backslash that escapes, and everything outside printable ASCII.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0x100))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def escape(text):
    """Make text from the network safe to print in a log line."""
    return text.translate(_ESCAPES)


def _clf_time(now):
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


class AccessLog:
    """Buffers Common Log Format lines and flushes them at the end of a loop turn."""

    def __init__(self, reactor, stream=None, enabled=True):
        self._reactor = reactor
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self._lines = []
        self._second = None
        self._time_text = ""

    def log(self, client, request_line, status, body_bytes):
        """Record one response: client address, request line, status, body bytes sent."""
        if not self.enabled:
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._time_text = _clf_time(now)
        size = str(body_bytes) if body_bytes else "-"
        line = f'{client} - - [{self._time_text}] "{escape(request_line)}" {status} {size}\n'
        if not self._lines:
            self._reactor.call_soon(self.flush)
        self._lines.append(line)

    def flush(self):
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed or a full pipe: never let logging kill the server


def log_error(message, error=None):
    """Write an error (with its traceback, if any) to stderr, once."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    text = f"[{stamp}] reactor_http: {message}\n"
    if error is not None:
        text += "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
