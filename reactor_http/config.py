"""The server's settings: every limit and timeout in one named, documented place.

Nothing here does I/O. The command line (server/cli.py, through
server/settings.py) builds one Config; every other module reads from it and
never changes it, so it is safe to share with the executor's threads (the
"Arc-style shared read-only state" of the async world). Every package may
import this module: it is the one thing they all read.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# Who may read the status page unless --status-allow says otherwise.
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Where the server listens when no listener is given at all.
DEFAULT_BIND = "127.0.0.1"


@dataclass(frozen=True)
class Config:
    root: str = "."
    port: int = 8080
    # TCP addresses, each on ``port``. Empty means DEFAULT_BIND, unless
    # ``unix`` or systemd socket activation provides the listeners.
    binds: tuple = ()
    unix: str | None = None                       # a Unix domain socket path
    # Who may connect to it. Policy: anyone on this machine, as with a port on
    # 127.0.0.1, so that a proxy running as another user (nginx as www-data)
    # reaches it; 0660 or 0600 narrow it to a group or the owner.
    unix_mode: int = 0o666
    certfile: str | None = None                   # TLS: every listener speaks HTTPS
    keyfile: str | None = None
    workers: int = 1                       # 0: one per CPU ("auto")
    reuse_port: bool = True                # workers: SO_REUSEPORT where the platform has it
    blocking_threads: int = 8
    quiet: bool = False
    selector: str = "auto"
    show_hidden: bool = False
    use_sendfile: bool = True

    # Logs and watching.
    access_log: str | None = None                 # a file to append to; None: stdout
    log_format: str = "common"             # common, combined or json
    log_time: bool = False                 # common/combined lines end with the seconds taken
    color: str = "auto"                    # colour log lines by status: auto, always, never
    trusted_proxies: tuple = ()            # networks whose X-Forwarded-For is believed
    trace: frozenset | None = None               # trace categories, None: no tracing
    status_path: str | None = None                # e.g. "/_status"; None: no status page
    status_allow: tuple = LOOPBACK_NETWORKS
    health_path: str | None = None                # 200 while serving, 503 once stopping
    metrics_path: str | None = None               # Prometheus metrics, for status_allow clients
    dashboard_path: str | None = None             # the live page and its event stream, likewise
    slow_callback_ms: float | None = None         # log each loop callback that held the thread longer

    # What is served, beyond the file itself.
    precompressed: bool = True             # style.css.br / .zst / .gz beside style.css
    gzip: bool = False                     # compress text on the fly (cached)
    # ((glob or None, value), ...): Cache-Control by path, first match wins;
    # the rule without a glob is for every other path (static/cache_policy.py).
    cache_control: tuple = ()
    etag: str = "mtime"                    # "mtime" (as nginx) or "content" (a digest)
    autoindex: bool = False                # list directories that have no index.html
    try_html: bool = False                 # /about serves about.html when /about is not there
    error_pages: tuple = ()                # ((404, "/404.html"), ...)
    fallback: str | None = None                   # serve this path when nothing matches (SPA)
    headers: tuple = ()                    # (("X-Frame-Options", "DENY"), ...) on every response
    cors: str | None = None                       # "*" or one origin allowed to read the files

    # Keeping people out (reactor_http/access/): none of it is built unless asked for.
    auth_file: str | None = None           # an htpasswd file: Basic authentication (RFC 7617)
    auth_realm: str = "reactor_http"       # the realm of the 401's challenge
    auth_path: str = "/"                   # the part of the site the password protects
    # (("allow" or "deny", network), ...) in the order given, first match wins;
    # a network is an ipaddress network, "all" or "unix:".
    access_rules: tuple = ()
    max_connections_per_client: int | None = None  # by peer address (IPv6: its /64); None: no limit
    rate_limit: tuple | None = None        # (requests, per seconds): (50, 1) for 50/s; None: no limit
    rate_burst: int = 0                    # requests beyond the rate a client may make at once

    # The metadata and small-file cache (nginx: open_file_cache).
    cache_bytes: int = 64 * 1024 * 1024
    cache_valid: float = 1.0               # seconds before an entry is checked again

    # Size limits for the request head. nginx's defaults are 1 KiB buffers
    # growing to 4 x 8 KiB; Apache allows 8 KiB per line and 100 fields; node
    # allows 16 KiB for the whole head. We take the larger of each.
    max_request_line: int = 8 * 1024       # -> 414 URI Too Long
    max_header_bytes: int = 16 * 1024      # -> 431 Request Header Fields Too Large
    max_header_count: int = 100            # -> 431
    # Request bodies are framed and discarded (nothing here uses them);
    # nginx's client_max_body_size is 1 MiB too.
    max_body: int = 1024 * 1024            # -> 413
    # Connections at once; beyond it the server stops accepting until one closes.
    # (Each costs a descriptor: the server raises its soft RLIMIT_NOFILE to fit.)
    max_connections: int = 10000
    # Requests on one connection before it is closed (nginx keepalive_requests).
    max_requests_per_connection: int = 1000

    # Timeouts, in seconds, all on the monotonic clock.
    keepalive_timeout: float = 15.0        # idle between requests (nginx: 75 s)
    header_timeout: float = 10.0           # whole head, measured from its first byte
    send_timeout: float = 60.0             # a response makes no progress (nginx: 60 s)
    linger_timeout: float = 5.0            # draining input after an error before close
    handshake_timeout: float = 10.0        # a TLS handshake from accept to its end
    # On SIGTERM/SIGINT: responses in progress get this long to finish (nginx
    # waits without a bound, systemd's TimeoutStopSec defaults to 90 s).
    shutdown_timeout: float = 30.0
    # Before that, serve on this long while --health-path says 503, so that a
    # load balancer stops sending work before the listeners close.
    shutdown_delay: float = 0.0

    # Teaching experiments (docs/walkthrough.md), never for production: make
    # every file job sleep first (a slow disk), and run file jobs on the loop
    # thread itself instead of the executor (what the executor saves us from).
    disk_delay: float = 0.0
    file_work_on_loop: bool = False
