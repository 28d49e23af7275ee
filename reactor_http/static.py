"""The static file layer: turns a request into a response plan.

``StaticSite.handle`` is called on the loop thread with a parsed request. What
can be decided without the disk (method, path syntax) is answered at once.
Then the path is looked up in the file cache; a hit is answered on the loop
thread too. Anything else goes to the executor as a job (``files.resolve``,
``files.open_variant``, ``files.gzip_variant``), and its outcome comes back to
the loop thread, where it becomes a Response for the connection.

Every function here that may need the executor follows one rule: it returns a
Response when it can answer at once, or returns None and later calls
``respond(response)`` exactly once.

The HTTP rules applied to a file, in the RFC's order (RFC 9110 §13.2.2):
choose the representation (Accept-Encoding, §12.5.3), evaluate the
preconditions (If-Match, If-Unmodified-Since, If-None-Match,
If-Modified-Since: 412 or 304), then Range (with If-Range: 206 or 416).
"""

import os
import re

from . import files
from .autoindex import render_listing
from .conditional import evaluate_preconditions, format_http_date, if_range_allows_range
from .content_types import content_type
from .file_cache import FileCache
from .logs import log_error
from .negotiation import acceptable_encodings, is_compressible
from .paths import PathError, parse_target
from .ranges import UNSATISFIABLE, content_range, make_boundary, multipart_layout, parse_range, unsatisfied_range
from .responses import FileBody, Response, WireCache, error_response

SERVED_METHODS = ("GET", "HEAD")
ALLOW_FIELD = "Allow: GET, HEAD, OPTIONS\r\n"

# Methods the server knows but does not allow on static files get 405; any
# other method gets 501 (RFC 9110 §9.1, §15.5.6, §15.6.2).
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))

# On-the-fly gzip (--gzip) is for text up to this size; larger files should be
# precompressed ahead of time (style.css.gz beside style.css).
GZIP_MAX_BYTES = 4 * 1024 * 1024


