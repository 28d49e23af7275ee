"""scripts/attacks.py run for real, small: two attacks against this tree's server.

The attacks' clients are exercised in earnest by tests/e2e/test_hostile_load.py;
this checks the script around them: it starts the server, runs what it is
asked for, and reports a row per attack with what the client saw and what the
server spent, in the table it prints, as Markdown and as JSON.
"""

import json
import os
import subprocess
import sys

from support.environment import REPO

SCRIPT = os.path.join(REPO, "scripts", "attacks.py")


def run_script(*args, timeout=240):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_two_small_attacks_against_this_tree(tmp_path):
    markdown_path, json_path = tmp_path / "attacks.md", tmp_path / "attacks.json"
    completed = run_script("--attacks", "1,3", "--servers", "reactor_http", "--paths", "50",
                           "--pipelined-after-close", "100", "--pipelined", "1200",
                           "--markdown", str(markdown_path), "--json", str(json_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(json_path.read_text())
    rows = {row["attack"]: row for row in report["rows"]}
    assert set(rows) == {"1 paths", "3a close + pipelined", "3b past max requests", "3c sending after close"}
    assert {row["server"] for row in rows.values()} == {"reactor_http"}
    assert rows["1 paths"]["outcome"] == "404 x 50; then a small file: 200"
    assert rows["3a close + pipelined"]["outcome"] == "200, body 1,048,576 of 1,048,576 B, then EOF"
    assert rows["3b past max requests"]["outcome"] == "1,000 answers of 1,000, then EOF"
    assert rows["3c sending after close"]["outcome"].startswith("closed after ")
    for row in rows.values():
        assert row["rss_peak"] >= row["rss_before"] > 0 and row["fds_peak"] >= row["fds_before"] > 0
        assert row["cpu_seconds"] >= 0
    assert report["servers"]["reactor_http"]["version"].startswith("reactor_http ")
    markdown = markdown_path.read_text()
    assert markdown.startswith("    python3 scripts/attacks.py --attacks 1,3 ")
    assert "| attack | server | what the client saw |" in markdown
    assert "| 1 paths | reactor_http | 404 x 50; then a small file: 200 |" in markdown
    assert "404 x 50; then a small file: 200" in completed.stdout


def test_unknown_attack_or_server_is_refused():
    for args in (("--attacks", "9"), ("--servers", "lighttpd")):
        completed = run_script(*args, timeout=60)
        assert completed.returncode == 2
        assert "unknown" in completed.stderr
