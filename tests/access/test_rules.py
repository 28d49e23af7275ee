"""--allow and --deny (access/rules.py): first match wins; when none matches,
the opposite of the last rule."""

import ipaddress

import pytest

from reactor_http.access.rules import ALLOW, DENY, AddressRules, rule_network


def rules(*pairs):
    return AddressRules((action, rule_network(text)) for action, text in pairs)


@pytest.mark.parametrize("text, network", [
    ("10.0.0.0/8", ipaddress.ip_network("10.0.0.0/8")),
    ("192.0.2.7", ipaddress.ip_network("192.0.2.7/32")),
    ("10.1.2.3/8", ipaddress.ip_network("10.0.0.0/8")),  # host bits are forgiven, as nginx does
    ("2001:db8::/32", ipaddress.ip_network("2001:db8::/32")),
    ("all", "all"),
    ("unix:", "unix:"),
])
def test_what_a_rule_may_name(text, network):
    assert rule_network(text) == network


@pytest.mark.parametrize("text", ["", "10.0.0.0/33", "example.com", "everyone", "10.0.0.0/8 ::1"])
def test_what_a_rule_may_not_name(text):
    with pytest.raises(ValueError, match="not an IP address, a CIDR block, 'all' or 'unix:'"):
        rule_network(text)


def test_the_first_match_wins():
    # nginx's documented example, read the same way.
    table = rules((DENY, "192.168.1.1"), (ALLOW, "192.168.1.0/24"), (ALLOW, "10.1.1.0/16"),
                  (ALLOW, "2001:0db8::/32"), (DENY, "all"))
    assert not table.allows("192.168.1.1")
    assert table.allows("192.168.1.2")
    assert table.allows("10.1.200.1")
    assert table.allows("2001:db8::5")
    assert not table.allows("192.0.2.1")
    assert not table.allows("unix:")


def test_nothing_matches_the_opposite_of_the_last_rule():
    allow_list = rules((ALLOW, "10.0.0.0/8"))
    assert allow_list.allows("10.2.3.4") and not allow_list.allows("192.0.2.1")
    block_list = rules((DENY, "192.0.2.7"))
    assert not block_list.allows("192.0.2.7") and block_list.allows("192.0.2.8")
    # An exception first, then the set: those in the set but the exception.
    exceptions = rules((DENY, "10.0.0.66"), (ALLOW, "10.0.0.0/8"))
    assert [exceptions.allows(client) for client in ("10.0.0.66", "10.0.0.67", "192.0.2.1")] == \
        [False, True, False]


def test_addresses_as_a_dual_stack_listener_reports_them():
    table = rules((ALLOW, "127.0.0.0/8"))
    assert table.allows("::ffff:127.0.0.2")
    assert not table.allows("::1")


def test_unix_peers_and_garbage():
    table = rules((ALLOW, "unix:"), (DENY, "all"))
    assert table.allows("unix:") and not table.allows("127.0.0.1")
    assert not rules((ALLOW, "0.0.0.0/0"), (ALLOW, "::/0")).allows("not an address")


def test_the_memory_of_answers_is_bounded():
    table = rules((DENY, "10.0.0.0/8"))
    base = ipaddress.ip_address("198.18.0.0")
    for number in range(3 * AddressRules.MAX_REMEMBERED):
        assert table.allows(str(base + number))
    assert len(table._answers) <= AddressRules.MAX_REMEMBERED
    assert not table.allows("10.0.0.1")


def test_an_empty_or_strange_list_is_a_mistake():
    with pytest.raises(ValueError):
        AddressRules(())
    with pytest.raises(ValueError):
        AddressRules((("permit", rule_network("all")),))
