"""Where the settings come from: the command line, the environment and a TOML file.

Every setting is one row of SETTINGS: its flag, the Config field it fills, how
its text is checked and converted, and its help. From that one table come the
argparse flags, the keys of a ``--config`` file (the flag without its dashes:
``max-connections = 100``), the environment variables (``REACTOR_HTTP_`` and
the flag in capitals: ``REACTOR_HTTP_MAX_CONNECTIONS=100``), and what
``--print-config`` shows. So a setting cannot exist in one place and be
missing from another.

Precedence, lowest first: Config's defaults, the file, the environment, the
command line. A key or variable that names no setting, or a value a setting
refuses, is one SettingsError naming it, with the nearest real name when it
looks like a typing mistake; the command line turns it into one line on
stderr and exit status 2, and so does argparse's own error (``Parser``).

The habits people bring from ``python -m http.server``, ``http-server`` and
``serve`` work too: a bare port number and a bare folder (``reactor-http 8000
www``), and ``-p``, ``-d``, ``-b`` for ``--port``, ``--root``, ``--bind``.
Sizes take ``k``/``M``/``G`` and ``KiB``/``MiB``/``GiB``; durations ``500ms``,
``30s``, ``2m`` (units.py). Nothing here does any I/O but reading the file it
was given.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import re
import shlex
import sys

from ..access.limits import parse_rate, show_rate
from ..access.rules import ALLOW, DENY, rule_network
from ..config import Config
from ..loop.reactor import SELECTOR_CLASSES
from .units import DURATION_FORMS, SIZE_FORMS, closest, parse_duration, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has no TOML reader in its standard library: tomli is the same reader
    # (What mypy says here depends on whether tomli is installed where it
    # runs: each ignore is allowed to be unused.)
    try:
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        tomllib = None  # type: ignore[assignment, unused-ignore]

ENVIRONMENT_PREFIX = "REACTOR_HTTP_"


class SettingsError(Exception):
    """A setting from a file or the environment that cannot be used."""


# -- checking and converting one value (each raises ValueError with a message) -------------

def _whole_number(text, what="a whole number"):
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not {what}") from None


def positive_int(text):
    value = _whole_number(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text):
    value = _whole_number(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, not {value}")
    return value


PORTS = "a port number, 0-65535 (0 picks a free one)"


def port_number(text):
    value = _whole_number(text, PORTS)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not {PORTS}")
    return value


def byte_size(text):
    """A size in bytes, 0 allowed: 65536, 64k, 64MiB."""
    return parse_size(text)


def positive_size(text):
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"must be at least 1 byte ({SIZE_FORMS}), not {text!r}")
    return value


def seconds(text):
    value = parse_duration(text)
    if not 0 < value < math.inf:
        raise ValueError(f"must be more than 0 ({DURATION_FORMS}), not {text!r}")
    return value


def positive_milliseconds(text):
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number of milliseconds") from None
    if not 0 < value < math.inf:
        raise ValueError(f"must be more than 0 milliseconds, not {text!r}")
    return value


def non_negative_seconds(text):
    return parse_duration(text)


def bind_address(text):
    """An address to listen on, without a port: "0.0.0.0:8000" is a common
    slip (the port goes to --port), and a confusing error later."""
    host = text.strip()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    head, colon, tail = host.rpartition(":")
    if colon and tail.isdigit() and ("." in head or head.startswith("[") or head in ("localhost", "")):
        raise ValueError(f"{text!r} has a port in it: give the address alone and the port with --port "
                         f"(--bind {head.strip('[]') or '0.0.0.0'} --port {tail})")
    if not host or any(character.isspace() or character == "/" for character in host):
        raise ValueError(f"{text!r} is not an address (an IP address or a host name)")
    return host


def unix_mode(text):
    """A file mode in octal, e.g. 666 or 0660."""
    try:
        value = int(text.strip(), 8)
    except ValueError:
        raise ValueError(f"{text!r} is not a file mode in octal, e.g. 666") from None
    if not 0 <= value <= 0o777:
        raise ValueError(f"{text!r} is not a file mode (000 to 777)")
    return value


def color_choice(text):
    choices = ("auto", "always", "never")
    if text not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, not {text!r}")
    return text


def site_path(text):
    if not text.startswith("/"):
        raise ValueError(f"must be a path on the site, starting with '/': {text!r}")
    return text


def error_page(text):
    from ..http1.responses import REASONS
    status, equals, path = text.partition("=")
    if not equals or not status.isdigit() or not 400 <= int(status) <= 599:
        raise ValueError(f"expected STATUS=PATH with a 4xx or 5xx status, not {text!r}")
    if int(status) in (401, 429):
        raise ValueError(f"{status} is answered by --auth-file or --rate-limit, never with a page of the site")
    if int(status) not in REASONS:
        raise ValueError(f"the server never answers {status}")
    return int(status), site_path(path)


def selector_name(text):
    choices = ("auto", *SELECTOR_CLASSES)
    if text not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, not {text!r}")
    return text


def worker_count(text):
    """N, or "auto" (0 in the Config) for one worker per CPU."""
    if text.strip() == "auto":
        return 0
    return positive_int(text)


def _show_workers(value):
    return "auto" if value == 0 else value


def log_format(text):
    from .logs import FORMATS
    if text not in FORMATS:
        raise ValueError(f"must be one of {', '.join(FORMATS)}, not {text!r}")
    return text


def network(text):
    """An address or CIDR block: 10.0.0.0/8, 192.0.2.7, ::1, fd00::/8."""
    if text == UNIX_PEERS:
        return text
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR block: {text!r}") from None


# --trusted-proxy unix: trusts peers on a Unix domain socket (a proxy on the
# same machine), as nginx's set_real_ip_from unix: does.
UNIX_PEERS = "unix:"


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")

# Fields the server writes itself: a second copy from --header would
# contradict the framing or the representation (RFC 9110 §5.3 lets a
# recipient join repeated fields, which would corrupt these).
SERVER_FIELDS = frozenset((
    "content-length", "transfer-encoding", "connection", "content-type", "content-encoding",
    "content-range", "etag", "last-modified", "accept-ranges", "vary", "date", "server",
    "location", "allow", "retry-after", "cache-control", "x-content-type-options", "keep-alive",
    "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
    "access-control-max-age", "access-control-expose-headers", "upgrade", "trailer",
))


def response_header(text):
    """'Name: value', checked so that it cannot break the response head."""
    name, colon, value = text.partition(":")
    value = value.strip(" \t")
    if not colon or not _TOKEN.fullmatch(name):
        raise ValueError(f"expected 'Name: value' with a valid field name, not {text!r}")
    if not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"the value of {name} must be visible ASCII characters and spaces, "
                         f"not {value!r}")
    if name.lower() in SERVER_FIELDS:
        hint = " (use --cache-control)" if name.lower() == "cache-control" else (
            " (use --cors)" if name.lower().startswith("access-control-") else "")
        raise ValueError(f"the server sets {name} itself{hint}")
    return name, value


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


def cache_control_rule(text):
    """'VALUE' or 'PATTERN=VALUE' -> (pattern or None, value); see static/cache_policy.py."""
    from ..static.cache_policy import is_pattern_rule
    pattern = None
    value = text.strip()
    if is_pattern_rule(value):
        pattern, equals, value = value.partition("=")
        if not equals:
            raise ValueError(f"expected PATTERN=VALUE, e.g. '*.html=no-cache', not {text!r}")
        pattern, value = pattern.strip(), value.strip()
    if not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"a Cache-Control value is visible ASCII characters and spaces, not {value!r}")
    return pattern, value


def _show_cache_control(value):
    return value[1] if value[0] is None else f"{value[0]}={value[1]}"


ETAG_KINDS = ("mtime", "content")


def etag_kind(text):
    if text not in ETAG_KINDS:
        raise ValueError(f"must be one of {', '.join(ETAG_KINDS)}, not {text!r}")
    return text


def cors_origin(text):
    """'*' or one origin, e.g. https://app.example.com (RFC 6454 §7)."""
    if text == "*" or _ORIGIN.fullmatch(text):
        return text
    raise ValueError(f"must be '*' or an origin such as https://app.example.com, not {text!r}")


