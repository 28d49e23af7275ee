"""Unit tests for autoindex.py: scanning a directory and rendering its listing.

scan_directory runs against real temporary directories (real symlinks, a real
FIFO, names Linux allows but HTML and URLs do not like). The rendered page is
parsed back with html.parser: every link must lead to exactly the name it
shows, every shown name must be the real name, and no name may turn into
markup. Links are also fed through paths.parse_target, so the page and the
server agree on what each link means.
"""

import errno
import os
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin

import pytest

from reactor_http.static import autoindex
from reactor_http.static.autoindex import Entry, format_size, render_listing, scan_directory
from reactor_http.static.paths import PathError, parse_target

# 2021-02-03 04:05:06 UTC
KNOWN_MTIME = 1612325106

# Names that are hostile to HTML, to URLs, or to both.
AWKWARD_FILE_NAMES = [
    "<script>alert(1)",
    "<img src=x onerror=alert(1)>",
    "a&b",
    "&amp;",
    'double"quote',
    "single'quote",
    "with space",
    "a?b#c%d",
    "100%",
    "%2e%2e",
    "javascript:alert(1)",
    "a:b",
    "café ☕ \U0001F600",
    "new\nline",
    "plus+equals=semi;colon,comma",
]


class ListingParser(HTMLParser):
    """Collects the title, the heading, every tag seen, and each table row
    as (href, link text, size text, time text, time datetime attribute)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.doctype = None
        self.html_attributes = {}
        self.meta_charset = None
        self.title = ""
        self.heading = ""
        self.style = ""
        self.rows = []
        self._open = []
        self._cells = None
        self._href = None
        self._datetime = None

    def handle_decl(self, declaration):
        self.doctype = declaration

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        self.tags.append(tag)
        self._open.append(tag)
        if tag == "html":
            self.html_attributes = attributes
        elif tag == "meta" and "charset" in attributes:
            self.meta_charset = attributes["charset"]
        elif tag == "tr":
            self._cells = []
        elif tag == "td":
            self._cells.append("")
        elif tag == "a":
            self._href = attributes["href"]
        elif tag == "time":
            self._datetime = attributes["datetime"]
        if tag == "meta":
            self._open.pop()  # a void element: no end tag follows

    def handle_endtag(self, tag):
        assert self._open and self._open[-1] == tag, f"</{tag}> closes {self._open}"
        self._open.pop()
        if tag == "tr" and self._cells:  # the header row has no <td>
            name, size, modified = self._cells
            self.rows.append((self._href, name, size, modified, self._datetime))
            self._href = self._datetime = None
        if tag == "tr":
            self._cells = None

    def handle_data(self, data):
        if "style" in self._open:
            self.style += data
        elif "title" in self._open:
            self.title += data
        elif "h1" in self._open:
            self.heading += data
        elif self._cells is not None and "td" in self._open:
            self._cells[-1] += data


def parse_listing(page):
    """Parse a rendered page, checking it is complete, well-nested UTF-8 HTML."""
    text = page.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>\n")
    parser = ListingParser()
    parser.feed(text)
    parser.close()
    assert parser._open == [], f"unclosed elements: {parser._open}"
    # Only the page's own markup: a name that became a tag would show up here.
    assert set(parser.tags) <= {"html", "head", "meta", "title", "style", "body", "h1",
                                "table", "thead", "tbody", "tr", "th", "td", "a", "time"}
    assert parser.doctype == "DOCTYPE html"
    assert parser.html_attributes == {"lang": "en"}
    assert parser.meta_charset == "utf-8"
    # No external resources: the tag set above has no img, script or link,
    # and the inline CSS loads nothing.
    assert "url(" not in parser.style and "@import" not in parser.style
    return parser


def real_names(parser):
    """The (href, shown name) pairs of a parsed page, without the parent link."""
    return [(href, name) for href, name, _, _, _ in parser.rows if href != "../"]


@pytest.fixture
def directory(tmp_path):
    """A directory holding files, subdirectories, hidden entries, symlinks of
    every kind, a FIFO and awkward names; files and directories share KNOWN_MTIME."""
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "five.txt").write_bytes(b"12345")
    (listed / "Two-KiB.bin").write_bytes(b"x" * 2048)
    (listed / "empty").write_bytes(b"")
    (listed / "sub").mkdir()
    (listed / "Zdir").mkdir()
    (listed / "sub" / "inner.txt").write_bytes(b"inner")
    (listed / ".hidden").write_bytes(b"secret")
    (listed / ".hidden-dir").mkdir()
    for name in AWKWARD_FILE_NAMES:
        (listed / name).write_bytes(name.encode("utf-8"))
    (listed / "dir <&> ?#%").mkdir()
    for child in listed.iterdir():
        os.utime(child, (KNOWN_MTIME, KNOWN_MTIME))
    # Symlinks are listed as what they point to; their own mtime is ignored.
    (listed / "link-to-file").symlink_to("five.txt")
    (listed / "link-to-dir").symlink_to("sub")
    (listed / "dangling").symlink_to("missing")
    (listed / "loop").symlink_to("loop")
    os.mkfifo(listed / "pipe")
    return listed


# --- scan_directory --------------------------------------------------------

def scanned(path, show_hidden=False):
    """name -> (is_directory, size, mtime) of what scan_directory lists."""
    entries = scan_directory(str(path), show_hidden)
    result = {entry.name: (entry.is_directory, entry.size, entry.mtime) for entry in entries}
    assert len(result) == len(entries), "a name was listed twice"
    return result


def test_scan_lists_files_and_directories_with_sizes_and_times(directory):
    """Regular files carry their size, directories none; both their mtime."""
    entries = scanned(directory)
    assert entries["five.txt"] == (False, 5, KNOWN_MTIME)
    assert entries["Two-KiB.bin"] == (False, 2048, KNOWN_MTIME)
    assert entries["empty"] == (False, 0, KNOWN_MTIME)
    assert entries["sub"] == (True, None, KNOWN_MTIME)
    assert entries["Zdir"] == (True, None, KNOWN_MTIME)
    for name in AWKWARD_FILE_NAMES:
        assert entries[name] == (False, len(name.encode("utf-8")), KNOWN_MTIME)


def test_scan_follows_symlinks_and_skips_what_cannot_be_served(directory):
    """Links are listed as their targets; dangling links, loops and a FIFO are
    left out (files.py would answer 404, 404 and 403 for them)."""
    entries = scanned(directory)
    assert entries["link-to-file"] == (False, 5, KNOWN_MTIME)
    assert entries["link-to-dir"] == (True, None, KNOWN_MTIME)
    assert "dangling" not in entries
    assert "loop" not in entries
    assert "pipe" not in entries
    assert set(entries) == {"five.txt", "Two-KiB.bin", "empty", "sub", "Zdir",
                            "dir <&> ?#%", "link-to-file", "link-to-dir", *AWKWARD_FILE_NAMES}


def test_scan_shows_hidden_entries_only_when_asked(directory):
    """Names starting with "." are listed only with show_hidden."""
    assert not [name for name in scanned(directory) if name.startswith(".")]
    shown = scanned(directory, show_hidden=True)
    assert shown[".hidden"] == (False, 6, KNOWN_MTIME)
    assert shown[".hidden-dir"] == (True, None, KNOWN_MTIME)
    assert set(shown) - set(scanned(directory)) == {".hidden", ".hidden-dir"}


def test_scan_skips_names_that_are_not_utf8(tmp_path):
    """A name that is not UTF-8 could neither be requested (paths.py refuses
    it) nor shown on a UTF-8 page: it is left out instead of breaking the page."""
    try:
        descriptor = os.open(os.path.join(os.fsencode(tmp_path), b"bad\xff"),
                             os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError as error:
        if error.errno == errno.EILSEQ:
            pytest.skip("this file system refuses names that are not UTF-8")
        raise
    os.close(descriptor)
    (tmp_path / "good").write_bytes(b"")
    entries = scan_directory(str(tmp_path), show_hidden=True)
    assert [entry.name for entry in entries] == ["good"]
    parse_listing(render_listing("/", entries))


def test_scan_of_an_empty_directory(tmp_path):
    assert scan_directory(str(tmp_path), show_hidden=True) == []


def test_scan_of_a_missing_directory_raises(tmp_path):
    """Only a failure of the directory itself is an error (the executor's
    result), not one of its entries."""
    with pytest.raises(FileNotFoundError):
        scan_directory(str(tmp_path / "missing"), show_hidden=False)


def test_one_entry_failing_to_stat_does_not_stop_the_scan(tmp_path, monkeypatch):
    """An entry that vanishes or errors between readdir and stat is skipped."""
    (tmp_path / "kept").write_bytes(b"ok")
    (tmp_path / "vanishes").write_bytes(b"")
    (tmp_path / "io-error").write_bytes(b"")
    real_scandir = os.scandir

    class FailingEntry:
        def __init__(self, entry, error):
            self.name = entry.name
            self._error = error

        def stat(self, follow_symlinks=True):
            raise self._error

    class Iterator:
        def __init__(self, path):
            self._inner = real_scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._inner.close()

        def __iter__(self):
            for entry in self._inner:
                if entry.name == "vanishes":
                    yield FailingEntry(entry, FileNotFoundError(errno.ENOENT, "gone"))
                elif entry.name == "io-error":
                    yield FailingEntry(entry, OSError(errno.EIO, "I/O error"))
                else:
                    yield entry

    monkeypatch.setattr(autoindex.os, "scandir", Iterator)
    assert [entry.name for entry in scan_directory(str(tmp_path), False)] == ["kept"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can stat through any permission")
def test_an_entry_behind_a_locked_directory_is_skipped(tmp_path):
    """A symlink whose target cannot be stat'ed (EACCES) is skipped, not fatal."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_bytes(b"")
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "blocked").symlink_to(locked / "file")
    (listed / "fine").write_bytes(b"")
    locked.chmod(0)
    try:
        assert [entry.name for entry in scan_directory(str(listed), False)] == ["fine"]
    finally:
        locked.chmod(0o755)


