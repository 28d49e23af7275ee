"""The fast path's three memos (reactor_http.http1.fast_path).

- HeadMemo: identical heads parse once, and the memo never changes an answer,
  also for a request with a body (each parser still frames the body itself);
- AnswerMemo: an answer is given again only while the state it was made from
  is still there (``lookup(key) is value``), never one holding a file, within
  its bounds in entries and bytes, oldest out first;
- wire_bytes: the rendered bytes of a remembered answer are reused only for
  the same second, Connection field and method.

The clock the fast path and the renderer read is pinned by the tests that
need it, so nothing here depends on when it runs.
"""

import os
import types

import pytest
from support.parsing import NEXT_REQUEST, CollectingParser, check_next_request_follows, fields_of, head

from reactor_http.http1 import fast_path, responses
from reactor_http.http1.fast_path import AnswerMemo, HeadMemo, WireCache, request_size, wire_bytes
from reactor_http.http1.parser import ProtocolError, Request, RequestParser
from reactor_http.http1.responses import FileBody, HeadRenderer, Response

HEAD = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def parse(data, memo):
    parser = RequestParser(memo=memo)
    parser.feed(data)
    return parser.next_request()


# -- HeadMemo ------------------------------------------------------------------

def test_identical_heads_share_one_request():
    memo = HeadMemo()
    first, second = parse(HEAD, memo), parse(HEAD, memo)
    assert first is second
    assert (first.method, first.target, first.headers) == ("GET", "/index.html",
                                                          {"host": "example.com", "accept": "*/*"})


def test_different_heads_do_not_share():
    memo = HeadMemo()
    assert parse(HEAD, memo) is not parse(HEAD.replace(b"*/*", b"text/html"), memo)


def test_a_memoized_answer_equals_a_fresh_parse():
    memo = HeadMemo()
    parse(HEAD, memo)
    remembered, fresh = parse(HEAD, memo), parse(HEAD, None)
    assert fields_of(remembered) == fields_of(fresh)


POST_HEAD = head(b"POST /form HTTP/1.1", b"Host: x", b"Content-Length: 5")
CHUNKED_POST_HEAD = head(b"POST /form HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked")


@pytest.mark.parametrize("request_head, frame", [
    (POST_HEAD, lambda body: body),
    (CHUNKED_POST_HEAD, lambda body: b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)),
])
def test_a_memoized_request_with_a_body_has_its_body_framed_afresh(request_head, frame):
    """A Request holds no body state, so requests with bodies are memoized
    too: two pipelined POSTs with the same head and different bodies give
    the same Request, and each parser (sharing the memo, fed whole or one
    byte at a time) still reads each body itself and stops at the right byte."""
    memo = HeadMemo()
    first_request = request_head + frame(b"hello")
    second_request = request_head + frame(b"world")
    stream = first_request + second_request + NEXT_REQUEST
    for reads in ([stream], [stream[index:index + 1] for index in range(len(stream))]):
        parser = CollectingParser(memo=memo)
        requests, ends, fed = [], [], 0
        for read in reads:
            parser.feed(read)
            fed += len(read)
            while len(requests) < 2 and (request := parser.next_request()) is not None:
                requests.append(request)
                ends.append(fed - parser.buffered)  # where the parser stopped
        first, second = requests
        assert first is second is memo.get(request_head[:-2])
        assert ends == [len(first_request), len(first_request) + len(second_request)]
        assert parser.bodies == [b"hello", b"world"]
        check_next_request_follows(parser)
    assert len(memo) == 2  # the POST's head and the next request's


def test_a_memoized_expect_request_is_handed_out_before_its_body_every_time():
    """A memoized "Expect: 100-continue" request is handed out before its
    body every time, and its body is framed (not taken for a request) when
    it comes anyway."""
    memo = HeadMemo()
    request_head = head(b"POST /form HTTP/1.1", b"Host: x", b"Content-Length: 5", b"Expect: 100-continue")
    for _ in range(2):
        parser = CollectingParser(memo=memo)
        parser.feed(request_head)
        request = parser.next_request()
        assert request.expects_continue and parser.buffered == 0
        parser.feed(b"hello" + NEXT_REQUEST)
        assert parser.next_request().target == "/next"
        assert parser.bodies == [b"hello"]
    assert len(memo) == 2  # the POST's head and the next request's


