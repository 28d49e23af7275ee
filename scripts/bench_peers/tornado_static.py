"""tornado's StaticFileHandler on every path, `default_filename="index.html"`,
access log off (tornado logs 4xx answers as warnings otherwise), one process.

    python scripts/bench_peers/tornado_static.py --port 8080 --root DIR
"""

import asyncio

import tornado.web
from peer_command_line import peer_parser


async def serve(host, port, root):
    app = tornado.web.Application(
        [(r"/(.*)", tornado.web.StaticFileHandler, {"path": root, "default_filename": "index.html"})],
        log_function=lambda handler: None)  # access log off
    app.listen(port, address=host)
    await asyncio.Event().wait()


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.root))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
