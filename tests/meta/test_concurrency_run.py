"""The concurrency harness, scripts/concurrency_run.py, run for real at a size a test can afford.

docs/concurrency.md rests on a few claims, and this checks each of them on small
steps (10 and 50 connections, 2 s each) with both servers under epoll:

- reactor_http's thread count does not move with the connections (one loop
  thread and the executor's pool), while the baseline's grows by one per
  connection;
- at these sizes both servers answer every request, with no error, at the
  rate the client asks for (so the harness measures servers, not itself);
- blocking the loop (--file-work-on-loop, with a 20 ms simulated disk and 20
  connections asking continuously) serves requests one at a time, where the
  executor serves eight at once: latency several times higher, rate lower.
  (Expected: about 20 x 20 ms = 400 ms against 20 / 8 x 20 ms = 50 ms; the
  test asks for a factor of 3, far from the noise.)

And the harness's own promises: a row per server x step in the CSV, steps the
descriptor limit cannot hold skipped with a reason, a clear error without psutil.
"""

import csv
import json
import os
import subprocess
import sys

import pytest
from support.environment import REPO, import_script
from support.servers import sitecustomize_env

SCRIPT = os.path.join(REPO, "scripts", "concurrency_run.py")
concurrency_run = import_script("concurrency_run")


def _number(text):
    return float(text) if text not in ("", None) else None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of everything: (completed process, CSV rows, JSON report)."""
    directory = tmp_path_factory.mktemp("concurrency")
    csv_path, json_path, markdown_path = (directory / "run.csv", directory / "run.json",
                                          directory / "run.md")
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--experiment", "all", "--servers", "reactor_http,threads",
         "--selectors", "epoll", "--csv", str(csv_path), "--json", str(json_path),
         "--markdown", str(markdown_path)],
        capture_output=True, text=True, timeout=150, cwd=REPO)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    report = json.loads(json_path.read_text())
    report["markdown"] = markdown_path.read_text()
    return completed, rows, report


def _ramp(rows, server):
    return {int(row["connections"]): row for row in rows
            if row["experiment"] == "ramp" and row["server"] == server}


def test_a_row_per_server_and_step(quick_run):
    _, rows, _ = quick_run
    keys = sorted((row["experiment"], row["server"], row["selector"], row["variant"], int(row["connections"]))
                  for row in rows)
    assert keys == [
        ("blocking-loop", "reactor_http", "epoll", "executor", 20),
        ("blocking-loop", "reactor_http", "epoll", "on the loop", 20),
        ("ramp", "reactor_http", "epoll", "", 10),
        ("ramp", "reactor_http", "epoll", "", 50),
        ("ramp", "threads", "", "", 10),
        ("ramp", "threads", "", "", 50),
    ]
    assert all(not row["skipped"] for row in rows)


def test_reactor_threads_stay_flat_while_the_baseline_spends_one_per_connection(quick_run):
    _, rows, _ = quick_run
    reactor, baseline = _ramp(rows, "reactor_http"), _ramp(rows, "threads")
    reactor_threads = {_number(row["threads_max"]) for row in reactor.values()}
    assert len(reactor_threads) == 1, reactor_threads  # the same at 10 and at 50 connections
    assert reactor_threads.pop() <= concurrency_run.REACTOR_THREADS  # the loop + the executor's 8
    assert _number(baseline[50]["threads"]) > _number(baseline[10]["threads"])
    for row in baseline.values():
        # A thread for each open connection, plus the one that accepts.
        assert _number(row["threads"]) >= int(row["open_connections"]) + 1, row
    assert _number(baseline[50]["threads"]) > _number(reactor[50]["threads"])


def test_small_steps_are_answered_without_errors_at_the_asked_rate(quick_run):
    _, rows, report = quick_run
    for row in rows:
        if row["experiment"] != "ramp":
            continue
        assert int(row["open_connections"]) == int(row["connections"]), row
        assert int(row["errors_total"]) == 0 and int(row["non_200"]) == 0, row
        assert _number(row["p99_ms"]) is not None and _number(row["p99_ms"]) < 1000, row
        # Each active connection asks once a second: at least half of that
        # must have been answered in the window (slow and idle ones add more).
        asked = int(row["active"]) * _number(row["seconds"])
        assert int(row["requests"]) >= 0.5 * asked, row
        assert int(row["idle"]) > 0 and int(row["slow"]) > 0, row
        assert _number(row["rss_mib"]) > 1 and _number(row["cpu_percent"]) is not None, row
    # The sampler ran: ten readings a second for several seconds per run.
    assert all(len(run["samples"]) >= 20 for run in report["runs"]), [len(run["samples"]) for run in report["runs"]]


def test_blocking_the_loop_multiplies_latency(quick_run):
    _, rows, _ = quick_run
    by_variant = {row["variant"]: row for row in rows if row["experiment"] == "blocking-loop"}
    executor, on_loop = by_variant["executor"], by_variant["on the loop"]
    for row in (executor, on_loop):
        assert int(row["errors_total"]) == 0 and int(row["requests"]) > 20, row
    assert _number(on_loop["p99_ms"]) > 3 * _number(executor["p99_ms"]), (on_loop, executor)
    assert _number(on_loop["p50_ms"]) > 3 * _number(executor["p50_ms"]), (on_loop, executor)
    assert _number(on_loop["request_rate"]) < _number(executor["request_rate"]) / 2, (on_loop, executor)


def test_summary_tables_on_stdout_and_in_markdown(quick_run):
    completed, _, report = quick_run
    for text in (completed.stdout, report["markdown"]):
        assert "Ramp: load and latency" in text
        assert "Ramp: what the server spends" in text
        assert "Blocking the loop" in text
        assert "http.server, thread per connection" in text
    assert "| server | selector | connections |" in report["markdown"]


def test_steps_the_descriptor_limit_cannot_hold_are_skipped_with_a_reason():
    fitting, messages = concurrency_run.steps_that_fit([10, 100, 1000, 5000, 10000], 5000)
    assert fitting == [10, 100, 1000]
    assert len(messages) == 2
    assert "this machine allows 5,000 descriptors" in messages[0] and "step 5,000" in messages[0]
    assert concurrency_run.steps_that_fit([10000], 20000) == ([10000], [])


def test_roles_are_spread_evenly_at_every_size():
    for count in (10, 50, 1000):
        roles = [concurrency_run.role_for(index, 0.2, 0.1) for index in range(count)]
        idle = roles.count(concurrency_run.Role.IDLE)
        slow = roles.count(concurrency_run.Role.SLOW)
        assert abs(idle - 0.2 * count) <= 1 and abs(slow - 0.1 * count) <= 1, (count, idle, slow)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert concurrency_run.percentile(values, 0.99) == 99
    assert concurrency_run.percentile(values, 0.5) == 50
    assert concurrency_run.percentile([7], 0.99) == 7
    assert concurrency_run.percentile([], 0.5) is None


def test_without_psutil_it_says_how_to_install_it(tmp_path):
    environment = dict(os.environ, **sitecustomize_env(tmp_path, "import sys\nsys.modules['psutil'] = None\n"))
    completed = subprocess.run([sys.executable, SCRIPT, "--quick"], capture_output=True, text=True,
                               timeout=60, cwd=REPO, env=environment)
    assert completed.returncode == 2
    assert "pip install psutil" in completed.stderr, completed.stderr
    assert completed.stdout == ""


def test_live_serves_the_page_from_each_reactor_run_on_one_port(tmp_path):
    """--live --live-port: each reactor_http run serves the live page on the
    one port given, and says where; the baseline runs as before."""
    from harness.server import free_port
    port = free_port()
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--experiment", "ramp", "--servers", "reactor_http",
         "--selectors", "epoll", "--steps", "10", "--live", "--live-port", str(port),
         "--json", str(tmp_path / "run.json")],
        capture_output=True, text=True, timeout=150, cwd=REPO)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"watch it live at http://127.0.0.1:{port}/_reactor" in completed.stdout + completed.stderr
    (run,) = json.loads((tmp_path / "run.json").read_text())["runs"]
    assert "--dashboard-path /_reactor" in run["command"] and f"--port {port}" in run["command"]
    assert run["rows"] and not run.get("error")
