"""The static site: a request in, a Response out (now, or after the disk).

``StaticSite.handle`` is the Handler the connection calls (see
http1/handler.py for the contract). What can be decided without the disk
(method, path syntax) is answered at once. Then the path is looked up in the
file cache; a hit is answered on the loop thread too. Anything else becomes a
job for the executor (``files.resolve``), whose result comes back to the loop
thread and is turned into a Response there.

From a file to its Response (which representation, preconditions, ranges) is
``representation.py``; this module is about paths: what a path names, the
redirect of a directory without its slash, listings, error pages and the
fallback of a single-page app.

Performance: when an answer follows from the request's bytes and one cache
entry alone, it is remembered (fast_path.AnswerMemo), and the same request
gets it again, with no path parsing, negotiation or precondition work, while
that entry stays in the cache.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..http1.fast_path import AnswerMemo
from ..http1.responses import Response, error_response
from . import files
from .autoindex import render_listing
from .cache import MAX_OPEN_FILES, FileCache
from .paths import PathError, RequestPath, parse_target
from .representation import Representations

if TYPE_CHECKING:
    from ..config import Config
    from ..http1.handler import Exchange
    from ..http1.parser import Request

SERVED_METHODS = ("GET", "HEAD")
ALLOW_FIELD = "Allow: GET, HEAD, OPTIONS\r\n"

# Methods the server knows but does not allow on static files get 405; any
# other method gets 501 (RFC 9110 §9.1, §15.5.6, §15.6.2).
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))


class StaticSite:
    """Serves the files under one document root."""

    def __init__(self, config: Config, answers: AnswerMemo | None = None,
                 clock: Callable[[], float] = time.monotonic, max_open_files: int = MAX_OPEN_FILES,
                 sending_files: int = 1 << 20):
        self.root = os.path.realpath(config.root)
        self.show_hidden = config.show_hidden
        self.precompressed = config.precompressed
        self.autoindex = config.autoindex
        self.cache = FileCache(config.cache_bytes, config.cache_valid, clock, max_open_files)
        self.answers = answers if answers is not None else AnswerMemo()
        self.representations = Representations(config, self.cache, self._error, sending_files)
        # --error-page 404=/404.html and --fallback /index.html, parsed once.
        self._error_pages = {status: parse_target(path, show_hidden=True)
                             for status, path in config.error_pages}
        # Policy: a 404.html at the top of the root is the 404 page, unless
        # --error-page says otherwise (as Caddy, serve and http-server do, and
        # as static hosts such as GitHub Pages and Netlify do). Looked for
        # once, at start.
        if 404 not in self._error_pages and os.path.isfile(os.path.join(self.root, "404.html")):
            self._error_pages[404] = parse_target("/404.html", show_hidden=True)
        self._try_html = config.try_html
        self._fallback = parse_target(config.fallback, show_hidden=True) if config.fallback else None
        self._cors = config.cors

    # -- the entry point ---------------------------------------------------------

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        """The Handler interface: a Response now, or None after one
        ``exchange.run_blocking``."""
        method = request.method
        if method not in SERVED_METHODS:
            if method == "OPTIONS":
                return self._options(request)
            if method in KNOWN_METHODS:
                return self._error(request, 405, None, exchange, ALLOW_FIELD)
            return self._error(request, 501, f"the {method} method is not implemented", exchange)
        remembered = self.answers.recall(request)
        if remembered is not None:
            return remembered
        try:
            path = parse_target(request.target, self.show_hidden)
        except PathError as error:
            return self._error(request, error.status, error.detail, exchange)
        return self._serve_path(request, path, exchange, remember=True)

    def _options(self, request: Request) -> Response:
        """OPTIONS says which methods the server allows (RFC 9110 §9.3.7), for
        the server as a whole ("*") or for any well-formed path: the answer is
        the same for every file, so the disk is not asked. With --cors, an
        OPTIONS that is a CORS preflight gets the Access-Control-* answer."""
        target = request.target
        if target != "*":
            try:
                parse_target(target, self.show_hidden)
            except PathError as error:
                return error_response(error.status, error.detail)
        headers = request.headers
        if self._cors and "origin" in headers and "access-control-request-method" in headers:
            return Response(204, ALLOW_FIELD + preflight_fields(headers), content_length=0)
        return Response(204, ALLOW_FIELD, content_length=0)

    # -- from a path to what is there ----------------------------------------------

    def _serve_path(self, request: Request, path: RequestPath, exchange: Exchange, status: int = 200,
                    fallback: bool = False, remember: bool = False, tried_html: bool = False) -> Response | None:
        """Serve what ``path`` names with ``status`` (200, or the status of an
        error page being served). With ``remember``, remember the answer for
        this request, if it allows that."""
        key = path.key()
        result = self.cache.lookup(key)
        if result is not None:
            response = self._serve_result(request, path, result, exchange, status, fallback, tried_html)
            if remember and response is not None and self._rememberable(result, response):
                self.answers.remember(request, response, self.cache.lookup, key, result)
            return response

        def on_resolved(result: Any) -> Response | None:
            # The job is shared: every request that missed this key while it
            # ran gets the same result, and the first of them stores it.
            kept = self.cache.holds(key, result) or (
                not (isinstance(result, files.Refused) and result.status == 503) and self.cache.store(key, result))
            try:
                return self._serve_result(request, path, result, exchange, status, fallback, tried_html)
            finally:
                if not kept and isinstance(result, files.Resource):
                    # Not cached: nobody else will close its descriptors. (A
                    # request sharing it that comes later finds them closed,
                    # and opens the file itself.)
                    result.close()

        exchange.run_blocking(files.resolve, (self.root, tuple(path.segments), path.directory, self.show_hidden,
                                              self.precompressed, self.autoindex,
                                              self.representations.digests), on_resolved, shared=True)
        return None

    def _rememberable(self, result: Any, response: Response) -> bool:
        """Whether ``response`` follows from the request's bytes and this cache
        entry alone: an answer from memory, not one that holds a file, nor one
        that went on to another path (a fallback or error page with its own
        entry)."""
        if response.file is not None:
            return False
        if isinstance(result, files.Resource):
            return True
        if isinstance(result, files.Refused):
            return self._fallback is None and result.status not in self._error_pages and not self._try_html
        return isinstance(result, files.MissingSlash)

    def _serve_result(self, request: Request, path: RequestPath, result: Any, exchange: Exchange,
                      status: int, fallback: bool, tried_html: bool = False) -> Response | None:
        if isinstance(result, files.Resource):
            return self.representations.serve(request, path, result, exchange, status)
        if status != 200:
            return error_response(status)  # an error page that is not a file: plain error
        if isinstance(result, files.MissingSlash):
            return _redirect_to_directory(path)
        if isinstance(result, files.Listing):
            body = render_listing(path.url_path(), result.entries)
            return Response(200, "Content-Type: text/html; charset=utf-8\r\n"
                                 "X-Content-Type-Options: nosniff\r\n"
                                 + self.representations.cache_policy.field_for(path.key()), body)
        if (result.status == 404 and self._try_html and not tried_html and not path.directory
                and path.segments and not path.segments[-1].endswith(".html")):
            # Clean URLs, nginx's try_files $uri $uri.html: /about is about.html.
            html = RequestPath([*path.segments[:-1], path.segments[-1] + ".html"], False, path.query)
            return self._serve_path(request, html, exchange, status, fallback, tried_html=True)
        if result.status == 404 and self._fallback is not None and not fallback:
            # try_files $uri /index.html: a single-page app routes in the browser.
            return self._serve_path(request, self._fallback, exchange, fallback=True)
        return self._error(request, result.status, result.detail, exchange)

    def _error(self, request: Request, status: int, detail: str | None, exchange: Exchange,
               extra_fields: str = "") -> Response | None:
        """An error response: the configured error page for this status if
        there is one (--error-page), else a short text."""
        page = self._error_pages.get(status)
        if page is not None and request.method in SERVED_METHODS:
            return self._serve_path(request, page, exchange, status=status)
        if status == 503:
            extra_fields += "Retry-After: 1\r\n"
        return error_response(status, detail, extra_fields)


# CORS (the Fetch standard, fetch.spec.whatwg.org, "CORS protocol"). A
# preflight asks whether a cross-origin request may be made; for static files
# the answer is yes for the methods served and any request fields asked for
# (nothing here changes state). Expose-Headers names the response fields a
# page's script may read beyond the safelisted ones: those of ranges and
# validators, which video players and download managers use.
CORS_EXPOSED_FIELDS = "Content-Range, Accept-Ranges, ETag, Content-Encoding"
CORS_MAX_AGE_SECONDS = 86400
_FIELD_NAME_LIST = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")


def response_fields(config: Config) -> str:
    """The header lines every response carries: --header's, and with --cors
    the origin allowed. The allowed origin is the same whatever the request's
    Origin, so responses need no Vary: Origin."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in config.headers)
    if config.cors:
        fields += (f"Access-Control-Allow-Origin: {config.cors}\r\n"
                   f"Access-Control-Expose-Headers: {CORS_EXPOSED_FIELDS}\r\n")
    return fields


def preflight_fields(headers: dict[str, str]) -> str:
    fields = (f"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
              f"Access-Control-Max-Age: {CORS_MAX_AGE_SECONDS}\r\n")
    asked = headers.get("access-control-request-headers", "").strip(" \t")
    if _FIELD_NAME_LIST.fullmatch(asked):  # a list of field names, nothing else, is echoed
        fields += (f"Access-Control-Allow-Headers: {asked}\r\n"
                   "Vary: Access-Control-Request-Headers\r\n")
    return fields


def _redirect_to_directory(path: RequestPath) -> Response:
    # The Location is rebuilt from the decoded segments, so it always starts
    # with exactly one "/": "//evil.example" can never become an off-site
    # redirect. The query string is kept, as nginx does.
    location = path.url_path() + "/"
    if path.query:
        location += "?" + path.query
    return error_response(301, None, f"Location: {location}\r\n")
