"""The guard (access/guard.py): the order of the checks, the three refusals,
and the fast path's remembered answers kept from the clients it refuses."""

import base64

import pytest
from support.environment import DEMO_ROOT
from support.fakes import FakeClock

from reactor_http.access.clients import ClientAddresses
from reactor_http.access.guard import AccessGuard, build_guard, unauthorized
from reactor_http.access.limits import RateLimiter
from reactor_http.access.rules import AddressRules, rule_network
from reactor_http.config import Config
from reactor_http.http1.fast_path import AnswerMemo
from reactor_http.http1.responses import HeadRenderer, Response
from reactor_http.static.site import StaticSite

from .exchange import FakeExchange, Site, drive, parse

OK = Response(200, "Content-Type: text/plain\r\n", b"the site\n")


def rules(*pairs):
    return AddressRules((action, rule_network(text)) for action, text in pairs)


def ask(guard, client, target="/", fields=""):
    return drive(guard, parse(target, fields), FakeExchange(client))


def test_no_access_setting_no_guard():
    assert build_guard(Config(), Site(OK), FakeClock(), print) is None


def test_each_setting_makes_a_guard_of_just_that(tmp_path):
    users = tmp_path / "users"
    users.write_text("bob:$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b.\n")
    site = Site(OK)
    guard = build_guard(Config(rate_limit=(600, 60), rate_burst=3), site, FakeClock(), print)
    assert (guard.rules, guard.auth, guard.clients) == (None, None, None)
    assert (guard.rate.per_second, guard.rate.capacity) == (10, 4)
    guard = build_guard(Config(access_rules=(("deny", rule_network("all")),), trusted_proxies=("unix:",)),
                        site, FakeClock(), print)
    assert (guard.rate, guard.auth) == (None, None) and guard.clients is not None
    guard = build_guard(Config(auth_file=str(users), auth_realm="r"), site, FakeClock(), print)
    assert guard.auth.challenge.fields.endswith('WWW-Authenticate: Basic realm="r", charset="UTF-8"\r\n')
    assert guard.next is site


def test_403_says_nothing_more():
    site = Site(OK)
    guard = AccessGuard(site, rules=rules(("deny", "192.0.2.0/24")))
    response = ask(guard, "192.0.2.9")
    assert (response.status, response.body) == (403, b"403 Forbidden\n")
    assert ask(guard, "198.51.100.1") is OK
    assert site.calls == 1


def test_429_says_when_to_come_back():
    clock = FakeClock()
    guard = AccessGuard(Site(OK), rate=RateLimiter(1 / 60, 1, clock))
    assert [ask(guard, "192.0.2.1").status for _ in range(3)] == [200, 200, 429]
    response = ask(guard, "192.0.2.1")
    assert response.body == b"429 Too Many Requests\n"
    assert "Retry-After: 60\r\n" in response.fields
    clock.advance(30)
    assert "Retry-After: 30\r\n" in ask(guard, "192.0.2.1").fields
    assert ask(guard, "192.0.2.2").status == 200  # a client of its own
    assert ask(guard, "::ffff:192.0.2.1").status == 429  # the same client, on a dual-stack listener


def test_the_order_rules_then_rate_then_password(tmp_path):
    """A refused address costs no token; a client over its rate costs no
    password check (and guessing passwords is limited by the rate)."""
    users = tmp_path / "users"
    users.write_text("bob:$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b.\n")
    clock = FakeClock()
    site = Site(OK)
    guard = build_guard(Config(auth_file=str(users), access_rules=(("deny", rule_network("192.0.2.66")),),
                               rate_limit=(1, 60), rate_burst=1), site, clock, print)
    for _ in range(3):
        assert ask(guard, "192.0.2.66").status == 403
    wrong = f"Authorization: Basic {base64.b64encode(b'bob:guess').decode()}\r\n"
    exchange = FakeExchange("192.0.2.1")
    assert drive(guard, parse("/", wrong), exchange).status == 401 and len(exchange.jobs_run) == 1
    assert ask(guard, "192.0.2.1").status == 401  # no credentials: no check needed
    exchange = FakeExchange("192.0.2.1")
    assert drive(guard, parse("/", wrong), exchange).status == 429 and exchange.jobs_run == []
    right = f"Authorization: Basic {base64.b64encode(b'bob:pw').decode()}\r\n"
    assert ask(guard, "192.0.2.7", fields=right) is OK
    assert site.calls == 1


