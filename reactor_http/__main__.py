"""``python -m reactor_http``: run the server."""

import sys

from .server.cli import main

if __name__ == "__main__":
    sys.exit(main())
