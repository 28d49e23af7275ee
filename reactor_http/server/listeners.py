"""Listening sockets: where connections come from.

A server may listen on several TCP addresses (``--bind``, each on ``--port``),
on a Unix domain socket (``--unix PATH``), and on sockets that systemd opened
for it (socket activation: ``LISTEN_FDS``). This module opens them before the
server starts, so that a port in use is an error at start, not later; the
reactor then treats every listener alike: readable means "accept".

With ``--workers`` and SO_REUSEPORT, the parent only *reserves* each TCP
address (a socket bound but not listening, which keeps the port and tells
which port "0" became) and every worker opens a listening socket of its own
on it; the kernel spreads new connections among them. Sockets that cannot be
shared that way (Unix, systemd's) are inherited by every worker as they are.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from ..config import DEFAULT_BIND

LISTEN_BACKLOG = 1024

# Linux and the BSDs: several sockets may listen on one port, the kernel
# spreading connections among them.
REUSE_PORT_AVAILABLE = hasattr(socket, "SO_REUSEPORT")

# sd_listen_fds(3): the descriptors systemd passes start at 3.
SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """A listener that cannot be opened; the message names it."""


def open_tcp_listener(bind, port, reuse_port=False, listen=True):
    """A TCP socket bound to (bind, port), listening unless ``listen`` is
    False. With ``reuse_port``, other sockets may bind the same port
    (SO_REUSEPORT). Raises OSError."""
    infos = socket.getaddrinfo(bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, protocol, _, address = infos[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and address[0] == "::":
            # "::" means every address, IPv4 ones too (dual stack).
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        if listen:
            listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def open_unix_listener(path, mode=0o666):
    """A listening Unix domain socket at ``path``, its file given ``mode``
    (who may connect: with the default, a proxy running as another user). A
    socket file left there by a server that is gone (nobody accepts on it) is
    replaced; one that a running server answers on, or a file that is not a
    socket, is an error."""
    try:
        existing = os.lstat(path).st_mode
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing):
            raise ListenError(f"--unix {path}: exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: its server has gone
        except OSError as error:
            raise ListenError(f"--unix {path}: {error.strerror or error}") from None
        else:
            raise ListenError(f"--unix {path}: another server is listening there")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        # bind made the file with the umask's mode (0755, say: nobody else may
        # connect); set the one asked for before anyone can.
        os.chmod(path, mode)
        listener.listen(LISTEN_BACKLOG)
    except OSError as error:
        listener.close()
        raise ListenError(f"--unix {path}: {error.strerror or error}") from None
    return listener


def activated_listeners(environ):
    """The sockets systemd passed by socket activation (sd_listen_fds(3)):
    LISTEN_FDS descriptors from 3 on, if LISTEN_PID is this process. The
    variables are removed, as sd_listen_fds does, so that no child takes the
    descriptors for its own."""
    if environ.get("LISTEN_PID") != str(os.getpid()) or "LISTEN_FDS" not in environ:
        return []
    try:
        count = int(environ["LISTEN_FDS"])
    except ValueError:
        raise ListenError(f"LISTEN_FDS={environ['LISTEN_FDS']!r} is not a number") from None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        try:
            listener = socket.socket(fileno=fd)  # family and type read from the descriptor
        except OSError as error:
            raise ListenError(f"socket activation: descriptor {fd}: {error.strerror or error}") from None
        if listener.type != socket.SOCK_STREAM or not is_listening(listener):
            raise ListenError(f"socket activation: descriptor {fd} is not a listening stream socket")
        listener.set_inheritable(False)
        listeners.append(listener)
    return listeners


def is_listening(sock):
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def open_listeners(config, environ=None, reserve_tcp=False):
    """Every listener the configuration asks for, opened now. With
    ``reserve_tcp`` (workers with SO_REUSEPORT) TCP addresses are reserved,
    not listened on: see ``for_worker``. Raises ListenError."""
    environ = os.environ if environ is None else environ
    listeners = activated_listeners(environ)
    binds = config.binds
    if not binds and config.unix is None and not listeners:
        binds = (DEFAULT_BIND,)
    port = config.port
    try:
        for bind in binds:
            try:
                listener = open_tcp_listener(bind, port, reuse_port=reserve_tcp, listen=not reserve_tcp)
            except OSError as error:
                hint = ""
                if error.errno == errno.EACCES and 0 < port < 1024:
                    hint = (f" (ports below 1024 need root, or CAP_NET_BIND_SERVICE; try --port "
                            f"{8000 + port if port < 1000 else 8080})")
                elif error.errno == errno.EADDRINUSE:
                    holder = who_listens(port)
                    hint = (f" (by {holder}: stop it, or choose another --port)" if holder
                            else " (by another program: stop it, or choose another --port)")
                raise ListenError(f"cannot listen on {bind} port {port}: "
                                  f"{error.strerror or error}{hint}") from None
            listeners.append(listener)
            if port == 0:
                # The other addresses take the port the kernel chose for the
                # first, so that one port number names the server.
                port = listener.getsockname()[1]
        if config.unix is not None:
            listeners.append(open_unix_listener(config.unix, config.unix_mode))
    except ListenError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def who_listens(port):
    """"process 1234 (python3 -m reactor_http ...)", the process that holds a
    listening TCP socket on ``port``, where /proc says (Linux, and only for
    processes this user may look at); None when it cannot tell."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as file:
                next(file)
                for line in file:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{inode}]")
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in descriptors):
                with open(f"/proc/{pid}/cmdline", "rb") as file:
                    command = file.read().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"process {pid} ({command[:80]})"
        except OSError:
            continue
    return None


def for_worker(listener):
    """The socket a worker accepts on for one of the parent's listeners: its
    own SO_REUSEPORT socket for a reserved TCP address, else the inherited one."""
    if listener.family in (socket.AF_INET, socket.AF_INET6) and not is_listening(listener):
        host, port = listener.getsockname()[:2]
        return open_tcp_listener(host, port, reuse_port=True)
    return listener


def remove_unix_socket(path):
    """Remove the socket file of ``--unix PATH`` when the server that made it
    stops (the process that opened it: with workers, the parent)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise


def listener_url(listener, tls=False):
    """Where a listener answers: http(s)://host:port/ or unix:PATH."""
    if listener.family == getattr(socket, "AF_UNIX", None):
        return f"unix:{listener.getsockname()}"
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/"