# --- render_listing: names, links, escaping --------------------------------

@pytest.mark.parametrize("show_hidden", [False, True])
def test_every_link_leads_to_the_name_it_shows(directory, show_hidden):
    """After unquoting, each href is "./" + the real name (+ "/" for a
    directory), and the shown text is that same name."""
    entries = scan_directory(str(directory), show_hidden)
    parser = parse_listing(render_listing("/listed/", entries))
    expected = sorted((entry.name + ("/" if entry.is_directory else ""))
                      for entry in entries)
    links = real_names(parser)
    assert sorted(name for _, name in links) == expected
    for href, name in links:
        assert unquote(href, errors="strict") == "./" + name
        # Only unreserved characters and escapes: no "?", "#", ":", quote or space
        # left to be read as something else (RFC 3986 §2.3).
        assert re.fullmatch(r"\./(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})+/?", href), href


def test_links_resolve_through_the_server_to_the_listed_names(directory):
    """Each link, resolved against the page's URL and decoded by
    paths.parse_target, names the listed entry inside the listed directory."""
    entries = scan_directory(str(directory), show_hidden=True)
    parser = parse_listing(render_listing("/listed/", entries))
    by_shown_name = {entry.name + ("/" if entry.is_directory else ""): entry for entry in entries}
    for href, shown in real_names(parser):
        entry = by_shown_name[shown]
        target = urljoin("http://example.test/listed/", href)
        if "\n" in entry.name:
            # paths.py refuses control characters (400): the link is exact,
            # but this server will not serve that name.
            with pytest.raises(PathError):
                parse_target(target, show_hidden=True)
            continue
        path = parse_target(target, show_hidden=True)
        assert path.segments == ["listed", entry.name]
        assert path.directory is entry.is_directory


