"""Keeping people out: who may ask, how often, and with which password.

A Handler (http1/handler.py) that stands in front of the status page and the
site and, for every request, either answers it itself (403, 429, 401) or
hands it on. server/wiring.py puts it in the chain only when one of its
features is configured, so a server without them does no work for them.

In reading order:

- ``guard``: the Handler: address rules, then the rate limit, then the
  password, each only if configured; the three refusals as Responses;
- ``clients``: who the client is (the peer, or the address a trusted proxy
  reports) and the key its limits are counted under;
- ``rules``: ``--allow`` / ``--deny``, first match wins, as nginx's;
- ``limits``: the per-client tables, bounded: a token bucket per client for
  ``--rate-limit``, the open connections per client for
  ``--max-connections-per-client`` (counted by server/server.py, which
  accepts and closes connections);
- ``basic``: Basic authentication (RFC 7617): the Authorization field, the
  verified credentials remembered, the password file read again when it
  changes; ``passwords``: the password file and its hash formats (bcrypt,
  apr1, scrypt), and the helper that makes a line for it.

May import: the standard library and ``http1`` (requests, responses, the
Handler interface), and ``config``. Never the connection, the loop or the
server: a slow hash or a read of the password file reaches the executor only
through the Exchange a connection hands the guard (tests/meta/test_layering.py
enforces it).
"""
