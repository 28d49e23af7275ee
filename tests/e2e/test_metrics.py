"""--metrics-path: the Prometheus text exposition format, read by Prometheus's own tools.

The real server in a subprocess, on a port of its own. Its page is parsed by
the official Python client's parser, linted by ``promtool check metrics``, and
scraped by a real Prometheus (Debian's package: /usr/bin/prometheus and
/usr/bin/promtool), started by the test on a free loopback port with storage
in a temporary directory, never a system one. No test waits for time to pass
in order to pass: each polls, with a generous bound, for what must happen.
"""

import json
import math
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import psutil
import pytest
from harness.server import ServerError, free_port
from harness.server import ServerProcess as Program
from support import clients
from support.environment import require_program, skip_locally_fail_in_ci, wait_until

try:  # in the test extras (pip install -e '.[test]')
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FILE = b"<h1>seven times</h1>\n" * 50
# Every family the page has, by the name its TYPE line gives, and its type.
FAMILIES = {
    "reactor_http_responses_total": "counter",
    "reactor_http_response_body_bytes_total": "counter",
    "reactor_http_connections_accepted_total": "counter",
    "reactor_http_cache_lookups_total": "counter",
    "reactor_http_loop_turns_total": "counter",
    "reactor_http_loop_busy_seconds_total": "counter",
    "reactor_http_loop_slow_callbacks_total": "counter",
    "process_cpu_seconds_total": "counter",
    "reactor_http_response_seconds": "histogram",
    "reactor_http_loop_lag_seconds": "histogram",
    "reactor_http_connections": "gauge",
    "reactor_http_executor_jobs": "gauge",
    "reactor_http_executor_threads": "gauge",
    "reactor_http_cache_bytes": "gauge",
    "reactor_http_cache_limit_bytes": "gauge",
    "reactor_http_cache_entries": "gauge",
    "reactor_http_cache_open_files": "gauge",
    "reactor_http_stopping": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "process_threads": "gauge",
}
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "page.html").write_bytes(FILE)
    return str(root)


def ask(server, target="/metrics", method="GET", extra=""):
    return clients.ask(server, target, method, extra)


def scrape(server):
    """The metrics page's text (checked to be a 200 of the exposition format)."""
    status, headers, body = ask(server)
    assert status == 200, body
    assert headers["content-type"] == CONTENT_TYPE
    assert headers["cache-control"] == "no-store"
    return body.decode("utf-8")


class Page:
    """A parsed scrape: its families by the name their TYPE line gave (the
    parser drops a counter's _total from the family's name), and its samples."""

    def __init__(self, text):
        if text_string_to_metric_families is None:
            skip_locally_fail_in_ci("the prometheus_client package is not installed (pip install -e '.[test]')")
        self.text = text
        self.families = {}
        for family in text_string_to_metric_families(text):
            name = family.name + "_total" if family.type == "counter" else family.name
            assert name not in self.families, f"{name} twice"
            self.families[name] = family

    def samples(self, family, suffix="", **labels):
        """The samples of a family (``suffix``: _bucket, _sum...) with these labels."""
        name = family if family.endswith("_total") else family + suffix
        return [sample for sample in self.families[family].samples
                if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())]

    def value(self, family, suffix="", **labels):
        """The value of the one sample of a family with these labels."""
        found = self.samples(family, suffix, **labels)
        assert len(found) == 1, (family, suffix, labels, found)
        return found[0].value

    def workers(self):
        return {sample.labels.get("worker") for family in self.families.values() for sample in family.samples}


def check_well_formed(page, workers=("0",)):
    """What holds for every scrape: the documented families and types, a
    worker label on every series and no series twice, _total counters, and
    histograms with cumulative buckets that end in +Inf == _count."""
    assert {name: family.type for name, family in page.families.items()} == FAMILIES
    series = set()
    for name, family in page.families.items():
        assert family.documentation, f"{name} has no HELP"
        assert family.samples, f"{name} has no samples"
        assert {sample.labels["worker"] for sample in family.samples} == set(workers), name
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in series, f"{key} twice"
            series.add(key)
            assert not math.isnan(sample.value), key
            if family.type == "counter":
                assert sample.name == name and sample.value >= 0, sample
            elif family.type == "gauge":
                assert sample.name == name, sample
        if family.type == "histogram":
            for worker in workers:
                buckets = page.samples(name, "_bucket", worker=worker)
                bounds = [float(sample.labels["le"]) for sample in buckets]
                counts = [sample.value for sample in buckets]
                assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds) and bounds[-1] == math.inf, bounds
                assert counts == sorted(counts), (name, counts)  # cumulative
                assert counts[-1] == page.value(name, "_count", worker=worker), name
                assert page.value(name, "_sum", worker=worker) >= 0
                assert {sample.name for sample in family.samples} == {name + "_bucket", name + "_sum", name + "_count"}


