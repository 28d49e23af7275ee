#!/usr/bin/env python3
"""Any exception other than ProtocolError out of the request parser is a bug: this fuzz target hunts for one.

It drives reactor_http.http1.parser.RequestParser (with the body readers of
reactor_http.http1.bodies) the way a connection does: bytes arrive in reads of
any size, and after each read every complete request is drained. For every
input it checks that

- nothing but ProtocolError escapes, and its status is one the parser documents;
- each request handed out consumed bytes (the draining loop always ends);
- a request's fields are consistent (kept bodies have their declared length);
- the same bytes fed in one piece give the same requests (and bodies, when
  kept), and then the same leftover or an error, as when fed in the chosen
  pieces (splitting must not change meaning).

The first bytes of an input are not HTTP: byte 0 chooses the limits, whether
bodies are kept (by the tests' CollectingParser, tests/support/parsing.py,
whose body readers keep what they discard) and whether a head memo is shared
by the two runs (so the second run takes its requests from the memo and must
still agree), byte 1 the number of split points, then two bytes per split
point say where to cut the rest, which is the stream fed to the parser.

Before fuzzing it runs a growth check: a 16 KiB header section (and a trailer
section, and chunk-size lines) fed one byte at a time must cost about 4x the
CPU time for 4x the bytes, not 16x (quadratic rescanning). The check compares
the ratio of this thread's CPU time for N and 4N bytes, never a wall-clock
duration.

Engines: atheris (coverage-guided libFuzzer; ``pip install atheris``) when it
is importable, otherwise Hypothesis with a long example budget.

Usage:
    python3 scripts/fuzz_parser.py -max_total_time=300        # atheris: 5 minutes
    python3 scripts/fuzz_parser.py CORPUS_DIR -runs=1000000   # atheris, keeping a corpus
    python3 scripts/fuzz_parser.py --engine hypothesis --examples 200000
    python3 scripts/fuzz_parser.py --engine hypothesis --seconds 30   # a short run
    python3 scripts/fuzz_parser.py --growth-only              # just the growth check
    python3 scripts/fuzz_parser.py --replay crash-1234abcd    # re-run one saved input

Options it does not know are passed to libFuzzer (see -help=1 under atheris).
Without a corpus directory, atheris starts from built-in seed requests and a
dictionary of HTTP tokens written to a temporary directory, where crash files
go too (its path is printed first).
"""

import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tests"))  # for support.parsing

try:
    import atheris
except ImportError:
    atheris = None

if atheris is not None:
    # Instrument the parser modules so libFuzzer sees which branches an input reaches.
    with atheris.instrument_imports(include=["reactor_http"]):
        from reactor_http.http1.errors import ProtocolError
        from reactor_http.http1.fast_path import HeadMemo
        from reactor_http.http1.parser import Request, RequestParser
else:
    from reactor_http.http1.errors import ProtocolError
    from reactor_http.http1.fast_path import HeadMemo
    from reactor_http.http1.parser import Request, RequestParser

from support.parsing import CollectingParser, feed_in_chunks, split_at  # noqa: E402 (after the instrumented imports)

# Every status the parser and body readers may raise.
DOCUMENTED_STATUSES = {400, 413, 414, 417, 431, 505}

# Byte 0 of an input picks one of these (small limits reach the limit paths
# with short inputs); bit 7 says whether bodies are kept, bit 6 whether a
# head memo is shared.
LIMIT_CHOICES = [
    {},
    {"max_request_line": 32, "max_header_bytes": 64, "max_header_count": 4, "max_body": 64},
    {"max_request_line": 8, "max_header_bytes": 8, "max_header_count": 1, "max_body": 0},
    {"max_body": 10},
]
MAX_SPLITS = 32

# The hypothesis engine runs this many examples at a time, checking the time between batches.
HYPOTHESIS_BATCH = 1000