def test_a_memoized_request_with_too_large_a_body_is_refused_every_time():
    """The body limit is the parser's, checked after the memo answers."""
    memo = HeadMemo()
    data = head(b"POST / HTTP/1.1", b"Host: x", b"Content-Length: 11")
    assert parse(data, memo) is None  # the default limit takes it, and waits for the body
    assert memo.get(data[:-2]).content_length == 11
    for _ in range(2):
        parser = RequestParser(memo=memo, max_body=10)
        parser.feed(data)
        with pytest.raises(ProtocolError) as caught:
            parser.next_request()
        assert caught.value.status == 413


def test_bad_heads_are_refused_every_time():
    memo = HeadMemo()
    for _ in range(3):
        with pytest.raises(ProtocolError):
            parse(b"GET / HTTP/1.1\r\n\r\n", memo)  # no Host
    assert len(memo) == 0


def test_long_heads_are_not_memoized():
    memo = HeadMemo()
    data = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * HeadMemo.MAX_HEAD_BYTES + b"\r\n\r\n"
    assert parse(data, memo) is not parse(data, memo)
    assert len(memo) == 0


def test_the_memo_is_bounded():
    memo = HeadMemo()
    for index in range(HeadMemo.MAX_ENTRIES * 3):
        parse(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % index, memo)
    assert len(memo) == HeadMemo.MAX_ENTRIES
    # The newest are kept, the oldest went first.
    newest = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % (HeadMemo.MAX_ENTRIES * 3 - 1)
    assert memo.get(newest[:-2]) is not None
    assert memo.get(b"GET /0 HTTP/1.1\r\nHost: x\r\n") is None


# -- AnswerMemo ----------------------------------------------------------------

def request_for(path):
    """A Request as the parser makes them (the memo keys on its identity)."""
    return Request("GET", path, "HTTP/1.1", {"host": "x"}, True, f"GET {path} HTTP/1.1")


class Check:
    """The state an answer was made from, as the memo checks it: while
    ``valid``, ``lookup(key)`` gives the very value remembered; after, an
    equal one that is not it (as a cache gives a fresh entry). Counts lookups."""

    KEY = "/the/cache/key"

    def __init__(self):
        self.valid = True
        self.calls = 0
        self.value = ["the cache entry"]

    def lookup(self, key):
        assert key == self.KEY
        self.calls += 1
        return self.value if self.valid else list(self.value)


def remember(memo, request, response, check):
    """Remember ``response`` for ``request`` while ``check`` is valid."""
    memo.remember(request, response, check.lookup, check.KEY, check.value)


def cost_of(request, response):
    """What remembering ``response`` for ``request`` counts: the body twice,
    the request (its line, target and fields), and the fixed share."""
    return 2 * len(response.body) + request_size(request) + AnswerMemo.ENTRY_OVERHEAD_BYTES


def test_a_request_is_counted_with_all_it_holds():
    """The key of a remembered answer is a Request: a long target or many
    fields count, so a flood of long requests cannot outgrow MAX_BYTES."""
    short, long = request_for("/a"), request_for("/" + "ab/" * 2700)
    assert request_size(long) - request_size(short) == 2 * (len(long.target) - len(short.target))
    assert request_size(short) >= len(short.request_line) + len(short.target) + 128 * len(short.headers)


def test_an_answer_is_recalled_while_its_state_holds():
    memo = AnswerMemo()
    request, response, check = request_for("/a"), Response(200, body=b"hi"), Check()
    remember(memo, request, response, check)
    assert isinstance(response.wire, WireCache)
    assert memo.recall(request) is response
    assert memo.recall(request) is response
    assert check.calls == 2  # asked on every recall
    assert (len(memo), memo.bytes_used) == (1, cost_of(request, response))