def promtool_check(text):
    """Run `promtool check metrics` on the text: (exit status, everything it printed)."""
    promtool = require_program("promtool")
    completed = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
    return completed.returncode, completed.stdout + completed.stderr


# -- the page, parsed -----------------------------------------------------------------------


def test_the_numbers_follow_the_traffic(start_server, site):
    server = start_server("--metrics-path", "/metrics", root=site)
    before = Page(scrape(server))
    check_well_formed(before)
    missing_bytes = 0
    for _ in range(7):
        assert ask(server, "/page.html")[::2] == (200, FILE)
    for _ in range(3):
        status, _, body = ask(server, "/missing.html")
        assert status == 404
        missing_bytes += len(body)
    scrapes = 1  # the one above: a 200 counted once it was sent

    def caught_up():
        # Each response is counted once its last byte is handed to the kernel:
        # ask again until the last of them has been.
        nonlocal scrapes
        page = Page(scrape(server))
        scrapes += 1
        sent = (page.value("reactor_http_response_body_bytes_total", worker="0")
                - before.value("reactor_http_response_body_bytes_total", worker="0"))
        done = (page.value("reactor_http_responses_total", worker="0", code="2xx") >= 7 + 1
                and page.value("reactor_http_responses_total", worker="0", code="4xx") >= 3
                and sent >= 7 * len(FILE) + missing_bytes + len(before.text.encode()))
        return page if done else None
    page = wait_until(caught_up, 20, "the responses were never counted")
    check_well_formed(page)
    by_class = {code: page.value("reactor_http_responses_total", worker="0", code=code) for code in STATUS_CLASSES}
    # This scrape is not in its own numbers; the earlier ones are, or are on their way.
    assert 7 + 1 <= by_class["2xx"] <= 7 + scrapes - 1, (by_class, scrapes)
    assert (by_class["1xx"], by_class["3xx"], by_class["4xx"], by_class["5xx"]) == (0, 0, 3, 0)
    # The histogram counts the same responses, in the same snapshot.
    assert page.value("reactor_http_response_seconds", "_count", worker="0") == sum(by_class.values())
    assert 0 < page.value("reactor_http_response_seconds", "_sum", worker="0") < 60 * sum(by_class.values())
    assert (page.value("reactor_http_connections_accepted_total", worker="0")
            >= before.value("reactor_http_connections_accepted_total", worker="0") + 10 + 1)
    # The file was read once and then served from the cache.
    hits = page.value("reactor_http_cache_lookups_total", worker="0", result="hit")
    misses = page.value("reactor_http_cache_lookups_total", worker="0", result="miss")
    assert hits >= 6 and misses >= 1, (hits, misses)
    assert page.value("reactor_http_cache_entries", worker="0") >= 1
    assert 0 < page.value("reactor_http_cache_bytes", worker="0") <= page.value(
        "reactor_http_cache_limit_bytes", worker="0")
    assert page.value("reactor_http_cache_open_files", worker="0") == 0  # a small file is held in memory
    # The one asking is connected, reading its request.
    assert sum(sample.value for sample in page.samples("reactor_http_connections", worker="0")) >= 1
    assert page.value("reactor_http_connections", worker="0", state="reading-request") >= 1
    assert page.value("reactor_http_executor_threads", worker="0") == 8
    assert page.value("reactor_http_executor_jobs", worker="0", state="running") == 0
    assert page.value("reactor_http_executor_jobs", worker="0", state="queued") == 0
    assert page.value("reactor_http_stopping", worker="0") == 0
    assert (page.value("reactor_http_loop_turns_total", worker="0")
            > before.value("reactor_http_loop_turns_total", worker="0"))
    assert page.value("reactor_http_loop_busy_seconds_total", worker="0") > 0
    assert page.value("reactor_http_loop_slow_callbacks_total", worker="0") >= 0
    # The process's own numbers, in base units.
    assert page.value("process_cpu_seconds_total", worker="0") > 0
    assert page.value("process_resident_memory_bytes", worker="0") > 1 << 20
    assert 3 <= page.value("process_open_fds", worker="0") <= page.value("process_max_fds", worker="0")
    assert page.value("process_threads", worker="0") >= 1
    process = psutil.Process(server.pid)
    assert abs(page.value("process_start_time_seconds", worker="0") - process.create_time()) < 30
    assert page.value("process_max_fds", worker="0") == process.rlimit(psutil.RLIMIT_NOFILE)[0]
    # Counters never go back.
    for name, family in page.families.items():
        if family.type == "counter":
            for sample in family.samples:
                earlier = before.value(name, **sample.labels)
                assert sample.value >= earlier, (sample, earlier)