# The trace module is imported only when tracing is asked for: without
# --trace it is never loaded, so it cannot cost anything (test_trace checks).
TRACE_CATEGORIES = ("reactor", "timer", "conn", "executor")


def trace_categories(text):
    """"all" or a comma-separated list of TRACE_CATEGORIES -> a frozenset."""
    if text in (None, "", "all"):
        return frozenset(TRACE_CATEGORIES)
    chosen = frozenset(part.strip() for part in text.split(","))
    unknown = chosen - set(TRACE_CATEGORIES)
    if unknown:
        raise ValueError(f"unknown trace categories: {', '.join(sorted(unknown))} "
                         f"(choose from {', '.join(TRACE_CATEGORIES)})")
    return chosen


def allow_rule(text):
    return ALLOW, rule_network(text)


def deny_rule(text):
    return DENY, rule_network(text)


_REALM = re.compile(r'[\x20\x21\x23-\x5b\x5d-\x7e]{1,200}')


def auth_realm(text):
    """A realm for the challenge's quoted-string: visible ASCII and spaces,
    without the quote and backslash that would need escaping (RFC 9110 §5.6.4)."""
    if not _REALM.fullmatch(text):
        raise ValueError(f"a realm is 1 to 200 visible ASCII characters or spaces, without '\"' or "
                         f"'\\': {text!r}")
    return text


