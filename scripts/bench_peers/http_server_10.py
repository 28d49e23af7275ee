"""`python -m http.server` as its users run it (HTTP/1.0: one request per
connection, a thread per connection), with the access log turned off as for
every server in the benchmark.

The stock command writes a log line to stderr per request; that is the only
change. Everything else is `http.server.test()`'s choice: ThreadingHTTPServer,
SimpleHTTPRequestHandler, HTTP/1.0, the listen backlog of 5 socketserver gives.

    python scripts/bench_peers/http_server_10.py --port 8080 --root DIR
"""

import argparse
import functools
import http.server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # access log off


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    handler = functools.partial(QuietHandler, directory=args.root)
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
