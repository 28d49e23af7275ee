"""HTTP/1.1 without I/O: bytes in, requests out; responses as data.

- ``parser``: the sans-I/O request parser (bytes in, Request or ProtocolError
  out), with ``bodies`` for where a request body ends;
- ``responses``: Response and FileBody, the plan of what to send, and the
  HeadRenderer that turns one into bytes;
- ``persistence``: after a response, keep the connection, close it, or
  linger: one pure function;
- ``handler``: the interface between a connection and what answers it;
- ``fast_path``: the memos that make a repeated request cheap, and why they
  are safe.

May import: the standard library, but never ``socket``, ``selectors``,
``ssl`` or ``threading``: nothing here does I/O or knows about threads, so
all of it can be tested with plain bytes (tests/meta/test_layering.py
enforces it). Nothing from the other packages.
"""
