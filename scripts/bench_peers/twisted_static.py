"""twisted.web serving a directory: `Site(static.File(root))` on the default
reactor (epoll on Linux), access log off.

Site writes a log line per request to twisted's log by default; a Site whose
`log` does nothing is how one turns it off.

    python scripts/bench_peers/twisted_static.py --port 8080 --root DIR
"""

from peer_command_line import peer_parser
from twisted.internet import endpoints, reactor
from twisted.web import server, static


class QuietSite(server.Site):
    def log(self, request):
        pass  # access log off


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    site = QuietSite(static.File(args.root))
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.host)
    endpoint.listen(site)
    reactor.run()


if __name__ == "__main__":
    main()