def decode_input(data):
    """(parser options, the stream, the offsets to cut it at) from a fuzz input."""
    if len(data) < 2:
        return {}, data, []
    options = dict(LIMIT_CHOICES[data[0] % len(LIMIT_CHOICES)], keep_bodies=bool(data[0] & 0x80))
    if data[0] & 0x40:
        options["memo"] = HeadMemo()
    count = data[1] % (MAX_SPLITS + 1)
    header_end = 2 + 2 * count
    stream = data[header_end:]
    raw_points = data[2:header_end]
    points = set()
    for index in range(0, len(raw_points) - 1, 2):
        if stream:
            points.add(int.from_bytes(raw_points[index:index + 2], "big") % len(stream))
    return options, stream, sorted(point for point in points if point > 0)


def summarize(request, body):
    """The fields of a Request and its kept body (None if not kept), for
    comparing two parses."""
    return (request.method, request.target, request.version, tuple(sorted(request.headers.items())),
            request.keep_alive, request.content_length, request.chunked, request.has_body,
            request.expects_continue, None if body is None else bytes(body))


def check_request(request, body, options):
    """Invariants every handed-out request (and its kept body, if any) must satisfy."""
    max_body = options.get("max_body", 1024 * 1024)
    assert isinstance(request, Request), request
    assert all(isinstance(name, str) and name == name.lower() for name in request.headers), request.headers
    assert request.has_body == (request.chunked or bool(request.content_length)), request
    assert not (request.chunked and request.content_length is not None), request
    # Only an HTTP/1.1 request with a body can wait for 100 Continue (RFC 9110 §10.1.1).
    assert not request.expects_continue or (request.has_body and request.version != "HTTP/1.0"), request
    if request.content_length is not None:
        assert request.content_length <= max_body, request
    if body is not None:
        assert request.has_body, request
        if request.content_length is not None:
            # All of it by the time the request is handed out, or, when it
            # is handed out before its body, what has arrived of it since.
            assert len(body) == request.content_length or (
                request.expects_continue and len(body) < request.content_length), (request, len(body))
        assert len(body) <= max_body, request


def run(chunks, options):
    """Feed chunks, draining requests after each. Returns (summaries, error
    status or None, bytes left buffered). Only ProtocolError may escape the
    parser; anything else propagates and is the bug being hunted."""
    options = dict(options)
    parser = CollectingParser(**options) if options.pop("keep_bodies", False) else RequestParser(**options)
    requests = []
    status = None
    try:
        feed_in_chunks(parser, chunks, requests)  # checks that each request consumed bytes
    except ProtocolError as error:
        assert error.status in DOCUMENTED_STATUSES, (error.status, error.detail)
        assert isinstance(error.detail, str) and error.detail, error
        parser.first_line()  # the access log reads it after an error; it must not fail
        status = error.status
    # Each request with a body began one, in order (a body begun after the
    # last request is the one an error cut short).
    bodies = iter(parser.bodies) if isinstance(parser, CollectingParser) else None
    summaries = []
    for request in requests:
        body = next(bodies) if bodies is not None and request.has_body else None
        check_request(request, body, options)
        summaries.append(summarize(request, body))
    return summaries, status, None if status is not None else parser.buffered


def check_one_input(data):
    """The fuzz target: one input, every check."""
    options, stream, points = decode_input(data)
    chunks = split_at(stream, points)
    split_requests, split_status, split_left = run(chunks, options)
    whole_requests, whole_status, whole_left = run([stream], options)
    # Splitting the stream must not change what it means: the same requests,
    # then the same bytes left or an error in both. (Not always the same
    # status: with two defects, say a request line over the limit and a bare
    # CR, the one seen first may depend on where the reads end: 414 or 400.)
    assert split_requests == whole_requests, (split_requests, whole_requests)
    assert (split_status is None) == (whole_status is None), (split_status, whole_status)
    assert split_left == whole_left, (split_left, whole_left)


# -- growth check --------------------------------------------------------------

def _cpu_seconds(data, prefix=b"", **options):
    """CPU time of this thread to feed data one byte at a time (after prefix
    in one piece), asking for a request after each byte."""
    parser = RequestParser(**options)
    parser.feed(prefix)
    assert parser.next_request() is None
    pieces = [data[index:index + 1] for index in range(len(data))]
    started = time.thread_time()
    request = None
    for piece in pieces:
        parser.feed(piece)
        request = parser.next_request()
    elapsed = time.thread_time() - started
    assert request is not None, "the growth check must time a complete request"
    return elapsed


