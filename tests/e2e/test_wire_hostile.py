"""Hostile and odd clients at the wire level: exact bytes in, exact responses out.

Each case in the table is raw bytes sent on a fresh connection, the statuses
expected back (in order; none when the server must close without answering),
and what the connection must be afterwards: "open" (a follow-up GET on the same
socket gets the index page, so nothing of the case was left behind to be taken
for a request) or "closed" (the server closes with no further bytes). After
every case a fresh connection must still be served: one hostile client costs
its own connection only.

Most cases are the defences against request smuggling (RFC 9112 §6.3, §11.2):
a server that frames a body differently from a proxy in front of it lets the
body's bytes be taken for a request. So anything ambiguous (Content-Length
with Transfer-Encoding, two lengths, an unknown coding, a malformed chunk, an
obs-fold, a bare CR or LF, ...) is refused with 400 and a close.

The table runs under epoll and poll against servers shared per backend (one
with default limits, one with tiny limits so that the boundaries are cheap to
reach). Nothing depends on timing: waits are for conditions, with generous
deadlines; the few sleeps only make it likely that bytes arrive in separate
segments, and the tests pass just as well when they do not.
"""

import socket
import time

import pytest
from support.checks import check_response_fields, check_still_serving
from support.clients import get
from support.environment import DEMO_ROOT, demo_bytes
from support.servers import ServerProcess, stop_and_check

INDEX = demo_bytes("index.html")
STYLE = demo_bytes("style.css")
APP = demo_bytes("app.js")
PNG = demo_bytes("images/reactor.png")
ALLOW = {"allow": "GET, HEAD, OPTIONS"}

# Tiny limits for the "small" server: boundaries a few bytes away.
SMALL_REQUEST_LINE = 64
SMALL_HEADER_BYTES = 128
SMALL_HEADER_COUNT = 4
SMALL_BODY = 16
SMALL_LIMIT_FLAGS = ["--max-request-line", str(SMALL_REQUEST_LINE),
                     "--max-header-bytes", str(SMALL_HEADER_BYTES),
                     "--max-headers", str(SMALL_HEADER_COUNT), "--max-body", str(SMALL_BODY)]

# The defaults, for the cases against the default server.
DEFAULT_REQUEST_LINE = 8192
DEFAULT_HEADER_BYTES = 16384
DEFAULT_BODY = 1024 * 1024


class Case:
    """One row of the table. ``expected`` is a status, a tuple of statuses (one
    per response, in order) or None (closed without any response)."""

    def __init__(self, name, data, expected, state, head=False, body=None, fields=None,
                 server="default", shutdown=False):
        self.name = name
        self.data = data
        if expected is None:
            self.statuses = ()
        elif isinstance(expected, int):
            self.statuses = (expected,)
        else:
            self.statuses = tuple(expected)
        assert state in ("open", "closed")
        self.state = state
        self.head = head              # the requests are HEAD: responses carry no body
        self.body = body              # the last response's exact body, when it matters
        self.fields = fields or {}    # fields the last response must carry, exactly
        self.server = server          # "default" or "small" (tiny limits)
        self.shutdown = shutdown      # half-close (SHUT_WR) after sending the data


def request(method="GET", target="/", version="HTTP/1.1", fields="Host: x\r\n", body=b""):
    """The bytes of one request; ``fields`` is the raw header section without the blank line."""
    head = f"{method} {target} {version}\r\n".encode("latin-1") + _bytes(fields) + b"\r\n"
    return head + body


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode("latin-1")


def post(fields, body=b""):
    """A POST to / with Host and the given extra fields (it gets 405 once framed)."""
    return request("POST", "/", fields=b"Host: x\r\n" + _bytes(fields), body=body)


def chunked_post(chunked_body, extra=b""):
    """A POST whose body is framed by chunked coding (RFC 9112 §7.1)."""
    return post(b"Transfer-Encoding: chunked\r\n" + _bytes(extra), chunked_body)


SMUGGLED = get("/style.css")  # a request hidden in a body: it must never be answered
FIELDS_OVER_ONE_KIB = b"".join(b"X-Filler-%d: %s\r\n" % (number, b"v" * 1000) for number in range(17))


