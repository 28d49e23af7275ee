"""The access log (one Common Log Format line per response) and the error log.

Access-log lines are collected in memory and written together, like nginx's
``access_log ... buffer= flush=``: when FLUSH_SECONDS have passed since the
first line waiting, when FLUSH_LINES are waiting, and when the server stops.
So a busy server makes one write system call per few hundred requests rather
than one per request, and a line is still on screen within a moment.
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

# A line waits at most this long before it is written...
FLUSH_SECONDS = 0.5
# ...and at most this many lines wait (some 32 KiB of text).
FLUSH_LINES = 400


def escape(text):
    """Make text from the network safe to print in a log line."""
    # Nearly every request line is printable ASCII without a quote or a
    # backslash: check that in C, and skip the translation (a Python-level
    # mapping lookup per character).
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def _clf_time(now):
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


class AccessLog:
    """Buffers Common Log Format lines and writes them in batches (see above)."""

    def __init__(self, reactor, stream=None, enabled=True):
        self._reactor = reactor
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self._lines = []
        self._flush_timer = None
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
        lines = self._lines
        lines.append(line)
        if len(lines) >= FLUSH_LINES:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = self._reactor.call_later(FLUSH_SECONDS, self._on_flush_timer)

    def _on_flush_timer(self):
        # One timer at a time: it writes whatever is waiting when it fires, so
        # no line waits longer than FLUSH_SECONDS.
        self._flush_timer = None
        self.flush()

    def flush(self):
        """Write the waiting lines now (at the timer, when full, and at exit)."""
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