def _header_case(size):
    fields = b"".join(b"X-%06d: %s\r\n" % (number, b"v" * 20) for number in range(size // 32))
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"
    return data, b"", {"max_header_bytes": size + 64, "max_header_count": size}


_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def _trailer_case(size):
    # One long trailer line: the worst case for a reader that rescans its line.
    data = b"0\r\nX: " + b"v" * size + b"\r\n\r\n"
    return data, _CHUNKED_HEAD, {"max_header_bytes": size + 64}


def _chunk_line_case(size):
    # Many size lines, each with long extensions (up to the line limit).
    line = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    return line * max(size // len(line), 1) + b"0\r\n\r\n", _CHUNKED_HEAD, {}


def _length_body_case(size):
    data = b"x" * size
    return data, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size, {}


# Each case with its N. A rescan per byte is a memchr, far cheaper than the
# Python work per call, so a quadratic trailer scan only dominates (and shows
# as a ratio near 16) from about 64 KiB on.
GROWTH_CASES = {
    "header section": (_header_case, 16 * 1024),
    "trailer section": (_trailer_case, 64 * 1024),
    "chunk-size lines": (_chunk_line_case, 16 * 1024),
    "Content-Length body": (_length_body_case, 16 * 1024),
}


def growth_ratio(make_case, size, attempts=3):
    """The best ratio of CPU time for 4 * size bytes to that for size bytes.
    Linear work gives about 4, quadratic about 16. The fastest of two runs per
    size removes most noise (caches, frequency); a few attempts, best kept."""
    small, large = make_case(size), make_case(4 * size)
    best = float("inf")
    for _attempt in range(attempts):
        small_time = min(_cpu_seconds(small[0], small[1], **small[2]) for _ in range(2))
        large_time = min(_cpu_seconds(large[0], large[1], **large[2]) for _ in range(2))
        best = min(best, large_time / max(small_time, 1e-9))
        if best < 8:
            break
    return best


def check_growth(bound=8.0):
    """Fail if feeding byte by byte grows faster than linearly in any case."""
    failures = []
    for name, (make_case, size) in GROWTH_CASES.items():
        ratio = growth_ratio(make_case, size)
        print(f"growth check: {name}: {size} -> {4 * size} bytes one at a time took {ratio:.1f}x the CPU time"
              f" ({'ok' if ratio < bound else 'QUADRATIC?'})", flush=True)
        if ratio >= bound:
            failures.append(name)
    if failures:
        raise AssertionError(f"super-linear growth (ratio >= {bound}) in: {', '.join(failures)}")


# -- engines -------------------------------------------------------------------

SEED_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET /a?b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: b\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;a=b;c=\"d\\\"\"\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n"
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"PUT * HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
]

DICTIONARY = [
    b"\r\n", b"\r\n\r\n", b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", b"HTTP/2.0", b"GET ", b"POST ", b"Host: ",
    b"Content-Length: ", b"Transfer-Encoding: ", b"chunked", b"gzip, chunked", b"Expect: ", b"100-continue",
    b"Connection: ", b"keep-alive", b"close", b"0\r\n\r\n", b";", b"=", b"\"", b"\\", b"\t", b"\n", b"\r",
    b"ffffffffffffffff", b"00000000000000000", b"\x00", b"\x7f", b"\xff", b":",
]


def seed_inputs():
    """Seed inputs in the fuzz-input format: options, split points, stream."""
    seeds = []
    for index, request in enumerate(SEED_REQUESTS):
        seeds.append(bytes([index % len(LIMIT_CHOICES) | 0x80, 0]) + request)
        seeds.append(bytes([0x40, 3, 0, 1, 0, 7, 0, 20]) + request)
    return seeds


def run_atheris(libfuzzer_args):
    """Hand over to libFuzzer, with seeds and a dictionary unless given."""
    def target(data):
        check_one_input(bytes(data))

    workspace = pathlib.Path(tempfile.mkdtemp(prefix="fuzz_parser_"))
    corpus_dirs = [arg for arg in libfuzzer_args if not arg.startswith("-")]
    if not corpus_dirs:
        corpus = workspace / "corpus"
        corpus.mkdir()
        libfuzzer_args.append(str(corpus))
        corpus_dirs.append(str(corpus))
    for index, seed in enumerate(seed_inputs()):
        (pathlib.Path(corpus_dirs[0]) / f"seed-{index:02d}").write_bytes(seed)
    if not any(arg.startswith("-artifact_prefix=") for arg in libfuzzer_args):
        libfuzzer_args.append(f"-artifact_prefix={workspace}/")  # crash files go here, not into the cwd
    if not any(arg.startswith("-dict=") for arg in libfuzzer_args):
        dictionary = workspace / "http.dict"
        dictionary.write_text("".join(f'"{_escape(token)}"\n' for token in DICTIONARY))
        libfuzzer_args.append(f"-dict={dictionary}")
    print(f"atheris: corpus {corpus_dirs[0]}, workspace {workspace}", flush=True)
    atheris.Setup([sys.argv[0], *libfuzzer_args], target)
    atheris.Fuzz()


def _escape(token):
    """A token in libFuzzer dictionary syntax (\\xNN escapes)."""
    return "".join(chr(byte) if 0x20 <= byte < 0x7f and byte not in b'"\\' else f"\\x{byte:02x}"
                   for byte in token)


def run_hypothesis(examples, seconds):
    """The fallback engine: Hypothesis, not coverage-guided, over random bytes
    and mutated seed requests."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def mutate(seed_and_edits):
        seed, edits = seed_and_edits
        data = bytearray(seed)
        for position, byte, kind in edits:
            position %= len(data) + 1
            if kind == 0:
                data.insert(position, byte)
            elif position < len(data):
                if kind == 1:
                    del data[position]
                else:
                    data[position] = byte
        return bytes(data)

    edits = st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255), st.integers(0, 2)), max_size=6)
    inputs = st.binary(max_size=600) | st.tuples(st.sampled_from(seed_inputs()), edits).map(mutate) | st.tuples(
        st.binary(min_size=2, max_size=12), st.lists(st.sampled_from(DICTIONARY + SEED_REQUESTS), max_size=12)
    ).map(lambda parts: parts[0] + b"".join(parts[1]))
    started = time.monotonic()
    count = 0

    def fuzz(data):
        nonlocal count
        count += 1
        try:
            check_one_input(data)
        except Exception:
            print(f"crash input: {data!r}", flush=True)
            raise

    # Hypothesis has no time budget of its own: run it in batches until the
    # examples are done or the time is up (--seconds is then a real limit).
    while count < examples and not (seconds and time.monotonic() - started > seconds):
        before = count
        batch = settings(max_examples=min(HYPOTHESIS_BATCH, examples - count), deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))(given(inputs)(fuzz))
        batch()
        if count == before:
            break  # nothing more to draw
    print(f"hypothesis: {count} executions in {time.monotonic() - started:.0f} s, no crash", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        epilog=__doc__.split("Usage:", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["atheris", "hypothesis"],
                        default="atheris" if atheris is not None else "hypothesis",
                        help="fuzzing engine (default: atheris if importable)")
    parser.add_argument("--examples", type=int, default=1_000_000,
                        help="hypothesis engine: number of inputs (default 1000000)")
    parser.add_argument("--seconds", type=float, default=0,
                        help="hypothesis engine: stop after about this long (default: no limit)")
    parser.add_argument("--growth-only", action="store_true", help="run the growth check and exit")
    parser.add_argument("--skip-growth", action="store_true", help="do not run the growth check first")
    parser.add_argument("--replay", metavar="FILE", nargs="+", help="run the checks on saved inputs and exit")
    arguments, libfuzzer_args = parser.parse_known_args()

    if arguments.replay:
        for name in arguments.replay:
            check_one_input(pathlib.Path(name).read_bytes())
            print(f"{name}: ok")
        return
    if not arguments.skip_growth:
        check_growth()
    if arguments.growth_only:
        return
    if arguments.engine == "atheris":
        if atheris is None:
            parser.error("atheris is not installed (pip install atheris), use --engine hypothesis")
        run_atheris(libfuzzer_args)
    else:
        if libfuzzer_args:
            parser.error(f"unknown arguments for the hypothesis engine: {libfuzzer_args}")
        run_hypothesis(arguments.examples, arguments.seconds)


if __name__ == "__main__":
    main()
