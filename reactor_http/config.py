"""The server's settings: every limit and timeout in one named, documented place.

Nothing here does I/O. The command line (cli.py) builds one Config; every other
module reads from it and never changes it, so it is safe to share with the
executor's threads (the "Arc-style shared read-only state" of the async world).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    root: str = "."
    bind: str = "127.0.0.1"
    port: int = 8080
    blocking_threads: int = 8
    quiet: bool = False
    selector: str = "auto"
    show_hidden: bool = False
    use_sendfile: bool = True
    reuse_port: bool = True                # workers: SO_REUSEPORT where the platform has it

    # What is served, beyond the file itself.
    precompressed: bool = True             # style.css.br / .zst / .gz beside style.css
    gzip: bool = False                     # compress text on the fly (cached)
    cache_control: str = None              # a Cache-Control value for file responses
    autoindex: bool = False                # list directories that have no index.html
    error_pages: tuple = ()                # ((404, "/404.html"), ...)
    fallback: str = None                   # serve this path when nothing matches (SPA)

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