def test_the_client_a_trusted_proxy_reports_is_judged():
    guard = AccessGuard(Site(OK), clients=ClientAddresses([rule_network("10.0.0.0/8")]),
                        rules=rules(("deny", "203.0.113.7")))
    assert ask(guard, "10.0.0.2", fields="X-Forwarded-For: 203.0.113.7\r\n").status == 403
    assert ask(guard, "10.0.0.2", fields="X-Forwarded-For: 198.51.100.1\r\n").status == 200
    # Not a trusted peer: what it claims is not believed, for good or ill.
    assert ask(guard, "192.0.2.1", fields="X-Forwarded-For: 203.0.113.7\r\n").status == 200
    assert ask(guard, "203.0.113.7", fields="X-Forwarded-For: 198.51.100.1\r\n").status == 403


def test_the_refusals_render_with_their_reasons():
    renderer = HeadRenderer()
    head = renderer.render(unauthorized("team"), "").decode("latin-1")
    assert head.startswith("HTTP/1.1 401 Unauthorized\r\n")
    assert 'WWW-Authenticate: Basic realm="team", charset="UTF-8"\r\n' in head
    guard = AccessGuard(Site(OK), rate=RateLimiter(1, 0, FakeClock()))
    ask(guard, "192.0.2.1")
    head = renderer.render(ask(guard, "192.0.2.1"), "").decode("latin-1")
    assert head.startswith("HTTP/1.1 429 Too Many Requests\r\n") and "Retry-After: 1\r\n" in head


@pytest.mark.parametrize("refusing", ["rules", "rate"])
def test_a_remembered_answer_is_never_given_to_a_refused_client(refusing):
    """The real static site, with its memo of answers by request: once it
    remembers the answer to these request bytes, an allowed client gets that
    very object again, and a refused one the refusal, never the answer."""
    site = StaticSite(Config(root=DEMO_ROOT), AnswerMemo(), FakeClock())
    if refusing == "rules":
        guard = AccessGuard(site, rules=rules(("deny", "192.0.2.66")))
    else:
        guard = AccessGuard(site, rate=RateLimiter(1 / 60, 2, FakeClock()))
        for _ in range(3):
            ask(guard, "192.0.2.66", "/style.css")  # spends its bucket
    request = parse("/style.css")
    assert drive(guard, request, FakeExchange("192.0.2.1")).status == 200  # from the disk
    first = drive(guard, request, FakeExchange("192.0.2.1"))  # from the cache: remembered
    assert first.status == 200
    assert site.answers.recall(request) is first
    assert drive(guard, request, FakeExchange("192.0.2.1")) is first
    refused = drive(guard, request, FakeExchange("192.0.2.66"))
    assert refused.status == (403 if refusing == "rules" else 429)
    assert refused.body != first.body


def test_reload_reaches_the_password_check(tmp_path):
    users = tmp_path / "users"
    users.write_text("bob:$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b.\n")
    guard = build_guard(Config(auth_file=str(users)), Site(OK), FakeClock(), print)
    guard.reload()
    assert guard.auth._forced
    AccessGuard(Site(OK), rate=RateLimiter(1, 0, FakeClock())).reload()  # nothing to read: nothing done


def test_the_memory_of_client_keys_is_bounded():
    guard = AccessGuard(Site(OK), rate=RateLimiter(1000, 0, FakeClock(), max_clients=100))
    for number in range(3 * AccessGuard.MAX_KEYS):
        ask(guard, f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}")
    assert len(guard._keys) <= AccessGuard.MAX_KEYS and len(guard.rate) <= 100