def test_an_answer_whose_state_changed_is_forgotten():
    """Once the lookup gives another value (even an equal one), the answer is
    dropped, with its bytes: it does not come back when the lookup would give
    the remembered value again."""
    memo = AnswerMemo()
    request, response, check = request_for("/a"), Response(200, body=b"hi"), Check()
    remember(memo, request, response, check)
    check.valid = False
    assert memo.recall(request) is None
    assert (len(memo), memo.bytes_used) == (0, 0)
    check.valid = True
    assert memo.recall(request) is None
    assert check.calls == 1


def test_answers_are_by_request_identity():
    """An equal-looking Request from another parse is another key (a Request
    compares by identity; the HeadMemo makes repeats the same object)."""
    memo = AnswerMemo()
    remember(memo, request_for("/a"), Response(200, body=b"hi"), Check())
    assert memo.recall(request_for("/a")) is None


def test_an_answer_holding_a_file_is_not_remembered():
    """Sending a file consumes it: such an answer can be given once only."""
    memo, request = AnswerMemo(), request_for("/file")
    fd = os.open(__file__, os.O_RDONLY)
    response = Response(200, file=FileBody.region(fd, 0, 10))
    try:
        remember(memo, request, response, Check())
        assert (len(memo), memo.bytes_used, response.wire) == (0, 0, None)
        assert memo.recall(request) is None
    finally:
        response.release()


def test_an_answer_remembered_once_is_not_remembered_for_another_request():
    """A Response has one WireCache, given by its first remember: a second
    request does not get it (nor take the first one's place)."""
    memo = AnswerMemo()
    first, second, response = request_for("/a"), request_for("/b"), Response(200, body=b"hi")
    remember(memo, first, response, Check())
    wire = response.wire
    remember(memo, second, response, Check())
    assert memo.recall(second) is None
    assert memo.recall(first) is response and response.wire is wire
    assert (len(memo), memo.bytes_used) == (1, cost_of(first, response))


def test_remembering_again_for_the_same_request_replaces_the_answer():
    memo = AnswerMemo()
    request = request_for("/a")
    old, new = Response(200, body=b"old"), Response(200, body=b"a newer body")
    remember(memo, request, old, Check())
    remember(memo, request, new, Check())
    assert memo.recall(request) is new
    assert (len(memo), memo.bytes_used) == (1, cost_of(request, new))


def test_the_answers_are_bounded_in_entries_oldest_out_first():
    memo = AnswerMemo()
    requests = [request_for(f"/{index}") for index in range(AnswerMemo.MAX_ENTRIES + 2)]
    for request in requests:
        remember(memo, request, Response(200, body=b"x"), Check())
    assert len(memo) == AnswerMemo.MAX_ENTRIES
    assert memo.recall(requests[0]) is None and memo.recall(requests[1]) is None
    assert all(memo.recall(request) is not None for request in requests[2:])
    assert memo.bytes_used == sum(cost_of(request, Response(200, body=b"x")) for request in requests[2:])