def single_field_section(total, name=b"X-Big"):
    """Host plus one field whose value makes the header section exactly
    ``total`` bytes (each field line counted with its CRLF, as the limit is)."""
    fixed = len(b"Host: x\r\n") + len(name) + len(b": ") + len(b"\r\n")
    return b"Host: x\r\n" + name + b": " + b"v" * (total - fixed) + b"\r\n"


def request_line_target(total):
    """A target (the index page with a long query) that makes the request line
    ``GET <target> HTTP/1.1`` exactly ``total`` bytes long."""
    fixed = len("GET ") + len("/?") + len(" HTTP/1.1")
    return "/?" + "q" * (total - fixed)


CASES = [
    # -- bodies are framed and skipped, never parsed as requests (RFC 9112 §6.3) --------
    Case("post-cl-body-then-pipelined-get", post("Content-Length: 5\r\n", b"hello") + get("/style.css"),
         (405, 200), "open", body=STYLE),
    Case("get-cl-body-holding-a-request", request(fields=b"Host: x\r\nContent-Length: %d\r\n" % len(SMUGGLED),
                                                  body=SMUGGLED),
         200, "open", body=INDEX),
    Case("chunked-body-then-pipelined-get", chunked_post(b"5\r\nhello\r\n0\r\n\r\n") + get("/app.js"),
         (405, 200), "open", body=APP),
    Case("chunked-body-holding-a-request",
         request(fields=b"Host: x\r\nTransfer-Encoding: chunked\r\n",
                 body=b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"),
         200, "open", body=INDEX),
    Case("chunked-extensions", chunked_post(b'5;name=value;quoted="a b;c" ; bare\r\nhello\r\n0;last\r\n\r\n'),
         405, "open", fields=ALLOW),
    Case("chunked-trailers", chunked_post(b"5\r\nhello\r\n0\r\nX-Trailer: v\r\nContent-Length: 999\r\n\r\n")
         + get("/style.css"), (405, 200), "open", body=STYLE),
    Case("chunked-several-chunks-upper-hex",
         chunked_post(b"A\r\n0123456789\r\n1\r\nx\r\n00000F\r\n" + b"y" * 15 + b"\r\n0\r\n\r\n"), 405, "open"),
    Case("chunked-coding-name-any-case", post("Transfer-Encoding: ChUnKeD\r\n", b"0\r\n\r\n"), 405, "open"),
    Case("gzip-then-chunked-is-framed", post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 405, "open"),
    Case("two-te-fields-combine", post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                                       b"0\r\n\r\n"), 405, "open"),
    Case("te-with-tab-ows", post("Transfer-Encoding:\tchunked\t\r\n", b"0\r\n\r\n"), 405, "open"),
    Case("content-length-zero", post("Content-Length: 0\r\n"), 405, "open", fields=ALLOW),
    Case("content-length-leading-zeros", post("Content-Length: 0005\r\n", b"hello"), 405, "open"),
    Case("content-length-with-ows", post("Content-Length: \t5 \r\n", b"hello"), 405, "open"),
    Case("http10-keep-alive-with-body",
         request("POST", version="HTTP/1.0", fields="Connection: keep-alive\r\nContent-Length: 3\r\n",
                 body=b"abc"), 405, "open", fields={"connection": "keep-alive"}),
    Case("body-of-exactly-max-body", post(b"Content-Length: %d\r\n" % DEFAULT_BODY, b"b" * DEFAULT_BODY),
         405, "open"),

    # -- bodies too large (413 and close) --------------------------------------------------
    Case("content-length-over-max-body", post(b"Content-Length: %d\r\n" % (DEFAULT_BODY + 1)), 413, "closed"),
    Case("content-length-over-max-body-sent-anyway",
         post(b"Content-Length: %d\r\n" % (DEFAULT_BODY + 1), b"b" * (DEFAULT_BODY + 1)), 413, "closed"),
    Case("content-length-18-digits", post("Content-Length: 999999999999999999\r\n"), 413, "closed"),
    Case("chunk-over-max-body", chunked_post(b"%x\r\n" % (DEFAULT_BODY + 1)), 413, "closed"),
    Case("chunk-of-16-hex-digits", chunked_post(b"ffffffffffffffff\r\n"), 413, "closed"),

    # -- Expect (RFC 9110 §10.1.1) ---------------------------------------------------------
    # A final status at once, without reading the body, then a close: the body
    # the client may send late must never be read as a request.
    Case("expect-100-continue-post", post("Content-Length: 5\r\nExpect: 100-continue\r\n"), 405, "closed"),
    Case("expect-100-continue-get-with-body",
         request(fields=b"Host: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"), 200, "closed", body=INDEX),
    Case("expect-100-continue-body-sent-anyway",
         post(b"Content-Length: %d\r\nExpect: 100-continue\r\n" % len(SMUGGLED), SMUGGLED), 405, "closed"),
    Case("expect-100-continue-chunked", chunked_post(b"", b"Expect: 100-continue\r\n"), 405, "closed"),
    Case("expect-100-continue-without-body", get("/", extra="Expect: 100-continue\r\n"), 200, "open", body=INDEX),
    Case("expect-100-continue-any-case", get("/", extra="Expect: 100-Continue\r\n"), 200, "open", body=INDEX),
    Case("expect-unknown", get("/", extra="Expect: the-unexpected\r\n"), 417, "closed"),
    Case("expect-100-continue-with-parameter", get("/", extra="Expect: 100-continue; x=1\r\n"), 417, "closed"),

    # -- smuggling defences: ambiguous framing is 400 and close ------------------------------
    Case("cl-and-te", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-and-cl", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("cl-te-body-holds-a-request",
         post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
              b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"), 400, "closed"),
    Case("te-te-obfuscated-body-holds-a-request",
         post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
              b"0\r\n\r\n" + SMUGGLED), 400, "closed"),
    Case("duplicate-equal-content-length", post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
         400, "closed"),
    Case("differing-content-lengths-body-holds-a-request",
         post(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED), 400, "closed"),
    Case("content-length-list", post("Content-Length: 5, 5\r\n", b"hello"), 400, "closed"),
    Case("content-length-plus-sign", post("Content-Length: +5\r\n", b"hello"), 400, "closed"),
    Case("content-length-negative", post("Content-Length: -1\r\n"), 400, "closed"),
    Case("content-length-inner-space", post("Content-Length: 1 0\r\n", b"0123456789"), 400, "closed"),
    Case("content-length-hex", post("Content-Length: 0x5\r\n", b"hello"), 400, "closed"),
    Case("content-length-trailing-letter", post("Content-Length: 5a\r\n", b"hello"), 400, "closed"),
    Case("content-length-decimal-point", post("Content-Length: 5.0\r\n", b"hello"), 400, "closed"),
    Case("content-length-empty", post("Content-Length: \r\n"), 400, "closed"),
    Case("content-length-19-digits", post("Content-Length: 0000000000000000005\r\n", b"hello"), 400, "closed"),
    # "²" is a digit to str.isdigit(), but not to RFC 9110's DIGIT.
    Case("content-length-non-ascii-digit", post(b"Content-Length: \xb2\r\n", b"he"), 400, "closed"),
    Case("te-last-coding-not-chunked", post("Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-identity-only", post("Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-chunked-twice", post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-unknown-coding", post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-unknown-then-chunked", post("Transfer-Encoding: foo, chunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-empty-list-element", post("Transfer-Encoding: , chunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-in-http10", request("POST", version="HTTP/1.0", fields="Transfer-Encoding: chunked\r\n",
                                 body=b"0\r\n\r\n"), 400, "closed"),
    Case("te-space-before-colon", post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-vertical-tab", post("Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), 400, "closed"),
    Case("te-obs-fold", post("Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400, "closed"),

    # -- invalid chunked framing (RFC 9112 §7.1) ---------------------------------------------
    Case("chunk-size-17-hex-digits", chunked_post(b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-not-hex", chunked_post(b"xyz\r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-negative", chunked_post(b"-5\r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-0x-prefix", chunked_post(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-empty", chunked_post(b"\r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-trailing-space", chunked_post(b"5 \r\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-size-bare-lf", chunked_post(b"5\nhello\r\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-data-without-crlf", chunked_post(b"5\r\nhelloXX0\r\n\r\n"), 400, "closed"),
    Case("chunk-data-longer-than-size-holds-a-request",
         chunked_post(b"1\r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400, "closed"),
    Case("chunk-data-bare-lf", chunked_post(b"5\r\nhello\n0\r\n\r\n"), 400, "closed"),
    Case("chunk-extension-unterminated-quote", chunked_post(b'5;a="b\r\nhello\r\n0\r\n\r\n'), 400, "closed"),
    Case("chunk-line-too-long", chunked_post(b"5;" + b"e" * 5000 + b"\r\n"), 400, "closed"),
    Case("trailer-without-colon", chunked_post(b"0\r\nnot a field\r\n\r\n"), 400, "closed"),
    Case("trailer-obs-fold", chunked_post(b"0\r\nX-T: a\r\n folded\r\n\r\n"), 400, "closed"),
    Case("trailer-section-too-large", chunked_post(b"0\r\nX-T: " + b"t" * DEFAULT_HEADER_BYTES + b"\r\n\r\n"),
         431, "closed"),

    # -- field syntax (RFC 9112 §5, RFC 9110 §5.5) -------------------------------------------
    Case("obs-fold-space", get("/", extra="X-A: a\r\n b\r\n"), 400, "closed"),
    Case("obs-fold-tab", get("/", extra="X-A: a\r\n\tb\r\n"), 400, "closed"),
    Case("obs-fold-first-line", request(fields=" X-A: a\r\nHost: x\r\n"), 400, "closed"),
    Case("space-before-colon", request(fields="Host : x\r\n"), 400, "closed"),
    Case("tab-before-colon", get("/", extra="X-A\t: a\r\n"), 400, "closed"),
    Case("bare-cr-in-value", get("/", extra="X-A: a\rb\r\n"), 400, "closed"),
    Case("bare-cr-line-end", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "closed"),
    Case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: x\n\n", 400, "closed"),
    Case("bare-lf-final-line", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "closed"),
    Case("bare-lf-leading", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("nul-in-value", get("/", extra="X-A: a\x00b\r\n"), 400, "closed"),
    Case("del-in-value", get("/", extra="X-A: a\x7fb\r\n"), 400, "closed"),
    Case("escape-in-value", get("/", extra="X-A: \x1b[2J\r\n"), 400, "closed"),
    Case("nul-in-name", get("/", extra="X-\x00A: a\r\n"), 400, "closed"),
    Case("empty-field-name", get("/", extra=": a\r\n"), 400, "closed"),
    Case("separator-in-field-name", get("/", extra="X(A): a\r\n"), 400, "closed"),
    Case("field-line-without-colon", get("/", extra="NoColonHere\r\n"), 400, "closed"),
    Case("obs-text-in-value-is-allowed", get("/", extra="X-A: caf\xe9 \xff\r\n"), 200, "open", body=INDEX),
    Case("empty-field-value", get("/", extra="X-Empty:\r\n"), 200, "open", body=INDEX),

    # -- the request line (RFC 9112 §3) --------------------------------------------------------
    Case("two-spaces-after-method", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("two-spaces-before-version", b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("trailing-space", b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "closed"),
    Case("leading-space", b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("tabs-as-separators", b"GET\t/\tHTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("nul-in-target", b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("non-ascii-in-target", b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("separator-in-method", b"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("lower-case-protocol-name", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("two-digit-minor-version", b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400, "closed"),
    Case("http09-request-line", b"GET /\r\n\r\n", 400, "closed"),
    Case("http2-version", request(version="HTTP/2.0"), 505, "closed"),
    Case("http3-version", request(version="HTTP/3.0"), 505, "closed"),
    Case("http09-version", request(version="HTTP/0.9"), 505, "closed"),
    Case("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "closed"),
    # RFC 9112 §2.2: ignore empty lines before a request line; up to
    # MAX_EMPTY_LINES (16) of them, since a stream of nothing but CRLF is a
    # client spending the server's time.
    Case("leading-empty-lines", b"\r\n" * 16 + get("/style.css"), 200, "open", body=STYLE),
    Case("too-many-leading-empty-lines", b"\r\n" * 17 + get("/style.css"), 400, "closed"),
    Case("thousands-of-leading-empty-lines", b"\r\n" * 5000 + get("/style.css"), 400, "closed"),

    # -- Host (RFC 9112 §3.2) -------------------------------------------------------------------
    Case("http11-without-host", request(fields="Accept: */*\r\n"), 400, "closed"),
    Case("two-hosts", request(fields="Host: x\r\nHost: y\r\n"), 400, "closed"),
    Case("two-equal-hosts", request(fields="Host: x\r\nHost: x\r\n"), 400, "closed"),
    Case("host-with-space", request(fields="Host: a b\r\n"), 400, "closed"),
    Case("host-with-slash", request(fields="Host: a/b\r\n"), 400, "closed"),
    Case("host-with-userinfo", request(fields="Host: user@x\r\n"), 400, "closed"),
    Case("host-empty-is-allowed", request(fields="Host:\r\n"), 200, "open", body=INDEX),
    Case("host-with-port", request(fields="Host: example.com:8080\r\n"), 200, "open", body=INDEX),
    Case("host-ipv6-literal", request(fields="Host: [::1]:8080\r\n"), 200, "open", body=INDEX),
    Case("http10-without-host", request(version="HTTP/1.0", fields=""), 200, "closed", body=INDEX),

    # -- targets ----------------------------------------------------------------------------------
    Case("absolute-form-http", get("http://anything/style.css"), 200, "open", body=STYLE),
    Case("absolute-form-https-with-port", get("https://example.com:8443/app.js?x=1"), 200, "open", body=APP),
    Case("absolute-form-upper-case-scheme", get("HTTP://example.com/style.css"), 200, "open", body=STYLE),
    Case("absolute-form-without-path", get("http://example.com"), 200, "open", body=INDEX),
    Case("absolute-form-traversal", get("http://x/../../etc/passwd"), 400, "open"),
    Case("percent-encoded-dot-dot", get("/%2e%2e/%2e%2e/etc/passwd"), 400, "open"),
    Case("percent-encoded-slashes-and-dots", get("/..%2f..%2fetc%2fpasswd"), 400, "open"),
    Case("upper-case-percent-traversal", get("/images/%2E%2E/%2E%2E/etc/passwd"), 400, "open"),
    Case("percent-encoded-nul", get("/index.html%00.png"), 400, "open"),
    Case("malformed-percent-escape", get("/%zz"), 400, "open"),
    Case("percent-encoded-invalid-utf8", get("/%ff%fe"), 400, "open"),
    Case("percent-encoded-name", get("/%73tyle.css"), 200, "open", body=STYLE),
    Case("fragment-in-target", get("/index.html#top"), 400, "open"),
    Case("relative-target", get("index.html"), 400, "open"),
    Case("asterisk-target-on-get", get("*"), 400, "open"),
    Case("dotfile-is-hidden", get("/.env"), 404, "open"),
    Case("directory-redirect", get("/images"), 301, "open", fields={"location": "/images/"}),

    # -- methods (RFC 9110 §9) ---------------------------------------------------------------------
    Case("options-asterisk", request("OPTIONS", "*"), 204, "open", fields=ALLOW),
    Case("options-path", request("OPTIONS", "/style.css"), 204, "open", fields=ALLOW),
    Case("options-missing-path", request("OPTIONS", "/no-such-file"), 204, "open", fields=ALLOW),
    Case("options-traversal", request("OPTIONS", "/../etc/passwd"), 400, "open"),
    Case("options-http10", request("OPTIONS", "*", version="HTTP/1.0", fields=""), 204, "closed", fields=ALLOW),
    Case("unknown-method", request("BREW", "/pot"), 501, "open"),
    # Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
    Case("lower-case-get", request("get"), 501, "open"),
    Case("delete", request("DELETE"), 405, "open", fields=ALLOW),
    Case("put-with-body", request("PUT", "/x", fields="Host: x\r\nContent-Length: 3\r\n", body=b"abc"),
         405, "open", fields=ALLOW),
    Case("trace", request("TRACE"), 405, "open", fields=ALLOW),
    Case("connect-authority-form", request("CONNECT", "example.com:443"), 405, "open", fields=ALLOW),

    # -- HEAD: never a body, whatever the status (RFC 9110 §9.3.2) -------------------------------
    Case("head-index", request("HEAD"), 200, "open", head=True, fields={"content-length": str(len(INDEX))}),
    Case("head-missing", request("HEAD", "/missing"), 404, "open", head=True),
    Case("head-redirect", request("HEAD", "/images"), 301, "open", head=True, fields={"location": "/images/"}),
    Case("head-bad-path", request("HEAD", "/%zz"), 400, "open", head=True),
    Case("head-pipelined-three", request("HEAD") * 3, (200, 200, 200), "open", head=True),
    Case("head-unknown-expectation", request("HEAD", fields="Host: x\r\nExpect: nothing\r\n"), 417, "closed",
         head=True),
    Case("head-without-host", request("HEAD", fields=""), 400, "closed", head=True),
    Case("head-body-too-large", request("HEAD", fields="Host: x\r\nContent-Length: 2000000\r\n"), 413, "closed",
         head=True),
    Case("head-obs-fold", request("HEAD", fields="Host: x\r\nX-A: a\r\n b\r\n"), 400, "closed", head=True),

    # -- persistence -------------------------------------------------------------------------------
    Case("connection-close-then-pipelined-request", get("/", extra="Connection: close\r\n") + get("/style.css"),
         200, "closed", body=INDEX, fields={"connection": "close"}),
    Case("connection-close-among-tokens", get("/", extra="Connection: keep-alive, Close\r\n"), 200, "closed",
         body=INDEX),
    Case("connection-field-twice", get("/", extra="Connection: keep-alive\r\nConnection: close\r\n"),
         200, "closed", body=INDEX),
    Case("http10-keep-alive", request(version="HTTP/1.0", fields="Connection: keep-alive\r\n"), 200, "open",
         body=INDEX, fields={"connection": "keep-alive"}),
    Case("half-close-after-complete-request", get("/style.css"), 200, "closed", body=STYLE, shutdown=True),
    Case("half-close-after-two-requests", get("/style.css") + get("/app.js"), (200, 200), "closed", body=APP,
         shutdown=True),
    Case("half-close-mid-head", b"GET / HTTP/1.1\r\nHost:", None, "closed", shutdown=True),
    Case("half-close-mid-body", post("Content-Length: 10\r\n", b"hello"), None, "closed", shutdown=True),
    Case("half-close-after-empty-lines", b"\r\n\r\n\r\n", None, "closed", shutdown=True),

    # -- limits, at the boundary and just over it ----------------------------------------------------
    Case("request-line-at-default-limit", get(request_line_target(DEFAULT_REQUEST_LINE)), 200, "open", body=INDEX),
    Case("request-line-over-default-limit", get(request_line_target(DEFAULT_REQUEST_LINE + 1)), 414, "closed"),
    Case("huge-value-at-default-limit", request(fields=single_field_section(DEFAULT_HEADER_BYTES)), 200, "open",
         body=INDEX),
    Case("huge-value-over-default-limit", request(fields=single_field_section(DEFAULT_HEADER_BYTES + 1)),
         431, "closed"),
    Case("many-kilobyte-fields", request(fields=b"Host: x\r\n" + FIELDS_OVER_ONE_KIB), 431, "closed"),
    Case("one-hundred-fields", request(fields="Host: x\r\n" + "".join(f"X-F{n}: v\r\n" for n in range(99))),
         200, "open", body=INDEX),
    Case("one-hundred-and-one-fields",
         request(fields="Host: x\r\n" + "".join(f"X-F{n}: v\r\n" for n in range(100))), 431, "closed"),
    Case("endless-request-line", b"GET /" + b"a" * (DEFAULT_REQUEST_LINE + 10), 414, "closed"),
    Case("endless-field", request(fields=b"Host: x\r\nX-Endless: " + b"v" * (2 * DEFAULT_HEADER_BYTES))[:-2],
         431, "closed"),
    Case("small-request-line-at-limit", get(request_line_target(SMALL_REQUEST_LINE)), 200, "open", body=INDEX,
         server="small"),
    Case("small-request-line-over-limit", get(request_line_target(SMALL_REQUEST_LINE + 1)), 414, "closed",
         server="small"),
    Case("small-header-section-at-limit", request(fields=single_field_section(SMALL_HEADER_BYTES)), 200, "open",
         body=INDEX, server="small"),
    Case("small-header-section-over-limit", request(fields=single_field_section(SMALL_HEADER_BYTES + 1)),
         431, "closed", server="small"),
    Case("small-fields-at-count-limit", request(fields="Host: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), 200, "open",
         body=INDEX, server="small"),
    Case("small-fields-over-count-limit", request(fields="Host: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"),
         431, "closed", server="small"),
    Case("small-body-at-limit", post(b"Content-Length: %d\r\n" % SMALL_BODY, b"b" * SMALL_BODY), 405, "open",
         server="small"),
    Case("small-body-over-limit", post(b"Content-Length: %d\r\n" % (SMALL_BODY + 1), b"b" * (SMALL_BODY + 1)),
         413, "closed", server="small"),
    Case("small-chunked-body-at-limit", chunked_post(b"8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"), 405, "open",
         server="small"),
    Case("small-chunked-body-over-limit", chunked_post(b"8\r\n01234567\r\n9\r\n89abcdefg\r\n0\r\n\r\n"),
         413, "closed", server="small"),
    Case("small-trailers-over-limit", chunked_post(b"0\r\nX-T: " + b"t" * SMALL_HEADER_BYTES + b"\r\n\r\n"),
         431, "closed", server="small"),
]


# -- shared servers -------------------------------------------------------------------------




@pytest.fixture(scope="module")
def default_server(shared_selector):
    """The demo site with default limits, shared by the whole module."""
    server = ServerProcess(["--selector", shared_selector, "--quiet"], DEMO_ROOT)
    yield server
    stop_and_check(server)


@pytest.fixture(scope="module")
def small_server(shared_selector):
    """The demo site with tiny limits, so that each boundary is a few bytes away."""
    server = ServerProcess(["--selector", shared_selector, "--quiet", *SMALL_LIMIT_FLAGS], DEMO_ROOT)
    yield server
    stop_and_check(server)


@pytest.fixture
def servers(request, shared_selector):
    """Look a shared server up by name, starting the small one only when needed
    (for the selector this test is parametrized with)."""
    return lambda name: request.getfixturevalue(f"{name}_server")


# -- the table ---------------------------------------------------------------------------------


def test_the_table_is_large_and_its_names_distinct():
    """The table holds at least 80 cases, each with its own name (ids must not collide)."""
    names = [case.name for case in CASES]
    assert len(names) >= 80
    assert len(set(names)) == len(names), sorted(name for name in names if names.count(name) > 1)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_request(servers, client_for, case):
    """Each case gets exactly its statuses, in order, and leaves the connection as
    the table says; then the server still serves a fresh connection."""
    server = servers(case.server)
    client = client_for(server)
    client.send(case.data)
    if case.shutdown:
        client.sock.shutdown(socket.SHUT_WR)
    headers = body = None
    for number, expected_status in enumerate(case.statuses):
        status, headers, body = client.read_response(head_request=case.head)
        assert (number, status) == (number, expected_status), body
        check_response_fields(status, headers, None if case.head else body)
    if case.body is not None:
        assert body == case.body
    for name, value in case.fields.items():
        assert headers.get(name) == value, headers
    # Nothing after the last response: no body for HEAD, no answer to a smuggled request.
    assert client.buffer == b""
    if case.state == "open":
        if headers is not None:
            assert headers.get("connection") != "close", headers
        status, headers, body = client.request(get("/"))
        assert (status, body) == (200, INDEX)
        assert client.buffer == b""
    else:
        if headers is not None and not case.shutdown:
            # The server closes by its own decision, and says so. (After a
            # half-close it learns of the end only once it has answered.)
            assert headers["connection"] == "close"
        assert client.is_closed_by_peer()
    check_still_serving(server)


# -- pipelining and segmentation ----------------------------------------------------------------

PIPELINE_PLAN = [("/", INDEX), ("/style.css", STYLE), ("/missing", b"404 Not Found\n"), ("/app.js", APP),
                 ("/images/reactor.png", PNG)]


def test_one_hundred_pipelined_requests_in_one_write(default_server, client_for):
    """100 requests in a single send are all answered, in order, each with its own
    body (RFC 9112 §9.3.2), and the connection stays open."""
    client = client_for(default_server, timeout=30)
    plan = [PIPELINE_PLAN[number % len(PIPELINE_PLAN)] for number in range(100)]
    client.send(b"".join(get(path, extra=f"X-Number: {number}\r\n") for number, (path, _) in enumerate(plan)))
    for number, (path, expected_body) in enumerate(plan):
        status, _, body = client.read_response()
        assert (number, path, status, body) == (number, path, 404 if path == "/missing" else 200, expected_body)
    assert client.buffer == b""
    assert client.request(get("/"))[2] == INDEX


def test_pipelined_mix_with_bodies_answered_in_order(default_server, client_for):
    """Requests with Content-Length and chunked bodies, HEAD and OPTIONS, pipelined in
    one write: each body is skipped exactly, so every response answers its request."""
    client = client_for(default_server)
    client.send(post(f"Content-Length: {len(SMUGGLED)}\r\n", SMUGGLED)
                + request("HEAD", "/style.css")
                + chunked_post(b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\nX-T: 1\r\n\r\n")
                + request("OPTIONS", "*")
                + get("/app.js"))
    assert client.read_response()[0] == 405
    status, headers, _ = client.read_response(head_request=True)
    assert (status, headers["content-length"]) == (200, str(len(STYLE)))
    assert client.read_response()[0] == 405
    status, headers, _ = client.read_response()
    assert (status, headers["allow"]) == (204, "GET, HEAD, OPTIONS")
    status, _, body = client.read_response()
    assert (status, body) == (200, APP)
    assert client.buffer == b""
    assert not client.is_closed_by_peer(timeout=0.2)


def send_in_two_pieces(client, data, split_at):
    """Send data in two segments split at ``split_at``; the pause lets the server
    read the first piece alone (if it does not, the test passes all the same)."""
    client.send(data[:split_at])
    time.sleep(0.005)
    client.send(data[split_at:])


CHUNKED_REQUEST = chunked_post(b"5;ext=1\r\nhello\r\n10\r\n" + b"z" * 16 + b"\r\n0\r\nX-T: v\r\n\r\n")


def test_chunked_request_split_at_every_byte(default_server, client_for):
    """A chunked POST split in two at every possible byte (inside CRLFs, inside the
    chunk size, inside the trailer) is framed the same way every time: 405, and
    the connection goes on to the next split."""
    client = client_for(default_server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for split_at in range(1, len(CHUNKED_REQUEST)):
        send_in_two_pieces(client, CHUNKED_REQUEST, split_at)
        status, _, _ = client.read_response()
        assert (split_at, status) == (split_at, 405)
    assert client.request(get("/"))[2] == INDEX


@pytest.mark.parametrize("data, split_after", [
    (get("/style.css"), b"GET /style.css HTTP/1.1\r"),             # between CR and LF of the request line
    (get("/style.css"), b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r"),  # inside the final CRLF
    (get("/style.css"), b"GET /style.css HTTP/1.1\r\nHost: x\r\n"),    # before the empty line
    (b"\r\n\r\n" + get("/style.css"), b"\r\n\r"),             # inside the leading empty lines
    (chunked_post(b"10\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n") + get("/style.css"), b"\r\n\r\n1"),  # "1|0"
    (chunked_post(b"5\r\nhello\r\n0\r\n\r\n") + get("/style.css"), b"hello\r"),  # CRLF after data
], ids=["request-line-crlf", "final-crlf", "before-empty-line", "leading-empty-lines", "inside-chunk-size",
        "after-chunk-data"])
def test_awkward_split_points(default_server, client_for, data, split_after):
    """Splits at the most awkward points give the same answers as one write."""
    split_at = data.index(split_after) + len(split_after)
    client = client_for(default_server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send_in_two_pieces(client, data, split_at)
    status, _, body = client.read_response()
    if data.startswith(b"POST"):
        assert status == 405
        status, _, body = client.read_response()
    assert (status, body) == (200, STYLE)
    assert client.buffer == b""


def test_chunked_request_one_byte_at_a_time(default_server, client_for):
    """A chunked request with extensions and trailers, one byte per send, then a
    pipelined GET: framed exactly."""
    client = client_for(default_server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in CHUNKED_REQUEST + get("/style.css"):
        client.send(bytes([byte]))
    assert client.read_response()[0] == 405
    status, _, body = client.read_response()
    assert (status, body) == (200, STYLE)


def test_error_response_survives_unread_input(default_server, client_for):
    """After an error the server shuts its sending side and drains what the client
    still sends before it closes (lingering close). Closing at once with unread
    input would make the kernel send RST, which can destroy the error response
    before the client reads it (RFC 9112 §9.6). Here 4 MiB follow a bad head in
    one write: the whole write goes through, and the 400 arrives intact."""
    client = client_for(default_server, timeout=30)
    client.send(get("/", extra="X-Bad: \x00\r\n") + b"x" * (4 * 1024 * 1024))
    status, headers, body = client.read_response()
    assert status == 400
    assert headers["connection"] == "close"
    check_response_fields(status, headers, body)
    assert client.buffer == b""
    assert client.is_closed_by_peer()
