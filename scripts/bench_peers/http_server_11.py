"""http.server made to speak HTTP/1.1: ThreadingHTTPServer with a handler whose
protocol_version is "HTTP/1.1" (persistent connections, still a thread per
connection) and TCP_NODELAY, access log off.

Why TCP_NODELAY: SimpleHTTPRequestHandler writes the head and the body in two
send calls. On a kept-alive connection, Nagle's algorithm holds the body back
until the head is acknowledged, and the client delays that ACK: about 40 ms
per response. `disable_nagle_algorithm` is the stdlib's own switch for it.

    python scripts/bench_peers/http_server_11.py --port 8080 --root DIR
"""

import argparse
import functools
import http.server


class PersistentHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass  # access log off


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    handler = functools.partial(PersistentHandler, directory=args.root)
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
