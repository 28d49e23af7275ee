"""What every peer launcher takes: --host, --port and --root, as scripts/bench.py passes them.

The launchers run as scripts (python scripts/bench_peers/NAME.py), so this
directory is first on sys.path and they import this module by its name.
"""

import argparse
import functools
import http.server


def peer_parser(description):
    """A parser with --host (127.0.0.1), --port (required) and --root (the
    directory served); a launcher may add its own options before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=".")
    return parser


def serve_with_http_server(handler_class, arguments):
    """The standard library's ThreadingHTTPServer (a thread per connection),
    serving ``arguments.root`` with ``handler_class`` until interrupted."""
    handler = functools.partial(handler_class, directory=arguments.root)
    with http.server.ThreadingHTTPServer((arguments.host, arguments.port), handler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
