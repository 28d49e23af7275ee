"""The command line: flags to a Config, then start the server and handle signals."""

import argparse
import math
import os
import signal
import sys

from . import __version__, trace
from .config import Config
from .reactor import SELECTOR_CLASSES, make_selector
from .responses import REASONS
from .server import Server, open_listener, raise_descriptor_limit
from .workers import supervise, worker_count

EXIT_USAGE = 2


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text):
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), not {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _site_path(text):
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must be a path on the site, starting with '/': {text!r}")
    return text


def _error_page(text):
    status, equals, path = text.partition("=")
    if not equals or not status.isdigit() or not 400 <= int(status) <= 599:
        raise argparse.ArgumentTypeError(f"expected STATUS=PATH with a 4xx or 5xx status, not {text!r}")
    if int(status) not in REASONS:
        raise argparse.ArgumentTypeError(f"the server never answers {status}")
    return int(status), _site_path(path)


def _trace_categories(text):
    try:
        return trace.parse_categories(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _workers(text):
    try:
        return worker_count(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text):
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def build_parser():
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="reactor-http",
        description="A static file server: one reactor thread for every socket, "
                    "a small thread pool for the disk.")
    parser.add_argument("--version", action="version", version=f"reactor_http {__version__}")
    parser.add_argument("--port", type=_port, default=defaults.port,
                        help="TCP port to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--bind", default=defaults.bind, metavar="ADDRESS",
                        help="address to listen on: 0.0.0.0 for all IPv4, :: for all IPv6 "
                             "and IPv4 (default: %(default)s)")
    parser.add_argument("--root", default=".", metavar="DIR",
                        help="directory to serve (default: the current directory)")
    parser.add_argument("--blocking-threads", type=_positive_int, default=defaults.blocking_threads,
                        metavar="N", help="executor threads for file work: stat, open, read "
                                          "(default: %(default)s)")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                        help="worker processes sharing the port, each with its own reactor; "
                             "auto: one per CPU (default: %(default)s)")
    parser.add_argument("--no-reuseport", action="store_true",
                        help="with --workers, share one inherited listening socket instead of "
                             "one SO_REUSEPORT socket per worker")
    parser.add_argument("--trace", nargs="?", const="all", default=None, type=_trace_categories,
                        metavar="CATEGORIES",
                        help="print what the reactor, connections and executor do, one line each, "
                             "on stderr; optionally only some of: reactor, timer, conn, executor "
                             "(e.g. --trace=conn,executor)")
    parser.add_argument("--quiet", action="store_true",
                        help="no access log (errors still go to stderr)")
    parser.add_argument("--selector", choices=["auto", *SELECTOR_CLASSES], default="auto",
                        help="readiness backend; auto picks the best the platform has "
                             "(epoll on Linux, kqueue on BSD/macOS) (default: %(default)s)")
    parser.add_argument("--show-hidden", action="store_true",
                        help="serve dotfiles and dot-directories such as .git and .env "
                             "(default: answer 404 for them)")
    parser.add_argument("--no-sendfile", action="store_true",
                        help="send files by reading chunks on the executor instead of "
                             "os.sendfile (the portable path)")
    content = parser.add_argument_group("what is served")
    content.add_argument("--no-precompressed", action="store_true",
                         help="ignore precompressed siblings (style.css.br, .zst, .gz); by default "
                              "they are served to clients that accept their encoding")
    content.add_argument("--gzip", action="store_true",
                         help="compress text files on the fly for clients that accept gzip "
                              "(cached; never for range requests)")
    content.add_argument("--cache-control", metavar="VALUE",
                         help="a Cache-Control value for file responses, e.g. 'max-age=3600' "
                              "(default: none)")
    content.add_argument("--autoindex", action="store_true",
                         help="list directories that have no index.html (default: 404)")
    content.add_argument("--error-page", action="append", default=[], type=_error_page,
                         metavar="STATUS=PATH",
                         help="serve PATH (under the root) as the body of STATUS errors, e.g. "
                              "404=/404.html; repeatable")
    content.add_argument("--fallback", metavar="PATH", type=_site_path,
                         help="serve PATH for requests that match no file, like nginx "
                              "'try_files $uri /index.html' (single-page apps)")
    content.add_argument("--cache-bytes", type=_non_negative_int, default=defaults.cache_bytes,
                         metavar="BYTES", help="memory for cached metadata and small files; 0 turns "
                                               "the cache off (default: %(default)s)")
    content.add_argument("--cache-valid", type=_seconds, default=defaults.cache_valid, metavar="SECONDS",
                         help="how long a cached answer is used before the file is checked again "
                              "(default: %(default)s)")
    limits = parser.add_argument_group("limits and timeouts")
    limits.add_argument("--max-request-line", type=_positive_int, default=defaults.max_request_line,
                        metavar="BYTES", help="longest request line; longer gets 414 (default: %(default)s)")
    limits.add_argument("--max-header-bytes", type=_positive_int, default=defaults.max_header_bytes,
                        metavar="BYTES",
                        help="largest header section; larger gets 431 (default: %(default)s)")
    limits.add_argument("--max-headers", type=_positive_int, default=defaults.max_header_count,
                        metavar="N", help="most header fields; more gets 431 (default: %(default)s)")
    limits.add_argument("--max-body", type=_positive_int, default=defaults.max_body, metavar="BYTES",
                        help="largest request body (framed and discarded); larger gets 413 "
                             "(default: %(default)s)")
    limits.add_argument("--max-connections", type=_positive_int, default=defaults.max_connections,
                        metavar="N", help="connections at once; beyond it new ones wait in the "
                                          "listen backlog (default: %(default)s)")
    limits.add_argument("--max-requests", type=_positive_int,
                        default=defaults.max_requests_per_connection, metavar="N",
                        help="requests on one connection before it is closed "
                             "(default: %(default)s)")
    limits.add_argument("--keepalive-timeout", type=_seconds, default=defaults.keepalive_timeout,
                        metavar="SECONDS",
                        help="close a keep-alive connection idle this long (default: %(default)s)")
    limits.add_argument("--header-timeout", type=_seconds, default=defaults.header_timeout,
                        metavar="SECONDS",
                        help="answer 408 and close when a request head takes longer than this "
                             "from its first byte (default: %(default)s)")
    limits.add_argument("--send-timeout", type=_seconds, default=defaults.send_timeout,
                        metavar="SECONDS",
                        help="close a connection whose client reads nothing of a response for "
                             "this long (default: %(default)s)")
    return parser


