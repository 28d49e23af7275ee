"""Unit tests for content_types.py: a fixed extension table, not the host's mimetypes."""

import pytest

from reactor_http.static.content_types import CONTENT_TYPES, DEFAULT_TYPE, content_type


@pytest.mark.parametrize("name, expected", [
    ("index.html", "text/html; charset=utf-8"),
    ("old.htm", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),        # RFC 9239, not application/javascript
    ("module.mjs", "text/javascript; charset=utf-8"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("data.json", "application/json"),                   # RFC 8259 §11 defines no charset
    ("image.png", "image/png"),
    ("photo.jpeg", "image/jpeg"),
    ("photo.jpg", "image/jpeg"),
    ("font.woff2", "font/woff2"),
    ("module.wasm", "application/wasm"),
    ("archive.tar.gz", "application/gzip"),              # only the last extension counts
    ("v1.2.3.css", "text/css; charset=utf-8"),
])
def test_known_extensions(name, expected):
    """Each known extension maps to its registered type."""
    assert content_type(name) == expected


@pytest.mark.parametrize("name, expected", [
    ("INDEX.HTML", "text/html; charset=utf-8"),
    ("Image.PNG", "image/png"),
    ("script.Js", "text/javascript; charset=utf-8"),
])
def test_extension_case_is_ignored(name, expected):
    """"PHOTO.PNG" from a camera is still a PNG."""
    assert content_type(name) == expected


@pytest.mark.parametrize("name", [
    "Makefile",          # no extension
    "README",
    "file.unknownext",   # unknown extension
    "program.exe",
    "page.html.bak",     # the last extension decides: a backup is not rendered
    "trailing.",         # an empty extension
    ".profile",          # a dotfile: the dot starts the name, it is not an extension
    ".html",             # likewise, even when the name looks like an extension
    ".",
    "",
])
def test_unknown_is_octet_stream(name):
    """Anything not in the table is application/octet-stream, which a browser
    downloads rather than renders (RFC 9110 §8.3)."""
    assert content_type(name) == DEFAULT_TYPE == "application/octet-stream"


def test_dotfile_with_an_extension_uses_it():
    """".eslintrc.json" does have an extension, after its leading dot."""
    assert content_type(".eslintrc.json") == "application/json"


def test_every_text_type_declares_utf8():
    """Text types carry charset=utf-8 (RFC 9110 §8.3.1), so a browser does not
    guess the encoding; non-text types carry no charset."""
    for extension, value in CONTENT_TYPES.items():
        if value.startswith("text/") or value == "image/svg+xml; charset=utf-8":
            assert value.endswith("; charset=utf-8"), extension
        else:
            assert "charset" not in value, extension
        # Every value is a bare type/subtype, optionally with the one parameter.
        media_type = value.split(";")[0]
        assert media_type.count("/") == 1 and media_type == media_type.strip().lower(), extension


def test_table_keys_are_lowercase_extensions():
    """Lookups lowercase the extension, so an uppercase key could never match."""
    for extension in CONTENT_TYPES:
        assert extension == extension.lower() and "." not in extension and extension
