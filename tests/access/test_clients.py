"""Who the client is (access/clients.py): the peer, or what a trusted proxy
reports; and the key a client's limits are counted under."""

import ipaddress

import pytest

from reactor_http.access.clients import ClientAddresses, client_key

PROXIES = ClientAddresses([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")])


@pytest.mark.parametrize("peer, headers, client", [
    # Not a trusted peer: its claims are ignored.
    ("192.0.2.1", {"x-forwarded-for": "198.51.100.7"}, "192.0.2.1"),
    # A trusted proxy: the address it names.
    ("10.0.0.5", {"x-forwarded-for": "198.51.100.7"}, "198.51.100.7"),
    # A chain: from the right, through trusted proxies, to the first untrusted.
    ("10.0.0.5", {"x-forwarded-for": "203.0.113.9, 198.51.100.7, 10.1.1.1"}, "198.51.100.7"),
    # The client's own claim to the left of it is not believed.
    ("10.0.0.5", {"x-forwarded-for": "1.2.3.4, 198.51.100.7"}, "198.51.100.7"),
    # Everything trusted: the leftmost.
    ("10.0.0.5", {"x-forwarded-for": "10.9.9.9, 10.1.1.1"}, "10.9.9.9"),
    # Garbage stops the walk: what was last believed stands.
    ("10.0.0.5", {"x-forwarded-for": "evil\x1b[31m, 10.1.1.1"}, "10.1.1.1"),
    ("10.0.0.5", {"x-forwarded-for": "not-an-address"}, "10.0.0.5"),
    # Forwarded (RFC 7239), with a port and with an IPv6 literal.
    ("10.0.0.5", {"forwarded": 'for=198.51.100.7:4711;proto=https'}, "198.51.100.7"),
    ("::1", {"forwarded": 'for="[2001:db8::17]:4711", for=10.2.2.2;by=10.0.0.5'}, "2001:db8::17"),
    ("10.0.0.5", {"forwarded": "for=unknown"}, "10.0.0.5"),
    # Forwarded wins over X-Forwarded-For when both are there.
    ("10.0.0.5", {"forwarded": "for=198.51.100.1", "x-forwarded-for": "198.51.100.2"}, "198.51.100.1"),
    # A dual-stack listener reports IPv4 peers mapped into IPv6.
    ("::ffff:10.0.0.5", {"x-forwarded-for": "198.51.100.7"}, "198.51.100.7"),
    ("10.0.0.5", {}, "10.0.0.5"),
])
def test_the_client_behind_trusted_proxies(peer, headers, client):
    assert PROXIES.client(peer, headers) == client


def test_unix_peers_are_trusted_only_when_named():
    assert ClientAddresses(["unix:"]).client("unix:", {"x-forwarded-for": "198.51.100.7"}) == "198.51.100.7"
    assert PROXIES.client("unix:", {"x-forwarded-for": "198.51.100.7"}) == "unix:"


def test_the_memory_of_trusted_peers_is_bounded():
    proxies = ClientAddresses(["unix:", ipaddress.ip_network("10.0.0.0/8")])
    for number in range(3 * ClientAddresses.MAX_REMEMBERED):
        proxies.is_trusted(str(ipaddress.ip_address("198.18.0.0") + number))
    assert len(proxies._trusted) <= ClientAddresses.MAX_REMEMBERED
    assert proxies.is_trusted("unix:") and proxies.is_trusted("10.1.2.3")


@pytest.mark.parametrize("client, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # the same client on a dual-stack listener
    # One IPv6 host usually holds a /64: its addresses are one client.
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("unix:", "unix:"),
])
def test_the_key_limits_are_counted_under(client, key):
    assert client_key(client) == key