def test_the_answers_are_bounded_in_bytes_oldest_out_first():
    """Each answer counts its body twice (the response's and the rendered
    copy) plus a fixed share; the oldest go until a new one fits."""
    memo = AnswerMemo()
    body = b"b" * (AnswerMemo.MAX_BYTES // 7)  # three fit (each costs 2/7 and a little)
    requests = [request_for(f"/{index}") for index in range(5)]
    for request in requests:
        remember(memo, request, Response(200, body=body), Check())
        assert memo.bytes_used <= AnswerMemo.MAX_BYTES
    assert [memo.recall(request) is not None for request in requests] == [False, False, True, True, True]
    assert (len(memo), memo.bytes_used) == (3, sum(cost_of(request, Response(200, body=body))
                                                   for request in requests[2:]))


def test_bytes_used_follows_every_forget():
    memo = AnswerMemo()
    checks = {path: Check() for path in ("/a", "/b", "/c")}
    requests = {path: request_for(path) for path in checks}
    answers = {path: Response(200, body=path.encode() * 100) for path in checks}
    for path in checks:
        remember(memo, requests[path], answers[path], checks[path])
    assert memo.bytes_used == sum(cost_of(requests[path], answers[path]) for path in checks)
    checks["/b"].valid = False
    assert memo.recall(requests["/b"]) is None
    assert memo.bytes_used == cost_of(requests["/a"], answers["/a"]) + cost_of(requests["/c"], answers["/c"])
    checks["/a"].valid = checks["/c"].valid = False
    assert memo.recall(requests["/a"]) is None and memo.recall(requests["/c"]) is None
    assert (len(memo), memo.bytes_used) == (0, 0)


def test_an_answer_larger_than_the_whole_budget_is_not_remembered():
    memo = AnswerMemo()
    kept = request_for("/kept")
    remember(memo, kept, Response(200, body=b"small"), Check())
    huge = Response(200, body=b"h" * (AnswerMemo.MAX_BYTES // 2))
    remember(memo, request_for("/huge"), huge, Check())
    assert huge.wire is None
    assert memo.recall(kept) is not None  # nothing was pushed out for it
    assert len(memo) == 1


# -- wire_bytes ----------------------------------------------------------------

class CountingRenderer(HeadRenderer):
    """A HeadRenderer that counts its renders."""

    def __init__(self):
        super().__init__()
        self.renders = 0

    def render(self, response, connection_field, head_only=False):
        self.renders += 1
        return super().render(response, connection_field, head_only)


@pytest.fixture
def clock(monkeypatch):
    """The time fast_path and responses read, pinned: tests move it by hand."""
    clock = types.SimpleNamespace(now=784111777.0)  # Sun, 06 Nov 1994 08:49:37 GMT
    pinned = types.SimpleNamespace(time=lambda: clock.now)
    monkeypatch.setattr(fast_path, "time", pinned)
    monkeypatch.setattr(responses, "time", pinned)
    return clock


def remembered(body=b"hello"):
    """A response remembered by an AnswerMemo (so it has a WireCache)."""
    response = Response(200, "Content-Type: text/plain\r\n", body)
    remember(AnswerMemo(), request_for("/"), response, Check())
    return response


def test_the_same_bytes_are_reused_within_a_second(clock):
    renderer, response = CountingRenderer(), remembered()
    first = wire_bytes(renderer, response, "", False)
    clock.now += 0.9  # still the same second
    assert wire_bytes(renderer, response, "", False) is first
    assert renderer.renders == 1
    assert first == renderer.render(response, "")


@pytest.mark.parametrize("change", ["second", "connection field", "head only"])
def test_the_bytes_are_rendered_again_when_anything_they_depend_on_changes(clock, change):
    renderer, response = CountingRenderer(), remembered()
    first = wire_bytes(renderer, response, "", False)
    connection_field, head_only = "", False
    if change == "second":
        clock.now += 1
    elif change == "connection field":
        connection_field = "Connection: close\r\n"
    else:
        head_only = True
    again = wire_bytes(renderer, response, connection_field, head_only)
    assert renderer.renders == 2
    assert again != first
    assert again == HeadRenderer().render(response, connection_field, head_only)
    # And the new bytes are the ones kept now.
    assert wire_bytes(renderer, response, connection_field, head_only) is again
    assert renderer.renders == 2


def test_head_gets_the_head_only(clock):
    """HEAD: the same head as GET (Content-Length included), no body."""
    renderer, response = CountingRenderer(), remembered(b"hello")
    get = wire_bytes(renderer, response, "", False)
    head_only = wire_bytes(renderer, response, "", True)
    assert get == head_only + b"hello"
    assert head_only.endswith(b"Content-Length: 5\r\n\r\n")


def test_a_response_not_remembered_is_rendered_every_time(clock):
    renderer, response = CountingRenderer(), Response(200, body=b"hello")
    first = wire_bytes(renderer, response, "", False)
    second = wire_bytes(renderer, response, "", False)
    assert first == second
    assert renderer.renders == 2
    assert response.wire is None
