"""Unit tests for paths.py: request target -> decoded path segments, or PathError.

parse_target is the loop thread's first line of defence: what it lets through
is joined onto the document root by files.py. These tables pin down what it
decodes, what it refuses (and with which status), and that url_path(), used to
build redirect Locations, can never name another host.
"""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reactor_http.static.paths import WELL_KNOWN, PathError, RequestPath, is_hidden, parse_target


def parsed(target, show_hidden=False):
    """(segments, directory, query) of a target, for compact table rows."""
    path = parse_target(target, show_hidden)
    return path.segments, path.directory, path.query


def refusal_status(target, show_hidden=False):
    """The status of the PathError a target raises; fails if none is raised."""
    with pytest.raises(PathError) as caught:
        parse_target(target, show_hidden)
    return caught.value.status


# --- decoding -------------------------------------------------------------

@pytest.mark.parametrize("target, segments, directory", [
    ("/", [], True),
    ("/index.html", ["index.html"], False),
    ("/a/b/", ["a", "b"], True),
    ("/a%20b.txt", ["a b.txt"], False),
    ("/caf%C3%A9", ["café"], False),                 # UTF-8, two bytes
    ("/%E2%82%AC", ["€"], False),                    # three bytes
    ("/%F0%9F%98%80", ["\U0001F600"], False),        # four bytes
    ("/caf%c3%A9", ["café"], False),                 # hex digits in either case
    ("/a%2Fb", ["a", "b"], False),                   # %2F is a separator once decoded
    ("/a%2fb%2F", ["a", "b"], True),
    ("/a%23b", ["a#b"], False),                      # an encoded "#" is just a name
    ("/a%3Fb", ["a?b"], False),                      # likewise "?"
    ("/100%25", ["100%"], False),
    ("/a+b", ["a+b"], False),                        # "+" is not a space in a path
    ("/caf\u00e9", ["café"], False),                 # already-decoded text passes through
])
def test_decoding(target, segments, directory):
    """Percent-escapes decode as UTF-8 bytes (RFC 3986 §2.1, §2.5), in either case."""
    assert parsed(target) == (segments, directory, "")


@pytest.mark.parametrize("target", [
    "/%", "/a%", "/%2", "/a%2", "/%zz", "/%G0", "/%0G", "/%%41", "/%-1", "/% 2",
])
def test_malformed_percent_escape_is_400(target):
    """A "%" not followed by two hex digits is malformed (RFC 3986 §2.1)."""
    assert refusal_status(target) == 400


@pytest.mark.parametrize("target", [
    "/%C3",          # a lead byte with no continuation
    "/%FF",          # never valid in UTF-8
    "/%C3%28",       # a lead byte followed by a non-continuation byte
    "/%80",          # a lone continuation byte
    "/%C0%AF",       # overlong "/": the classic sanitiser bypass
    "/%C0%AE%C0%AE", # overlong ".."
    "/%ED%A0%80",    # an encoded UTF-16 surrogate
    "/a\ud800",      # a lone surrogate in the str itself (never from the wire)
    "/%41\udfff",
])
def test_invalid_utf8_is_400(target):
    """Only strict UTF-8 decodes; overlong forms must not sneak a "/" or "." through."""
    assert refusal_status(target) == 400


@pytest.mark.parametrize("target", [
    "/%00", "/a%00.html", "/index.html%00.txt", "/%01", "/%09", "/a%0Ab", "/%0D%0A",
    "/%1F", "/%7F", "/a\x00b", "/a\x7f",
])
def test_control_characters_are_400(target):
    """NUL (which would truncate a C path) and other controls never reach the disk."""
    assert refusal_status(target) == 400


# --- traversal ------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/..",
    "/../etc/passwd",
    "/a/../../b",
    "/a/../b",              # even when it would stay inside the root: refused, not fixed up
    "/a/..",                # ".." as the last segment
    "/a/../",
    "/%2e%2e",
    "/%2E%2e/",
    "/%2e%2e%2fetc%2fpasswd",
    "/a/%2e%2e/%2e%2e/etc",
    "/.%2e/x",
    "/a%2F..%2F..%2Fetc",
    "http://host/../etc/passwd",
    "..",                   # also not a path at all
    "%2E%2e/",
])
def test_dot_dot_is_400(target):
    """".." is refused after decoding, wherever it appears (RFC 3986 §5.2.4 is
    not applied: a client that sends ".." is not a browser)."""
    assert refusal_status(target) == 400
    assert refusal_status(target, show_hidden=True) == 400


@pytest.mark.parametrize("target, segments, directory", [
    ("/./a", ["a"], False),
    ("//a//b", ["a", "b"], False),
    ("///", [], True),
    ("/a/./b/.", ["a", "b"], True),   # a final "." names the directory itself
    ("/a/%2e", ["a"], True),
    ("/.", [], True),                 # never the root without its slash (see test_url_path)
    ("/./", [], True),
])
def test_empty_and_single_dot_segments_normalise(target, segments, directory):
    """"//" and "/./" mean "/" (RFC 3986 §5.2.4); a final "." means a trailing slash."""
    assert parsed(target) == (segments, directory, "")


