#!/usr/bin/env python3
"""The table of the faults tested: what went wrong under a running server, what it did, and whether it held.

    python3 scripts/faults.py
    python3 scripts/faults.py --json faults.json

Each test in tests/e2e/test_faults.py says in its docstring "Fault: ..." and
"Server: ..."; faults covered by tests elsewhere are listed here
(REFERENCED_FAULT_TESTS). This runs all of them with pytest and prints one
Markdown row per test with its outcome, then pytest's summary line: the table
in docs/reliability.md. Exit status 0 when every test passed, 1 otherwise.
"""

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

from harness import REPO
from harness.report import render_table, save_json

FAULT_TESTS = "tests/e2e/test_faults.py"

# Faults covered elsewhere: (test, fault, what the server did).
REFERENCED_FAULT_TESTS = [
    ("tests/e2e/test_resource_limits.py::test_resets_and_half_closes_leak_nothing",
     "2000 clients reset (RST) or half-close at every stage: mid-head, right after the request, "
     "mid-response.",
     "closes each quietly; descriptors back to exactly the baseline, threads within loop + pool."),
    ("tests/e2e/test_resource_limits.py::test_out_of_descriptors_pauses_accepting_without_spinning",
     "the descriptor limit (64) is exhausted by connecting clients.",
     "pauses accepting (no spinning), serves the connections it has, recovers when they leave."),
    ("tests/e2e/test_resource_limits.py::test_send_timeout_drops_a_client_that_stops_reading",
     "a client stops reading a 64 MiB response.",
     "closes the connection after --send-timeout, frees its socket and file, logs the bytes sent."),
]


def fault_rows():
    """(test, fault, what the server did) for every test of FAULT_TESTS that
    says so in its docstring, then the ones referenced."""
    rows = []
    with open(os.path.join(REPO, FAULT_TESTS), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            text = " ".join((ast.get_docstring(node) or "").split())
            match = re.search(r"Fault: (.*?) Server: (.*)", text)
            if match:
                rows.append((f"{FAULT_TESTS}::{node.name}", match.group(1), match.group(2)))
    return rows + REFERENCED_FAULT_TESTS


def outcomes_from_junit(junit_path):
    """{test function name: outcome} from pytest's JUnit XML; a parametrised
    test takes the worst outcome of its cases."""
    outcomes = {}
    for case in ElementTree.parse(junit_path).iter("testcase"):
        name = case.get("name").split("[")[0]
        skipped = case.find("skipped")
        if skipped is not None:
            outcome = "xfail (known)" if skipped.get("type") == "pytest.xfail" else "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "FAILED"
        else:
            outcome = "passed"
        previous = outcomes.get(name)
        if previous is None or previous == "passed":
            outcomes[name] = outcome
    return outcomes


def run_fault_tests():
    """Run the fault tests with pytest and print the table with their outcomes."""
    rows = fault_rows()
    with tempfile.TemporaryDirectory() as directory:
        junit = os.path.join(directory, "faults.xml")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                   FAULT_TESTS, *[test for test, _, _ in REFERENCED_FAULT_TESTS]]
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        outcomes = outcomes_from_junit(junit)
    table = []
    for test, fault, behaviour in rows:
        name = test.split("::")[1]
        table.append((fault, behaviour, f"`{name}`", outcomes.get(name, "not run")))
    print(render_table(("fault", "what the server did", "test", "result"), table, markdown=True))
    print()
    print(completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr[-500:])
    return {"rows": table, "pytest_exit": completed.returncode, "passed": completed.returncode == 0}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="faults.py", description="Run reactor_http's fault tests and print "
                                                                   "their table: fault, behaviour, test, result.")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    options = parser.parse_args(argv)
    report = run_fault_tests()
    if options.json:
        save_json(report, options.json, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
