"""Responses as data, and the bytes their heads become (reactor_http.http1.responses).

The renderer's clock is pinned (RFC 9110's own example date), so every head
is compared byte for byte.
"""

import os
import types

import pytest

from reactor_http.http1 import responses
from reactor_http.http1.dates import format_http_date
from reactor_http.http1.responses import FileBody, HeadRenderer, Response, error_response

EXAMPLE_SECOND = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7)
SERVER_AND_DATE = b"Server: reactor_http\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"


@pytest.fixture
def clock(monkeypatch):
    """The time the renderer reads, pinned: tests move it by hand."""
    clock = types.SimpleNamespace(now=EXAMPLE_SECOND + 0.25)
    monkeypatch.setattr(responses, "time", types.SimpleNamespace(time=lambda: clock.now))
    return clock


OK = Response(200, "Content-Type: text/plain\r\nETag: \"1\"\r\n", b"hello")
OK_HEAD = (b"HTTP/1.1 200 OK\r\n" + SERVER_AND_DATE
           + b"Content-Type: text/plain\r\nETag: \"1\"\r\nContent-Length: 5\r\n\r\n")


def test_a_200_with_a_body(clock):
    """Status line, Server and Date, the content's fields, Content-Length,
    the blank line, then the body: one bytes object."""
    assert HeadRenderer().render(OK, "") == OK_HEAD + b"hello"


def test_head_gets_the_same_head_and_no_body(clock):
    """A HEAD response is the GET response's head, Content-Length included
    (RFC 9110 §9.3.2), and the Response itself is not changed for it."""
    assert HeadRenderer().render(OK, "", head_only=True) == OK_HEAD
    assert (OK.body, OK.content_length) == (b"hello", 5)


def test_the_connection_field_ends_the_head(clock):
    rendered = HeadRenderer().render(OK, "Connection: close\r\n")
    assert rendered == OK_HEAD[:-2] + b"Connection: close\r\n\r\nhello"


@pytest.mark.parametrize("status, reason", [(204, b"No Content"), (304, b"Not Modified")])
def test_204_and_304_carry_no_content_length(clock, status, reason):
    """RFC 9110 §8.6: no Content-Length on a 204, nor on a 304 here."""
    response = Response(status, "ETag: \"1\"\r\n")
    expected = b"HTTP/1.1 %d %s\r\n" % (status, reason) + SERVER_AND_DATE + b"ETag: \"1\"\r\n\r\n"
    assert HeadRenderer().render(response, "") == expected
    assert HeadRenderer().render(response, "", head_only=True) == expected
    assert HeadRenderer().render(response, "Connection: close\r\n") == expected[:-2] + b"Connection: close\r\n\r\n"


def test_the_date_is_an_imf_fixdate_of_the_current_second(clock):
    """Date is the IMF-fixdate (RFC 9110 §5.6.7) of the second the head is
    rendered in: built once a second, rebuilt when the second changes."""
    renderer = HeadRenderer()
    assert renderer.date_fields() == SERVER_AND_DATE.decode()
    clock.now = EXAMPLE_SECOND + 0.99
    assert renderer.date_fields() == SERVER_AND_DATE.decode()
    clock.now = EXAMPLE_SECOND + 1
    assert renderer.date_fields() == "Server: reactor_http\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n"
    clock.now = 1704067200  # a new year, month and day: 2024-01-01 00:00:00 UTC
    assert b"\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n" in renderer.render(OK, "")
    assert format_http_date(EXAMPLE_SECOND) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_extra_fields_follow_the_date_on_every_response(clock):
    """--header and CORS fields ride with Server and Date, before the content's."""
    renderer = HeadRenderer("X-Frame-Options: DENY\r\nAccess-Control-Allow-Origin: *\r\n")
    extra = b"X-Frame-Options: DENY\r\nAccess-Control-Allow-Origin: *\r\n"
    assert renderer.render(OK, "") == OK_HEAD.replace(SERVER_AND_DATE, SERVER_AND_DATE + extra) + b"hello"
    no_content = renderer.render(Response(304), "")
    assert no_content == b"HTTP/1.1 304 Not Modified\r\n" + SERVER_AND_DATE + extra + b"\r\n"


