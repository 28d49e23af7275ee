"""waitress (defaults: 4 threads, at most 100 connections) serving a WSGI app
wrapped in WhiteNoise (defaults), the usual way to serve static files from a
pure-Python WSGI stack. waitress writes no access log.

    python scripts/bench_peers/waitress_whitenoise.py --port 8080 --root DIR
"""

import waitress
from peer_command_line import peer_parser
from whitenoise import WhiteNoise


def not_found(environ, start_response):
    """What the application behind WhiteNoise answers for a path with no file."""
    body = b"Not Found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    waitress.serve(WhiteNoise(not_found, root=args.root), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
