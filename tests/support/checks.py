"""What every response must carry, and "the server is still serving"."""

import re

from .clients import RawClient, get
from .environment import demo_bytes

# The reason phrase the server sends with each status it can produce.
REASON_PHRASES = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported",
}

# IMF-fixdate, the one Date format a server may send (RFC 9110 §5.6.7).
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT")


def check_response_fields(status, headers, body=None):
    """Assert the fields every response carries (Date and Server; with content,
    nosniff and a Content-Length matching the body), and that an error or
    redirect body is one short plain-text line starting with the status."""
    assert IMF_FIXDATE.fullmatch(headers["date"]), headers["date"]
    assert headers["server"].startswith("reactor_http"), headers["server"]
    if status in (204, 304):
        return  # no content: no Content-Length needed (RFC 9110 §8.6), nothing to sniff
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-length" in headers
    if body is None:
        return
    assert int(headers["content-length"]) == len(body)
    if status >= 400 or status == 301:
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert body.startswith(f"{status} {REASON_PHRASES[status]}".encode()), body
        assert body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) < 200, body


def check_still_serving(server, timeout=10):
    """Assert a fresh connection gets the index page: whatever happened before
    cost its own connection only."""
    client = RawClient(server.connect(timeout), timeout)
    try:
        status, _, body = client.request(get("/"))
    finally:
        client.close()
    assert (status, body) == (200, demo_bytes("index.html"))