def test_awkward_names_are_escaped_not_interpreted():
    """Markup characters arrive as text: the raw page holds only their escapes."""
    entries = [Entry(name, False, 1, KNOWN_MTIME) for name in AWKWARD_FILE_NAMES]
    page = render_listing("/", entries)
    parser = parse_listing(page)
    assert sorted(name for _, name in real_names(parser)) == sorted(AWKWARD_FILE_NAMES)
    assert b"<script>" not in page
    assert b">&lt;script&gt;alert(1)<" in page
    assert b">&lt;img src=x onerror=alert(1)&gt;<" in page
    assert b">a&amp;b<" in page
    assert b">&amp;amp;<" in page
    assert b">double&quot;quote<" in page
    assert b">single&#x27;quote<" in page
    assert b'href="./a%3Fb%23c%25d"' in page
    assert b'href="./javascript%3Aalert%281%29"' in page
    assert b'href="./caf%C3%A9%20%E2%98%95%20%F0%9F%98%80"' in page
    assert "café ☕ \U0001F600".encode("utf-8") in page


def test_a_newline_in_a_name_stays_inside_its_link():
    """A newline is legal HTML text: the name is shown exactly and percent-encoded
    in the link, and no row is split or added."""
    page = render_listing("/", [Entry("new\nline", False, 3, KNOWN_MTIME)])
    parser = parse_listing(page)
    assert real_names(parser) == [("./new%0Aline", "new\nline")]
    assert b'<a href="./new%0Aline">new\nline</a>' in page


def test_other_control_characters_are_shown_as_replacement_characters():
    """A CR, ESC or C1 control is not valid HTML text: the page shows U+FFFD,
    while the link still carries the exact name."""
    name = "bell\x07cr\rescape\x1b[31mc1\x85del\x7ftab\tff\x0cend"
    page = render_listing("/", [Entry(name, False, 3, KNOWN_MTIME)])
    parser = parse_listing(page)
    [(href, shown)] = real_names(parser)
    assert unquote(href) == "./" + name
    assert shown == "bell\ufffdcr\ufffdescape\ufffd[31mc1\ufffddel\ufffdtab\tff\x0cend"
    assert not re.search(rb"[\x00-\x08\x0b\x0d-\x1f\x7f]", page)


