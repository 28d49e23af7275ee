"""TLS (HTTPS) with the standard library's ssl module, its handshake driven by the reactor.

A TLS connection's socket is non-blocking like any other, so the handshake
cannot run to completion in one call: ``handshake_step`` does what it can and
says WANT_READ ("I need the client's next bytes") or WANT_WRITE ("the send
buffer is full"), or DONE. The connection turns those into its states
HANDSHAKE_WANT_READ and HANDSHAKE_WANT_WRITE, waits for that readiness, and
steps again. After the handshake, ``recv`` and ``send`` raise
SSLWantReadError or SSLWantWriteError where a plain socket raises
BlockingIOError.

File bodies go through the portable path (read a chunk from the page cache on
the loop, or on the executor when it needs the disk, then send it):
os.sendfile would bypass the encryption. (Linux's kernel TLS could encrypt
sendfile's pages, but Python's ssl module offers it only from 3.12, and only
on a kernel built with its tls module; it is not used, see the README.)

Policy: TLS 1.2 and later only (RFC 8996 deprecates 1.0 and 1.1), the ssl
module's default ciphers, no renegotiation, ALPN "http/1.1" (this server
speaks no HTTP/2, and says so in the handshake, RFC 7301).
"""

from __future__ import annotations

import enum
import socket
from typing import Any

ssl: Any
try:
    import ssl
except ImportError:  # a Python built without OpenSSL: plain HTTP only
    ssl = None

WANT_ERRORS: tuple[type[BaseException], ...]
PEER_ERRORS: tuple[type[BaseException], ...]
if ssl is not None:
    WANT_ERRORS = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
    # The TLS protocol failing with the peer (a bad record, an alert, an
    # unexpected EOF): the peer's problem, not a bug of ours. (The two
    # "want" errors are SSLErrors too: catch WANT_ERRORS first.)
    PEER_ERRORS = (ssl.SSLError,)
else:
    WANT_ERRORS = PEER_ERRORS = ()

# The first byte of a TLS record that carries a handshake message (RFC 8446
# §5.1: ContentType handshake(22)); a ClientHello always comes first.
_HANDSHAKE_RECORD = 0x16


class TLSConfigError(Exception):
    """The certificate or key cannot be used; the message says why."""


def make_context(certfile: str, keyfile: str | None = None):
    """A server SSLContext for the certificate chain and key. Raises TLSConfigError."""
    if ssl is None:
        raise TLSConfigError("this Python has no ssl module")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.set_alpn_protocols(["http/1.1"])
    # OpenSSL's own word for a missing block is "[SSL] PEM lib (_ssl.c:3926)":
    # say in words what is missing instead.
    if not _holds(certfile, "--certfile", _CERTIFICATE):
        raise TLSConfigError(f"--certfile {certfile} holds no certificate (a PEM 'BEGIN CERTIFICATE' block)")
    if keyfile is None and not _holds(certfile, "--certfile", _PRIVATE_KEYS):
        raise TLSConfigError(f"--certfile {certfile} holds a certificate but no private key: "
                             f"give the key with --keyfile")
    if keyfile is not None and not _holds(keyfile, "--keyfile", _PRIVATE_KEYS):
        raise TLSConfigError(f"--keyfile {keyfile} holds no private key (a PEM 'BEGIN PRIVATE KEY' block)")
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        what = f"--certfile {certfile}" + (f" --keyfile {keyfile}" if keyfile else "")
        if "KEY_VALUES_MISMATCH" in str(error):
            raise TLSConfigError(f"{what}: the private key does not belong to the certificate") from None
        raise TLSConfigError(f"{what}: {getattr(error, 'strerror', None) or error}") from None
    return context


_CERTIFICATE = ("CERTIFICATE",)
_PRIVATE_KEYS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY")


def _holds(path: str, flag: str, labels: tuple[str, ...]) -> bool:
    """Whether a PEM file has a block with one of these labels."""
    try:
        with open(path, "rb") as file:
            text = file.read(1024 * 1024)
    except OSError as error:
        raise TLSConfigError(f"{flag} {path}: {error.strerror or error}") from None
    return any(f"-----BEGIN {label}-----".encode() in text for label in labels)


class Step(enum.Enum):
    WANT_READ = "want-read"
    WANT_WRITE = "want-write"
    DONE = "done"


def handshake_step(sock) -> Step:
    """Take the handshake as far as the socket allows without blocking.
    Raises OSError (ssl.SSLError among them) if it fails: the peer's problem."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return Step.WANT_READ
    except ssl.SSLWantWriteError:
        return Step.WANT_WRITE
    return Step.DONE


def wrap(context, sock: socket.socket):
    """The server side of a TLS connection on an accepted socket, the
    handshake not yet begun. The returned object replaces ``sock``, whose
    descriptor it takes over."""
    return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)


def is_wrapped(sock) -> bool:
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def pending(sock) -> int:
    """Decrypted bytes already waiting in the TLS layer, which the selector
    cannot see: they arrived with the handshake's last flight."""
    return sock.pending()


def starts_handshake(first_bytes: bytes) -> bool:
    return first_bytes[0] == _HANDSHAKE_RECORD


def looks_like_http(first_bytes: bytes) -> bool:
    """Whether a connection's first byte could start a request line: methods
    are tokens, and every method in use starts with a capital letter."""
    return 0x41 <= first_bytes[0] <= 0x5A


def send_close_notify(sock) -> None:
    """Send TLS's close_notify alert without waiting for the reply (a
    non-blocking unwrap sends it, then finds no answer yet)."""
    try:
        sock.unwrap()
    except (OSError, ValueError):
        pass
