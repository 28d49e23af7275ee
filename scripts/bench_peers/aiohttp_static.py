"""aiohttp serving a directory the documented way: `app.router.add_static`,
access log off (`access_log=None`), one process, aiohttp's default event loop.

    python scripts/bench_peers/aiohttp_static.py --port 8080 --root DIR
"""

from aiohttp import web
from peer_command_line import peer_parser


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    app = web.Application()
    app.router.add_static("/", args.root)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