def test_a_file_response_renders_its_head_only(clock):
    """The file's bytes go by sendfile, after the head: the head announces
    their length, and only the head is rendered."""
    read_end, write_end = os.pipe()
    os.close(write_end)
    response = Response(200, "Content-Type: text/plain\r\n", file=FileBody.region(read_end, 100, 4096))
    try:
        expected = (b"HTTP/1.1 200 OK\r\n" + SERVER_AND_DATE
                    + b"Content-Type: text/plain\r\nContent-Length: 4096\r\n\r\n")
        assert HeadRenderer().render(response, "") == expected
        assert HeadRenderer().render(response, "", head_only=True) == expected
    finally:
        response.release()


def test_error_response():
    """A short plain-text body starting with the status, its length announced."""
    response = error_response(404)
    assert (response.status, response.body, response.content_length, response.close) == (
        404, b"404 Not Found\n", len(b"404 Not Found\n"), False)
    assert response.fields == "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
    detailed = error_response(400, "bare LF", extra_fields="Allow: GET, HEAD\r\n", close=True)
    assert (detailed.body, detailed.close) == (b"400 Bad Request: bare LF\n", True)
    assert detailed.fields.endswith("X-Content-Type-Options: nosniff\r\nAllow: GET, HEAD\r\n")


# -- FileBody ------------------------------------------------------------------

class Pipes:
    """FileBodies over the read ends of pipes, so that closing shows: a write
    to the other end fails once the read end is closed. What a test leaves
    open is closed after it, each descriptor by its one owner."""

    def __init__(self):
        self.bodies, self.write_ends = [], []

    def file_body(self, pieces):
        """(a FileBody over a fresh pipe's read end, that pipe's write end)"""
        read_end, write_end = os.pipe()
        self.write_ends.append(write_end)
        self.bodies.append(FileBody(read_end, pieces))
        return self.bodies[-1], write_end

    def close(self):
        for body in self.bodies:
            body.close()
        for write_end in self.write_ends:
            os.close(write_end)


@pytest.fixture
def pipes():
    pipes = Pipes()
    yield pipes
    pipes.close()


def test_a_region_is_one_piece_of_its_length():
    read_end, write_end = os.pipe()
    os.close(write_end)
    body = FileBody.region(read_end, 1000, 250)
    try:
        assert (body.fd, body.pieces, body.length) == (read_end, ((1000, 250),), 250)
    finally:
        body.close()


def test_multipart_pieces_count_regions_and_bytes_between(pipes):
    """A multipart/byteranges body: part heads as bytes, ranges as regions."""
    pieces = [b"\r\n--sep\r\nContent-Range: bytes 0-9/100\r\n\r\n", (0, 10),
              b"\r\n--sep\r\nContent-Range: bytes 50-54/100\r\n\r\n", (50, 5), b"\r\n--sep--\r\n"]
    body, _ = pipes.file_body(iter(pieces))  # any iterable, kept as a tuple
    assert body.pieces == tuple(pieces)
    assert body.length == 10 + 5 + sum(len(piece) for piece in pieces if isinstance(piece, bytes))
    assert Response(206, file=body).content_length == body.length
    assert pipes.file_body([])[0].length == 0


def test_close_closes_the_descriptor_once(pipes):
    body, write_end = pipes.file_body([(0, 1)])
    os.write(write_end, b"x")  # open: the pipe has a reader
    body.close()
    assert body.fd == -1
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")  # closed: no reader any more
    body.close()  # again: nothing happens
    assert body.fd == -1


def test_release_closes_the_file_of_a_response(pipes):
    body, write_end = pipes.file_body([(0, 1)])
    response = Response(200, file=body)
    response.release()
    response.release()
    assert body.fd == -1
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")
    Response(200, body=b"in memory").release()  # nothing to close


def test_content_length_counts_body_and_file_unless_given(pipes):
    assert Response(200, body=b"abc").content_length == 3
    assert Response(200, body=b"abc", file=pipes.file_body([(0, 7)])[0]).content_length == 10
    assert Response(200, content_length=42).content_length == 42