def existing_file(text):
    if not os.path.isfile(text):
        raise ValueError(f"{text!r} is not a file")
    return text


# -- the table -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting. ``kind`` is "value" (--flag VALUE), "switch" (--flag alone
    sets the field to ``switch_value``), "list" (repeatable: --flag A --flag B)
    or "optional" (--flag alone means ``const``, or --flag=VALUE)."""
    flag: str
    field: str
    parse: object
    help: str
    group: str = "serving"
    kind: str = "value"
    metavar: str | None = None
    switch_value: object = True
    const: str | None = None
    show: object = None  # value -> the text it was parsed from, for --print-config
    aliases: tuple = ()  # other flags for it on the command line: ("-p",), ("-d", "--directory")

    @property
    def key(self):
        """Its name in a config file."""
        return self.flag[2:]

    def convert(self, text):
        try:
            return self.parse(text)
        except ValueError as error:  # every parse function says what is wrong this way
            raise ValueError(str(error) or f"bad value {text!r}") from None


def _show_error_page(value):
    return f"{value[0]}={value[1]}"


def _show_header(value):
    return f"{value[0]}: {value[1]}"


def _show_rule(value):
    return str(value[1])


def _show_categories(value):
    return ",".join(category for category in TRACE_CATEGORIES if category in value)


S = Setting
SETTINGS = (
    # Where to listen.
    S("--port", "port", port_number, "TCP port; 0 picks a free one (printed at start); also a bare "
      "number: reactor-http 8000", "listening", metavar="PORT", aliases=("-p",)),
    S("--bind", "binds", bind_address, "address to listen on, repeatable: 0.0.0.0 for all IPv4, :: for "
      "all IPv6 and IPv4 (default: 127.0.0.1, only this machine, unless only --unix or socket "
      "activation is given)", "listening", kind="list", metavar="ADDRESS", aliases=("-b",)),
    S("--unix", "unix", str, "also (or only) listen on a Unix domain socket at PATH", "listening",
      metavar="PATH"),
    S("--unix-mode", "unix_mode", unix_mode, "the --unix socket file's mode, in octal: who may connect "
      "(the default lets a proxy running as another user in)", "listening", metavar="MODE",
      show=lambda value: f"{value:03o}"),
    S("--certfile", "certfile", existing_file, "serve HTTPS: the certificate chain (PEM); every "
      "listener then speaks TLS", "listening", metavar="FILE"),
    S("--keyfile", "keyfile", existing_file, "the private key (PEM), if not in --certfile",
      "listening", metavar="FILE"),
    S("--workers", "workers", worker_count, "worker processes sharing the listeners, each with its "
      "own reactor; auto: one per CPU", "listening", metavar="N|auto", show=_show_workers),
    S("--no-reuseport", "reuse_port", None, "with --workers, share the listening sockets instead of "
      "one SO_REUSEPORT socket per worker", "listening", kind="switch", switch_value=False),
    # What is served.
    S("--root", "root", str, "the directory to serve; also a bare folder name: reactor-http www",
      "serving", metavar="DIR", aliases=("-d", "--directory")),
    S("--show-hidden", "show_hidden", None, "serve dotfiles and dot-directories such as .git and .env "
      "(default: answer 404 for them)", kind="switch"),
    S("--no-precompressed", "precompressed", None, "ignore precompressed siblings (style.css.br, "
      ".zst, .gz); by default they are served to clients that accept their encoding",
      kind="switch", switch_value=False),
    S("--gzip", "gzip", None, "compress text files on the fly for clients that accept gzip "
      "(cached; never for range requests)", kind="switch"),
    S("--cache-control", "cache_control", cache_control_rule, "a Cache-Control value for file "
      "responses, e.g. 'max-age=3600'; or PATTERN=VALUE for the paths a glob matches, e.g. "
      "'/assets/*=max-age=31536000, immutable' or '*.html=no-cache'; repeatable, the first matching "
      "pattern wins, the plain VALUE is for paths no pattern matches", kind="list",
      metavar="[PATTERN=]VALUE", show=_show_cache_control),
    S("--etag", "etag", etag_kind, "how ETags are made: mtime (from the modification time and size, "
      "as nginx) or content (a digest of the bytes, the same on every replica whatever its mtimes; "
      "computed once per file version, on the executor)", metavar="KIND"),
    S("--header", "headers", response_header, "add a field to every response, e.g. "
      "'X-Frame-Options: DENY'; repeatable", kind="list", metavar="'NAME: VALUE'",
      show=_show_header),
    S("--cors", "cors", cors_origin, "answer CORS requests (simple and preflight) from this origin, "
      "or from any with '*'", metavar="ORIGIN|*"),
    S("--autoindex", "autoindex", None, "list directories that have no index.html (default: 404)",
      kind="switch"),
    S("--try-html", "try_html", None, "clean URLs: /about serves about.html when there is no /about "
      "(nginx's try_files $uri $uri.html)", kind="switch"),
    S("--error-page", "error_pages", error_page, "serve PATH (under the root) as the body of STATUS "
      "errors, e.g. 404=/404.html; repeatable", kind="list", metavar="STATUS=PATH",
      show=_show_error_page),
    S("--fallback", "fallback", site_path, "serve PATH for requests that match no file, like nginx "
      "'try_files $uri /index.html' (single-page apps)", metavar="PATH"),
    S("--status-path", "status_path", site_path, "answer GET PATH with the server's status as JSON "
      "(connections, requests, cache, executor), for --status-allow clients only", metavar="PATH"),
    S("--health-path", "health_path", site_path, "answer GET PATH with 200 while serving and 503 "
      "once a graceful stop begins, for load balancers and readiness probes (open to every client)",
      metavar="PATH"),
    S("--metrics-path", "metrics_path", site_path, "answer GET PATH with Prometheus metrics (text "
      "format: requests, bytes, connections by state, executor, cache, loop lag), for --status-allow "
      "clients only", metavar="PATH"),
    S("--dashboard-path", "dashboard_path", site_path, "serve a live page at PATH that charts the "
      "reactor's inside once a second (Server-Sent Events from PATH/events), for --status-allow "
      "clients only", metavar="PATH"),
    S("--status-allow", "status_allow", network, "addresses that may read --status-path, "
      "--metrics-path and --dashboard-path, repeatable (default: loopback only)", kind="list",
      metavar="CIDR", show=str),
    # How files are read and sent.
    S("--blocking-threads", "blocking_threads", positive_int, "executor threads for file work: stat, "
      "open, read", "files", metavar="N"),
    S("--no-sendfile", "use_sendfile", None, "send files by reading chunks (from the page cache, or on "
      "the executor) instead of os.sendfile (the portable path; TLS always uses it)", "files", kind="switch",
      switch_value=False),
    S("--cache-bytes", "cache_bytes", byte_size, "memory for cached metadata and small files, e.g. 64M; "
      "0 turns the cache off", "files", metavar="SIZE"),
    S("--cache-valid", "cache_valid", seconds, "how long a cached answer is used before the file is "
      "checked again", "files", metavar="DURATION"),
    # Logs and watching.
    S("--quiet", "quiet", None, "no access log (errors still go to stderr)", "logs", kind="switch"),
    S("--access-log", "access_log", str, "write the access log to FILE (appending) instead of stdout; "
      "SIGHUP reopens it, for logrotate", "logs", metavar="FILE"),
    S("--log-format", "log_format", log_format, "access log lines: common, combined (adds Referer and "
      "User-Agent) or json", "logs", metavar="FORMAT"),
    S("--log-time", "log_time", None, "end each common or combined access-log line with the seconds the "
      "response took, as nginx's $request_time (json lines always have it)", "logs", kind="switch"),
    S("--color", "color", color_choice, "colour access-log lines by status class: auto (when they go to "
      "a terminal and NO_COLOR is not set), always or never", "logs", metavar="WHEN"),
    S("--trusted-proxy", "trusted_proxies", network, "a reverse proxy whose X-Forwarded-For or "
      "Forwarded field names the client for the access log, --allow/--deny and --rate-limit (an "
      "address, a CIDR block, or unix: for peers on the Unix socket); repeatable", "logs", kind="list",
      metavar="CIDR", show=str),
    S("--trace", "trace", trace_categories, "print what the reactor, connections and executor do, one "
      "line each, on stderr; optionally only some of: reactor, timer, conn, executor "
      "(e.g. --trace=conn,executor)", "logs", kind="optional", const="all", metavar="CATEGORIES",
      show=_show_categories),
    S("--slow-callback-ms", "slow_callback_ms", positive_milliseconds, "log each loop callback that "
      "holds the thread longer than this many milliseconds, with what it was (as asyncio's debug "
      "mode does)", "logs", metavar="MS"),
    S("--selector", "selector", selector_name, "readiness backend: auto (epoll on Linux, kqueue on "
      "BSD/macOS), epoll, kqueue, poll or select", "logs", metavar="NAME"),
    # Keeping people out.
    S("--auth-file", "auth_file", existing_file, "ask for a user and password (HTTP Basic "
      "authentication) from the users of this htpasswd file: bcrypt (htpasswd -B; pip install "
      "'reactor_http[auth]'), apr1 (htpasswd -m, with a warning) or scrypt (reactor-http "
      "hash-password USER); read again when it changes and on SIGHUP", "access", metavar="FILE"),
    S("--auth-realm", "auth_realm", auth_realm, "the realm the 401's challenge names (browsers show "
      "it)", "access", metavar="REALM"),
    S("--auth-path", "auth_path", site_path, "ask for the password only under this path, e.g. "
      "/private/ (default: the whole site)", "access", metavar="PATH"),
    S("--allow", "access_rules", allow_rule, "serve clients from this address or CIDR block (or all, "
      "or unix:); repeatable; with --deny, tried in the order given, the first match decides, and when "
      "none matches the answer is the opposite of the last rule's; refused clients get 403", "access",
      kind="list", metavar="CIDR", show=_show_rule),
    S("--deny", "access_rules", deny_rule, "refuse (403) clients from this address or CIDR block (or "
      "all, or unix:); repeatable, in order with --allow", "access", kind="list", metavar="CIDR",
      show=_show_rule),
    S("--max-connections-per-client", "max_connections_per_client", positive_int, "connections one "
      "client address (an IPv6 /64) may hold open at once; more are closed as they are accepted "
      "(trusted proxies are not limited)", "access", metavar="N"),
    S("--rate-limit", "rate_limit", parse_rate, "requests one client may make per second or minute, "
      "e.g. 50/s or 600/m (nginx's limit_req); more get 429 with Retry-After", "access", metavar="RATE",
      show=show_rate),
    S("--rate-burst", "rate_burst", non_negative_int, "requests beyond --rate-limit a client may make "
      "at once (nginx's burst)", "access", metavar="N"),
    # Limits and timeouts.
    S("--max-request-line", "max_request_line", positive_size, "longest request line; longer gets 414",
      "limits", metavar="SIZE"),
    S("--max-header-bytes", "max_header_bytes", positive_size, "largest header section; larger gets 431",
      "limits", metavar="SIZE"),
    S("--max-headers", "max_header_count", positive_int, "most header fields; more gets 431", "limits",
      metavar="N"),
    S("--max-body", "max_body", positive_size, "largest request body (framed and discarded), e.g. 1M; "
      "larger gets 413", "limits", metavar="SIZE"),
    S("--max-connections", "max_connections", positive_int, "connections at once; beyond it new ones "
      "wait in the listen backlog", "limits", metavar="N"),
    S("--max-requests", "max_requests_per_connection", positive_int, "requests on one connection "
      "before it is closed", "limits", metavar="N"),
    S("--keepalive-timeout", "keepalive_timeout", seconds, "close a keep-alive connection idle this "
      "long", "limits", metavar="DURATION"),
    S("--header-timeout", "header_timeout", seconds, "answer 408 and close when a request head takes "
      "longer than this from its first byte", "limits", metavar="DURATION"),
    S("--handshake-timeout", "handshake_timeout", seconds, "close a TLS connection whose handshake "
      "takes longer than this", "limits", metavar="DURATION"),
    S("--send-timeout", "send_timeout", seconds, "close a connection whose client reads nothing of a "
      "response for this long", "limits", metavar="DURATION"),
    S("--shutdown-timeout", "shutdown_timeout", seconds, "on SIGTERM or SIGINT, let responses in "
      "progress finish for at most this long, then close what is left", "limits", metavar="DURATION"),
    S("--shutdown-delay", "shutdown_delay", non_negative_seconds, "on SIGTERM or SIGINT, go on serving "
      "this long first while --health-path answers 503, so that a load balancer takes the server out "
      "before its listeners close (Caddy's shutdown_delay)", "limits", metavar="DURATION"),
    # Teaching experiments.
    S("--disk-delay", "disk_delay", non_negative_seconds, "make every file job (stat, open, read) "
      "sleep this long first: a slow disk, simulated", "teaching", metavar="DURATION"),
    S("--file-work-on-loop", "file_work_on_loop", None, "run file jobs on the loop thread instead of "
      "the executor, blocking every connection while the disk works", "teaching", kind="switch"),
)
del S

BY_KEY = {setting.key: setting for setting in SETTINGS}
BY_FIELD = {setting.field: setting for setting in SETTINGS}

# List fields that several rows fill together, in the order given: --allow
# and --deny, whose first match wins. On the command line the flags keep
# their order. A file, where a key cannot repeat, keeps the order of its keys
# (one block of rules per key); the environment, which has no order, puts
# the deny rules first (the exceptions, as such lists are mostly written).
# The rules come whole from one place: the command line, else the
# environment, else the file.
SHARED_FIELDS = {field: tuple(setting for setting in SETTINGS if setting.field == field)
                 for field in BY_FIELD if sum(setting.field == field for setting in SETTINGS) > 1}
ENVIRONMENT_ORDER = {"access_rules": ("deny", "allow")}

GROUPS = {
    "listening": "where to listen",
    "serving": "what is served",
    "files": "reading and sending files",
    "logs": "logs and watching the server",
    "access": "keeping people out",
    "limits": "limits and timeouts",
    "teaching": "teaching experiments (see docs/walkthrough.md; not for production)",
}

_DEFAULTS = Config()


def default_of(setting):
    return getattr(_DEFAULTS, setting.field)


# -- argparse --------------------------------------------------------------------------------

def _argparse_type(setting):
    def convert(text):
        try:
            return setting.convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = setting.key  # argparse names the type in some messages
    return convert


def _help_text(setting):
    """The help, with the default where there is one to show (a list's
    default, when it has one, is described in its help text)."""
    default = default_of(setting)
    if setting.kind in ("switch", "list") or default in (None, ""):
        return setting.help
    shown = setting.show(default) if setting.show else default
    return f"{setting.help} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """argparse, with its mistakes said in one line (and at most one hint),
    not a usage block: an unknown flag with the nearest real one, a bad
    value with what is accepted. Exit status 2, as argparse's own."""

    def error(self, message):
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            words = unknown.group(1).split()
            flag = next((word for word in words if word.startswith("-")), words[0])
            name = flag.split("=", 1)[0]
            if name.startswith("-"):
                message = f"unknown flag {name}" + _flag_suggestion(name)
            else:
                message = f"unexpected argument {flag!r}: give at most a port number and a folder"
        else:
            # "argument --port/-p: 'abc' is not a port number" -> "--port: ..."
            message = re.sub(r"^argument ([^:/]+)(?:/[^:]*)?: ", r"\1: ", message)
        self.exit(2, f"{self.prog}: error: {message}\n{self.prog}: --help lists every flag\n")


