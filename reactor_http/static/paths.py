"""From a request target to the path segments of a file under the root.

This is pure string work, done on the loop thread before any disk is touched,
small enough to test exhaustively and to fuzz. It refuses what must never
reach the file system: NUL and control characters, malformed percent-escapes,
bytes that are not UTF-8, and any ".." segment (after decoding, so "%2e%2e"
is caught too). The executor's job (files.py) then checks the other half of
the promise, that the real path, symlinks resolved, is still under the root.
"""

import re
from urllib.parse import quote, unquote_to_bytes

# absolute-form, "http://host:port/path?query" (RFC 9112 §3.2.2): a server
# must accept it; we serve its path and ignore its authority.
_ABSOLUTE_FORM = re.compile(r"[hH][tT][tT][pP][sS]?://[^/?#]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# RFC 8615: the one dot-directory that is meant to be public.
WELL_KNOWN = ".well-known"


class PathError(Exception):
    """A target that cannot name a file; ``status`` is the response to send."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RequestPath:
    """The decoded path of a request: its segments, whether it ended in "/"
    (asks for a directory), and the raw query string for redirects."""

    __slots__ = ("segments", "directory", "query")

    def __init__(self, segments, directory, query):
        self.segments = segments
        self.directory = directory
        self.query = query

    def key(self):
        """One string per path, "/a/b" for a file, "/a/b/" for a directory:
        the file cache's key. Unambiguous, since no segment holds a "/"."""
        text = "/" + "/".join(self.segments)
        return text + "/" if self.directory and self.segments else text

    def url_path(self):
        """The canonical, percent-encoded path, always starting with a single "/"."""
        path = "/" + "/".join(quote(segment, safe="!$&'()*+,;=:@~") for segment in self.segments)
        if self.directory and self.segments:
            path += "/"
        return path


def parse_target(target, show_hidden=False):
    """Decode a request target into a RequestPath, or raise PathError."""
    if target[:1] != "/":
        match = _ABSOLUTE_FORM.match(target)
        if match is None:
            raise PathError(400, "the request target must be a path")
        target = target[match.end():]
        if target[:1] != "/":
            target = "/" + target
    path, _, query = target.partition("?")
    if "#" in path:
        raise PathError(400, "a fragment is not part of a request target")
    if "%" in path and _BAD_PERCENT.search(path):
        raise PathError(400, "malformed percent-encoding")
    try:
        # encode() also refuses lone surrogates, which a str (never the wire)
        # can hold and which no file name or Location could carry.
        path.encode("utf-8")
        if "%" in path:
            path = unquote_to_bytes(path).decode("utf-8")
    except UnicodeError:
        raise PathError(400, "the path is not UTF-8") from None
    if _CONTROL.search(path):
        raise PathError(400, "control character in the path")
    raw_segments = path.split("/")
    if "/." not in path:
        # Performance: no segment starts with a dot (path starts with "/"), so
        # none is ".", "..", or hidden: keep the non-empty ones, in C.
        return RequestPath(list(filter(None, raw_segments)), raw_segments[-1] == "", query)
    segments = []
    for segment in raw_segments:
        if segment == "" or segment == ".":
            continue  # "//" and "/./" mean what "/" means
        if segment == "..":
            raise PathError(400, "'..' is not allowed in a path")
        if segment[0] == "." and not show_hidden and not (segment == WELL_KNOWN and not segments):
            raise PathError(404, None)  # hidden: answer as if it were not there
        segments.append(segment)
    # A last segment of "." names the directory itself, so "/a/." means "/a/"
    # (RFC 3986 §5.2.4) and "/." means "/", never a root without its slash.
    return RequestPath(segments, raw_segments[-1] in ("", "."), query)


def is_hidden(relative_path):
    """Whether a path relative to the root has a dot-segment (other than a
    leading .well-known), e.g. after a symlink led somewhere hidden."""
    parts = relative_path.split("/")
    for index, part in enumerate(parts):
        if part[:1] == "." and not (index == 0 and part == WELL_KNOWN):
            return True
    return False
