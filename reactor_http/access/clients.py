"""Who the client is: the peer, or the address a trusted reverse proxy reports.

Behind a reverse proxy the peer is the proxy. With ``--trusted-proxy``, the
client is the address the proxy reports (Forwarded, RFC 7239, or
X-Forwarded-For), but only when the peer is one of those trusted proxies, and
only as far back along the chain as every hop is trusted. The access log
writes that address, and the address rules and the rate limit judge it: one
answer to "who is this?" for both, so a line in the log names the client a
rule refused.

``client_key`` is what a client's limits are counted under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

# The peer of a Unix domain socket has no address: the server calls it this,
# as nginx logs it, and --trusted-proxy unix: trusts such peers.
UNIX_PEER = "unix:"


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``text`` names, an IPv4 peer mapped into IPv6 by a
    dual-stack listener (::ffff:10.0.0.1) as itself; None if not an address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(client: str) -> str:
    """The key a client's limits are counted under: its IPv4 address, or its
    IPv6 /64. One IPv6 host usually holds a whole /64 (SLAAC, privacy
    addresses): counted by address, it could take a fresh allowance with
    every request. "unix:" (and anything else that is not an address) stands
    for itself."""
    ip = ip_of(client)
    if ip is None:
        return client
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class ClientAddresses:
    """The client's address behind trusted reverse proxies.

    The peer is believed about the client only if it is a trusted proxy.
    Then the chain of addresses it reports (Forwarded's ``for=`` parameters,
    RFC 7239 §5.2, or else X-Forwarded-For), read from the right, is believed
    while each address is a trusted proxy too: the first address that is not
    trusted is the client (as nginx's real_ip_recursive). Anything that is not
    an IP address stops the walk, so nothing but a well-formed address can
    reach the log from these fields."""

    MAX_REMEMBERED = 1024

    def __init__(self, networks: Iterable[Any]):
        networks = tuple(networks)
        # "unix:" stands for every peer on a Unix socket (which has no address).
        self._networks = tuple(network for network in networks if network != UNIX_PEER)
        self._trusted = {UNIX_PEER: UNIX_PEER in networks}  # address text -> bool, remembered

    def is_trusted(self, address: str) -> bool:
        known = self._trusted.get(address)
        if known is None:
            ip = ip_of(address)
            known = ip is not None and any(ip in network for network in self._networks)
            if len(self._trusted) >= self.MAX_REMEMBERED:
                unix_trusted = self._trusted[UNIX_PEER]
                self._trusted.clear()
                self._trusted[UNIX_PEER] = unix_trusted
            self._trusted[address] = known
        return known

    def client(self, peer: str, headers: Mapping[str, str]) -> str:
        if not self.is_trusted(peer):
            return peer
        forwarded = headers.get("forwarded")
        chain = _forwarded_for(forwarded) if forwarded is not None else (
            [part.strip(" \t") for part in headers.get("x-forwarded-for", "").split(",")])
        client = peer
        for address in reversed(chain):
            bare = _bare_address(address)
            if bare is None:
                break
            client = bare
            if not self.is_trusted(bare):
                break
        return client


def _forwarded_for(value: str) -> list[str]:
    """The for= values of a Forwarded field, in order: 'for=192.0.2.43,
    for="[2001:db8::1]:4711";proto=https' -> ['192.0.2.43', '[2001:db8::1]:4711']."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, text = pair.strip(" \t").partition("=")
            if name.lower() == "for":
                found.append(text.strip('"'))
    return found


def _bare_address(text: str) -> str | None:
    """The IP address in an X-Forwarded-For or Forwarded entry (brackets and
    port removed), normalised; None if there is none."""
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:4711
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # 192.0.2.43:4711
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