@pytest.mark.parametrize("target, segments", [
    ("/...", ["..."]),
    ("/..a", ["..a"]),
    ("/a/.../b", ["a", "...", "b"]),
])
def test_dot_prefixed_names_are_hidden_not_traversal(target, segments):
    """"..." and "..a" are ordinary names: not traversal (no 400), but hidden
    because they start with "." (404 unless show_hidden)."""
    assert refusal_status(target) == 404
    assert parsed(target, show_hidden=True) == (segments, False, "")


# --- hidden files ---------------------------------------------------------

@pytest.mark.parametrize("target, segments", [
    ("/.git/config", [".git", "config"]),
    ("/.env", [".env"]),
    ("/a/.hidden/b", ["a", ".hidden", "b"]),
    ("/%2Egit/HEAD", [".git", "HEAD"]),      # encoding the dot does not help
    ("/.well-known/.secret", [".well-known", ".secret"]),
    ("/a/.well-known/x", ["a", ".well-known", "x"]),
])
def test_hidden_paths_are_404_unless_shown(target, segments):
    """A dot-segment is answered 404, as if absent; --show-hidden serves it."""
    assert refusal_status(target) == 404
    assert parsed(target, show_hidden=True) == (segments, False, "")


@pytest.mark.parametrize("target, segments, directory", [
    ("/.well-known/security.txt", [".well-known", "security.txt"], False),
    ("/.well-known/", [".well-known"], True),
    ("//.well-known/acme-challenge/token", [".well-known", "acme-challenge", "token"], False),
])
def test_well_known_is_public(target, segments, directory):
    """RFC 8615 §3: /.well-known/ at the top of the path is meant to be fetched."""
    assert parsed(target) == (segments, directory, "")


@pytest.mark.parametrize("relative_path, hidden", [
    ("index.html", False),
    ("a/b/c.txt", False),
    (".git/config", True),
    ("a/.hidden/b", True),
    ("a/.env", True),
    (".well-known/security.txt", False),
    (".well-known/.secret", True),
    ("a/.well-known/x", True),
    ("...", True),
])
def test_is_hidden(relative_path, hidden):
    """is_hidden applies the same rule to a resolved path relative to the root."""
    assert is_hidden(relative_path) is hidden


# --- target forms, query and fragment --------------------------------------

@pytest.mark.parametrize("target, segments, directory, query", [
    ("/a?x=1", ["a"], False, "x=1"),
    ("/a/?x=1&y=2", ["a"], True, "x=1&y=2"),
    ("/?", [], True, ""),
    ("/a?b?c", ["a"], False, "b?c"),
    ("/a?x=%zz&y=..", ["a"], False, "x=%zz&y=.."),   # the query is not decoded or checked
    ("/a?x=#y", ["a"], False, "x=#y"),
    ("/a?p=/../etc", ["a"], False, "p=/../etc"),     # ".." in the query is not a path
])
def test_query_is_split_off_and_kept(target, segments, directory, query):
    """The query never reaches the file name; it is kept raw for redirects."""
    assert parsed(target) == (segments, directory, query)


@pytest.mark.parametrize("target", ["/a#b", "/#", "/a/#frag?x=1"])
def test_fragment_in_path_is_400(target):
    """A fragment is never sent in a request target (RFC 9110 §4.2.5, RFC 9112 §3.2)."""
    assert refusal_status(target) == 400


@pytest.mark.parametrize("target, segments, directory, query", [
    ("http://host/path?q", ["path"], False, "q"),
    ("http://host.example:8080/a/b/", ["a", "b"], True, ""),
    ("HTTPS://h:80", [], True, ""),
    ("HtTp://h?x=1", [], True, "x=1"),
    ("http:///a", ["a"], False, ""),
    ("http://host//evil.example/", ["evil.example"], True, ""),
    ("http://user@host/a%20b", ["a b"], False, ""),
])
def test_absolute_form_is_served_by_its_path(target, segments, directory, query):
    """RFC 9112 §3.2.2: a server must accept absolute-form; its authority is ignored."""
    assert parsed(target) == (segments, directory, query)


@pytest.mark.parametrize("target, status", [
    ("http://host/.git/config", 404),
    ("http://host/%2e%2e/x", 400),
    ("http://host#frag", 400),
])
def test_absolute_form_path_gets_the_same_checks(target, status):
    """The path of an absolute-form target is sanitised like any other."""
    assert refusal_status(target) == status


@pytest.mark.parametrize("target", [
    "", "*", "a", "a/b", "index.html", "ftp://host/x", "http:/x", "http//host/x",
    "httpx://host/x", "host:80", "\\etc\\passwd", "?x=1", "#x",
])
def test_target_not_starting_with_slash_is_400(target):
    """Only origin-form and absolute-form name a file; "*" is for OPTIONS only
    (RFC 9112 §3.2.4) and authority-form for CONNECT (§3.2.3)."""
    assert refusal_status(target) == 400


