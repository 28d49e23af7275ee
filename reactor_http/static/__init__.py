"""The static site: what a request for a file means, and what to answer.

In reading order:

- ``site``: the Handler: methods, paths, the cache, error pages, the
  fallback; ``representation``: from a file to its Response (which coding,
  preconditions, ranges);
- ``paths``: from a request target to path segments, pure string work;
- ``files``: the executor's jobs (resolve a path, open a file, compress one)
  and the plain values they return; ``cache``: what they found, kept for a
  moment, like nginx's open_file_cache;
- ``conditional``, ``ranges``, ``negotiation``, ``content_types``: RFC 9110's
  rules as pure functions;
- ``autoindex``: directory listings.

May import: the standard library and ``http1`` (requests, responses, the
Handler interface, the fast path), and ``config``. Never the connection,
the loop or the server: the site reaches the executor only through the
Exchange a connection hands it (tests/meta/test_layering.py enforces it).
"""