def _flag_suggestion(flag):
    names = [option for setting in SETTINGS for option in (setting.flag, *setting.aliases)
             if option.startswith("--")] + ["--config", "--print-config", "--help", "--version"]
    near = closest(flag.lstrip("-"), [name[2:] for name in names])
    return f" (did you mean --{near}?)" if near else ""


def build_parser(version):
    """The argparse parser. Every setting's default is left out of the
    namespace (SUPPRESS), so that what the command line gave can be told apart
    from what it did not."""
    parser = Parser(
        prog="reactor-http", argument_default=argparse.SUPPRESS, allow_abbrev=False,
        usage="%(prog)s [PORT] [FOLDER] [FLAGS]   (python -m reactor_http 8000, "
              "reactor-http --port 8080 --root www)",
        description="A static file server: one reactor thread for every socket, a small thread "
                    "pool for the disk. Every flag can also be set in a --config file (the flag "
                    "without its dashes) or an environment variable (REACTOR_HTTP_ and the flag in "
                    "capitals); the command line wins, then the environment, then the file.",
        epilog="reactor-http hash-password USER prints a line for an --auth-file, the password read "
               "from a prompt or from standard input.")
    parser.add_argument("--version", action="version", version=f"reactor_http {version}")
    parser.add_argument("--config", metavar="FILE",
                        help="read settings from a TOML file (also REACTOR_HTTP_CONFIG)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the settings in effect, as TOML, with where each came from; "
                             "then exit")
    parser.add_argument("places", nargs="*", metavar="[PORT] [FOLDER]",
                        help="as python -m http.server, http-server and serve take them: a port number "
                             "(--port) and a folder to serve (--root), in either order")
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for setting in SETTINGS:
        group = groups[setting.group]
        flags = (setting.flag, *setting.aliases)
        if setting.kind == "switch":
            group.add_argument(*flags, dest=setting.field, action="store_const",
                               const=setting.switch_value, help=setting.help)
        elif setting.kind == "list":
            group.add_argument(*flags, dest=setting.field, action="append",
                               type=_argparse_type(setting), metavar=setting.metavar,
                               help=_help_text(setting))
        elif setting.kind == "optional":
            group.add_argument(*flags, dest=setting.field, nargs="?",
                               const=setting.convert(setting.const), type=_argparse_type(setting),
                               metavar=setting.metavar, help=_help_text(setting))
        else:
            group.add_argument(*flags, dest=setting.field, type=_argparse_type(setting),
                               metavar=setting.metavar, help=_help_text(setting))
    return parser


