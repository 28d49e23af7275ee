"""http.server made to speak HTTP/1.1: ThreadingHTTPServer with a handler whose
protocol_version is "HTTP/1.1" (persistent connections, still a thread per
connection) and TCP_NODELAY, access log off.

Why TCP_NODELAY: SimpleHTTPRequestHandler writes the head and the body in two
send calls. On a kept-alive connection, Nagle's algorithm holds the body back
until the head is acknowledged, and the client delays that ACK: about 40 ms
per response. `disable_nagle_algorithm` is the stdlib's own switch for it.

    python scripts/bench_peers/http_server_11.py --port 8080 --root DIR
"""

import http.server

from peer_command_line import peer_parser, serve_with_http_server


class PersistentHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass  # access log off


def main():
    serve_with_http_server(PersistentHandler, peer_parser(__doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    main()
