"""`python -m http.server` as its users run it (HTTP/1.0: one request per
connection, a thread per connection), with the access log turned off as for
every server in the benchmark.

The stock command writes a log line to stderr per request; that is the only
change. Everything else is `http.server.test()`'s choice: ThreadingHTTPServer,
SimpleHTTPRequestHandler, HTTP/1.0, the listen backlog of 5 socketserver gives.

    python scripts/bench_peers/http_server_10.py --port 8080 --root DIR
"""

import http.server

from peer_command_line import peer_parser, serve_with_http_server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # access log off


def main():
    serve_with_http_server(QuietHandler, peer_parser(__doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    main()
