"""reactor_http: a static file server built on a hand-written reactor.

One thread owns every socket and the selector. Blocking disk work (stat, open,
read) runs on worker threads, which hand their results back to that thread
through one thread-safe call.
"""

__version__ = "0.1.0"
