"""Directory listings: an HTML page of a directory's entries, like nginx's
``autoindex on``.

The work is split along the model's one line: ``scan_directory`` reads the
disk, so it is an executor job; ``render_listing`` is pure string work on the
plain Entry values it returned, so it may run on either side. Every file name
is untrusted text: it is HTML-escaped wherever it is shown and percent-encoded
wherever it becomes a link.
"""

import html
import os
import re
import stat
from datetime import datetime, timezone
from urllib.parse import quote


class Entry:
    """One listed name: a directory (``size`` is None) or a regular file.

    ``mtime`` is seconds since the epoch, as ``os.stat`` gives it.
    """

    __slots__ = ("name", "is_directory", "size", "mtime")

    def __init__(self, name, is_directory, size, mtime):
        self.name = name
        self.is_directory = is_directory
        self.size = size
        self.mtime = mtime

    def __repr__(self):
        kind = "directory" if self.is_directory else f"file of {self.size} bytes"
        return f"Entry({self.name!r}, {kind})"


def scan_directory(path, show_hidden):
    """The listable entries of the directory at ``path``, in no order.

    Blocks on the disk: run it on an executor thread. Symlinks are followed,
    so a link is listed as what it points to. Policy: an entry is skipped,
    never fatal, when it cannot be served anyway:
      - its name starts with "." and ``show_hidden`` is false;
      - its name is not UTF-8 (paths.py refuses such a path, and the page is
        UTF-8);
      - stat fails: a dangling symlink, a symlink loop, a name removed since
        the directory was read, no permission;
      - it is neither a directory nor a regular file (files.py refuses FIFOs,
        sockets and devices).
    Raises OSError only if the directory itself cannot be read.
    """
    entries = []
    with os.scandir(path) as iterator:
        for item in iterator:
            entry = _entry_for(item, show_hidden)
            if entry is not None:
                entries.append(entry)
    return entries


def _entry_for(item, show_hidden):
    name = item.name
    if name.startswith(".") and not show_hidden:
        return None
    try:
        # os.scandir gives undecodable bytes back as lone surrogates.
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    try:
        info = item.stat()  # follows symlinks
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode):
        return Entry(name, True, None, info.st_mtime)
    if stat.S_ISREG(info.st_mode):
        return Entry(name, False, info.st_size, info.st_mtime)
    return None


_STYLE = """\
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { padding: 0.2em 1em 0.2em 0; text-align: left; }
td.size { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #eef; }
a { text-decoration: none; }
"""

# C0 and C1 controls other than TAB, LF and FF are parse errors in HTML text
# (WHATWG HTML §13.2.3.5), and a CR would be read as LF. Linux allows them in
# file names; they are shown as U+FFFD, while the link keeps the exact name.
_UNSHOWABLE = re.compile("[\x01-\x08\x0b\x0d-\x1f\x7f-\x9f]")


def render_listing(url_path, entries):
    """The listing page, as UTF-8 bytes.

    ``url_path`` is the decoded path of the directory, starting and ending
    with "/"; ``entries`` come from scan_directory. Directories come first,
    then files, each sorted by name in code-point order (so "B" before "a":
    simple and the same on every machine).
    """
    title = _text("Index of " + url_path)
    rows = []
    if url_path != "/":
        rows.append(_row("../", "../", "-", ""))
    for entry in sorted(entries, key=lambda entry: (not entry.is_directory, entry.name)):
        suffix = "/" if entry.is_directory else ""
        # Relative links, so the page works under any prefix; "./" first so a
        # name like "javascript:x" or "a:b" is never read as a URI scheme
        # (RFC 3986 §4.2). quote(safe="") encodes every reserved character,
        # "/", "?", "#" and "%" included, and leaves only unreserved ones,
        # which need no HTML escaping inside the attribute.
        href = "./" + quote(entry.name, safe="") + suffix
        size = "-" if entry.is_directory else format_size(entry.size)
        rows.append(_row(href, _text(entry.name + suffix), size, _time(entry.mtime)))
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        f"<style>\n{_STYLE}</style>\n"
        "</head>\n"
        "<body>\n"
        f"<h1>{title}</h1>\n"
        "<table>\n"
        "<thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr></thead>\n"
        "<tbody>\n"
        + "".join(rows)
        + "</tbody>\n</table>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def _row(href, name_html, size, modified_html):
    return (f'<tr><td><a href="{href}">{name_html}</a></td>'
            f'<td class="size">{size}</td><td>{modified_html}</td></tr>\n')


def _text(text):
    """Untrusted text made safe to place in HTML text or a quoted attribute."""
    return html.escape(_UNSHOWABLE.sub("\ufffd", text), quote=True)


_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_size(size):
    """A byte count for people: "512 B", "1.5 KiB", "3.0 GiB" (powers of 1024)."""
    if size < 1024:
        return f"{size} B"
    value = size
    for unit in _UNITS:
        value /= 1024
        # Compare after rounding, so 1048575 bytes reads "1.0 MiB", not "1024.0 KiB".
        if round(value, 1) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"


def _time(mtime):
    """The modification time as a <time> element, in UTC; "-" if out of range."""
    try:
        moment = datetime.fromtimestamp(mtime, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "-"
    # Built from the fields: strftime("%Y") does not pad years before 1000.
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    return f'<time datetime="{date}T{clock}:{moment.second:02d}Z">{date} {clock}</time>'