def test_promtool_finds_nothing_to_complain_about(start_server, site):
    server = start_server("--metrics-path", "/metrics", root=site)
    for target in ("/page.html", "/missing.html", "/page.html"):
        ask(server, target)
    text = scrape(server)
    assert promtool_check(text) == (0, "")
    # A query string is the same page (a scraper may add one).
    status, headers, body = ask(server, "/metrics?format=prometheus")
    assert (status, headers["content-type"]) == (200, CONTENT_TYPE)
    check_well_formed(Page(body.decode()))


# -- under --workers ------------------------------------------------------------------------


def test_any_worker_answers_for_every_worker(start_server, site):
    """Whichever worker answers, it reports both (the other as of its last
    second's tick): every family has a worker="0" and a worker="1" series, no
    series twice, and promtool still finds nothing to complain about."""
    server = start_server("--metrics-path", "/metrics", "--workers", "2", root=site)
    for _ in range(10):
        assert ask(server, "/page.html")[::2] == (200, FILE)

    def both_counted():
        page = Page(scrape(server))
        if page.workers() != {"0", "1"}:
            return None
        total = sum(page.value("reactor_http_responses_total", worker=worker, code="2xx") for worker in "01")
        return page if total >= 10 else None
    page = wait_until(both_counted, 20, "no scrape showed both workers and the ten responses")
    check_well_formed(page, workers=("0", "1"))
    for worker in "01":
        assert time.time() - 300 < page.value("process_start_time_seconds", worker=worker) <= time.time()
        assert page.value("reactor_http_executor_threads", worker=worker) == 8
    assert promtool_check(page.text) == (0, "")


def test_counters_never_go_back_from_scrape_to_scrape(start_server, site):
    """Scrapes reach either worker. Whatever one says of another, no counter
    (nor histogram bucket, sum or count) may be lower than an earlier scrape
    said it was: Prometheus would take that for a restart, and rate() would
    count the whole counter again."""
    server = start_server("--metrics-path", "/metrics", "--workers", "2", "--access-log", os.devnull, root=site)
    wait_until(lambda: Page(scrape(server)).workers() == {"0", "1"}, 20, "never both workers")
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            assert ask(server, "/page.html")[0] == 200
    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        highest, went_back = {}, []
        for _ in range(150):
            page = Page(scrape(server))
            for family in page.families.values():
                if family.type in ("counter", "histogram"):
                    for sample in family.samples:
                        key = (sample.name, tuple(sorted(sample.labels.items())))
                        if sample.value < highest.get(key, 0):
                            went_back.append((key, highest[key], sample.value))
                        highest[key] = max(sample.value, highest.get(key, 0))
    finally:
        stop.set()
        thread.join(10)
    assert not went_back, f"{len(went_back)} went back, e.g. {went_back[:3]}"


# -- who may ask, and how -------------------------------------------------------------------


def test_off_by_default(start_server, site):
    server = start_server(root=site)
    assert ask(server)[0] == 404