def config_from_args(args):
    return Config(
        root=args.root, bind=args.bind, port=args.port, blocking_threads=args.blocking_threads,
        quiet=args.quiet, selector=args.selector, show_hidden=args.show_hidden,
        use_sendfile=not args.no_sendfile, reuse_port=not args.no_reuseport, precompressed=not args.no_precompressed, gzip=args.gzip,
        cache_control=args.cache_control, autoindex=args.autoindex,
        error_pages=tuple(args.error_page), fallback=args.fallback, cache_bytes=args.cache_bytes,
        cache_valid=args.cache_valid, max_request_line=args.max_request_line,
        max_header_bytes=args.max_header_bytes, max_header_count=args.max_headers,
        max_body=args.max_body, max_connections=args.max_connections,
        max_requests_per_connection=args.max_requests,
        keepalive_timeout=args.keepalive_timeout, header_timeout=args.header_timeout,
        send_timeout=args.send_timeout)


def _fail(message):
    print(f"reactor-http: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None):
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if not os.path.isdir(config.root):
        what = "does not exist" if not os.path.exists(config.root) else "is not a directory"
        return _fail(f"--root {config.root!r} {what}")
    try:
        make_selector(config.selector).close()
    except ValueError as error:  # a selector this platform does not have
        return _fail(str(error))
    raise_descriptor_limit(config.max_connections)
    if args.trace:
        trace.install(args.trace)
    try:
        if args.workers > 1:
            return supervise(config, args.workers, serve)
        listener = open_listener(config.bind, config.port)
    except OSError as error:
        return _fail(f"cannot listen on {config.bind} port {config.port}: "
                     f"{error.strerror or error}")
    return serve(config, listener, banner=True)


def serve(config, listener, banner=False):
    """Serve on ``listener`` in this process until SIGINT or SIGTERM."""
    server = Server(config)
    server.adopt(listener)

    def on_signal(signum, frame):
        # Runs on the main thread, between bytecodes; it must not touch
        # sockets itself. It hands "stop" to the loop, and the wake-up makes
        # select() return at once.
        server.reactor.call_soon_threadsafe(server.stop)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if banner:
        selector_name = server.reactor.selector.__class__.__name__.replace("Selector", "").lower()
        for url in server.urls():
            print(f"Serving {server.site.root} at {url} (selector: {selector_name}, "
                  f"{config.blocking_threads} blocking threads). Press Ctrl+C to stop.", flush=True)
    server.serve_forever()
    if banner:
        print("Stopped.", flush=True)
    return 0
