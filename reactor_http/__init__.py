"""reactor_http: a static file server built on a hand-written reactor.

One thread owns every socket and the selector. Blocking disk work (stat, open,
read) runs on worker threads, which hand their results back to that thread
through one thread-safe call.

The packages, in reading order, each allowed to import only those above it:

- ``loop``: the reactor (readiness, timers, the wake-up) and the executor;
- ``http1``: HTTP/1.1 without I/O: the parser, responses, the keep-alive
  decision, the handler interface, the fast path;
- ``static``: what a request for a file means: paths, the disk, the cache,
  RFC 9110's conditional requests, ranges and negotiation;
- ``access``: who may get in (address rules, rates and connections per
  client, Basic authentication), a handler in front of the site;
- ``connection``: one state machine per connection, its write path, TLS;
- ``server``: the parts wired together, accepting, stopping, the command line.

``config`` (the settings, frozen) may be read by all of them.
"""

__version__ = "0.1.0"