def test_title_and_heading_escape_the_directory_path():
    """The decoded directory path is shown as text in the title and heading."""
    url_path = "/a <b>&\"'/café/"
    page = render_listing(url_path, [])
    parser = parse_listing(page)
    assert parser.title == "Index of " + url_path
    assert parser.heading == "Index of " + url_path
    assert b"<b>" not in page
    assert b"<title>Index of /a &lt;b&gt;&amp;&quot;&#x27;/caf\xc3\xa9/</title>" in page


# --- render_listing: order, parent link, sizes, times -----------------------

def test_directories_first_then_files_each_in_code_point_order(directory):
    """Directories, then files; within each, code-point order ("Z" < "a")."""
    entries = scan_directory(str(directory), show_hidden=True)
    parser = parse_listing(render_listing("/listed/", entries))
    shown = [name for _, name in real_names(parser)]
    directories = [name for name in shown if name.endswith("/")]
    assert shown[:len(directories)] == directories
    assert directories == [".hidden-dir/", "Zdir/", "dir <&> ?#%/", "link-to-dir/", "sub/"]
    files = shown[len(directories):]
    assert files == sorted(files)
    assert files[:7] == ["%2e%2e", "&amp;", ".hidden", "100%", "<img src=x onerror=alert(1)>",
                         "<script>alert(1)", "Two-KiB.bin"]
    assert files.index("a:b") < files.index("café ☕ \U0001F600")


def test_parent_link_everywhere_but_the_root():
    """A "../" row comes first in any directory below "/", and never at "/"."""
    entries = [Entry("file", False, 1, KNOWN_MTIME)]
    root = parse_listing(render_listing("/", entries))
    assert [href for href, *_ in root.rows] == ["./file"]
    nested = parse_listing(render_listing("/a/b/", entries))
    assert nested.rows[0] == ("../", "../", "-", "", None)
    assert [href for href, *_ in nested.rows] == ["../", "./file"]


def test_an_empty_directory_lists_only_its_parent():
    assert [row[0] for row in parse_listing(render_listing("/", [])).rows] == []
    assert [row[0] for row in parse_listing(render_listing("/empty/", [])).rows] == ["../"]


def test_sizes_and_times_in_the_rows(directory):
    """Files show a human-readable size, directories "-"; times are UTC."""
    entries = scan_directory(str(directory), show_hidden=False)
    parser = parse_listing(render_listing("/listed/", entries))
    rows = {name: (size, modified, machine) for _, name, size, modified, machine in parser.rows}
    assert rows["five.txt"] == ("5 B", "2021-02-03 04:05", "2021-02-03T04:05:06Z")
    assert rows["Two-KiB.bin"] == ("2.0 KiB", "2021-02-03 04:05", "2021-02-03T04:05:06Z")
    assert rows["empty"] == ("0 B", "2021-02-03 04:05", "2021-02-03T04:05:06Z")
    assert rows["sub/"] == ("-", "2021-02-03 04:05", "2021-02-03T04:05:06Z")
    assert rows["link-to-file"][0] == "5 B"
    assert rows["link-to-dir/"][0] == "-"


@pytest.mark.parametrize("mtime, shown, machine", [
    (0, "1970-01-01 00:00", "1970-01-01T00:00:00Z"),
    (KNOWN_MTIME + 0.75, "2021-02-03 04:05", "2021-02-03T04:05:06Z"),
    (-1, "1969-12-31 23:59", "1969-12-31T23:59:59Z"),
    (-62135596800, "0001-01-01 00:00", "0001-01-01T00:00:00Z"),  # years padded to four digits
])
def test_modification_times(mtime, shown, machine):
    [(_, _, _, modified, datetime)] = parse_listing(
        render_listing("/", [Entry("f", False, 0, mtime)])).rows
    assert (modified, datetime) == (shown, machine)


@pytest.mark.parametrize("mtime", [1e20, float("nan"), float("inf")])
def test_an_unrepresentable_time_shows_a_dash(mtime):
    [(_, _, _, modified, datetime)] = parse_listing(
        render_listing("/", [Entry("f", False, 0, mtime)])).rows
    assert (modified, datetime) == ("-", None)


@pytest.mark.parametrize("size, expected", [
    (0, "0 B"),
    (1, "1 B"),
    (1023, "1023 B"),
    (1024, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (10 * 1024 - 1, "10.0 KiB"),
    (1024 * 1024 - 1, "1.0 MiB"),     # rounds up into the next unit, not "1024.0 KiB"
    (1024 * 1024, "1.0 MiB"),
    (5 * 1024 ** 3 + 300 * 1024 ** 2, "5.3 GiB"),
    (1024 ** 4, "1.0 TiB"),
    (1024 ** 5, "1.0 PiB"),
    (1024 ** 6, "1.0 EiB"),
    (4096 * 1024 ** 6, "4096.0 EiB"),  # the largest unit just grows
])
def test_format_size(size, expected):
    assert format_size(size) == expected
