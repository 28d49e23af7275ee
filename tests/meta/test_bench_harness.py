"""A fast smoke test of the benchmark harness, scripts/bench.py.

It runs the harness for real (reactor_http and the ceiling loop, two short
scenarios) and checks that what it reports is sane and consistent, and it
checks the one claim the pipelined scenario rests on: that wrk counts
responses, not writes. Needs wrk and taskset: skipped locally without them,
a failure under CI=true.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from support.environment import REPO, import_script, require_program

BENCH = os.path.join(REPO, "scripts", "bench.py")
bench = import_script("bench")
# Another CPython for --reactor-http-python's real run (pyenv's, where the machine has it).
OTHER_PYTHON = os.path.expanduser("~/.pyenv/versions/3.12.1/bin/python3")


def cpu_flags():
    """Server and client on separate CPUs where the machine has two."""
    cpus = sorted(os.sched_getaffinity(0))
    client = cpus[1] if len(cpus) > 1 else cpus[0]
    return ["--server-cpus", str(cpus[0]), "--client-cpus", str(client)]


def test_help_names_every_scenario_and_option():
    """--help documents the scenarios and the options the README promises."""
    completed = subprocess.run([sys.executable, BENCH, "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    text = " ".join(completed.stdout.split())  # argparse wraps lines
    for name in ("S1", "S1b", "S2", "S3", "S4", "S5", "S6"):
        assert f"{name} " in text, name
    for option in ("--servers", "--scenarios", "--runs", "--duration", "--quick", "--server-cpus",
                   "--client-cpus", "--idle-connections", "--reactor-workers", "--json", "--png",
                   "--reactor-http-checkout", "--reactor-http-python"):
        assert option in text, option


def test_missing_wrk_and_taskset_is_a_clear_error(tmp_path):
    """Without wrk and taskset on PATH the harness exits 2 and names both, before
    starting anything."""
    completed = subprocess.run(
        [sys.executable, BENCH, "--quick", "--servers", "reactor_http", "--scenarios", "S1"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PATH=str(tmp_path)))
    assert completed.returncode == 2
    assert "wrk and taskset not found" in completed.stderr, completed.stderr
    assert completed.stdout == ""


def test_quick_run_reports_sane_figures(tmp_path):
    """A real quick run: every figure the JSON holds for the measured cells is
    positive, the 404 scenario got 404s and nothing else, the ceiling loop is not
    asked for what it cannot answer, the ratio is computed from the medians, and
    a second checkout (this one again, by another name) is measured beside the
    rest and compared like a peer."""
    require_program("wrk")
    require_program("taskset")
    json_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, BENCH, "--quick", "--scenarios", "S1,S4", "--duration", "1",
         "--servers", "reactor_http,ceiling,reactor_http_log", "--reactor-http-checkout", f"again={REPO}",
         "--json", str(json_path), *cpu_flags()],
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(json_path.read_text())

    assert report["options"]["runs"] == 1
    assert report["options"]["duration"] == 1
    assert report["options"]["scenarios"] == ["S1", "S4"]
    assert report["servers"]["reactor_http"]["version"].startswith("reactor_http ")
    results = report["results"]
    for server, scenario in (("reactor_http", "S1"), ("reactor_http", "S4"), ("ceiling", "S1"),
                             ("reactor_http_log", "S1"), ("again", "S1"), ("again", "S4")):
        summary = results[server][scenario]
        assert len(summary["runs"]) == 1, (server, scenario)
        run = summary["runs"][0]
        assert run["requests"] > 0
        assert 0.5 < run["seconds"] < 5
        assert run["requests_per_second"] == pytest.approx(run["requests"] / run["seconds"])
        assert summary["requests_per_second"]["median"] == run["requests_per_second"]
        assert run["p99_ms"] > 0
        assert run["server_cpu_seconds"] > 0
        assert run["cpu_us_per_request"] == pytest.approx(1e6 * run["server_cpu_seconds"] / run["requests"])
        assert run["cpu_us_per_request"] == pytest.approx(run["user_us_per_request"]
                                                          + run["system_us_per_request"])
        assert run["client_cpu_percent"] > 0
        # S1 expects 200s and S4 404s; anything else would be counted here.
        assert run["unexpected_status"] == 0, (server, scenario)
        # (wrk's timeouts are left out: on a loaded machine a request may take its 2 s.)
        errors = run["socket_errors"]
        assert errors["connect_errors"] == errors["read_errors"] == errors["write_errors"] == 0, errors
    assert "skipped" in results["ceiling"]["S4"]

    mine = results["reactor_http"]["S1"]["requests_per_second"]["median"]
    theirs = results["ceiling"]["S1"]["requests_per_second"]["median"]
    assert report["ratios"]["ceiling"]["S1"]["throughput"] == pytest.approx(mine / theirs)
    assert "S4" not in report["ratios"]["ceiling"]
    assert report["options"]["servers"] == ["reactor_http", "ceiling", "reactor_http_log", "again"]
    assert report["servers"]["again"]["checkout"] == REPO
    assert report["servers"]["again"]["version"].startswith("reactor_http ")
    again = results["again"]["S4"]["requests_per_second"]["median"]
    assert report["ratios"]["again"]["S4"]["throughput"] == pytest.approx(
        results["reactor_http"]["S4"]["requests_per_second"]["median"] / again)
    assert "Throughput: one run" in completed.stdout
    assert "reactor_http / peer" in completed.stdout
    # The access-log variant logged every request (the warm-up's and the check's too),
    # and is compared with the plain run of the same invocation.
    logged = results["reactor_http_log"]["access_log"]["lines"]
    assert logged >= results["reactor_http_log"]["S1"]["runs"][0]["requests"]
    variant = results["reactor_http_log"]["S1"]["requests_per_second"]["median"]
    assert f"{variant / mine:.2f}x" in completed.stdout.split("reactor_http's variants")[1]


def test_tls_scenarios_run_against_a_second_process_with_the_runs_certificate(tmp_path):
    """TLS-S1 and TLS-S4: reactor_http and tuned nginx each get a TLS process
    of their own with the run's certificate; wrk's requests all succeed; the
    report says what was negotiated; a peer without TLS says so in its cells."""
    for program in ("wrk", "taskset", "openssl", "nginx"):
        require_program(program)
    json_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, BENCH, "--quick", "--scenarios", "S1,TLS-S1,TLS-S4", "--duration", "1",
         "--servers", "reactor_http,nginx_tuned,ceiling", "--json", str(json_path), *cpu_flags()],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(json_path.read_text())
    results = report["results"]
    for server in ("reactor_http", "nginx_tuned"):
        assert results[server]["tls"]["version"] in ("TLSv1.2", "TLSv1.3"), results[server]["tls"]
        for scenario in ("S1", "TLS-S1", "TLS-S4"):
            run = results[server][scenario]["runs"][0]
            assert run["requests"] > 0 and run["unexpected_status"] == 0, (server, scenario)
            assert run["socket_errors"]["read_errors"] == 0, (server, scenario)
    assert results["ceiling"]["TLS-S1"] == {"skipped": "no TLS"}
    assert "TLS-S1" in report["ratios"]["nginx_tuned"]
    assert "TLS as negotiated" in completed.stdout


def test_wrk_counts_pipelined_responses_not_writes(start_server, tmp_path):
    """S6's figure is responses per second: with 16 requests per write, wrk's
    request count matches the server's access log, not a sixteenth of it. The
    server may have answered up to one batch per connection that wrk stopped
    before reading, so the log can be ahead by at most 16 x connections."""
    wrk = require_program("wrk")
    server = start_server()  # with its access log: one line per response
    script = bench.write_wrk_script(str(tmp_path / "pipelined.lua"), "/index.html", depth=16)
    connections = 4
    completed = subprocess.run(
        bench.wrk_command(wrk, f"{server.url}/index.html", connections, 1, script),
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    counted_by_wrk = bench.parse_wrk_output(completed.stdout)["requests"]
    assert server.stop() == 0
    logged = sum(1 for line in server.stdout_lines
                 if re.search(r'"GET /index\.html HTTP/1\.1" 200 ', line))
    # Enough traffic that counting writes instead of responses could not pass.
    assert logged > 16 * connections * 4
    assert counted_by_wrk <= logged <= counted_by_wrk + 16 * connections


def test_a_checkout_is_a_server_of_its_own(tmp_path):
    """--reactor-http-checkout NAME=DIR adds NAME, running DIR's reactor_http,
    after the servers named (or where --servers puts it); a directory that is
    no checkout, or a name already taken, is refused before anything starts."""
    parser = bench.build_parser()
    options = bench.resolve_options(parser, parser.parse_args(
        ["--servers", "reactor_http,nginx", "--reactor-http-checkout", f"before={REPO}"]))
    assert options.server_list == ["reactor_http", "nginx", "before"]
    spec = options.server_specs["before"]
    assert spec.is_reactor_http and spec.checkout == REPO
    options = bench.resolve_options(parser, parser.parse_args(
        ["--servers", "before,reactor_http", "--reactor-http-checkout", f"before={REPO}"]))
    assert options.server_list == ["before", "reactor_http"]
    for wrong in (f"nginx={REPO}", f"before={tmp_path}", REPO):
        completed = subprocess.run([sys.executable, BENCH, "--reactor-http-checkout", wrong, "--quick"],
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 2 and "--reactor-http-checkout" in completed.stderr, completed.stderr


def test_an_interpreter_is_a_server_of_its_own(monkeypatch):
    """--reactor-http-python NAME=INTERPRETER adds NAME, running this checkout's
    reactor_http under INTERPRETER, after the servers named and the checkouts
    (or where --servers puts it), with the interpreter's own sys.version."""
    parser = bench.build_parser()
    options = bench.resolve_options(parser, parser.parse_args(
        ["--servers", "reactor_http,nginx", "--reactor-http-python", f"other={sys.executable}",
         "--reactor-http-checkout", f"before={REPO}"]))
    assert options.server_list == ["reactor_http", "nginx", "before", "other"]
    spec = options.server_specs["other"]
    assert spec.is_reactor_http and spec.checkout is None and spec.speaks_tls
    assert spec.python == sys.executable and spec.python_executable == sys.executable
    assert spec.python_version == " ".join(sys.version.split())
    assert spec.label == f"reactor_http on Python {spec.python_version}"
    assert bench.server_version(spec).startswith("reactor_http ")
    assert bench.server_version(spec).endswith(f", on Python {spec.python_version}")
    options = bench.resolve_options(parser, parser.parse_args(
        ["--servers", "other,reactor_http", "--reactor-http-python", f"other={sys.executable}"]))
    assert options.server_list == ["other", "reactor_http"]
    # A bare name is looked up on PATH; ~ is expanded.
    directory, program = os.path.split(sys.executable)
    monkeypatch.setenv("PATH", directory)
    monkeypatch.setenv("HOME", directory)
    assert bench._python(f"x={program}").python == sys.executable
    assert bench._python(f"x=~/{program}").python == sys.executable


