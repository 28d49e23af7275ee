"""The access log (one line per response) and the error log.

Access-log lines are collected in memory and written together, like nginx's
``access_log ... buffer= flush=``: when FLUSH_SECONDS have passed since the
first line waiting, when FLUSH_LINES are waiting, and when the server stops.
So a busy server makes one write system call per few hundred requests rather
than one per request, and a line is still on screen within a moment.

Three formats (``--log-format``): ``common`` (the Common Log Format of NCSA
httpd, Apache and nginx), ``combined`` (the same plus the Referer and
User-Agent fields) and ``json`` (one object per line). ``--log-time`` ends a
common or combined line with the seconds the response took (from the first
byte of its request to the last byte handed to the kernel, as nginx's
$request_time); a json line always has them, as ``seconds``. On a terminal
(``--color auto``, unless NO_COLOR is set) lines are coloured by status
class. Whatever the format, nothing a client sent reaches the log unescaped:
no control character or terminal escape, no quote that would end a field
early.

Behind a reverse proxy the peer is the proxy. With ``--trusted-proxy``, the
client address logged is the one the proxy reports (Forwarded, RFC 7239, or
X-Forwarded-For), but only when the peer is one of those trusted proxies, and
only as far back along the chain as every hop is trusted: access/clients.py
decides it, for the access rules too.

No line holds the Authorization field, in any format: only the request line,
and in ``combined`` and ``json`` the Referer and User-Agent, come from the
request (tests/e2e/test_access.py checks each format).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from ..access.clients import ClientAddresses
from . import output

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


FORMATS = ("common", "combined", "json")

# ANSI colours by status class, as serve and http-server show them: 2xx green,
# 3xx cyan, 4xx yellow, 5xx red.
_COLOURS = {2: "32", 3: "36", 4: "33", 5: "31"}


def wants_colour(choice, stream, environ=os.environ):
    """--color auto|always|never, and the NO_COLOR convention (no-color.org)."""
    if choice != "auto":
        return choice == "always"
    if "NO_COLOR" in environ:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _clf_time(now):
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


def _iso_time(now):
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))


class AccessLog:
    """Buffers access-log lines and writes them in batches (see above).

    It also counts every response, logged or not (``responses``,
    ``body_bytes``), for the status page. Loop thread only."""

    def __init__(self, reactor, stream=None, enabled=True, path=None, log_format="common",
                 trusted_proxies=(), log_time=False, color="never"):
        self._reactor = reactor
        self._path = path
        if path is not None:
            stream = open_log_file(path)
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self._format = {"common": self._common, "combined": self._combined, "json": self._json}[log_format]
        self._log_time = log_time
        self._colour = log_format != "json" and wants_colour(color, self._stream)
        self._trusted = ClientAddresses(trusted_proxies) if trusted_proxies else None
        self._lines = []
        self._flush_timer = None
        self._second = None
        self._time_text = ""
        self.responses = 0
        self.body_bytes = 0
        # With --metrics-path (count_for_metrics): responses by status class
        # (index 1-5) and a histogram of their times. None otherwise, so that
        # a server without metrics pays nothing for them.
        self.by_class = None
        self.timings = None

    def count_for_metrics(self, timings):
        """Count responses by status class, and their times in ``timings``
        (a loop.reactor.Histogram), from now on."""
        self.by_class = [0] * 6
        self.timings = timings

    def log(self, client, request, request_line, status, body_bytes, seconds=0.0):
        """Record one response: the peer's address, the Request (None when the
        head could not be parsed), the request line as received, the status,
        the body bytes sent and the seconds it took."""
        self.responses += 1
        self.body_bytes += body_bytes
        if self.timings is not None:
            self.by_class[status // 100] += 1
            self.timings.observe(seconds)
        if not self.enabled:
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._time_text = _clf_time(now) if self._format != self._json else _iso_time(now)
        if self._trusted is not None and request is not None:
            client = self._trusted.client(client, request.headers)
        line = self._format(client, request, request_line, status, body_bytes, seconds)
        if self._log_time and self._format != self._json:
            line += f" {seconds:.3f}"
        if self._colour:
            line = f"\x1b[{_COLOURS.get(status // 100, '0')}m{line}\x1b[0m"
        lines = self._lines
        lines.append(line + "\n")
        if len(lines) >= FLUSH_LINES:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = self._reactor.call_later(FLUSH_SECONDS, self._on_flush_timer)

    # -- the formats -----------------------------------------------------------------

    def _common(self, client, request, request_line, status, body_bytes, seconds):
        size = str(body_bytes) if body_bytes else "-"
        return f'{client} - - [{self._time_text}] "{escape(request_line)}" {status} {size}'

    def _combined(self, client, request, request_line, status, body_bytes, seconds):
        headers = request.headers if request is not None else {}
        referer = escape(headers.get("referer", "-"))
        user_agent = escape(headers.get("user-agent", "-"))
        return (f'{self._common(client, request, request_line, status, body_bytes, seconds)}'
                f' "{referer}" "{user_agent}"')

    def _json(self, client, request, request_line, status, body_bytes, seconds):
        headers = request.headers if request is not None else {}
        record = {
            "time": self._time_text, "client": client, "request": request_line,
            "method": request.method if request is not None else None,
            "target": request.target if request is not None else None,
            "protocol": request.version if request is not None else None,
            "status": status, "bytes": body_bytes, "seconds": round(seconds, 6),
            "referer": headers.get("referer"), "user_agent": headers.get("user-agent"),
        }
        # ensure_ascii: every control or non-ASCII character becomes \uXXXX.
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"))

    # -- writing -------------------------------------------------------------------------

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
            # A terminal closed or a pipe's reader gone: the log stops there,
            # the server goes on (output.py).
            output.write(self._stream, text)

    def reopen(self):
        """SIGHUP: write what waits to the old file, then open the path again
        (logrotate has moved the old file away). Nothing to do for stdout."""
        if self._path is None:
            return
        self.flush()
        try:
            stream = open_log_file(self._path)
        except OSError as error:
            log_error(f"cannot reopen --access-log {self._path}: {error.strerror or error}; "
                      f"still writing to the old file")
            return
        old, self._stream = self._stream, stream
        old.close()

    def close(self):
        self.flush()
        if self._path is not None:
            self._stream.close()


def open_log_file(path):
    """The access-log file, opened for appending (created if missing)."""
    return open(path, "a", encoding="utf-8", newline="\n")


def log_error(message, error=None):
    """Write an error (with its traceback, if any) to stderr, once."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    text = f"[{stamp}] reactor_http: {message}\n"
    if error is not None:
        text += "".join(traceback.format_exception(type(error), error, error.__traceback__))
    output.write(sys.stderr, text)
