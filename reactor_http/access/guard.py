"""The guard: a Handler in front of the status page and the site.

For every request, in this order, each step only if configured:

1. the address rules (``--allow``/``--deny``): 403, with no detail of which
   rule refused (RFC 9110 §15.5.4 lets a server say nothing of why);
2. the rate limit (``--rate-limit``): 429 Too Many Requests with
   ``Retry-After`` (RFC 6585 §4). It comes before the password so that
   guessing passwords is limited too, and a refused guess costs no hash;
3. the password (``--auth-file``): 401 with the challenge (basic.py).

Then the request goes on to the next handler. It runs before the site on
every request, the repeated ones that the fast path answers from memory
included (http1/fast_path.py: the site remembers answers by request, and
never sees a request the guard refused), so a remembered answer is never
given to a client these rules refuse.

The client judged is the one clients.py names: the peer, or the address a
trusted proxy reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..http1.responses import Response, error_response
from .basic import BasicAuth
from .clients import ClientAddresses, client_key
from .limits import RateLimiter, retry_after_seconds
from .passwords import read_password_file
from .rules import AddressRules

if TYPE_CHECKING:
    from ..config import Config
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request

FORBIDDEN = error_response(403)


def unauthorized(realm: str) -> Response:
    """The 401 with its challenge (RFC 7617 §2, §2.1). Made once, shared:
    a Response is never changed once made."""
    return error_response(401, None, f'WWW-Authenticate: Basic realm="{realm}", charset="UTF-8"\r\n')


def too_many_requests(wait: float) -> Response:
    return error_response(429, None, f"Retry-After: {retry_after_seconds(wait)}\r\n")


class AccessGuard:
    """Refuses what the rules, the rate limit or the password refuse; hands on the rest."""

    MAX_KEYS = 4096

    def __init__(self, next_handler: Handler, clients: ClientAddresses | None = None,
                 rules: AddressRules | None = None, rate: RateLimiter | None = None,
                 auth: BasicAuth | None = None):
        self.next = next_handler
        self.clients = clients
        self.rules = rules
        self.rate = rate
        self.auth = auth
        self._keys: dict[str, str] = {}  # client -> client_key(client), remembered

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        client = exchange.client
        if self.clients is not None:
            client = self.clients.client(client, request.headers)
        if self.rules is not None and not self.rules.allows(client):
            return FORBIDDEN
        if self.rate is not None:
            wait = self.rate.take(self._key(client))
            if wait:
                return too_many_requests(wait)
        auth = self.auth
        if auth is not None and auth.protects(request):
            return auth.handle(request, exchange, self.next)
        return self.next.handle(request, exchange)

    def _key(self, client: str) -> str:
        keys = self._keys
        key = keys.get(client)
        if key is None:
            if len(keys) >= self.MAX_KEYS:
                keys.clear()
            key = keys[client] = client_key(client)
        return key

    def reload(self) -> None:
        """SIGHUP: the password file is read again."""
        if self.auth is not None:
            self.auth.reload()


def access_configured(config: Config) -> bool:
    """Whether any feature of this package is asked for (else no guard at all)."""
    return bool(config.auth_file or config.access_rules or config.rate_limit)


def build_guard(config: Config, next_handler: Handler, clock: Callable[[], float],
                log_error: Callable[[str, BaseException | None], None]) -> AccessGuard | None:
    """The guard the settings ask for in front of ``next_handler``, or None
    when they ask for none. Reads the password file (PasswordFileError)."""
    if not access_configured(config):
        return None
    auth = None
    if config.auth_file:
        auth = BasicAuth(config.auth_file, read_password_file(config.auth_file), unauthorized(config.auth_realm),
                         clock, log_error, config.auth_path)
    rate = None
    if config.rate_limit:
        count, period = config.rate_limit
        rate = RateLimiter(count / period, config.rate_burst, clock)
    return AccessGuard(next_handler,
                       clients=ClientAddresses(config.trusted_proxies) if config.trusted_proxies else None,
                       rules=AddressRules(config.access_rules) if config.access_rules else None,
                       rate=rate, auth=auth)
