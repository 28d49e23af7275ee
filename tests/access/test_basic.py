"""Basic authentication (access/basic.py): the credentials, the check on the
executor, the successes remembered and forgotten, the file read again."""

import base64
import hashlib
import os

import pytest
from support.fakes import FakeClock

from reactor_http.access import passwords
from reactor_http.access.basic import BasicAuth, basic_credentials, path_segments
from reactor_http.access.guard import unauthorized
from reactor_http.http1.responses import Response

from .exchange import FakeExchange, Site, drive, parse

OK = Response(200, "Content-Type: text/plain\r\n", b"the site\n")


def line(user, password):
    """A line of the file in hash-password's format, at a cost that keeps the
    tests quick (hash-password's own cost: tests/access/test_passwords.py)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << 8, r=4, p=1, dklen=32)
    return (f"{user}:$scrypt$ln=8,r=4,p=1${base64.b64encode(salt).decode().rstrip('=')}"
            f"${base64.b64encode(digest).decode().rstrip('=')}")


def authorization(user, password, scheme="Basic"):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: {scheme} {token}\r\n"


@pytest.fixture
def users(tmp_path):
    """A password file with alice (scrypt, "wonderland") and bob (apr1, "pw")."""
    path = tmp_path / "users"
    path.write_text(f"{line('alice', 'wonderland')}\n"
                    "bob:$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b.\n")
    return path


class Auth:
    """A BasicAuth on the file, with a clock and an error log of the test's."""

    def __init__(self, path, protected_path="/"):
        self.path = str(path)
        self.clock = FakeClock()
        self.errors = []
        self.site = Site(OK)
        self.auth = BasicAuth(self.path, passwords.read_password_file(self.path), unauthorized("team"),
                              self.clock, lambda message, error: self.errors.append(message), protected_path)

    def handle(self, request, exchange):
        return self.auth.handle(request, exchange, self.site)

    def ask(self, fields="", target="/", client="127.0.0.1"):
        """(the response, the jobs it took)"""
        exchange = FakeExchange(client)
        response = drive(self, parse(target, fields), exchange)
        return response, exchange.jobs_run


@pytest.fixture
def auth(users):
    return Auth(users)


# -- the Authorization field ----------------------------------------------------------------------


@pytest.mark.parametrize("value, credentials", [
    ("Basic YWxpY2U6d29uZGVybGFuZA==", ("alice", b"wonderland")),
    ("basic YWxpY2U6d29uZGVybGFuZA==", ("alice", b"wonderland")),  # RFC 9110 §11.1: any case
    ("BASIC   YWxpY2U6d29uZGVybGFuZA==  ", ("alice", b"wonderland")),
    ("Basic " + base64.b64encode(b"alice:a:b:c").decode(), ("alice", b"a:b:c")),  # the first colon
    ("Basic " + base64.b64encode(b":pw").decode(), ("", b"pw")),
    ("Basic " + base64.b64encode("jos\u00e9:\u00fc".encode()).decode(), ("jos\u00e9", "\u00fc".encode())),
])
def test_credentials(value, credentials):
    assert basic_credentials(value) == credentials


@pytest.mark.parametrize("value", [
    "Bearer YWxpY2U6d29uZGVybGFuZA==", "Basic", "Basic ", "BasicYWxpY2U6d29uZGVybGFuZA==",
    "Basic YWxpY2U6d29uZGVybGFuZA", "Basic !!!!", "Basic " + base64.b64encode(b"no colon").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),  # a user-id that is not UTF-8
    "Basic YWxpY2U6d29uZGVybGFuZA==, Basic YWxpY2U6d29uZGVybGFuZA==",  # two fields, joined
])
def test_credentials_refused(value):
    assert basic_credentials(value) is None


# -- answering --------------------------------------------------------------------------------------


def test_no_credentials_get_the_challenge(auth):
    response, jobs = auth.ask()
    assert response.status == 401 and jobs == []
    assert 'WWW-Authenticate: Basic realm="team", charset="UTF-8"\r\n' in response.fields
    assert auth.site.calls == 0


def test_the_password_is_checked_on_the_executor_then_remembered(auth):
    exchange = FakeExchange()
    request = parse("/", authorization("alice", "wonderland"))
    assert auth.handle(request, exchange) is None  # nothing checked on the loop thread
    [(job, args, _)] = exchange.jobs
    assert job is passwords.verify and args[0] == passwords.SCRYPT
    assert exchange.complete() is OK and auth.site.calls == 1
    # The same Authorization again: no second check.
    response, jobs = auth.ask(authorization("alice", "wonderland"))
    assert (response, jobs) == (OK, [])
    assert len(auth.auth) == 1


def test_apr1_too(auth):
    response, jobs = auth.ask(authorization("bob", "pw"))
    assert response is OK and jobs == [passwords.verify]


def test_a_wrong_password_is_not_remembered(auth):
    for _ in range(2):
        response, jobs = auth.ask(authorization("alice", "Wonderland"))
        assert response.status == 401 and jobs == [passwords.verify]
    assert len(auth.auth) == 0 and auth.site.calls == 0


def test_an_unknown_user_costs_a_check_too(auth):
    """So that a 401's timing does not tell which users exist."""
    response, jobs = auth.ask(authorization("mallory", "wonderland"))
    assert response.status == 401 and jobs == [passwords.verify]


@pytest.mark.parametrize("fields", ["Authorization: Bearer abc\r\n", "Authorization: Basic !!!\r\n"])
def test_malformed_credentials_get_the_challenge_without_a_check(auth, fields):
    response, jobs = auth.ask(fields)
    assert response.status == 401 and jobs == []


