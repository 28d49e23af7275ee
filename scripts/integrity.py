#!/usr/bin/env python3
"""Integrity under concurrency: many clients fetch whole files and byte ranges, every byte checked.

    python3 scripts/integrity.py                    # 200 clients, sendfile and --no-sendfile
    python3 scripts/integrity.py --json integrity.json

It writes a tree with a file of every size on both sides of each threshold
where reactor_http changes how it sends (read into memory and cached up to
64 KiB, sendfile above it, 256 KiB chunks on the portable path, at most 4 MiB
per sendfile call), a 50 MiB file and random sizes; starts
``python -m reactor_http --quiet`` on it, once with sendfile and once with
--no-sendfile; and releases --clients threads together, each with its share
of a seeded plan: every file whole, a range across every seam inside every
file, multi-range requests, HEAD, concurrent downloads of the largest file,
on connections some pipelined and some ending in Connection: close. Every
response is checked against the files on disk (harness.verify). It prints a
table and can write JSON (--json). Exit status 0 when every check held, 1
otherwise.

The tree, the plan and run_integrity are imported by
tests/e2e/test_integrity.py, which runs the same plan on both send paths.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from harness.http import ClientConnection, Mismatch, request_bytes
from harness.report import KIB, MIB, format_size, render_table, save_json
from harness.server import serve_quietly
from harness.verify import (
    SiteFile,
    Tally,
    check_partial,
    check_whole,
    disjoint_ranges,
    merge_intervals,
    range_field,
    write_random_file,
)

# The server's own thresholds, so the tree sits exactly on them.
from reactor_http.connection.writer import CHUNK_BYTES, SENDFILE_BYTES
from reactor_http.static.files import SMALL_FILE_BYTES

# At most this many ranges in one multipart request of the plan.
MAX_PARTS = 8


# -- the files served -----------------------------------------------------------------------


# The sizes on either side of every threshold the server has: 64 KiB is the
# largest file read into memory (and cached), above it sendfile; the portable
# path reads 256 KiB chunks; sendfile is asked for at most 4 MiB per call.
def boundary_sizes():
    sizes = {0, 1, 2, 4095, 4096}
    for threshold in (SMALL_FILE_BYTES, CHUNK_BYTES, 2 * CHUNK_BYTES, SENDFILE_BYTES):
        sizes.update((threshold - 1, threshold, threshold + 1))
    return sorted(sizes)


INTEGRITY_LARGEST_BYTES = 50 * MIB


def build_integrity_tree(root, seed=20240601, random_files=10):
    """Write the integrity tree under ``root``: every boundary size, a 50 MiB
    file, and ``random_files`` more of random sizes, spread over nested
    directories (one name needs percent-encoding). Returns [SiteFile]."""
    rng = random.Random(seed)
    sizes = boundary_sizes() + [INTEGRITY_LARGEST_BYTES]
    sizes += [rng.randrange(0, SMALL_FILE_BYTES) for _ in range(random_files // 2)]
    sizes += [rng.randrange(SMALL_FILE_BYTES + 1, 12 * MIB) for _ in range(random_files - random_files // 2)]
    files = []
    for number, size in enumerate(sizes):
        directory = ("a", "a/b", "a/b/c", "d")[number % 4]
        name = f"file {number:02d} é.bin" if number == 7 else f"file-{number:02d}-{size}.bin"
        relative = f"{directory}/{name}"
        digest = write_random_file(os.path.join(root, relative), size, rng)
        files.append(SiteFile(root, relative, digest))
    return files


def boundary_offsets(size):
    """Offsets inside a file where the server changes how it sends: a range
    that includes bytes offset-1 and offset crosses that seam."""
    offsets = {SMALL_FILE_BYTES, CHUNK_BYTES, 2 * CHUNK_BYTES, SENDFILE_BYTES, 2 * SENDFILE_BYTES,
               size - 1, size // 2}
    return sorted(offset for offset in offsets if 0 < offset < size)


# -- the plan: what each client asks, on which connections ------------------------------------


class PlannedRequest:
    """One request of the integrity plan: whole (specs None) or ranges."""

    __slots__ = ("method", "file", "specs")

    def __init__(self, method, site_file, specs=None):
        self.method = method
        self.file = site_file
        self.specs = specs

    def wire(self, close=False):
        fields = [range_field(self.specs)] if self.specs else []
        if close:
            fields.append("Connection: close")
        return request_bytes(self.method, self.file.url, fields)

    @property
    def kind(self):
        if self.method == "HEAD":
            return "head"
        if self.specs is None:
            return "whole"
        return "range" if len(self.specs) == 1 else "multirange"


def _range_across(rng, offset, size):
    """A range that includes bytes offset-1 and offset."""
    return max(0, offset - 1 - rng.randrange(0, 3000)), min(size - 1, offset + rng.randrange(0, 3000))


def integrity_plan(files, clients, seed, big_whole_fetches=8):
    """Each client's connections: lists of (PlannedRequest, ...) with a pipelined
    flag and a close flag. Every file is fetched whole at least once; every
    seam (boundary_offsets) of every file is crossed by a single range and by a
    multipart request; the largest file is fetched whole by several clients at
    once; the rest is random whole, HEAD and range requests."""
    rng = random.Random(seed)
    requests = []
    largest = max(files, key=lambda site_file: site_file.size)
    for site_file in files:
        requests.append(PlannedRequest("GET", site_file))
        size = site_file.size
        if size == 0:
            continue
        seams = boundary_offsets(size)
        for offset in seams:
            requests.append(PlannedRequest("GET", site_file, [_range_across(rng, offset, size)]))
        if len(seams) >= 2:
            specs = merge_intervals(_range_across(rng, offset, size) for offset in seams)
            rng.shuffle(specs)
            requests.append(PlannedRequest("GET", site_file, specs[:MAX_PARTS]))
        requests.append(PlannedRequest("GET", site_file, [(None, rng.randrange(1, min(size, 100 * KIB) + 1))]))
        first = max(0, size - rng.randrange(1, 200 * KIB))
        requests.append(PlannedRequest("GET", site_file, [(first, None)]))
    requests.extend(PlannedRequest("GET", largest) for _ in range(big_whole_fetches - 1))
    # Random extras: whole small and mid-sized files (up to 1 MiB, so the byte
    # total stays moderate) and ranges of any file but the largest.
    modest = [site_file for site_file in files if site_file.size <= 12 * MIB]
    up_to_a_mebibyte = [site_file for site_file in files if site_file.size <= MIB]
    while len(requests) < clients * 8:
        site_file = rng.choice(modest)
        roll = rng.random()
        if roll < 0.4 or site_file.size == 0:
            site_file = rng.choice(up_to_a_mebibyte)
            requests.append(PlannedRequest("HEAD" if roll < 0.05 else "GET", site_file))
        elif roll < 0.7:
            requests.append(PlannedRequest("GET", site_file, [disjoint_ranges(rng, site_file.size, 1)[0]]))
        else:
            requests.append(PlannedRequest("GET", site_file,
                                           disjoint_ranges(rng, site_file.size, rng.randrange(2, 6))))
    rng.shuffle(requests)
    # The big whole fetches go to distinct clients, first in line, so they overlap.
    big = [request for request in requests if request.file is largest and request.kind == "whole"]
    rest = [request for request in requests if not (request.file is largest and request.kind == "whole")]
    per_client = [[] for _ in range(clients)]
    for number, request in enumerate(big):
        per_client[number * (clients // max(1, len(big))) % clients].append(request)
    for number, request in enumerate(rest):
        per_client[number % clients].append(request)
    plans = []
    for client_requests in per_client:
        connections = []
        position = 0
        while position < len(client_requests):
            count = rng.randrange(1, 6)
            batch = client_requests[position:position + count]
            position += count
            connections.append({"requests": batch, "pipelined": rng.random() < 0.35,
                                "close": rng.random() < 0.25})
        plans.append(connections)
    return plans


# -- the run: many clients at once, every byte checked ------------------------------------------


def _verify_planned(request, head, body, tally):
    site_file = request.file
    if request.specs is None:
        checked = check_whole(head, body, site_file, request.method)
        if request.method == "GET":
            tally.whole_files.add(site_file.url)
    else:
        got = check_partial(head, body, request.specs, site_file.content, site_file.size)
        checked = sum(last - first + 1 for first, last in got)
        for offset in boundary_offsets(site_file.size):
            if any(first <= offset - 1 and offset <= last for first, last in got):
                tally.seams.add((site_file.url, offset))
    tally.count(request.kind, checked)


def _run_integrity_client(host, port, connections, start, tally):
    start.wait()
    for plan in connections:
        requests, close = plan["requests"], plan["close"]
        try:
            connection = ClientConnection.connect(host, port)
        except OSError as error:
            tally.errors.append(f"connect: {error!r}")
            continue
        try:
            wires = [request.wire(close=close and number == len(requests) - 1)
                     for number, request in enumerate(requests)]
            if plan["pipelined"]:
                connection.send(b"".join(wires))  # all at once; answers must come in order
            for number, request in enumerate(requests):
                if not plan["pipelined"]:
                    connection.send(wires[number])
                head, body = connection.read_response(request.method)
                _verify_planned(request, head, body, tally)
            if close:
                if head.headers.get("connection") != "close" or not connection.closed_by_server():
                    raise Mismatch("Connection: close was asked and the server kept the connection")
        except (Mismatch, OSError) as error:
            tally.errors.append(f"{[r.kind + ' ' + r.file.url for r in requests]}: {error}")
        finally:
            connection.close()


def run_integrity(host, port, files, clients=200, seed=1, big_whole_fetches=8):
    """Run the integrity plan with ``clients`` threads released together.
    Returns a dict: responses, bytes_verified, kinds, whole_files, seams,
    seams_expected, errors, seconds."""
    plans = integrity_plan(files, clients, seed, big_whole_fetches)
    start = threading.Barrier(clients)
    tallies = [Tally() for _ in range(clients)]
    threads = [threading.Thread(target=_run_integrity_client, args=(host, port, plan, start, tally),
                                name=f"integrity-client-{number}", daemon=True)
               for number, (plan, tally) in enumerate(zip(plans, tallies, strict=True))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        total.errors.append(f"clients still running after 300 s: {stuck[:5]}")
    expected_seams = {(site_file.url, offset) for site_file in files
                      for offset in boundary_offsets(site_file.size)}
    every_connection = [plan for connections in plans for plan in connections]
    return {
        "clients": clients,
        "requests_planned": sum(len(plan["requests"]) for plan in every_connection),
        "connections": len(every_connection),
        "pipelined_connections": sum(plan["pipelined"] and len(plan["requests"]) > 1
                                     for plan in every_connection),
        "closing_connections": sum(plan["close"] for plan in every_connection),
        "responses": total.responses,
        "bytes_verified": total.bytes_verified,
        "kinds": dict(sorted(total.kinds.items())),
        "whole_files": sorted(total.whole_files),
        "seams_verified": len(total.seams & expected_seams),
        "seams_expected": len(expected_seams),
        "seams_missing": sorted(expected_seams - total.seams)[:20],
        "errors": total.errors,
        "seconds": round(time.monotonic() - began, 2),
    }


# -- the command line ---------------------------------------------------------------------------


def integrity_table(results, files):
    sizes = sorted(site_file.size for site_file in files)
    lines = [f"{len(files)} files, {format_size(sum(sizes))} in all; sizes: "
             + ", ".join(str(size) for size in sizes), ""]
    rows = []
    for path, result in results.items():
        rows.append((path, result["clients"],
                     f"{result['connections']} ({result['pipelined_connections']} pipelined, "
                     f"{result['closing_connections']} closing)",
                     f"{result['responses']:,} / {result['requests_planned']:,}",
                     f"{len(result['whole_files'])} / {len(files)}",
                     f"{result['seams_verified']} / {result['seams_expected']}",
                     ", ".join(f"{kind} {number}" for kind, number in result["kinds"].items()),
                     f"{result['bytes_verified']:,} ({format_size(result['bytes_verified'])})",
                     len(result["errors"]), f"{result['seconds']} s"))
    lines.append(render_table(("send path", "clients", "connections", "responses verified / planned",
                               "files verified whole", "seams crossed by a verified range",
                               "by kind", "bytes verified", "errors", "time"), rows, markdown=True))
    return "\n".join(lines)


def run_both_send_paths(options):
    """The plan over sendfile, then over the portable path; prints the table, returns the report."""
    root = tempfile.mkdtemp(prefix="reactor-http-integrity-")
    try:
        files = build_integrity_tree(root)
        results = {}
        for label, flags in (("sendfile", []), ("--no-sendfile", ["--no-sendfile"])):
            server = serve_quietly(root, flags)
            try:
                results[label] = run_integrity(server.banner.host, server.banner.port, files, options.clients,
                                               options.seed)
                results[label]["server_alive"] = server.alive()
            finally:
                server.stop()
        report = {"files": [site_file.describe() for site_file in files], "results": results}
        report["passed"] = all(not result["errors"] and result["server_alive"]
                               and result["seams_verified"] == result["seams_expected"]
                               and len(result["whole_files"]) == len(files) for result in results.values())
        print(integrity_table(results, files))
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="integrity.py", description="200 clients fetch whole files and ranges from reactor_http over "
                                         "both send paths; every byte is verified against the files on disk.")
    parser.add_argument("--clients", type=int, default=200, metavar="N",
                        help="concurrent clients (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")
    return parser


def main(argv=None):
    options = build_parser().parse_args(argv)
    report = run_both_send_paths(options)
    if options.json:
        save_json(report, options.json, indent=2)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
