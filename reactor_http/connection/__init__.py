"""One state machine per connection: reading requests, sending answers, closing well.

In reading order:

- ``states``: the tables that are the machine: what each state waits for and
  which method handles it, and every legal transition with its reason;
- ``connection``: the Connection that carries the tables out, with its one
  guard against the unexpected;
- ``writer``: the write path, a queue of bytes and file bodies flushed with
  ``send`` or ``sendfile``;
- ``tls``: the TLS context and the handshake's steps;
- ``context``: the little a connection needs from the server around it.

May import: the standard library (``ssl`` in ``tls`` only), ``loop`` and
``http1``, and ``config``. Never ``static`` or ``server``: the connection
reaches what answers requests only through the Handler interface
(http1/handler.py). tests/meta/test_layering.py enforces it.
"""