def test_path_error_carries_status_and_detail():
    """PathError is an Exception whose status and detail become the response."""
    with pytest.raises(PathError) as caught:
        parse_target("/%zz")
    assert caught.value.status == 400
    assert caught.value.detail == "malformed percent-encoding"
    assert str(caught.value) == "malformed percent-encoding"
    # A hidden file is answered exactly like a missing one: no detail to leak.
    with pytest.raises(PathError) as caught:
        parse_target("/.env")
    assert (caught.value.status, caught.value.detail) == (404, None)


# --- url_path -------------------------------------------------------------

@pytest.mark.parametrize("target, url_path", [
    ("/", "/"),
    ("/.", "/"),
    ("///", "/"),
    ("/a/b", "/a/b"),
    ("/a/b/", "/a/b/"),
    ("//evil.example/", "/evil.example/"),      # not a network-path reference
    ("//evil.example", "/evil.example"),
    ("///evil.example//x", "/evil.example/x"),
    ("/%2F%2Fevil.example", "/evil.example"),
    ("http://host//evil.example/", "/evil.example/"),
    ("/a%20b", "/a%20b"),
    ("/caf%C3%A9/", "/caf%C3%A9/"),
    ("/caf\u00e9", "/caf%C3%A9"),
    ("/a%23b%3Fc", "/a%23b%3Fc"),
    ("/100%25", "/100%25"),
    ("/a%5Cb", "/a%5Cb"),                       # backslash stays encoded
    ("/a:b@c!$&'()*+,;=~", "/a:b@c!$&'()*+,;=~"),  # pchar sub-delims stay (RFC 3986 §3.3)
    ("/a?x=1", "/a"),                           # the query is not part of it
    ("/.well-known/x", "/.well-known/x"),
])
def test_url_path(target, url_path):
    """url_path() is the canonical encoded path: one leading "/", never "//"."""
    assert parse_target(target).url_path() == url_path


@pytest.mark.parametrize("segments, directory, url_path", [
    ([], True, "/"),
    ([], False, "/"),
    (["a b", "ü"], False, "/a%20b/%C3%BC"),
    (["a", "b"], True, "/a/b/"),
])
def test_url_path_of_constructed_request_path(segments, directory, url_path):
    """RequestPath can be built directly (as static.py's callers may) and still encodes."""
    assert RequestPath(segments, directory, "").url_path() == url_path


@pytest.mark.parametrize("target", [
    "/", "/a/b/", "/a%20b/c%C3%A9", "/100%25/%23/%3F", "/%E2%82%AC.txt", "/.well-known/x",
    "/a/./b/.", "http://h/x/",
])
def test_url_path_round_trips(target):
    """Parsing url_path() again gives back the same segments and directory flag."""
    first = parse_target(target)
    second = parse_target(first.url_path())
    assert (second.segments, second.directory) == (first.segments, first.directory)


# --- property test --------------------------------------------------------

# Characters that matter to the sanitiser, mixed with arbitrary text (lone
# surrogates included: a str can hold them even though the wire cannot).
_INTERESTING = st.sampled_from(list("/.%?#\\:@ +~") + ["%2e", "%2E", "%2f", "%2F", "%00", "%C3",
                                                        "%A9", "%zz", "..", ".well-known", "http://h"])
_ANY_CHARACTER = st.characters(blacklist_categories=())
_TARGETS = st.lists(st.one_of(_INTERESTING, _ANY_CHARACTER, st.text(max_size=4)), max_size=20).map("".join)


@settings(max_examples=600, deadline=None)
@given(body=_TARGETS, slash=st.booleans(), show_hidden=st.booleans())
@example(body="/evil.example/", slash=True, show_hidden=False)
@example(body=".", slash=True, show_hidden=False)
@example(body="a\ud800", slash=True, show_hidden=False)
@example(body="%41\ud800", slash=True, show_hidden=False)
def test_parse_target_never_yields_a_dangerous_segment(body, slash, show_hidden):
    """For any text, parse_target raises PathError (400/404) or returns safe
    segments whose url_path() starts with one "/" and parses back the same."""
    target = ("/" if slash else "") + body
    try:
        path = parse_target(target, show_hidden)
    except PathError as error:
        assert error.status in (400, 404)
        return
    for segment in path.segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment and "\x00" not in segment
        if not show_hidden:
            assert not segment.startswith(".") or segment == WELL_KNOWN
    if not show_hidden:
        assert WELL_KNOWN not in path.segments[1:]
    url_path = path.url_path()
    assert url_path.startswith("/") and not url_path.startswith("//")
    assert url_path.isascii()
    again = parse_target(url_path, show_hidden)
    assert (again.segments, again.directory) == (path.segments, path.directory)