def test_head_and_other_methods(start_server, site):
    server = start_server("--metrics-path", "/metrics", root=site)
    status, get_headers, body = ask(server)
    assert status == 200 and body
    status, head_headers, body = ask(server, method="HEAD")
    assert (status, body) == (200, b"")
    for name in ("content-type", "cache-control"):
        assert head_headers[name] == get_headers[name]
    assert int(head_headers["content-length"]) > 1000  # the page's length, though it is not sent
    status, headers, _ = ask(server, method="POST", extra="Content-Length: 0\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    status, headers, _ = ask(server, method="DELETE")
    assert (status, headers["allow"]) == (405, "GET, HEAD")


def test_only_allowed_addresses(start_server, site):
    """--status-allow covers the metrics too: loopback, not in 10.0.0.0/8,
    gets 403, while the rest of the site is served as before."""
    server = start_server("--metrics-path", "/metrics", "--status-allow", "10.0.0.0/8", root=site)
    status, _, body = ask(server)
    assert status == 403 and b"not open to this address" in body
    assert ask(server, method="HEAD")[0] == 403
    assert ask(server, method="POST", extra="Content-Length: 0\r\n")[0] == 403
    assert ask(server, "/page.html")[::2] == (200, FILE)


# -- scraped by Prometheus ------------------------------------------------------------------


def api(port, path, **query):
    """A Prometheus HTTP API call: its ``data``, or None when not (yet) answered."""
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            document = json.load(response)
    except OSError:
        return None
    return document["data"] if document.get("status") == "success" else None


def launch_prometheus(prometheus, configuration, data, log, port):
    """One try at starting Prometheus on ``port``: the process once it says it
    is ready, or once it has exited (for the caller to look at)."""
    process = Program([prometheus, f"--config.file={configuration}", f"--storage.tsdb.path={data}",
                       f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                      cwd=os.path.dirname(configuration), log_path=log)

    def ready_or_gone():
        if not process.alive():
            return True
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False
    try:
        wait_until(ready_or_gone, 60, lambda: f"Prometheus never became ready: {process.log_tail()}", interval=0.1)
    except AssertionError:
        process.stop()
        raise
    return process


def start_prometheus(prometheus, directory, target):
    """Prometheus scraping ``target`` every second, on a free loopback port of
    its own, storing in ``directory``: (process, port) once it says it is ready."""
    configuration = os.path.join(directory, "prometheus.yml")
    with open(configuration, "w", encoding="utf-8") as file:
        file.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                   "scrape_configs:\n  - job_name: reactor_http\n    metrics_path: /metrics\n"
                   f"    static_configs:\n      - targets: ['{target}']\n")
    for attempt in range(3):  # the free port may be taken before Prometheus binds it
        port = free_port()
        process = launch_prometheus(prometheus, configuration, os.path.join(directory, f"data-{attempt}"),
                                    os.path.join(directory, f"prometheus-{attempt}.log"), port)
        if process.alive():
            return process, port
        output = process.output()
        process.stop()  # closes its log
        if "address already in use" not in output:
            raise ServerError(f"Prometheus exited with status {process.process.returncode}: {output[-1500:]}")
    raise ServerError(f"Prometheus found no free port: {output[-1500:]}")


def test_prometheus_scrapes_the_page(start_server, site, tmp_path):
    prometheus = require_program("prometheus")
    server = start_server("--metrics-path", "/metrics", root=site)
    for _ in range(5):
        assert ask(server, "/page.html")[0] == 200
    process, port = start_prometheus(prometheus, str(tmp_path), f"127.0.0.1:{server.port}")
    try:
        def scraped(query, at_least):
            data = api(port, "/api/v1/query", query=query)
            values = [float(result["value"][1]) for result in (data or {}).get("result", ())]
            return values if len(values) == 1 and values[0] >= at_least else None
        # Up, and its own earlier scrapes counted too: the numbers move from scrape to scrape.
        assert wait_until(lambda: scraped('up{job="reactor_http"}', 1), 60,
                          lambda: f"never up: {api(port, '/api/v1/targets')} {process.log_tail()}",
                          interval=0.2) == [1]
        wait_until(lambda: scraped('reactor_http_responses_total{job="reactor_http",code="2xx",worker="0"}', 5 + 2),
                   60, lambda: f"the responses never showed: {process.log_tail()}", interval=0.2)
        # Its series are the page's, under the names it gave them (besides
        # up and scrape_*, which Prometheus adds itself).
        data = api(port, "/api/v1/series", **{"match[]": '{job="reactor_http"}'})
        names = {series["__name__"] for series in data}
        expected = {name + suffix for name, kind in FAMILIES.items()
                    for suffix in (("_bucket", "_sum", "_count") if kind == "histogram" else ("",))}
        assert {name for name in names if name != "up" and not name.startswith("scrape_")} == expected, names
        targets = api(port, "/api/v1/targets")["activeTargets"]
        assert [(target["health"], target["lastError"]) for target in targets] == [("up", "")], targets
        # A histogram Prometheus can compute with.
        quantile = wait_until(lambda: scraped(
            'histogram_quantile(0.5, reactor_http_response_seconds_bucket{job="reactor_http"})', 0), 60,
            "no quantile of the response times")
        assert 0 <= quantile[0] <= 10
    finally:
        process.stop()