def fake_python(path, script):
    """An executable shell script at path standing in for an interpreter."""
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_bad_interpreter_is_refused_before_anything_starts(tmp_path, capsys):
    """A malformed spec, a taken name, a missing or non-executable file, a
    program that does not report a Python version, or a Python too old for
    reactor_http: exit status 2 and a message naming the option and the reason."""
    not_executable = tmp_path / "python-not-executable"
    not_executable.write_text("")
    wrong = {
        "no-equals": ("python3", "expected NAME=INTERPRETER"),
        "empty": ("py=", "expected NAME=INTERPRETER"),
        "bad name": (f"a b={sys.executable}", "expected NAME=INTERPRETER"),
        "taken": (f"nginx={sys.executable}", "nginx is a server already"),
        "missing": (f"py={tmp_path / 'no-such-python'}", "no interpreter at"),
        "not executable": (f"py={not_executable}", "is not executable"),
        "not on PATH": ("py=no-such-python-anywhere", "no interpreter at"),
        "says nothing": (f"py={fake_python(tmp_path / 'silent', 'exit 0')}", "did not report a Python version"),
        "fails": (f"py={fake_python(tmp_path / 'failing', 'echo broken >&2; exit 3')}",
                  "(exit status 3): 'broken'"),
        "too old": ("py=" + fake_python(tmp_path / "old", 'echo /usr/bin/python3.9; echo "3.9.18 (main)"'),
                    "is Python 3.9.18 (main); reactor_http needs 3.10 or later"),
    }
    parser = bench.build_parser()
    for case, (spec, message) in wrong.items():
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--reactor-http-python", spec])
        assert exit_info.value.code == 2, case
        error = capsys.readouterr().err
        assert "argument --reactor-http-python" in error and message in error, (case, error)
    # One name for two servers, whichever options name them.
    python = f"py={sys.executable}"
    for arguments in (["--reactor-http-python", python, "--reactor-http-python", python],
                      ["--reactor-http-checkout", f"py={REPO}", "--reactor-http-python", python]):
        with pytest.raises(SystemExit) as exit_info:
            bench.resolve_options(parser, parser.parse_args(arguments))
        assert exit_info.value.code == 2
        assert "--reactor-http-python: py is given twice" in capsys.readouterr().err