def _places(words, arguments):
    """What bare words mean: a number is the port, anything else the folder,
    as python -m http.server 8000 and http-server www take them. Returns
    {field: value}; raises SettingsError where that is ambiguous."""
    found = {}
    for word in words:
        field = "port" if word.isdigit() else "root"
        if field == "port" and os.path.isdir(word):
            raise SettingsError(f"{word!r} is both a port number and a folder here: say --port {word} "
                                f"or --root {word}")
        if field in found:
            what = "port number" if field == "port" else "folder"
            raise SettingsError(f"two {what}s given, {found[field]!r} and {word!r}: give one")
        if hasattr(arguments, field):
            flag = "--port" if field == "port" else "--root"
            raise SettingsError(f"{word!r} and {flag} {getattr(arguments, field)!r} both say the "
                                f"{'port' if field == 'port' else 'folder'}: give one")
        found[field] = word
    if "port" in found:
        try:
            found["port"] = port_number(found["port"])
        except ValueError as error:
            raise SettingsError(f"port {error}") from None
    return found


# -- the file and the environment ------------------------------------------------------------

def _from_text(setting, text, where):
    """A value from the environment, where everything is text."""
    try:
        if setting.kind == "switch":
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return setting.switch_value
            if lowered in ("0", "false", "no", "off", ""):
                return default_of(setting)
            raise ValueError(f"must be true or false (1/0, yes/no), not {text!r}")
        if setting.kind == "list":
            # Shell words, so that an item may hold spaces or commas:
            # REACTOR_HTTP_HEADER="'X-A: 1' 'X-B: 2, 3'".
            return tuple(setting.convert(item) for item in shlex.split(text))
        if setting.kind == "optional" and text.strip().lower() in ("1", "true", "yes", "on"):
            return setting.convert(setting.const)
        return setting.convert(text)
    except ValueError as error:
        raise SettingsError(f"{where}: {error}") from None


