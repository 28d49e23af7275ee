"""The state tables are consistent, and the committed drawings match them."""

import os
import subprocess
import sys

from support.environment import REPO

from reactor_http.connection.connection import Connection
from reactor_http.connection.states import INITIAL_STATES, TRANSITIONS, WAITS, State
from reactor_http.loop.reactor import EVENT_READ, EVENT_WRITE


def test_committed_diagrams_match_the_tables():
    """docs/state-diagram.md and the README's diagram are generated from the tables."""
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "state_diagram.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_transition_and_handler_is_drawn():
    with open(os.path.join(REPO, "docs", "state-diagram.md"), encoding="utf-8") as file:
        text = file.read()
    for (source, target), why in TRANSITIONS.items():
        assert f"{source.name.lower()} --> {target.name.lower()}: {why.replace(':', ' -')}" in text
    for state, wait in WAITS.items():
        for handler in (wait.on_readable, wait.on_writable, wait.on_completion):
            if handler:
                assert f"`Connection.{handler}`" in text, (state, handler)


def test_every_state_waits_for_something_and_can_end():
    """Each state is in WAITS; every state but CLOSED has a way out, and CLOSED none."""
    assert set(WAITS) == set(State)
    sources = {source for source, _ in TRANSITIONS}
    assert sources == set(State) - {State.CLOSED}
    assert all((state, State.CLOSED) in TRANSITIONS for state in sources), "every state can close"
    assert set(INITIAL_STATES) <= set(State)


def test_each_handler_is_a_method_of_the_connection_and_matches_the_interest():
    for state, wait in WAITS.items():
        if wait.interest == EVENT_READ:
            assert wait.on_readable and not wait.on_writable, state
        elif wait.interest == EVENT_WRITE:
            assert wait.on_writable and not wait.on_readable, state
        else:
            assert not wait.on_readable and not wait.on_writable, state
        for handler in (wait.on_readable, wait.on_writable, wait.on_completion):
            if handler:
                assert callable(getattr(Connection, handler, None)), f"Connection has no {handler}"
