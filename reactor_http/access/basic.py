"""Basic authentication (RFC 7617): the Authorization field checked against the password file.

A request without good credentials gets 401 with ``WWW-Authenticate: Basic
realm="...", charset="UTF-8"`` (RFC 9110 §15.5.2 and §11.6.1: a 401 must
carry a challenge; RFC 7617 §2.1: charset says the server expects UTF-8).
The user-id and password are the base64 text after ``Basic`` (the scheme
matched in any case, RFC 9110 §11.1), split at the first colon (RFC 7617 §2:
the user-id cannot hold one).

Checking a password is slow on purpose (bcrypt, scrypt), so it never runs on
the loop thread: the check is an executor job, asked for with
``exchange.run_blocking`` as the handler contract says (http1/handler.py),
and the request goes on when it is done. Then, so that a browser's every
request does not cost a check, a success is remembered: keyed by a SHA-256
digest of the exact Authorization value (the value itself, a password in
base64, is kept nowhere), at most MAX_VERIFIED of them, least recently used
out first, all forgotten when the file changes. An unknown user's password is
checked too, against another user's hash, so that how long a 401 takes does
not tell which users exist.

The file is read again when it changes (its inode, modification time or
size; looked at at most once every CHECK_INTERVAL seconds) and after SIGHUP.
That stat and read are an executor job too, made by the first request that
finds the time has come. A file that cannot be read or used then leaves the
users of the last good reading in force, and says so on stderr: a mistake
while editing neither lets anyone in nor locks everyone out.

``--auth-path`` protects one part of the site: a path is compared segment by
segment after percent-decoding and without regard to case, so that neither
``/%70rivate/`` nor ``/PRIVATE/`` (on a case-insensitive file system) reaches
the files under ``/private/`` without a password; a target that cannot be
decoded is protected.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from .passwords import PasswordTable, Reread, file_stamp, reread, verify

if TYPE_CHECKING:
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request
    from ..http1.responses import Response

_BASIC = re.compile(r"[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/]+=*) *")
_ABSOLUTE_FORM = re.compile(r"[hH][tT][tT][pP][sS]?://[^/?#]*")


def basic_credentials(value: str) -> tuple[str, bytes] | None:
    """(user-id, password bytes) from an Authorization value, or None if it
    is not well-formed Basic credentials."""
    match = _BASIC.fullmatch(value)
    if match is None:
        return None
    try:
        decoded = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def path_segments(target: str) -> list[str] | None:
    """The decoded, case-folded segments of a request target's path, "." and
    empty ones dropped; None when it cannot be told (".." or not UTF-8)."""
    if target[:1] != "/":
        match = _ABSOLUTE_FORM.match(target)
        if match is None:
            return [] if target == "*" else None
        target = target[match.end():]
    path = target.partition("?")[0].partition("#")[0]
    try:
        text = unquote_to_bytes(path).decode("utf-8") if "%" in path else path
    except UnicodeDecodeError:
        return None
    segments = []
    for segment in text.split("/"):
        if segment == "" or segment == ".":
            continue
        if segment == "..":
            return None
        segments.append(segment.casefold())
    return segments


def is_cors_preflight(request: Request) -> bool:
    """A CORS preflight never carries credentials (the Fetch standard): it
    must be answered without them, or no cross-origin page could ask."""
    headers = request.headers
    return request.method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


class BasicAuth:
    """The password check, for the guard (guard.py) to call on each protected request."""

    CHECK_INTERVAL = 1.0
    MAX_VERIFIED = 1024

    def __init__(self, path: str, table: PasswordTable, challenge: Response, clock: Callable[[], float],
                 log_error: Callable[[str, BaseException | None], None], protected_path: str = "/"):
        self.path = path
        self.table = table
        self.challenge = challenge
        self._clock = clock
        self._log_error = log_error
        segments = path_segments(protected_path)
        self._prefix = segments or None  # None: the whole site
        try:
            self._stamp: tuple | None = file_stamp(path)
        except OSError:
            self._stamp = None
        self._checked_at = clock()
        self._forced = False
        self._reading = False
        self._last_error: str | None = None
        self._verified: OrderedDict[bytes, str] = OrderedDict()  # digest -> user

    # -- what is protected ------------------------------------------------------------------

    def protects(self, request: Request) -> bool:
        if is_cors_preflight(request):
            return False
        prefix = self._prefix
        if prefix is None:
            return True
        segments = path_segments(request.target)
        return segments is None or segments[:len(prefix)] == prefix

    # -- the file ---------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the file again before the next protected request is answered."""
        self._forced = True

    def _due(self) -> bool:
        if self._reading:
            return False  # one reading at a time; meanwhile the current users answer
        return self._forced or self._clock() - self._checked_at >= self.CHECK_INTERVAL

    def _after_reread(self, request: Request, exchange: Exchange, next_handler: Handler,
                      result: Reread) -> Response | None:
        self._reading = False
        self.install(result)
        return self._authenticate(request, exchange, next_handler)

    def install(self, result: Reread) -> None:
        """Take what ``reread`` found: a new table (successes forgotten), nothing, or an error."""
        if result.error is not None:
            if result.error != self._last_error:
                self._log_error(f"{result.error}; the users read before stay in force", None)
            self._last_error = result.error
            return
        if self._last_error is not None:
            self._log_error(f"--auth-file {self.path} is read again", None)
            self._last_error = None
        if result.table is None:
            return
        self.table = result.table
        self._stamp = result.stamp
        self._verified.clear()
        for warning in result.table.warnings:
            self._log_error(warning, None)
        if not result.table.users:
            self._log_error(f"--auth-file {self.path} has no users now: every protected request is refused",
                            None)

    # -- a request ----------------------------------------------------------------------------

    def handle(self, request: Request, exchange: Exchange, next_handler: Handler) -> Response | None:
        """The Handler contract: hand the request on if its credentials are
        good, answer 401 if not; or None after one ``run_blocking`` (the file
        looked at, or a password checked)."""
        if self._due():
            self._reading = True
            self._checked_at = self._clock()
            force, self._forced = self._forced, False
            exchange.run_blocking(reread, (self.path, self._stamp, force),
                                  functools.partial(self._after_reread, request, exchange, next_handler))
            return None
        return self._authenticate(request, exchange, next_handler)

    def _authenticate(self, request: Request, exchange: Exchange, next_handler: Handler) -> Response | None:
        value = request.headers.get("authorization")
        if value is None:
            return self.challenge
        key = hashlib.sha256(value.encode("latin-1")).digest()
        verified = self._verified
        if key in verified:
            verified.move_to_end(key)
            return next_handler.handle(request, exchange)
        credentials = basic_credentials(value)
        if credentials is None:
            return self.challenge
        user, password = credentials
        table = self.table
        entry = table.users.get(user)
        known = entry is not None
        if entry is None:
            entry = table.decoy
            if entry is None:
                return self.challenge
        exchange.run_blocking(verify, (entry.scheme, entry.hash, password),
                              functools.partial(self._after_verify, request, exchange, next_handler, key,
                                                user if known else None, entry))
        return None

    def _after_verify(self, request: Request, exchange: Exchange, next_handler: Handler, key: bytes,
                      user: str | None, entry: Any, matched: bool) -> Response | None:
        if not matched or user is None:
            return self.challenge
        if self.table.users.get(user) != entry:
            return self.challenge  # the file changed while the check ran: that line is gone
        verified = self._verified
        verified[key] = user
        if len(verified) > self.MAX_VERIFIED:
            verified.popitem(last=False)
        return next_handler.handle(request, exchange)

    def __len__(self) -> int:
        """Successes remembered."""
        return len(self._verified)
