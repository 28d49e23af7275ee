"""The command line: settings to a Config, listeners opened, then serve and handle signals.

Signals, in the process that serves (each worker, with --workers):
- SIGTERM or SIGINT (Ctrl+C): stop gracefully; a second one: stop at once.
- SIGHUP: reopen the --access-log file (after logrotate moved it).
- SIGUSR1: write the status (as the status page shows it) to stderr.

A signal handler runs on the main thread between two bytecodes, in the middle
of whatever the loop was doing, so it does nothing itself: it hands the work
to the loop with call_soon_threadsafe, whose wake-up ends select() at once.
"""

import json
import os
import signal
import sys

from .. import __version__
from ..connection.tls import TLSConfigError, make_context
from ..loop.reactor import make_selector
from . import settings
from .limits import raise_descriptor_limit
from .listeners import REUSE_PORT_AVAILABLE, ListenError, open_listeners, remove_unix_socket
from .logs import open_log_file
from .status import status_document
from .wiring import banner_lines, build_server, describe, selector_name
from .workers import supervise

EXIT_USAGE = 2


def _fail(message):
    print(f"reactor-http: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None):
    try:
        loaded = settings.load(argv, version=__version__)
    except settings.SettingsError as error:
        return _fail(str(error))
    if loaded.print_config:
        sys.stdout.write(settings.render(loaded))
        return 0
    config = loaded.config
    if not os.path.isdir(config.root):
        what = "does not exist" if not os.path.exists(config.root) else "is not a directory"
        return _fail(f"--root {config.root!r} {what}")
    try:
        probe = make_selector(config.selector)
    except ValueError as error:  # a selector this platform does not have
        return _fail(str(error))
    chosen_selector = probe.__class__.__name__.replace("Selector", "").lower()
    probe.close()
    try:
        tls_context = make_context(config.certfile, config.keyfile) if config.certfile else None
    except TLSConfigError as error:
        return _fail(str(error))
    if config.access_log and not config.quiet:
        try:
            open_log_file(config.access_log).close()  # each server opens it again for itself
        except OSError as error:
            return _fail(f"cannot open --access-log {config.access_log}: {error.strerror or error}")
    raise_descriptor_limit(config.max_connections)
    if config.trace:
        from . import trace  # only now: without --trace it is never even imported
        trace.install(config.trace)
    workers = config.workers > 1
    try:
        listeners = open_listeners(config, reserve_tcp=workers and config.reuse_port
                                   and REUSE_PORT_AVAILABLE)
    except ListenError as error:
        return _fail(str(error))
    try:
        if workers:
            return supervise(config, listeners, tls_context, serve, chosen_selector)
        return serve(config, listeners, tls_context, banner=True)
    finally:
        if config.unix is not None:
            remove_unix_socket(config.unix)


def serve(config, listeners, tls_context=None, banner=False):
    """Serve on ``listeners`` in this process until stopped by a signal."""
    server = build_server(config, tls_context)
    for listener in listeners:
        server.adopt(listener)
    reactor = server.reactor

    def on_stop(signum, frame):
        reactor.call_soon_threadsafe(server.on_stop_signal)

    def on_reopen(signum, frame):
        reactor.call_soon_threadsafe(server.parts.access_log.reopen)

    def on_status(signum, frame):
        reactor.call_soon_threadsafe(_print_status, server)

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_reopen)
        signal.signal(signal.SIGUSR1, on_status)
    if banner:
        for line in banner_lines(server.parts.site.root, server.urls(),
                                 describe(config, selector_name(reactor))):
            print(line, flush=True)
    server.serve_forever()
    if banner:
        print("Stopped.", flush=True)
    if server.abandoned_jobs:
        # A hung file operation holds an executor thread that would never
        # let the interpreter finish: leave without waiting for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _print_status(server):
    print(json.dumps(status_document(server), sort_keys=True), file=sys.stderr, flush=True)