def test_the_remembered_successes_are_bounded(auth):
    auth.auth.MAX_VERIFIED = 3
    token = authorization("alice", "wonderland").split()[-1]

    def field(spaces):  # ten different Authorization values, all good
        return f"Authorization: Basic {' ' * spaces}{token}\r\n"

    for spaces in range(10):
        response, jobs = auth.ask(field(spaces))
        assert response is OK and jobs == [passwords.verify]
        assert len(auth.auth) <= 3
    # The most recent are remembered, the oldest not.
    assert auth.ask(field(9))[1] == []
    assert auth.ask(field(0))[1] == [passwords.verify]


# -- the file read again ---------------------------------------------------------------------------------


def test_a_changed_file_is_read_again_and_the_successes_forgotten(auth, users):
    assert auth.ask(authorization("alice", "wonderland"))[0] is OK
    users.write_text(f"{line('carol', 'new')}\n")
    # Within the second: not looked at yet.
    assert auth.ask(authorization("alice", "wonderland")) == (OK, [])
    auth.clock.advance(1.0)
    response, jobs = auth.ask(authorization("alice", "wonderland"))
    assert response.status == 401
    assert jobs == [passwords.reread, passwords.verify]  # the stat and read on the executor too
    assert auth.ask(authorization("carol", "new"))[0] is OK
    assert auth.errors == []


def test_the_file_is_looked_at_once_a_second_at_most(auth):
    auth.clock.advance(1.0)
    assert auth.ask()[1] == [passwords.reread]  # unchanged
    auth.clock.advance(0.5)
    assert auth.ask()[1] == []
    auth.clock.advance(0.5)
    assert auth.ask()[1] == [passwords.reread]


def test_one_reading_at_a_time(auth):
    auth.clock.advance(1.0)
    first, second = FakeExchange(), FakeExchange()
    assert auth.handle(parse(), first) is None and first.jobs[0][0] is passwords.reread
    assert auth.handle(parse(), second).status == 401  # answered with the users in force
    assert first.complete().status == 401


def test_sighup_reads_it_even_unchanged(auth, users):
    """reload() (SIGHUP) reads the file although its stamp is the same: an
    edit that kept size and time is picked up too."""
    before = os.stat(users)
    text = users.read_text()
    users.write_text(text.replace("bob:", "ann:"))
    os.utime(users, ns=(before.st_atime_ns, before.st_mtime_ns))
    auth.clock.advance(1.0)
    assert auth.ask(authorization("ann", "pw"))[0].status == 401  # same stamp: not read
    auth.auth.reload()
    response, jobs = auth.ask(authorization("ann", "pw"))
    assert response is OK and jobs == [passwords.reread, passwords.verify]


def test_a_file_that_cannot_be_used_leaves_the_old_users(auth, users):
    users.write_text("alice:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n")
    for _ in range(3):
        auth.clock.advance(1.0)
        assert auth.ask(authorization("bob", "pw"))[0] is OK
    assert len(auth.errors) == 1  # said once, not every second
    assert "line 1" in auth.errors[0] and "the users read before stay in force" in auth.errors[0]
    users.write_text(f"{line('bob', 'new')}\n")
    auth.clock.advance(1.0)
    assert auth.ask(authorization("bob", "pw"))[0].status == 401
    assert auth.ask(authorization("bob", "new"))[0] is OK
    assert auth.errors[-1].endswith("is read again")


def test_an_emptied_file_lets_nobody_in(auth, users):
    users.write_text("")
    auth.clock.advance(1.0)
    response, jobs = auth.ask(authorization("alice", "wonderland"))
    assert response.status == 401 and jobs == [passwords.reread]
    assert "has no users now" in auth.errors[-1]


def test_the_file_changed_while_a_password_was_checked(auth, users):
    exchange = FakeExchange()
    assert auth.handle(parse("/", authorization("bob", "pw")), exchange) is None
    users.write_text(f"{line('alice', 'wonderland')}\n")  # bob removed
    auth.auth.install(passwords.reread(str(users), None, force=True))
    assert exchange.complete().status == 401
    assert len(auth.auth) == 0


# -- what is protected -------------------------------------------------------------------------------


@pytest.mark.parametrize("target, segments", [
    ("/", []), ("/a/b", ["a", "b"]), ("//a/./b/", ["a", "b"]), ("/A/%42", ["a", "b"]),
    ("/a?x=/b", ["a"]), ("http://example.com/a/b?q", ["a", "b"]), ("*", []),
    ("/a/../b", None), ("/%2e%2e/b", None), ("/%ff", None), ("example.com/a", None),
])
def test_path_segments(target, segments):
    assert path_segments(target) == segments


@pytest.mark.parametrize("target, protected", [
    ("/private/", True), ("/private", True), ("/private/a/b.txt", True), ("/PRIVATE/a", True),
    ("/%70rivate/a", True), ("//private//a", True), ("/./private/a", True), ("/x/../private/a", True),
    ("/%ff/", True), ("HTTP://host/private/a", True),
    ("/", False), ("/privateer", False), ("/public/private/", False), ("/index.html", False), ("*", False),
])
def test_only_the_auth_path_is_protected(users, target, protected):
    auth = Auth(users, protected_path="/private/")
    assert auth.auth.protects(parse(target)) is protected


def test_the_whole_site_is_protected_by_default(auth):
    assert all(auth.auth.protects(parse(target)) for target in ("/", "/a", "*", "/%ff"))


def test_a_cors_preflight_needs_no_password(auth):
    """A browser sends a preflight without credentials (the Fetch standard)."""
    preflight = parse("/data.txt", "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n",
                      method="OPTIONS")
    assert not auth.auth.protects(preflight)
    assert auth.auth.protects(parse("/data.txt", method="OPTIONS"))
