"""nginx as a static file server: one worker process, sendfile and tcp_nopush
on, keepalive_requests 100000, access_log off, worker_connections 16384, with
its own minimal configuration in a prefix directory (nothing of the system's
/etc/nginx is read). The master stays in the foreground (`daemon off`); this
script writes the configuration, then becomes nginx (exec), so the process the
harness started is the master and the worker is its child.

--open-file-cache adds nginx's metadata cache, tuned as reactor_http's own
cache behaves (entries checked again after 1 s, "not found" cached too), the
fair anchor for a server that has such a cache. --certfile and --keyfile make
the listener TLS (1.2 and 1.3, nginx's and OpenSSL's defaults otherwise:
session tickets on, as Python's ssl module leaves them).

    python scripts/bench_peers/nginx.py --port 8080 --root DIR --prefix TMPDIR [--open-file-cache]
        [--certfile CERT --keyfile KEY]
"""

import os
import resource
import shutil
import tempfile

from peer_command_line import peer_parser

CONFIG = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {descriptors};

events {{
    worker_connections 16384;
}}

http {{
    types {{
        text/html html;
        text/css css;
        image/png png;
    }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    {open_file_cache}
    server {{
        listen {host}:{port}{ssl};
        {certificate}
        root {root};
        index index.html;
    }}
}}
"""

# As reactor_http's FileCache: what a path resolved to, 404s included, used
# for 1 s (--cache-valid), dropped when unused for 60 s.
OPEN_FILE_CACHE = """open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 1s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;"""

CERTIFICATE = """ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        ssl_protocols TLSv1.2 TLSv1.3;"""


def find_nginx():
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None)


def main():
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--prefix", help="directory for the configuration, pid and error log "
                                         "(default: a new temporary directory, left behind)")
    parser.add_argument("--open-file-cache", action="store_true",
                        help="cache what paths resolve to, as reactor_http does (open_file_cache)")
    parser.add_argument("--certfile", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    args = parser.parse_args()
    nginx = find_nginx()
    if nginx is None:
        parser.exit(2, "nginx is not installed\n")
    prefix = os.path.abspath(args.prefix or tempfile.mkdtemp(prefix="bench-nginx-"))
    os.makedirs(prefix, exist_ok=True)
    _, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    descriptors = 65536 if hard_limit == resource.RLIM_INFINITY else hard_limit
    config_path = os.path.join(prefix, "nginx.conf")
    with open(config_path, "w") as file:
        file.write(CONFIG.format(
            prefix=prefix, host=args.host, port=args.port, root=os.path.abspath(args.root),
            descriptors=descriptors, open_file_cache=OPEN_FILE_CACHE if args.open_file_cache else "",
            ssl=" ssl" if args.certfile else "",
            certificate=CERTIFICATE.format(certfile=os.path.abspath(args.certfile),
                                           keyfile=os.path.abspath(args.keyfile or args.certfile))
            if args.certfile else ""))
    os.execv(nginx, [nginx, "-p", prefix, "-c", config_path, "-e", os.path.join(prefix, "error.log")])


if __name__ == "__main__":
    main()
