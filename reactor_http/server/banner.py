"""What the server says when it starts: where to point a browser, and who can.

The first lines are one per listener, ``Serving ROOT at URL (details)``, the
same for one process and for workers (tests and scripts read them). Then the
lines a person needs: which URL to open, whether other machines can reach it
(and how to let them), the addresses to open from another device on the same
network when the server listens on all of them, and whether folders are listed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

# The ioctl that reads an interface's IPv4 address (Linux; elsewhere the
# fallback below is used).
_SIOCGIFADDR = 0x8915


def listener_lines(root: str, urls: Iterable[str], details: str) -> list[str]:
    """One line per listener: ``Serving ROOT at URL (details). Press Ctrl+C to stop.``"""
    return [f"Serving {root} at {url} ({details}). Press Ctrl+C to stop." for url in urls]


def describe(blocking_threads: int, selector: str, workers: int = 1, sharing: str | None = None) -> str:
    """The details in parentheses of a listener line."""
    text = f"selector: {selector}, {blocking_threads} blocking threads"
    if workers > 1:
        text = f"{workers} workers, {sharing}; {text} each"
    return text


def banner(config, root: str, urls: list[str], selector: str, workers: int = 1,
           sharing: str | None = None) -> list[str]:
    """Every line the server says at start, for one process or for workers."""
    lines = listener_lines(root, urls, describe(config.blocking_threads, selector, workers, sharing))
    tcp = [url for url in urls if url.startswith("http")]
    if tcp:
        scheme, port = tcp[0].split("://")[0], int(tcp[0].rstrip("/").rsplit(":", 1)[1])
        binds = [url.split("://")[1].rsplit(":", 1)[0].strip("[]") for url in tcp]
        everywhere = any(bind in ("0.0.0.0", "::") for bind in binds)
        lines += reach_lines(binds, port, scheme, lan_addresses() if everywhere else ())
    has_index = os.path.isfile(os.path.join(root, "index.html"))
    listing = listing_line(config.autoindex, has_index)
    if listing:
        lines.append(listing)
    return lines


def reach_lines(binds: Iterable[str], port: int | None, scheme: str, lan_addresses: Iterable[str]) -> list[str]:
    """Who can connect, and the addresses to open from elsewhere."""
    binds = list(binds)
    if port is None or not binds:
        return []
    lines = []
    everywhere = [bind for bind in binds if bind in ("0.0.0.0", "::", "")]
    if everywhere:
        lines.append(f"Open {scheme}://127.0.0.1:{port}/ here.")
        addresses = list(lan_addresses)
        if addresses:
            urls = ", ".join(f"{scheme}://{_host(address)}:{port}/" for address in addresses)
            lines.append(f"From another device on this network: {urls}")
        else:
            lines.append("Other machines can connect to this one's addresses on that port.")
    elif all(_is_loopback(bind) for bind in binds):
        lines.append("Only this machine can connect; --bind 0.0.0.0 (or -b 0.0.0.0) lets others on the "
                     "network in.")
    return lines


def listing_line(autoindex: bool, root_has_index: bool) -> str | None:
    """Say whether folders are listed, when it matters to what the person sees first."""
    if autoindex:
        return "Folders without an index.html are listed (--autoindex)."
    if not root_has_index:
        return ("This folder has no index.html, so / answers 404; start with --autoindex to list "
                "its files.")
    return None


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, best effort, the first
    the one a default route would use."""
    found: list[str] = []
    default = _default_route_address()
    if default:
        found.append(default)
    for address in _interface_addresses():
        if address not in found:
            found.append(address)
    return found


def _default_route_address() -> str | None:
    """The source address of the default route: a UDP socket "connected" to
    a public address sends nothing, but the kernel picks the route."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never reached
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if _is_loopback(address) else address


def _interface_addresses() -> list[str]:
    try:
        import fcntl
        names = [name for _, name in socket.if_nameindex()]
    except (ImportError, OSError, AttributeError):
        return []
    found = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for name in names:
            try:
                answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on it, or not Linux
            address = socket.inet_ntoa(answer[20:24])
            if not _is_loopback(address):
                found.append(address)
    finally:
        probe.close()
    return found


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
