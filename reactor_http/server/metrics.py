"""Prometheus metrics (``--metrics-path``): the snapshots, in the text exposition format.

Prometheus (and anything that reads its format: VictoriaMetrics, the Grafana
agent, the OpenTelemetry collector) asks a path every few seconds and gets a
page of lines, one number each:

    # HELP reactor_http_responses_total Responses sent, by status class.
    # TYPE reactor_http_responses_total counter
    reactor_http_responses_total{worker="0",code="2xx"} 1027

The names follow Prometheus's conventions: a unit in the name and in base
units (``_seconds``, ``_bytes``), ``_total`` on every counter, histograms as
cumulative ``_bucket{le=...}`` lines with ``_sum`` and ``_count``, and the
``process_`` metrics with the names every client library uses. Every series
carries a ``worker`` label: with --workers, whichever worker answers the
scrape reports every worker (from workers.py's WorkerBoard, as of their last
second), so one scrape sees them all.

Like the status page, it answers only --status-allow addresses (loopback by
default). It costs one snapshot per scrape (one pass over the connections).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..http1.responses import Response, error_response
from .status import client_allowed

if TYPE_CHECKING:
    from ..http1.handler import Exchange, Handler
    from ..http1.parser import Request

# The exposition format's media type (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsPage:
    """Answers the metrics path itself and hands every other request on."""

    def __init__(self, snapshots: Callable[[], list[dict[str, Any]]], next_handler: Handler, path: str,
                 allowed_networks: tuple):
        self._snapshots = snapshots
        self._next = next_handler
        self._path = path
        self._allowed = tuple(allowed_networks)

    def handle(self, request: Request, exchange: Exchange) -> Response | None:
        target = request.target
        if target != self._path and not target.startswith(self._path + "?"):
            return self._next.handle(request, exchange)
        if not client_allowed(exchange.client, self._allowed):
            return error_response(403, "the metrics are not open to this address")
        if request.method not in ("GET", "HEAD"):
            return error_response(405, None, "Allow: GET, HEAD\r\n")
        body = render(self._snapshots()).encode("utf-8")
        return Response(200, f"Content-Type: {CONTENT_TYPE}\r\nCache-Control: no-store\r\n", body)


class _Family:
    """One metric: its name, type, help, and its samples' lines."""

    def __init__(self, name: str, kind: str, help_text: str):
        self.name = name
        help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")  # the format's two escapes in HELP
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def add(self, value: float | int | None, labels: dict[str, str], suffix: str = "") -> None:
        if value is None:
            return
        label_text = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
        self.lines.append(f"{self.name}{suffix}{{{label_text}}} {_number(value)}")

    def add_histogram(self, histogram: dict[str, Any] | None, labels: dict[str, str]) -> None:
        if histogram is None:
            return
        cumulative = 0
        for bound, count in zip((*histogram["bounds"], math.inf), histogram["counts"], strict=True):
            cumulative += count
            self.add(cumulative, {**labels, "le": _number(bound)}, "_bucket")
        self.add(histogram["sum"], labels, "_sum")
        self.add(histogram["count"], labels, "_count")


def render(snapshots: Iterable[dict[str, Any]]) -> str:
    """The exposition text for the snapshots of every worker."""
    families: dict[str, _Family] = {}

    def family(name: str, kind: str, help_text: str) -> _Family:
        if name not in families:
            families[name] = _Family(name, kind, help_text)
        return families[name]

    for snap in snapshots:
        worker = {"worker": str(snap["worker"])}
        responses = family("reactor_http_responses_total", "counter", "Responses sent, by status class.")
        for status_class, count in enumerate(snap["by_class"] or ()):
            if status_class:  # index 0 is unused: no status is below 100
                responses.add(count, {**worker, "code": f"{status_class}xx"})
        family("reactor_http_response_body_bytes_total", "counter",
               "Bytes of response bodies sent.").add(snap["body_bytes"], worker)
        family("reactor_http_response_seconds", "histogram",
               "Time from a request's first byte to its response's last byte handed to the kernel."
               ).add_histogram(snap["response_seconds"], worker)
        family("reactor_http_connections_accepted_total", "counter",
               "Connections accepted.").add(snap["accepted"], worker)
        connections = family("reactor_http_connections", "gauge", "Open connections, by state.")
        for state, count in snap["connections"].items():
            connections.add(count, {**worker, "state": state})
        executor = snap["executor"]
        family("reactor_http_executor_threads", "gauge",
               "Threads the executor may run (--blocking-threads), for blocking file work."
               ).add(executor["threads"], worker)
        jobs = family("reactor_http_executor_jobs", "gauge", "Executor jobs, running or queued.")
        jobs.add(max(0, executor["running"] - executor["queued"]), {**worker, "state": "running"})
        jobs.add(executor["queued"], {**worker, "state": "queued"})
        cache = snap["cache"]
        lookups = family("reactor_http_cache_lookups_total", "counter", "File cache lookups, by result.")
        lookups.add(cache["hits"], {**worker, "result": "hit"})
        lookups.add(cache["misses"], {**worker, "result": "miss"})
        family("reactor_http_cache_bytes", "gauge",
               "Bytes the file cache holds, keys included.").add(cache["bytes"], worker)
        family("reactor_http_cache_limit_bytes", "gauge",
               "The file cache's limit (--cache-bytes).").add(cache["limit_bytes"], worker)
        family("reactor_http_cache_entries", "gauge", "Entries in the file cache.").add(cache["entries"], worker)
        family("reactor_http_cache_open_files", "gauge",
               "Large files the cache holds open.").add(cache["open_files"], worker)
        loop = snap["loop"]
        family("reactor_http_loop_lag_seconds", "histogram",
               "How late the loop ran a timer due at a known time (its lag).").add_histogram(loop["lag"], worker)
        family("reactor_http_loop_turns_total", "counter", "Turns of the event loop.").add(loop["turns"], worker)
        family("reactor_http_loop_busy_seconds_total", "counter",
               "Time the loop's callbacks held its thread (rate: the loop's load, 0 to 1)."
               ).add(loop["busy_seconds"], worker)
        family("reactor_http_loop_slow_callbacks_total", "counter",
               "Callbacks that held the loop longer than --slow-callback-ms.").add(loop["slow_callbacks"], worker)
        family("reactor_http_stopping", "gauge",
               "1 once a graceful stop has begun.").add(int(snap["stopping"]), worker)
        process = snap["process"]
        family("process_cpu_seconds_total", "counter",
               "User and system CPU time spent.").add(process["cpu_seconds"], worker)
        family("process_resident_memory_bytes", "gauge",
               "Resident memory size.").add(process["resident_bytes"], worker)
        family("process_open_fds", "gauge", "Open file descriptors.").add(process["open_fds"], worker)
        family("process_max_fds", "gauge", "The descriptor limit.").add(process["max_fds"], worker)
        family("process_start_time_seconds", "gauge",
               "Start time since the Unix epoch.").add(snap["started"], worker)
        family("process_threads", "gauge", "Threads in the process.").add(process["threads"], worker)
    return "".join(line + "\n" for metric in families.values() for line in metric.lines)


def _number(value: float | int) -> str:
    if value == math.inf:
        return "+Inf"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
