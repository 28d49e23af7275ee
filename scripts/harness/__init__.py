"""The harness the scripts (bench, soak, integrity, faults, concurrency_run) and the tests share.

- ``server``: a server in a subprocess (``python -m reactor_http`` from any
  checkout, or any other command), its banner read, stopped by a signal;
- ``http``: the one strict HTTP/1.1 response reader, and request bytes;
- ``verify``: responses checked against the files on disk (whole files,
  ranges, multipart bodies, errors), and the random files they are made of;
- ``sampling``: CPU, memory, threads and descriptors of a server, sampled
  with psutil or read from /proc; CPU lists and taskset pinning;
- ``report``: tables (aligned text or Markdown), numbers, JSON, the machine;
- ``generated``: files made from the code, written or checked.

Scripts run with scripts/ on sys.path (tests/conftest.py puts it there for the
tests), so this is importable as ``harness``. The harness belongs to the
checkout it lives in: it puts that checkout first on sys.path, so that what
it takes from the package (the descriptor limit) is this checkout's.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
