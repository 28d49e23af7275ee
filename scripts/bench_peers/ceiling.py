"""The interpreter's ceiling: a minimal epoll loop that answers every request
with the same pre-built bytes.

Not a server: it parses nothing (it counts request ends, "\r\n\r\n"), opens no
file, checks no path and writes no log. It measures what one CPython thread on
this machine can do with one recv and one send per batch of requests, so that
every real server's figure can be read against it. Linux only (epoll).

    python scripts/bench_peers/ceiling.py --port 8080 --root DIR
"""

import email.utils
import os
import select
import socket

from peer_command_line import peer_parser


def build_responses(root):
    """The keep-alive and the closing answer, with the 1 KiB index.html as body."""
    try:
        with open(os.path.join(root, "index.html"), "rb") as file:
            body = file.read()
    except OSError:
        body = b"x" * 1024
    head = ("HTTP/1.1 200 OK\r\nServer: ceiling\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n"  # once, at start: a ceiling
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n")
    keep_alive = (head + "\r\n").encode("latin-1") + body
    closing = (head + "Connection: close\r\n\r\n").encode("latin-1") + body
    return keep_alive, closing


def serve(host, port, root):
    keep_alive, closing = build_responses(root)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    listener.setblocking(False)
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    sockets = {}   # fd -> socket
    unparsed = {}  # fd -> bytes after the last complete request head
    pending = {}   # fd -> response bytes the socket would not take yet

    def close(fd):
        epoll.unregister(fd)
        sockets.pop(fd).close()
        unparsed.pop(fd, None)
        pending.pop(fd, None)

    while True:
        for fd, events in epoll.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        connection, _ = listener.accept()
                    except BlockingIOError:
                        break
                    connection.setblocking(False)
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sockets[connection.fileno()] = connection
                    unparsed[connection.fileno()] = b""
                    epoll.register(connection.fileno(), select.EPOLLIN)
                continue
            connection = sockets[fd]
            if events & select.EPOLLOUT:
                data = pending.pop(fd)
                try:
                    sent = connection.send(data)
                except ConnectionError:
                    close(fd)
                    continue
                if sent < len(data):
                    pending[fd] = data[sent:]
                else:
                    epoll.modify(fd, select.EPOLLIN)
                continue
            try:
                data = connection.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                close(fd)
                continue
            data = unparsed[fd] + data
            # One answer per complete request head: the benchmark's requests
            # have no bodies, and a pipelined batch arrives in one read.
            count = data.count(b"\r\n\r\n")
            if count == 0:
                unparsed[fd] = data
                continue
            unparsed[fd] = data[data.rfind(b"\r\n\r\n") + 4:]
            if b"Connection: close" in data:  # the S2 scenario: answer and close
                connection.send(closing)
                close(fd)
                continue
            answer = keep_alive * count
            try:
                sent = connection.send(answer)
            except ConnectionError:
                close(fd)
                continue
            if sent < len(answer):
                pending[fd] = answer[sent:]
                epoll.modify(fd, select.EPOLLOUT)


def main():
    args = peer_parser(__doc__.splitlines()[0]).parse_args()  # --root: its index.html is the body
    try:
        serve(args.host, args.port, args.root)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