class StaticSite:
    """Serves the files under one document root."""

    def __init__(self, config, executor, clock):
        self.root = os.path.realpath(config.root)
        self.show_hidden = config.show_hidden
        self.precompressed = config.precompressed
        self.gzip = config.gzip
        self.autoindex = config.autoindex
        self.cache = FileCache(config.cache_bytes, config.cache_valid, clock)
        self._executor = executor
        self._cache_control = f"Cache-Control: {config.cache_control}\r\n" if config.cache_control else ""
        # --error-page 404=/404.html and --fallback /index.html, parsed once.
        self._error_pages = {status: parse_target(path, show_hidden=True)
                             for status, path in config.error_pages}
        self._fallback = parse_target(config.fallback, show_hidden=True) if config.fallback else None
        self._cors = config.cors

    # -- the entry point ---------------------------------------------------------

    def handle(self, request, respond, client=None):
        """Return a Response now, or return None and later call
        ``respond(response)`` on the loop thread. (The client's address is
        for the status page, which stands in front of this.)"""
        method = request.method
        if method not in SERVED_METHODS:
            if method == "OPTIONS":
                return self._options(request)
            if method in KNOWN_METHODS:
                return self._error(request, 405, None, respond, ALLOW_FIELD)
            return self._error(request, 501, f"the {method} method is not implemented", respond)
        plan = request.plan
        if plan is not None and self.cache.lookup(plan.key) is plan.result:
            return plan.response()  # the same request, answered from the same cache entry
        try:
            path = parse_target(request.target, self.show_hidden)
        except PathError as error:
            return self._error(request, error.status, error.detail, respond)
        return self._serve_path(request, path, respond, memo=True)

    def _options(self, request):
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
            return Response(204, ALLOW_FIELD + _preflight_fields(headers), content_length=0)
        return Response(204, ALLOW_FIELD, content_length=0)

    # -- from a path to what is there ----------------------------------------------

    def _serve_path(self, request, path, respond, status=200, fallback=False, memo=False):
        """Serve what ``path`` names with ``status`` (200, or the status of an
        error page being served). With ``memo``, remember a plan on the
        request for next time, if the answer allows it."""
        key = (tuple(path.segments), path.directory)
        result = self.cache.lookup(key)
        if result is not None:
            response = self._serve_result(request, path, result, respond, status, fallback)
            if memo and response is not None and self._plannable(result, response):
                request.plan = Plan(key, result, response)
            return response

        def on_resolved(outcome):
            if outcome.error is not None:
                log_error(f"unexpected error resolving {path.url_path()!r}", outcome.error)
                return self._error(request, 500, None, respond) if status == 200 else error_response(status)
            result = outcome.value
            kept = not (isinstance(result, files.Refused) and result.status == 503) and self.cache.store(key, result)
            try:
                return self._serve_result(request, path, result, respond, status, fallback)
            finally:
                if not kept and isinstance(result, files.Resource):
                    result.close()  # not cached: nobody else will close its descriptors

        self._submit(files.resolve, (self.root, path.segments, path.directory, self.show_hidden,
                                     self.precompressed, self.autoindex), on_resolved, respond)
        return None

    def _plannable(self, result, response):
        """Whether ``response`` follows from the request's bytes and this cache
        entry alone, so the same request may get it again while the entry is
        valid: an answer from memory, not one that holds a file, nor one that
        went on to another path (a fallback or error page with its own entry)."""
        if response.file is not None or response.parts is not None:
            return False
        if isinstance(result, files.Resource):
            return True
        if isinstance(result, files.Refused):
            return self._fallback is None and result.status not in self._error_pages
        return isinstance(result, files.MissingSlash)

    def _serve_result(self, request, path, result, respond, status, fallback):
        if isinstance(result, files.Resource):
            return self._serve_resource(request, path, result, respond, status)
        if status != 200:
            return error_response(status)  # an error page that is not a file: plain error
        if isinstance(result, files.MissingSlash):
            return _redirect_to_directory(path)
        if isinstance(result, files.Listing):
            body = render_listing(path.url_path(), result.entries)
            return Response(200, "Content-Type: text/html; charset=utf-8\r\n"
                                 "X-Content-Type-Options: nosniff\r\n" + self._cache_control, body)
        if result.status == 404 and self._fallback is not None and not fallback:
            # try_files $uri /index.html: a single-page app routes in the browser.
            return self._serve_path(request, self._fallback, respond, fallback=True)
        return self._error(request, result.status, result.detail, respond)

    def _error(self, request, status, detail, respond, extra_fields=""):
        """An error response: the configured error page for this status if
        there is one (--error-page), else a short text."""
        page = self._error_pages.get(status)
        if page is not None and request.method in SERVED_METHODS:
            return self._serve_path(request, page, respond, status=status)
        if status == 503:
            extra_fields += "Retry-After: 1\r\n"
        return error_response(status, detail, extra_fields)

    # -- from a file to a response -------------------------------------------------

    def _serve_resource(self, request, path, resource, respond, status):
        if status != 200:
            # An error page: the whole file, with the error's status. No
            # validators or ranges: they describe the page, not the error.
            return self._with_body(request, resource, resource.variants["identity"], respond,
                                   lambda variant, source: self._plain_file(resource, variant, source, status))
        headers = request.headers
        variant = self._choose_variant(resource, headers)
        if (self.gzip and variant.coding == "identity" and "range" not in headers
                and self._should_gzip(resource, variant, headers)):
            return self._gzip_then_serve(request, path, resource, variant, respond)
        return self._with_body(request, resource, variant, respond,
                               lambda fresh, source: self._file_response(request, resource, fresh, source))

    def _choose_variant(self, resource, headers):
        variants = resource.variants
        if len(variants) > 1:
            codings = [coding for coding in variants if coding != "identity"]
            if "range" in headers:
                # On-the-fly gzip is never used for ranges: its bytes are
                # ours, not a file's, and would change with the gzip level.
                codings = [c for c in codings if variants[c].path != variants["identity"].path]
            for coding in acceptable_encodings(headers.get("accept-encoding"), codings):
                return variants[coding]
        return variants["identity"]

    def _should_gzip(self, resource, variant, headers):
        if "gzip" in resource.variants or variant.size > GZIP_MAX_BYTES or variant.size < 256:
            return False
        if not is_compressible(content_type(resource.name)):
            return False
        return "gzip" in acceptable_encodings(headers.get("accept-encoding"), ("gzip",))

    def _gzip_then_serve(self, request, path, resource, variant, respond):
        def on_compressed(outcome):
            compressed = outcome.value if outcome.error is None else None
            if compressed is not None:
                resource.variants["gzip"] = compressed
                self.cache.update_cost((tuple(path.segments), path.directory))
            chosen = compressed if compressed is not None else variant
            return self._with_body(request, resource, chosen, respond,
                                   lambda fresh, source: self._file_response(request, resource, fresh, source))
        self._submit(files.gzip_variant, (variant, GZIP_MAX_BYTES), on_compressed, respond)
        return None

    def _with_body(self, request, resource, variant, respond, build):
        """Call ``build(variant, source)`` with a body source: the bytes of a
        small variant, an open descriptor for a large one (opened on the
        executor, and described afresh by fstat), or None for HEAD."""
        if variant.data is not None:
            return build(variant, variant.data)
        if request.method == "HEAD":
            return build(variant, None)
        if variant.fd >= 0 and _unchanged(variant):
            # The cache holds this large file open: send from a duplicate of
            # its descriptor (no disk access, so fine on the loop thread).
            try:
                return build(variant, os.dup(variant.fd))
            except OSError:  # out of descriptors
                return self._error(request, 503, "out of file descriptors; try again", respond)

        def on_opened(outcome):
            if outcome.error is not None:
                log_error(f"unexpected error opening {variant.path!r}", outcome.error)
                return error_response(500)
            opened = outcome.value
            if isinstance(opened, files.Refused):
                return self._error(request, opened.status, opened.detail, respond)
            fd, fresh = opened
            return build(fresh, fd)
        self._submit(files.open_variant, (variant,), on_opened, respond)
        return None

    def _representation_fields(self, resource, variant):
        fields = (f"Content-Type: {content_type(resource.name)}\r\n"
                  "X-Content-Type-Options: nosniff\r\n")
        if variant.coding != "identity":
            fields += f"Content-Encoding: {variant.coding}\r\n"
        return fields

    def _vary_field(self, resource):
        """Vary: Accept-Encoding on every response whose content or status
        depends on the variant chosen (RFC 9110 §12.5.5): a 200 or 304, and
        equally a 412 or 416 judged against that variant's validators or size."""
        if len(resource.variants) > 1 or (self.gzip and is_compressible(content_type(resource.name))):
            return "Vary: Accept-Encoding\r\n"
        return ""

    def _validator_fields(self, resource, variant):
        return (f"Last-Modified: {format_http_date(variant.mtime)}\r\nETag: {variant.etag}\r\n"
                + self._vary_field(resource) + self._cache_control)

    def _plain_file(self, resource, variant, source, status):
        return _with_source(status, self._representation_fields(resource, variant), source, 0, variant.size)

    def _file_response(self, request, resource, variant, source):
        """Preconditions, then ranges, then the whole file (RFC 9110 §13.2.2)."""
        headers = request.headers
        fields = variant.fields
        if fields is None:
            variant.validators = self._validator_fields(resource, variant)
            variant.fields = fields = (self._representation_fields(resource, variant) + variant.validators
                                       + "Accept-Ranges: bytes\r\n")
        outcome = evaluate_preconditions(request.method, headers, variant.etag, variant.mtime)
        if outcome is not None:
            _close_source(source)
            if outcome == 304:
                return Response(304, variant.validators, content_length=0)
            return error_response(412, None, self._vary_field(resource))
        range_value = headers.get("range")
        # Range is defined for GET alone; a HEAD's Range is ignored (RFC 9110 §14.2).
        if range_value is not None and request.method == "GET":
            if_range = headers.get("if-range")
            if if_range is None or if_range_allows_range(if_range, variant.etag, variant.mtime):
                ranges = parse_range(range_value, variant.size)
                if ranges is UNSATISFIABLE:
                    _close_source(source)
                    return error_response(416, None, f"Content-Range: {unsatisfied_range(variant.size)}\r\n"
                                                     + self._vary_field(resource))
                if ranges:
                    return self._partial(resource, variant, source, fields, ranges)
        return _with_source(200, fields, source, 0, variant.size)

    def _partial(self, resource, variant, source, fields, ranges):
        size = variant.size
        if len(ranges) == 1:
            first, last = ranges[0]
            fields += f"Content-Range: {content_range(first, last, size)}\r\n"
            return _with_source(206, fields, source, first, last - first + 1)
        # Several ranges: a multipart/byteranges body (RFC 9110 §14.6), whose
        # parts' heads carry what the response head would for one range.
        boundary = make_boundary()
        parts, closing, total = multipart_layout(ranges, size, content_type(resource.name), boundary)
        fields = (fields.replace(f"Content-Type: {content_type(resource.name)}\r\n",
                                 f"Content-Type: multipart/byteranges; boundary={boundary}\r\n"))
        if source is None:  # HEAD
            return Response(206, fields, content_length=total)
        if isinstance(source, bytes):
            body = b"".join(head + source[first:last + 1] for head, first, last in parts) + closing
            return Response(206, fields, body)
        # A large file: each part is a region of its own duplicate of the
        # descriptor, so each can be sent (and closed) on its own.
        pieces = []
        try:
            for head, first, last in parts:
                pieces.append(head)
                pieces.append(FileBody(os.dup(source), first, last - first + 1))
        except OSError:  # out of descriptors: give back what we took
            Response(206, parts=pieces).release()
            return error_response(503, "out of file descriptors; try again", "Retry-After: 1\r\n")
        finally:
            os.close(source)
        pieces.append(closing)
        return Response(206, fields, parts=pieces, content_length=total)

    # -- the executor ------------------------------------------------------------

    def _submit(self, job, args, on_outcome, respond):
        """Run a job; give its outcome to ``on_outcome`` on the loop thread, and
        pass on the Response that returns (None: it called respond itself)."""
        def on_completion(outcome):
            try:
                response = on_outcome(outcome)
            except Exception as error:  # a bug here costs one response, not the loop
                log_error("unexpected error building a response", error)
                response = error_response(500)
            if response is not None:
                respond(response)
        self._executor.submit(job, args, on_completion)


