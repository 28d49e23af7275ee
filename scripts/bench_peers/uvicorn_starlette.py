"""uvicorn serving a starlette app that mounts `StaticFiles(directory=root,
html=True)`, one worker, no access log, with uvloop and httptools when they
are installed (what `pip install uvicorn[standard]` gives), as the command

    uvicorn app:app --workers 1 --loop uvloop --http httptools --no-access-log

would. Run it as:

    python scripts/bench_peers/uvicorn_starlette.py --port 8080 --root DIR
"""

import importlib.util

import uvicorn
from peer_command_line import peer_parser
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    app = Starlette(routes=[Mount("/", app=StaticFiles(directory=args.root, html=True))])
    uvicorn.run(
        app, host=args.host, port=args.port, workers=1, access_log=False, log_level="warning",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11")


if __name__ == "__main__":
    main()
