"""A short soak (scripts/soak.py) as part of the suite, and proof that the soak can fail.

The soak drives a mixed load (small and large files, 404s, redirects, single
and multi ranges, conditional requests, pipelined batches, HTTP/1.0 and
Connection: close, abrupt disconnects by FIN and RST, slow readers) from two
client processes of eight threads each, verifies every response against the
files on disk, and samples the server with psutil once a second. The short run
here is 50,000 requests; docs/reliability.md has the long one.

A soak that reports success whatever happens is worse than none, so one test
corrupts the server's output on purpose (a sitecustomize that flips a byte of
every chunk the portable path reads) and checks that the soak fails and says why.
"""

import json
import os
import subprocess
import sys

import pytest
from support.environment import REPO, import_script
from support.servers import sitecustomize_env

SOAK = os.path.join(REPO, "scripts", "soak.py")
soak = import_script("soak")


def run_soak(*args, env=None, timeout=150):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, SOAK, *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=REPO)


def test_short_soak_verifies_every_response_and_leaks_nothing(tmp_path):
    """50,000 requests of every kind (the CI soak): no error, every kind exercised, the
    server's descriptors back to their baseline, its threads never more than
    the loop and the executor's pool, its memory within the bound."""
    report_path = tmp_path / "soak.json"
    completed = run_soak("--requests", "50000", "--json", str(report_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["errors"] == 0, report["error_samples"]
    assert report["requests"] >= 50000
    assert report["responses"] + report["aborted"] == report["requests"]
    assert report["aborted"] > 0 and report["bytes_verified"] > 100 * 1024 * 1024
    kinds = set(soak.REQUEST_MIX) | {"close", "http10", "slow"}
    assert kinds <= set(report["kinds"]), kinds - set(report["kinds"])
    resources = report["resources"]
    assert resources["samples"] >= 2
    assert resources["fds"]["end"] == resources["fds"]["baseline"]
    assert resources["threads"]["max"] <= resources["threads"]["cap"] == 1 + 8
    assert resources["threads"]["end"] == resources["threads"]["baseline"]
    assert resources["rss_mib"]["max"] - resources["rss_mib"]["baseline"] <= 32
    assert all(report["checks"].values()), report["checks"]
    # The table a person reads says the same.
    assert "| errors | 0 |" in completed.stdout
    assert "| check: descriptors back to baseline | pass |" in completed.stdout


# Fault injection: every chunk the portable send path reads (on the executor,
# or on the loop thread when the page cache holds it) has its first byte
# flipped, so every large file goes out wrong (with the right length).
CORRUPT_CHUNKS_CODE = """
import reactor_http.connection.connection as connection
import reactor_http.connection.writer as writer


def corrupting(read):
    def read_and_flip(fd, buffer, offset):
        count = read(fd, buffer, offset)
        if count:
            buffer[0] ^= 0xFF
        return count
    return read_and_flip


connection.read_chunk = corrupting(connection.read_chunk)
writer.read_cached_chunk = corrupting(writer.read_cached_chunk)
"""


def test_soak_fails_when_the_server_sends_wrong_bytes(tmp_path):
    """With the portable path corrupting one byte per chunk, the soak counts
    errors, names them, fails its check and exits 1."""
    env = sitecustomize_env(str(tmp_path / "corrupt"), CORRUPT_CHUNKS_CODE)
    report_path = tmp_path / "soak.json"
    completed = run_soak("--requests", "2000", "--warmup-requests", "200", "--server-arg=--no-sendfile",
                         "--json", str(report_path), env={"PYTHONPATH": env["PYTHONPATH"]})
    assert completed.returncode == 1, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert report["errors"] > 0
    assert report["checks"]["no errors"] is False
    assert any("differ" in sample for sample in report["error_samples"]), report["error_samples"]
    assert "| check: no errors | FAIL |" in completed.stdout


def test_soak_drives_a_running_server_given_by_url(start_server, tmp_path):
    """--url with --root and --pid: the soak writes its files under the root
    the running server serves, loads it and samples it, as it does its own."""
    root = tmp_path / "root"
    root.mkdir()
    server = start_server("--quiet", root=str(root))
    report_path = tmp_path / "soak.json"
    completed = run_soak("--url", f"http://127.0.0.1:{server.port}/", "--root", str(root),
                         "--pid", str(server.pid), "--requests", "3000", "--warmup-requests", "300",
                         "--json", str(report_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["errors"] == 0 and report["requests"] >= 3000
    assert report["resources"]["fds"]["end"] == report["resources"]["fds"]["baseline"]
    assert server.process.poll() is None


@pytest.mark.parametrize("url", ["http://192.0.2.1:8080/", "http://198.51.100.7/"])
def test_soak_refuses_an_address_that_is_not_this_machine(tmp_path, url):
    """The soak loads servers on loopback addresses only: any other --url is
    refused before a single connection is made."""
    completed = run_soak("--url", url, "--root", str(tmp_path), "--requests", "10", timeout=60)
    assert completed.returncode == 1
    assert "is not a loopback address" in completed.stderr
