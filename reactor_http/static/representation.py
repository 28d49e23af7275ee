"""From a file to its Response: which representation, then preconditions, then ranges.

The HTTP rules applied to a file, in the RFC's order (RFC 9110 §13.2.2):
choose the representation (Accept-Encoding, §12.5.3: the file itself or a
precompressed sibling), evaluate the preconditions (If-Match,
If-Unmodified-Since, If-None-Match, If-Modified-Since: 412 or 304), then Range
(with If-Range: 206 or 416), else the whole file (200).

The content comes from one of three sources: the bytes of a small file (kept
in the cache), an open descriptor for a large one (sent with ``sendfile``), or
nothing for HEAD, which announces the length without sending it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..http1.responses import FileBody, Response, error_response
from . import files
from .cache_policy import CachePolicy
from .conditional import evaluate_preconditions, format_http_date, if_range_allows_range
from .content_types import content_type
from .digests import ContentDigests
from .negotiation import acceptable_encodings, is_compressible
from .ranges import UNSATISFIABLE, content_range, make_boundary, multipart_layout, parse_range, unsatisfied_range

if TYPE_CHECKING:
    from ..config import Config
    from ..http1.handler import Exchange
    from ..http1.parser import Request
    from .cache import FileCache
    from .paths import RequestPath

# On-the-fly gzip (--gzip) is for text up to this size; larger files should be
# precompressed ahead of time (style.css.gz beside style.css).
GZIP_MAX_BYTES = 4 * 1024 * 1024

# Where a response's content comes from: a small file's bytes, an open
# descriptor (the response then owns it), or None (HEAD: no content sent).
Source = bytes | int | None


class Representations:
    """Turns a resolved file (a ``files.Resource``) into a Response."""

    def __init__(self, config: Config, cache: FileCache,
                 error: Callable[..., Response | None], sending_files: int = 1 << 20):
        self.gzip = config.gzip
        self.sending = SendingFiles(sending_files)
        self.cache_policy = CachePolicy(config.cache_control)
        # --etag content: ETags from the bytes, computed on the executor (digests.py).
        self.digests = ContentDigests() if config.etag == "content" else None
        self._cache = cache
        self._error = error  # the site's error answer (it knows the error pages)

    def serve(self, request: Request, path: RequestPath, resource: files.Resource, exchange: Exchange,
              status: int = 200) -> Response | None:
        if status != 200:
            # An error page: the whole file, with the error's status. No
            # validators or ranges: they describe the page, not the error.
            identity = resource.variants["identity"]
            return self._content_source(request, identity, exchange, lambda variant, source: self._response(
                status, self._representation_fields(resource, variant), source, 0, variant.size))
        headers = request.headers
        cache_control = self.cache_policy.field_for(path.key())
        variant = self._choose_variant(resource, headers)
        if (self.gzip and variant.coding == "identity" and "range" not in headers
                and self._should_gzip(resource, variant, headers)):
            self._gzip_then_serve(request, path, resource, variant, exchange, cache_control)
            return None
        return self._content_source(request, variant, exchange, lambda fresh, source: self._file_response(
            request, resource, fresh, source, cache_control))

    # -- which representation -------------------------------------------------------

    def _choose_variant(self, resource: files.Resource, headers: dict[str, str]) -> files.Variant:
        variants = resource.variants
        # Policy: a request with Range always gets the file itself. Resuming
        # is why clients send Range, and a range of a compressed sibling is
        # one they cannot resume: curl --compressed -C - would ask for the
        # bytes after its partial (decoded) file in the compressed one, and
        # get nonsense or a 416 it takes for "complete". nginx's gzip_static
        # and on-the-fly gzip do the same. (The answer still says Vary.)
        if len(variants) > 1 and "range" not in headers:
            codings = [coding for coding in variants if coding != "identity"]
            for coding in acceptable_encodings(headers.get("accept-encoding"), codings):
                return variants[coding]
        return variants["identity"]

    def _should_gzip(self, resource: files.Resource, variant: files.Variant, headers: dict[str, str]) -> bool:
        if "gzip" in resource.variants or variant.size > GZIP_MAX_BYTES or variant.size < 256:
            return False
        if not is_compressible(content_type(resource.name)):
            return False
        return "gzip" in acceptable_encodings(headers.get("accept-encoding"), ("gzip",))

    def _gzip_then_serve(self, request: Request, path: RequestPath, resource: files.Resource,
                         variant: files.Variant, exchange: Exchange, cache_control: str) -> None:
        def on_compressed(compressed: files.Variant | None) -> Response | None:
            if compressed is not None:
                resource.variants["gzip"] = compressed
                self._cache.update_size(path.key())
            chosen = compressed if compressed is not None else variant
            return self._content_source(request, chosen, exchange, lambda fresh, source: self._file_response(
                request, resource, fresh, source, cache_control))
        # Shared: requests that want the same file gzipped while it is being
        # compressed wait for that one compression.
        exchange.run_blocking(files.gzip_variant, (variant, GZIP_MAX_BYTES), on_compressed, shared=True)

    # -- where the content comes from ---------------------------------------------------

    def _content_source(self, request: Request, variant: files.Variant, exchange: Exchange,
                     build: Callable[[files.Variant, Source], Response | None]) -> Response | None:
        """Call ``build(variant, source)`` with a content source: the bytes of
        a small variant, an open descriptor for a large one (opened on the
        executor, and described afresh by fstat), or None for HEAD."""
        if variant.data is not None:
            return build(variant, variant.data)
        if request.method == "HEAD":
            return build(variant, None)
        if not self.sending.take():
            return self._error(request, 503, "too many files being sent at once; try again", exchange)
        if variant.fd >= 0 and _unchanged(variant):
            # The cache holds this large file open: send from a duplicate of
            # its descriptor (no disk access, so fine on the loop thread).
            try:
                return build(variant, os.dup(variant.fd))
            except OSError:  # out of descriptors after all
                self.sending.give_back()
                return self._error(request, 503, "out of file descriptors; try again", exchange)

        def on_opened(opened: Any) -> Response | None:
            if isinstance(opened, files.Refused):
                self.sending.give_back()
                return self._error(request, opened.status, opened.detail, exchange)
            fd, fresh = opened
            return build(fresh, fd)
        exchange.run_blocking(files.open_variant, (variant, self.digests), on_opened)
        return None

    # -- a response from its source --------------------------------------------------------

    def _response(self, status: int, fields: str, source: Source, offset: int, length: int) -> Response:
        """A response whose content is ``length`` bytes from ``offset`` of the
        source: bytes in memory, an open descriptor (sent with sendfile), or
        None (HEAD)."""
        if source is None:
            return Response(status, fields, content_length=length)
        if isinstance(source, bytes):
            if offset == 0 and length == len(source):
                return Response(status, fields, source)
            return Response(status, fields, source[offset:offset + length])
        return Response(status, fields, file=self._file_body(source, ((offset, length),)))

    def _file_body(self, fd: int, pieces: list[Any] | tuple[Any, ...]) -> FileBody:
        """A FileBody that gives its descriptor back to the pool when closed."""
        return FileBody(fd, pieces, on_close=self.sending.give_back)

    def _drop_source(self, source: Source) -> None:
        """A descriptor taken for an answer that turned out to need none (a 304, 412, 416)."""
        if isinstance(source, int):
            os.close(source)
            self.sending.give_back()

    # -- the fields -------------------------------------------------------------------------

    def _representation_fields(self, resource: files.Resource, variant: files.Variant) -> str:
        fields = (f"Content-Type: {content_type(resource.name)}\r\n"
                  "X-Content-Type-Options: nosniff\r\n")
        if variant.coding != "identity":
            fields += f"Content-Encoding: {variant.coding}\r\n"
        return fields

    def _vary_field(self, resource: files.Resource) -> str:
        """Vary: Accept-Encoding on every response whose content or status
        depends on the variant chosen (RFC 9110 §12.5.5): a 200 or 304, and
        equally a 412 or 416 judged against that variant's validators or size."""
        if len(resource.variants) > 1 or (self.gzip and is_compressible(content_type(resource.name))):
            return "Vary: Accept-Encoding\r\n"
        return ""

    def _validator_fields(self, resource: files.Resource, variant: files.Variant, cache_control: str) -> str:
        return (f"Last-Modified: {format_http_date(variant.mtime)}\r\nETag: {variant.etag}\r\n"
                + self._vary_field(resource) + cache_control)

    # -- preconditions, ranges, the whole file ----------------------------------------------

    def _file_response(self, request: Request, resource: files.Resource, variant: files.Variant,
                       source: Source, cache_control: str) -> Response:
        """Preconditions, then ranges, then the whole file (RFC 9110 §13.2.2).
        ``cache_control`` is the path's field line (cache_policy.py), or ""."""
        headers = request.headers
        validators = self._validator_fields(resource, variant, cache_control)
        outcome = evaluate_preconditions(request.method, headers, variant.etag, variant.mtime)
        if outcome is not None:
            self._drop_source(source)
            if outcome == 304:
                return Response(304, validators, content_length=0)
            return error_response(412, None, self._vary_field(resource))
        fields = self._representation_fields(resource, variant) + validators + "Accept-Ranges: bytes\r\n"
        range_value = headers.get("range")
        # Range is defined for GET alone; a HEAD's Range is ignored (RFC 9110 §14.2).
        if range_value is not None and request.method == "GET":
            if_range = headers.get("if-range")
            if if_range is None or if_range_allows_range(if_range, variant.etag, variant.mtime):
                ranges = parse_range(range_value, variant.size)
                if ranges is UNSATISFIABLE:
                    self._drop_source(source)
                    return error_response(416, None, f"Content-Range: {unsatisfied_range(variant.size)}\r\n"
                                                     + self._vary_field(resource))
                if ranges:
                    return self._partial(resource, variant, source, fields, ranges)
        return self._response(200, fields, source, 0, variant.size)

    def _partial(self, resource: files.Resource, variant: files.Variant, source: Source, fields: str,
                 ranges: list[tuple[int, int]]) -> Response:
        size = variant.size
        if len(ranges) == 1:
            first, last = ranges[0]
            fields += f"Content-Range: {content_range(first, last, size)}\r\n"
            return self._response(206, fields, source, first, last - first + 1)
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
        # A large file: every part is a region of the one open descriptor.
        pieces: list[Any] = []
        for head, first, last in parts:
            pieces += (head, (first, last - first + 1))
        pieces.append(closing)
        return Response(206, fields, file=self._file_body(source, pieces))


class SendingFiles:
    """The pool of descriptors held by the files being sent, all connections
    together (a quarter of the descriptor limit: server/limits.py). A large
    file's response takes one (a duplicate of the cached descriptor, or one
    opened afresh) and gives it back when its FileBody is closed, sent or
    not. An empty pool means 503, never a failed open or an exhausted limit.
    Loop thread only."""

    __slots__ = ("limit", "in_use")

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0

    def take(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use -= 1


def _unchanged(variant: files.Variant) -> bool:
    """Whether the open file is still the one the variant describes. A file
    rewritten in place keeps its inode, so the cached descriptor would see
    the new bytes under the old head: fstat it first (the inode is in memory:
    this reads no disk) and, if it changed, open it afresh on the executor."""
    info = os.fstat(variant.fd)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) == variant.identity

