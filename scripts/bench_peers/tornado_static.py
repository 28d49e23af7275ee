"""tornado's StaticFileHandler on every path, `default_filename="index.html"`,
access log off (tornado logs 4xx answers as warnings otherwise), one process.

    python scripts/bench_peers/tornado_static.py --port 8080 --root DIR
"""

import argparse
import asyncio

import tornado.web


async def serve(host, port, root):
    app = tornado.web.Application(
        [(r"/(.*)", tornado.web.StaticFileHandler, {"path": root, "default_filename": "index.html"})],
        log_function=lambda handler: None)  # access log off
    app.listen(port, address=host)
    await asyncio.Event().wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.root))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
