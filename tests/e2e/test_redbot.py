"""REDbot, an HTTP conformance linter, run against the demo site.

REDbot (the PyPI package ``redbot``, in the ``test`` extras) fetches a URL, then
probes it further (conditional requests, ranges, compression, ...), and
records notes on everything it finds, each with a level: GOOD, INFO, WARN or
BAD. This test asks for the HAR output (``-o har``), whose entries carry the
notes as ``_red_messages``, and fails on any BAD note. WARN notes (such as a
heuristic freshness lifetime) are policy rather than errors; they are printed
with any failure for context.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from support.environment import DEMO_ROOT, skip_locally_fail_in_ci
from support.servers import ServerProcess

# Each URL with the status REDbot must have seen for it.
TARGETS = [
    ("/", 200),
    ("/style.css", 200),
    ("/app.js", 200),
    ("/images/reactor.png", 200),
    ("/no-such-page.html", 404),
    ("/images", 301),
]


def find_redbot():
    """The redbot program: beside this Python (a virtual environment's bin/), or
    on PATH. Missing: skip locally, fail under CI=true; on Python 3.10, which
    redbot 2.7 no longer supports, skip (the other Pythons of the matrix,
    scripts/test.sh --matrix, run these tests)."""
    if sys.version_info < (3, 11):
        pytest.skip("redbot 2.7 needs Python 3.11 or later")
    beside_python = os.path.join(os.path.dirname(sys.executable), "redbot")
    if os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("redbot")
    if on_path is None:
        skip_locally_fail_in_ci("redbot is not installed (pip install redbot)")
    return on_path


@pytest.fixture(scope="module")
def redbot_program():
    return find_redbot()


@pytest.fixture(scope="module")
def demo_site():
    """The demo site, with default flags, shared by the REDbot runs."""
    server = ServerProcess(["--quiet"], DEMO_ROOT)
    yield server
    server.stop()
    stderr = "".join(server.stderr_lines)
    assert "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def har_for(redbot_program, demo_site):
    """har_for(path) -> the HAR of `redbot -a -o har URL`, run once per path."""
    hars = {}

    def har(path):
        if path not in hars:
            hars[path] = run_redbot(redbot_program, demo_site.url + path)
        return hars[path]

    return har


def run_redbot(program, url):
    """Run `redbot -a -o har URL` and return the parsed HAR."""
    completed = subprocess.run([program, "-a", "-o", "har", url], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stderr
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"redbot printed no HAR: {completed.stdout[:2000]!r} "
                             f"{completed.stderr[-2000:]!r}") from None


def describe(note):
    return f"{note.get('level')} {note.get('note_id')} ({note.get('subject')}): {note.get('summary')}"


@pytest.mark.parametrize("path, expected_status", TARGETS, ids=[path for path, _ in TARGETS])
def test_redbot_finds_nothing_bad(har_for, demo_site, path, expected_status):
    """REDbot checks the URL (and, for the index page, the assets it links to)
    and reports no BAD note about any response."""
    url = demo_site.url + path
    har = har_for(path)
    entries = har["log"]["entries"]
    by_url = {entry["request"]["url"]: entry for entry in entries}
    # The entry for the URL itself is there, with the status the server sent.
    assert url in by_url, sorted(by_url)
    assert by_url[url]["response"]["status"] == expected_status
    notes = [(entry["request"]["url"], note) for entry in entries for note in entry.get("_red_messages", [])]
    # REDbot always has something to say (Date, Content-Length, ...): no notes
    # at all would mean it checked nothing.
    assert notes, entries
    bad = [f"{entry_url}: {describe(note)}" for entry_url, note in notes if note.get("level") == "BAD"]
    warnings = [f"{entry_url}: {describe(note)}" for entry_url, note in notes if note.get("level") == "WARN"]
    assert not bad, "REDbot found problems:\n" + "\n".join(bad) + "\nWARN notes:\n" + "\n".join(warnings)


def test_redbot_checks_the_linked_assets(har_for, demo_site):
    """With -a on the index page REDbot also fetches the stylesheet, script and
    image it links to, each with a 200 (so the assets' notes are checked too)."""
    har = har_for("/")
    statuses = {entry["request"]["url"]: entry["response"]["status"] for entry in har["log"]["entries"]}
    for path in ("/style.css", "/app.js", "/images/reactor.png"):
        assert statuses.get(demo_site.url + path) == 200, statuses
