"""Which Cache-Control a response for a path gets (``--cache-control``).

Real static sites want a policy per path: hashed assets (``app.3f9a1c.js``)
may be kept for a year and never checked again, while HTML must be checked
every time so that a new release is seen at once. So ``--cache-control`` is
repeatable, as ``PATTERN=VALUE`` rules with one plain ``VALUE`` as the
default:

    --cache-control '/assets/*=public, max-age=31536000, immutable'
    --cache-control '*.html=no-cache'
    --cache-control 'max-age=600'

The anchors are nginx's ``location`` blocks with ``expires`` or
``add_header Cache-Control`` and Caddy's ``header`` directive with a path
matcher. As with Caddy's path matcher, a pattern is a shell glob on the whole
decoded path, where ``*`` also crosses "/" (``*.html`` matches
``/docs/a.html``), ``?`` is one character and ``[...]`` a set. The rules are
tried in the order given and the first match wins; a path that matches none
gets the plain value, if there is one, else no Cache-Control at all.

A request for a directory ("/docs/") is answered with its index.html, and is
also matched as "/docs/index.html" (as nginx's ``index`` re-matches the
locations with the index file's name), so ``*.html=no-cache`` covers "/".

A pattern starts with "/" or "*" and a Cache-Control directive never does
(RFC 9111 §5.2: directives are tokens), so ``max-age=60`` is a plain value
and ``/*.js=max-age=60`` a rule, without quoting or a second flag.
"""

from __future__ import annotations

import fnmatch
import re

# The directory index a request for "/docs/" is also matched as.
INDEX_NAME = "index.html"


def is_pattern_rule(text: str) -> bool:
    """Whether ``text`` is PATTERN=VALUE rather than a plain value."""
    return text[:1] in ("/", "*")


class CachePolicy:
    """The Cache-Control field line for each path, from the rules given."""

    def __init__(self, rules: tuple = ()):
        """``rules``: ((pattern or None, value), ...) in the order given;
        the rule without a pattern is the default."""
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        self._default = ""
        for pattern, value in rules:
            line = f"Cache-Control: {value}\r\n"
            if pattern is None:
                self._default = line
            else:
                self._patterns.append((re.compile(fnmatch.translate(pattern)), line))

    def field_for(self, url_path: str) -> str:
        """The field line ("Cache-Control: ...\\r\\n") for a decoded path,
        or "" for none. Fast when there are no patterns: the default alone."""
        if self._patterns:
            candidates = (url_path, url_path + INDEX_NAME) if url_path.endswith("/") else (url_path,)
            for regex, line in self._patterns:
                for candidate in candidates:
                    if regex.match(candidate):
                        return line
        return self._default
