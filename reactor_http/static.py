"""The static file layer: turns a request into a response plan.

``StaticSite.handle`` is called on the loop thread with a parsed request. What
can be decided without the disk (method, path syntax) is answered at once;
everything else goes to the executor as one job (files.open_for_serving), and
its outcome comes back to the loop thread as a Response for the connection.
"""

import os
from email.utils import formatdate

from . import files
from .content_types import content_type
from .logs import log_error
from .paths import PathError, parse_target
from .responses import FileBody, Response, error_response

SERVED_METHODS = ("GET", "HEAD")
ALLOW_FIELD = "Allow: GET, HEAD, OPTIONS\r\n"

# Methods the server knows but does not allow on static files get 405; any
# other method gets 501 (RFC 9110 §9.1, §15.5.6, §15.6.2).
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))


class StaticSite:
    """Serves the files under one document root."""

    def __init__(self, config, executor):
        self.root = os.path.realpath(config.root)
        self.show_hidden = config.show_hidden
        self._executor = executor

    def handle(self, request, respond):
        """Return a Response now, or return None and later call
        ``respond(response)`` on the loop thread when the executor is done."""
        method = request.method
        if method not in SERVED_METHODS:
            if method == "OPTIONS":
                return self._options(request.target)
            if method in KNOWN_METHODS:
                return error_response(405, extra_fields=ALLOW_FIELD)
            return error_response(501, f"the {method} method is not implemented")
        try:
            path = parse_target(request.target, self.show_hidden)
        except PathError as error:
            return error_response(error.status, error.detail)
        job_args = (self.root, path.segments, path.directory, self.show_hidden, method == "GET")
        self._executor.submit(files.open_for_serving, job_args,
                              lambda outcome: respond(self._plan(outcome, path)))
        return None

    def _options(self, target):
        """OPTIONS says which methods the server allows (RFC 9110 §9.3.7), for
        the server as a whole ("*") or for any well-formed path: the answer is
        the same for every file, so the disk is not asked."""
        if target != "*":
            try:
                parse_target(target, self.show_hidden)
            except PathError as error:
                return error_response(error.status, error.detail)
        return Response(204, ALLOW_FIELD, content_length=0)

    def _plan(self, outcome, path):
        """Turn the executor job's outcome into a Response (loop thread)."""
        if outcome.error is not None:
            log_error(f"unexpected error serving {path.url_path()!r}", outcome.error)
            return error_response(500)
        found = outcome.value
        if isinstance(found, files.OpenedFile):
            return _file_response(found)
        if isinstance(found, files.MissingSlash):
            return _redirect_to_directory(path)
        return error_response(found.status, found.detail)


def _file_response(found):
    mtime = int(found.mtime)
    fields = (f"Content-Type: {content_type(found.name)}\r\n"
              f"Last-Modified: {formatdate(mtime, usegmt=True)}\r\n"
              f'ETag: "{mtime:x}-{found.size:x}"\r\n'  # nginx's form: mtime-size in hex
              "X-Content-Type-Options: nosniff\r\n")
    if found.data is not None:
        return Response(200, fields, found.data)
    if found.fd >= 0:
        return Response(200, fields, file=FileBody(found.fd, 0, found.size))
    return Response(200, fields, content_length=found.size)  # HEAD: metadata only


def _redirect_to_directory(path):
    # The Location is rebuilt from the decoded segments, so it always starts
    # with exactly one "/": "//evil.example" can never become an off-site
    # redirect. The query string is kept, as nginx does.
    location = path.url_path() + "/"
    if path.query:
        location += "?" + path.query
    return error_response(301, None, f"Location: {location}\r\n")
