"""The committed state diagram matches the transition table in the code."""

import os
import subprocess
import sys

from support.environment import REPO

from reactor_http.connection.states import TRANSITIONS


def test_committed_diagram_matches_the_table():
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "state_diagram.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_transition_is_drawn():
    with open(os.path.join(REPO, "docs", "state-diagram.md"), encoding="utf-8") as file:
        text = file.read()
    for (source, target), why in TRANSITIONS.items():
        assert f"{source.name.lower()} --> {target.name.lower()}: {why.replace(':', ' -')}" in text
