"""The end-to-end suite drives every connection transition in the table.

Every server the end-to-end tests start records the transitions it makes (see
tests/support/servers.py: a sitecustomize wraps Connection._enter). This test runs after all
the others and checks that, together, they made each transition of
``connection.TRANSITIONS`` at least once: a transition no test reaches is a
behaviour no test checks. Run on its own, or with part of the suite, it has
nothing to judge and skips (under CI=true the whole suite runs).
"""

import pytest
from conftest import whole_end_to_end_suite_collected
from support.environment import IN_CI
from support.servers import transitions_seen

from reactor_http.connection.states import TRANSITIONS


@pytest.mark.after_everything
def test_every_transition_is_exercised_end_to_end():
    if not whole_end_to_end_suite_collected():
        if IN_CI:
            pytest.fail("CI must run the whole suite, so that transition coverage is judged")
        pytest.skip("only judged when the whole end-to-end suite runs in this session")
    seen = transitions_seen()
    missing = sorted(f"{source.name} -> {target.name} ({why})" for (source, target), why in TRANSITIONS.items()
                     if (source.name, target.name) not in seen)
    assert not missing, "transitions no end-to-end test makes:\n" + "\n".join(missing)
    # And nothing outside the table happened (Connection._enter would have refused it).
    table = {(source.name, target.name) for source, target in TRANSITIONS}
    assert seen <= table, seen - table