class Plan:
    """A memo of the answer to one request (one Request object: identical
    heads share it) given one cache entry: ``response()`` gives it again,
    with no path parsing, negotiation or precondition work, while the cache
    still holds that very entry.

    The very same Response object is given every time. That is safe because
    a plannable response holds no file (see ``_plannable``), so nothing in it
    is released or consumed by sending it; the one change a connection makes
    to a response, dropping the body for HEAD, is the same every time, since
    a HEAD request's plan only ever answers HEAD requests."""

    __slots__ = ("key", "result", "_response")

    def __init__(self, key, result, response):
        self.key = key
        self.result = result
        response.wire = WireCache()
        self._response = response

    def response(self):
        return self._response


# CORS (the Fetch standard, fetch.spec.whatwg.org, "CORS protocol"). A
# preflight asks whether a cross-origin request may be made; for static files
# the answer is yes for the methods served and any request fields asked for
# (nothing here changes state). Expose-Headers names the response fields a
# page's script may read beyond the safelisted ones: those of ranges and
# validators, which video players and download managers use.
CORS_EXPOSED_FIELDS = "Content-Range, Accept-Ranges, ETag, Content-Encoding"
CORS_MAX_AGE_SECONDS = 86400
_FIELD_NAME_LIST = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")


def response_fields(config):
    """The header lines every response carries: --header's, and with --cors
    the origin allowed. The allowed origin is the same whatever the request's
    Origin, so responses need no Vary: Origin."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in config.headers)
    if config.cors:
        fields += (f"Access-Control-Allow-Origin: {config.cors}\r\n"
                   f"Access-Control-Expose-Headers: {CORS_EXPOSED_FIELDS}\r\n")
    return fields


def _preflight_fields(headers):
    fields = (f"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
              f"Access-Control-Max-Age: {CORS_MAX_AGE_SECONDS}\r\n")
    asked = headers.get("access-control-request-headers", "").strip(" \t")
    if _FIELD_NAME_LIST.fullmatch(asked):  # a list of field names, nothing else, is echoed
        fields += (f"Access-Control-Allow-Headers: {asked}\r\n"
                   "Vary: Access-Control-Request-Headers\r\n")
    return fields


def _unchanged(variant):
    """Whether the open file is still the one the variant describes. A file
    rewritten in place keeps its inode, so the cached descriptor would see
    the new bytes under the old head: fstat it first (the inode is in memory:
    this reads no disk) and, if it changed, open it afresh on the executor."""
    info = os.fstat(variant.fd)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) == variant.identity


def _with_source(status, fields, source, offset, length):
    """A response whose body is ``length`` bytes from ``offset`` of the source:
    bytes in memory, an open descriptor (sent with sendfile), or None (HEAD)."""
    if source is None:
        return Response(status, fields, content_length=length)
    if isinstance(source, bytes):
        if offset == 0 and length == len(source):
            return Response(status, fields, source)
        return Response(status, fields, source[offset:offset + length])
    return Response(status, fields, file=FileBody(source, offset, length))


def _close_source(source):
    if isinstance(source, int):
        os.close(source)


def _redirect_to_directory(path):
    # The Location is rebuilt from the decoded segments, so it always starts
    # with exactly one "/": "//evil.example" can never become an off-site
    # redirect. The query string is kept, as nginx does.
    location = path.url_path() + "/"
    if path.query:
        location += "?" + path.query
    return error_response(301, None, f"Location: {location}\r\n")
