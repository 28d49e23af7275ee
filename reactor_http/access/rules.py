"""``--allow`` and ``--deny``: which client addresses may ask at all.

The rules are tried in the order given and the first that matches decides,
as nginx's allow and deny directives are. What happens when none matches is
the one place this differs from nginx, which then allows: here the answer is
the opposite of the last rule's. So a list that ends in ``--allow`` is an
allow-list (``--allow 10.0.0.0/8`` alone admits that network and no one
else, where nginx would need a ``deny all`` after it, and admits everyone
without it), and a list that ends in ``--deny`` is a block-list
(``--deny 192.0.2.7`` alone refuses that one address). Every nginx list that
ends in ``deny all`` or in a ``deny`` means the same here; one that ends in
``allow`` would, in nginx, make that last rule do nothing.

A rule names an address, a CIDR block, ``all``, or ``unix:`` (every peer of a
Unix domain socket, which has no address). The address judged is the
client's (clients.py: the peer, or what a trusted proxy reports).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from .clients import UNIX_PEER, ip_of

ALL = "all"

ALLOW, DENY = "allow", "deny"


def rule_network(text: str) -> Any:
    """The network a rule names: an ip_network, "all" or "unix:". ValueError otherwise."""
    text = text.strip()
    if text in (ALL, UNIX_PEER):
        return text
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address, a CIDR block, 'all' or 'unix:': {text!r}") from None


class AddressRules:
    """The rules, first match wins; the answer for a client is remembered
    (the rules never change while the server runs)."""

    MAX_REMEMBERED = 4096

    def __init__(self, rules: Iterable[tuple[str, Any]]):
        self.rules = tuple(rules)
        if not self.rules:
            raise ValueError("no rules")
        for action, _ in self.rules:
            if action not in (ALLOW, DENY):
                raise ValueError(f"a rule is allow or deny, not {action!r}")
        # Nothing matched: the opposite of the last rule (see above).
        self.otherwise = self.rules[-1][0] == DENY
        self._answers: dict[str, bool] = {}

    def allows(self, client: str) -> bool:
        answer = self._answers.get(client)
        if answer is None:
            answer = self._decide(client)
            if len(self._answers) >= self.MAX_REMEMBERED:
                self._answers.clear()  # a flood of addresses: start again, bounded
            self._answers[client] = answer
        return answer

    def _decide(self, client: str) -> bool:
        ip = ip_of(client)
        for action, network in self.rules:
            if network == ALL:
                matches = True
            elif network == UNIX_PEER:
                matches = client == UNIX_PEER
            else:
                matches = ip is not None and ip in network
            if matches:
                return action == ALLOW
        return self.otherwise
