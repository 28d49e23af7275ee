"""aiohttp serving a directory the documented way: `app.router.add_static`,
access log off (`access_log=None`), one process, aiohttp's default event loop.

    python scripts/bench_peers/aiohttp_static.py --port 8080 --root DIR
"""

import argparse

from aiohttp import web


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_static("/", args.root)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