def test_another_interpreter_is_measured_beside_the_harnesss_own(tmp_path):
    """A real short run with another CPython: that interpreter (a wrapper that
    notes its arguments, then runs it) serves this checkout's reactor_http; the
    report names its full version in the JSON, in the row's label and in the
    versions, and the plain reactor_http's row names the harness's Python."""
    require_program("wrk")
    require_program("taskset")
    if not os.access(OTHER_PYTHON, os.X_OK):
        pytest.skip(f"no {OTHER_PYTHON}")
    calls = tmp_path / "calls"
    wrapper = fake_python(tmp_path / "python", f'echo "$@" >> {calls}\nexec {OTHER_PYTHON} "$@"')
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    completed = subprocess.run(
        [sys.executable, BENCH, "--runs", "1", "--duration", "1", "--warmup", "0", "--scenarios", "S1,S4",
         "--servers", "reactor_http", "--reactor-http-python", f"other={wrapper}",
         "--json", str(json_path), "--markdown", str(markdown_path), *cpu_flags()],
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(json_path.read_text())
    version = subprocess.run([OTHER_PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    version = " ".join(version.split())
    assert report["options"]["servers"] == ["reactor_http", "other"]
    assert report["options"]["reactor_http_pythons"] == {
        "other": {"interpreter": wrapper, "executable": OTHER_PYTHON, "version": version}}
    other, plain = report["servers"]["other"], report["servers"]["reactor_http"]
    assert other["python"] == version and other["interpreter"] == wrapper
    assert other["label"] == f"reactor_http on Python {version}"
    assert other["version"].endswith(f", on Python {version}")
    assert plain["python"] == " ".join(sys.version.split()) and plain["interpreter"] == sys.executable
    assert plain["label"] == f"reactor_http on Python {plain['python']}"
    # The wrapper was asked for its version, then ran the server.
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("-c ") and lines[1].startswith("-m reactor_http --port "), lines
    results = report["results"]
    for scenario in ("S1", "S4"):
        run = results["other"][scenario]["runs"][0]
        assert run["requests"] > 0 and run["unexpected_status"] == 0, scenario
        assert report["ratios"]["other"][scenario]["throughput"] == pytest.approx(
            results["reactor_http"][scenario]["requests_per_second"]["median"] / run["requests_per_second"])
    markdown = markdown_path.read_text()
    throughput = markdown.split("### Throughput")[1].split("###")[0]
    assert f"| reactor_http on Python {version} | " in throughput
    assert f"| reactor_http on Python {plain['python']} | " in throughput
    assert f"other: {other['version']}" in markdown


def test_the_watched_variants_are_watched_while_they_run(tmp_path):
    """reactor_http_live runs with the live page open in one client (its feed
    read throughout), reactor_http_metrics with its metrics scraped every
    second: each says, in the JSON, what its watcher received."""
    require_program("wrk")
    require_program("taskset")
    json_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, BENCH, "--quick", "--scenarios", "S1", "--duration", "2", "--warmup", "1",
         "--servers", "reactor_http_live,reactor_http_metrics", "--json", str(json_path), *cpu_flags()],
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(json_path.read_text())["results"]
    for name, kind in (("reactor_http_live", "live"), ("reactor_http_metrics", "metrics")):
        watched = results[name]["watched"]
        assert (watched["kind"], watched["error"]) == (kind, None)
        assert watched["received"] >= 2, watched  # ticks, or scrapes, over 3 s of load
        assert results[name]["S1"]["runs"][0]["unexpected_status"] == 0
