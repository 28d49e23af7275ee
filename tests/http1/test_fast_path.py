"""The HeadMemo: identical heads parse once, and the memo never changes an answer."""

import pytest

from reactor_http.http1.fast_path import HeadMemo
from reactor_http.http1.parser import ProtocolError, RequestParser

HEAD = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def parse(data, memo):
    parser = RequestParser(memo=memo)
    parser.feed(data)
    return parser.next_request()


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
    for field in ("method", "target", "version", "headers", "keep_alive", "has_body", "request_line"):
        assert getattr(remembered, field) == getattr(fresh, field)


def test_requests_with_bodies_are_never_memoized():
    """A request with a body carries body state, so it is parsed afresh every time."""
    memo = HeadMemo()
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    assert parse(data, memo) is not parse(data, memo)


def test_bad_heads_are_refused_every_time():
    memo = HeadMemo()
    for _ in range(3):
        with pytest.raises(ProtocolError):
            parse(b"GET / HTTP/1.1\r\n\r\n", memo)  # no Host


def test_long_heads_are_not_memoized():
    memo = HeadMemo()
    data = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * HeadMemo.MAX_HEAD_BYTES + b"\r\n\r\n"
    assert parse(data, memo) is not parse(data, memo)


def test_the_memo_is_bounded():
    memo = HeadMemo()
    for index in range(HeadMemo.MAX_ENTRIES * 3):
        parse(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % index, memo)
    assert len(memo._requests) == HeadMemo.MAX_ENTRIES
    # The newest are kept, the oldest went first.
    newest = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % (HeadMemo.MAX_ENTRIES * 3 - 1)
    assert memo.get(newest[:-2]) is not None
    assert memo.get(b"GET /0 HTTP/1.1\r\nHost: x\r\n") is None