def _from_toml(setting, value, where):
    """A value from a TOML file, where it has a type of its own."""
    try:
        if setting.kind == "switch":
            if not isinstance(value, bool):
                raise ValueError(f"must be true or false, not {value!r}")
            return setting.switch_value if value else default_of(setting)
        if setting.kind == "list":
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, (str, int)) and not isinstance(item, bool) for item in items):
                raise ValueError(f"must be a string or a list of strings, not {value!r}")
            return tuple(setting.convert(str(item)) for item in items)
        if setting.kind == "optional" and isinstance(value, bool):
            return setting.convert(setting.const) if value else None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"must be a string or a number, not {value!r}")
        return setting.convert(str(value))
    except ValueError as error:
        raise SettingsError(f"{where}: {error}") from None


def read_config_file(path):
    """{field: value} from a TOML file. Raises SettingsError."""
    if tomllib is None:
        raise SettingsError(f"--config {path}: reading TOML needs Python 3.11, or on 3.10 the tomli "
                            f"package (pip install 'reactor_http[toml]')")
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise SettingsError(f"--config {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"--config {path}: not valid TOML: {error}") from None
    values = {}
    for key, value in document.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise SettingsError(f"--config {path}: unknown setting {key!r}"
                                + _suggestion(key.replace("_", "-")))
        value = _from_toml(setting, value, f"--config {path}: {key}")
        if setting.field in SHARED_FIELDS and setting.field in values:
            value = values[setting.field] + value  # the keys' order (see SHARED_FIELDS)
        values[setting.field] = value
    return values


def read_environment(environ):
    """{field: (value, variable)} from REACTOR_HTTP_* variables. Raises SettingsError."""
    values = {}
    shared = {}  # field -> {key: (value, variable)}
    for name, text in environ.items():
        if not name.startswith(ENVIRONMENT_PREFIX) or name == ENVIRONMENT_PREFIX + "CONFIG":
            continue
        key = name[len(ENVIRONMENT_PREFIX):].lower().replace("_", "-")
        setting = BY_KEY.get(key)
        if setting is None:
            raise SettingsError(f"unknown environment variable {name}" + _suggestion(key, environment=True))
        if setting.field in SHARED_FIELDS:
            shared.setdefault(setting.field, {})[key] = (_from_text(setting, text, name), name)
            continue
        values[setting.field] = (_from_text(setting, text, name), name)
    for field, by_key in shared.items():
        order = [key for key in ENVIRONMENT_ORDER[field] if key in by_key]
        values[field] = (sum((by_key[key][0] for key in order), ()),
                         " and ".join(by_key[key][1] for key in order))
    return values


def _suggestion(key, environment=False):
    """" (did you mean 'port'?)" for a key (or variable) that is a typing mistake away."""
    near = closest(key, BY_KEY)
    if near is None:
        return ""
    return f" (did you mean {ENVIRONMENT_PREFIX + near.upper().replace('-', '_')}?)" if environment \
        else f" (did you mean {near!r}?)"


# -- putting it together ---------------------------------------------------------------------

@dataclasses.dataclass
class LoadedSettings:
    config: Config
    sources: dict          # field -> "default", "command line", "REACTOR_HTTP_X", "FILE"
    print_config: bool


def load(argv=None, environ=None, version="?"):
    """Parse the command line (argparse exits 2 on a bad flag), read the file
    and the environment, and return LoadedSettings. Raises SettingsError."""
    environ = os.environ if environ is None else environ
    arguments = build_parser(version).parse_args(argv)
    places = _places(getattr(arguments, "places", ()), arguments)
    values, sources = {}, {}
    config_path = getattr(arguments, "config", None) or environ.get(ENVIRONMENT_PREFIX + "CONFIG")
    if config_path:
        for field, value in read_config_file(config_path).items():
            values[field], sources[field] = value, config_path
    for field, (value, variable) in read_environment(environ).items():
        values[field], sources[field] = value, variable
    for setting in SETTINGS:
        if hasattr(arguments, setting.field):
            value = getattr(arguments, setting.field)
            values[setting.field] = tuple(value) if setting.kind == "list" else value
            sources[setting.field] = "command line"
    for field, value in places.items():
        values[field], sources[field] = value, "command line"
    config = Config(**values)
    problem = _inconsistency(config)
    if problem:
        raise SettingsError(problem)
    return LoadedSettings(config, sources, getattr(arguments, "print_config", False))


def _inconsistency(config):
    """Settings that are each fine but do not go together."""
    if config.keyfile and not config.certfile:
        return "--keyfile needs --certfile"
    if config.auth_path != "/" and not config.auth_file:
        return "--auth-path needs --auth-file"
    if config.rate_burst and not config.rate_limit:
        return "--rate-burst needs --rate-limit"
    plain = [value for pattern, value in config.cache_control if pattern is None]
    if len(plain) > 1:
        return (f"--cache-control is given {len(plain)} plain values ({', '.join(map(repr, plain))}): "
                "give one, and PATTERN=VALUE for the paths that need another")
    paths = [(flag, path) for flag, path in (
        ("--health-path", config.health_path), ("--status-path", config.status_path),
        ("--metrics-path", config.metrics_path), ("--dashboard-path", config.dashboard_path)) if path]
    for index, (flag, path) in enumerate(paths):
        for other_flag, other in paths[index + 1:]:
            if path == other or (flag == "--dashboard-path" and other.startswith(path.rstrip("/") + "/")) \
                    or (other_flag == "--dashboard-path" and path.startswith(other.rstrip("/") + "/")):
                return f"{flag} and {other_flag} must be different paths (the dashboard uses PATH/events too)"
    return None


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(loaded):
    """The settings in effect as TOML (usable as a --config file), each with a
    comment saying where it came from."""
    lines = ["# reactor_http settings in effect; a line's comment says where its value came from."]
    shared_done = set()
    for setting in SETTINGS:
        value = getattr(loaded.config, setting.field)
        source = loaded.sources.get(setting.field, "default")
        if setting.field in SHARED_FIELDS:
            if setting.field not in shared_done:
                shared_done.add(setting.field)
                lines.extend(_render_shared(SHARED_FIELDS[setting.field], value, source))
            continue
        if setting.kind == "switch":
            shown = _toml_value(value == setting.switch_value)
        elif value is None or (setting.kind == "list" and not value):
            lines.append(f"# {setting.key} = (not set)  # {source}")
            continue
        elif setting.kind == "list":
            show = setting.show or str
            shown = _toml_value([show(item) for item in value])
        elif setting.show is not None:
            shown = _toml_value(setting.show(value))
        else:
            shown = _toml_value(value)
        lines.append(f"{setting.key} = {shown}  # {source}")
    return "\n".join(lines) + "\n"


def _render_shared(rows, value, source):
    """The keys of rows that fill one field together, each with its items,
    in the order the items begin (so the file keeps the order, SHARED_FIELDS)."""
    by_key = {row.key: row for row in rows}
    blocks = []  # [key, [items]] for each run of one key's items
    for item in value:
        if blocks and blocks[-1][0] == item[0]:
            blocks[-1][1].append(item)
        else:
            blocks.append([item[0], [item]])
    lines = []
    if len(blocks) > len({key for key, _ in blocks}):
        order = ", ".join(f"{item[0]} {by_key[item[0]].show(item)}" for item in value)
        lines.append(f"# given in this order: {order}; a file keeps one block per key, in the order of its keys")
    merged = {}
    for key, items in blocks:
        merged.setdefault(key, []).extend(items)
    for key, items in merged.items():
        lines.append(f"{key} = {_toml_value([by_key[key].show(item) for item in items])}  # {source}")
    for row in rows:
        if row.key not in merged:
            lines.append(f"# {row.key} = (not set)  # {source if value else 'default'}")
    return lines
