"""The command line: settings to a Config, listeners opened, then serve and handle signals.

``reactor-http hash-password USER`` is the one subcommand: it prints a line
for an --auth-file (access/passwords.py), the password read from a prompt,
or from standard input when that is not a terminal.

Signals, in the process that serves (each worker, with --workers):
- SIGTERM or SIGINT (Ctrl+C): stop gracefully; a second one: stop at once.
- SIGHUP: in a terminal (the server was started from one: its standard
  input, output or error is a terminal), the terminal was closed: stop
  gracefully, as python -m http.server does. A service (no terminal) takes it
  as "reopen the --access-log file" (after logrotate moved it) and "read the
  --auth-file again".
- SIGUSR1: write the status (as the status page shows it) to stderr.

Nothing written to the terminal or a pipe can crash the server when the
other end is gone (output.py).

A signal handler runs on the main thread between two bytecodes, in the middle
of whatever the loop was doing, so it does nothing itself: it hands the work
to the loop with call_soon_threadsafe, whose wake-up ends select() at once.
"""

import argparse
import getpass
import ipaddress
import json
import os
import signal
import sys

from .. import __version__
from ..access.passwords import PasswordFileError, check_user_name, password_line, read_password_file
from ..config import DEFAULT_BIND
from ..connection.tls import TLSConfigError, make_context
from ..loop.reactor import make_selector
from . import output, settings
from .banner import banner as banner_text
from .limits import raise_descriptor_limit
from .listeners import REUSE_PORT_AVAILABLE, ListenError, open_listeners, remove_unix_socket
from .logs import open_log_file
from .status import status_document
from .wiring import build_server, selector_name
from .workers import supervise

EXIT_USAGE = 2


def _fail(message):
    output.write(sys.stderr, f"reactor-http: error: {message}\n")
    return EXIT_USAGE


def _warn(message):
    output.write(sys.stderr, f"reactor-http: warning: {message}\n")


def main(argv=None):
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["hash-password"]:
        return hash_password(arguments[1:])
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
    if config.auth_file:
        # Read once here, so that a file that cannot be used is one line and
        # exit status 2 before anything is served, and its warnings are said
        # once (each server, each worker, reads it again for itself).
        try:
            table = read_password_file(config.auth_file)
        except PasswordFileError as error:
            return _fail(str(error))
        for warning in table.warnings:
            _warn(warning)
        exposed = _exposed_without_tls(config)
        if exposed:
            _warn(f"--auth-file without TLS on {exposed}: Basic authentication sends passwords readable "
                  f"by anyone on the way (RFC 7617 §4); add --certfile, or listen on loopback or --unix "
                  f"behind a proxy that speaks TLS")
    for warning in startup_warnings(config):
        _warn(warning)
    raise_descriptor_limit(config.max_connections)
    if config.trace:
        from . import trace  # only now: without --trace it is never even imported
        trace.install(config.trace)
    worker_count = config.workers or os.cpu_count() or 1  # 0 is "auto": one per CPU
    workers = worker_count > 1
    try:
        listeners = open_listeners(config, reserve_tcp=workers and config.reuse_port
                                   and REUSE_PORT_AVAILABLE)
    except ListenError as error:
        return _fail(str(error))
    try:
        if workers:
            return supervise(config, worker_count, listeners, tls_context, serve, chosen_selector)
        return serve(config, listeners, tls_context, banner=True)
    finally:
        if config.unix is not None:
            remove_unix_socket(config.unix)


def _exposed_without_tls(config):
    """The first address, not loopback, that would serve plain HTTP; None if none."""
    if config.certfile:
        return None
    binds = config.binds or (() if config.unix or os.environ.get("LISTEN_FDS") else (DEFAULT_BIND,))
    for bind in binds:
        if bind == "localhost":
            continue
        try:
            if ipaddress.ip_address(bind).is_loopback:
                continue
        except ValueError:
            pass  # a host name: it may be anything
        return bind
    return None


def hash_password(argv):
    """``reactor-http hash-password USER``: print ``USER:HASH`` for an --auth-file."""
    parser = argparse.ArgumentParser(
        prog="reactor-http hash-password",
        description="Print a line for an --auth-file: the user and an scrypt hash of the password "
                    "(the standard library's; no package needed). The password is asked for twice at "
                    "a terminal, or read as one line from standard input.")
    parser.add_argument("user", help="the user name (no ':')")
    user = parser.parse_args(argv).user
    try:
        check_user_name(user)
        if sys.stdin is not None and sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                return _fail("the two passwords differ")
        else:
            line = sys.stdin.readline() if sys.stdin is not None else ""
            password = line[:-1] if line.endswith("\n") else line
            password = password[:-1] if password.endswith("\r") else password
        print(password_line(user, password))
    except ValueError as error:
        return _fail(str(error))
    except (EOFError, KeyboardInterrupt):
        return _fail("no password given")
    return 0


def serve(config, listeners, tls_context=None, banner=False, worker=0, board=None):
    """Serve on ``listeners`` in this process until stopped by a signal
    (``worker`` and ``board``: this worker's index and the workers' board)."""
    server = build_server(config, tls_context, worker=worker, board=board)
    for listener in listeners:
        server.adopt(listener)
    reactor = server.reactor

    def on_stop(signum, frame):
        reactor.call_soon_threadsafe(server.on_stop_signal)

    in_a_terminal = output.started_in_terminal()

    def on_hangup(signum, frame):
        if in_a_terminal:  # the terminal it was started from has gone
            reactor.call_soon_threadsafe(server.on_stop_signal)
        else:
            reactor.call_soon_threadsafe(_on_hangup, server)

    def on_status(signum, frame):
        reactor.call_soon_threadsafe(_print_status, server)

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hangup)
        signal.signal(signal.SIGUSR1, on_status)
    if banner:
        output.write(sys.stdout, "".join(line + "\n" for line in banner_text(
            config, server.parts.site.root, server.urls(), selector_name(reactor))))
    server.serve_forever()
    if banner:
        output.write(sys.stdout, "Stopped.\n")
    if server.abandoned_jobs:
        # A hung file operation holds an executor thread that would never
        # let the interpreter finish: leave without waiting for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _on_hangup(server):
    """SIGHUP, on the loop thread: the access log reopened, the password file read again."""
    server.parts.access_log.reopen()
    if server.parts.access is not None:
        server.parts.access.reload()


def _print_status(server):
    output.write(sys.stderr, json.dumps(status_document(server), sort_keys=True) + "\n")


def startup_warnings(config):
    """What looks like a mistake, said before anything is served: a file a
    flag names that is not there, a root that cannot be read or holds nothing,
    a root too wide to share with every machine on the network."""
    root = os.path.realpath(config.root)
    warnings = []
    named = [("--fallback", config.fallback)] if config.fallback else []
    named += [(f"--error-page {status}", path) for status, path in config.error_pages]
    for flag, path in named:
        if not os.path.isfile(os.path.join(root, path.lstrip("/"))):
            warnings.append(f"{flag}={path}: there is no such file under {root}")
    if not os.access(root, os.R_OK | os.X_OK):
        warnings.append(f"the server may not read {root}: every request will get 403")
    else:
        try:
            if not os.listdir(root):
                warnings.append(f"{root} is empty: every request will get 404")
        except OSError:
            pass
    everywhere = any(bind in ("0.0.0.0", "::", "") for bind in config.binds)
    if everywhere and root in ("/", os.path.realpath(os.path.expanduser("~"))):
        warnings.append(f"serving {root} to every machine on the network: is that meant? (--root picks "
                        f"the folder)")
    return warnings
