"""nginx as a static file server: one worker process, sendfile and tcp_nopush
on, keepalive_requests 100000, access_log off, worker_connections 16384, with
its own minimal configuration in a prefix directory (nothing of the system's
/etc/nginx is read). The master stays in the foreground (`daemon off`); this
script writes the configuration, then becomes nginx (exec), so the process the
harness started is the master and the worker is its child.

    python scripts/bench_peers/nginx.py --port 8080 --root DIR --prefix TMPDIR
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

    server {{
        listen {host}:{port};
        root {root};
        index index.html;
    }}
}}
"""


def find_nginx():
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None)


def main():
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--prefix", help="directory for the configuration, pid and error log "
                                         "(default: a new temporary directory, left behind)")
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
        file.write(CONFIG.format(prefix=prefix, host=args.host, port=args.port,
                                 root=os.path.abspath(args.root), descriptors=descriptors))
    os.execv(nginx, [nginx, "-p", prefix, "-c", config_path, "-e", os.path.join(prefix, "error.log")])


if __name__ == "__main__":
    main()
