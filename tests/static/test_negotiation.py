"""Unit tests for negotiation.py: Accept-Encoding -> the codings to try, best first.

The table pins down RFC 9110 §12.5.3 as this server reads it: q ordering,
server preference on ties, "*", q=0 exclusions, the x-gzip alias, case, and
members that are ignored because they do not match the grammar. A property
test checks that no header value, however odd, makes it raise or invent a
coding the file does not have.
"""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reactor_http.static.negotiation import (
    PRECOMPRESSED_SUFFIXES,
    SERVER_PREFERENCE,
    acceptable_encodings,
    is_compressible,
)

ALL = {"br", "zstd", "gzip"}


def test_public_constants():
    """The suffixes and order the integrator relies on; each preferred coding
    has exactly one sibling-file suffix."""
    assert PRECOMPRESSED_SUFFIXES == {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
    assert SERVER_PREFERENCE == ("br", "zstd", "gzip")


@pytest.mark.parametrize("accept_encoding, expected", [
    # Absent field: any coding is acceptable (§12.5.3), but we send identity.
    (None, []),
    # Empty field: the client wants no coding at all (§12.5.3).
    ("", []),
    (" ", []),
    (",", []),
    # Plain lists: all at q=1, so server preference decides.
    ("gzip", ["gzip"]),
    ("gzip, deflate, br", ["br", "gzip"]),
    ("gzip, deflate, br, zstd", ["br", "zstd", "gzip"]),
    ("zstd, gzip", ["zstd", "gzip"]),
    ("deflate, compress", []),
    # Higher q wins over server preference.
    ("gzip;q=1, br;q=0.5", ["gzip", "br"]),
    ("br;q=0.1, zstd;q=0.2, gzip;q=0.3", ["gzip", "zstd", "br"]),
    ("br;q=0.999, gzip", ["gzip", "br"]),
    ("gzip;q=0.001", ["gzip"]),                      # the smallest positive weight
    # Equal q, however spelled: server preference breaks the tie.
    ("gzip;q=0.5, br;q=0.50, zstd;q=0.500", ["br", "zstd", "gzip"]),
    ("gzip;q=1.000, br;q=1.", ["br", "gzip"]),
    # "*" stands for every coding not listed (§12.5.3).
    ("*", ["br", "zstd", "gzip"]),
    ("*;q=0.5, gzip", ["gzip", "br", "zstd"]),
    ("gzip;q=0.2, *;q=0.5", ["br", "zstd", "gzip"]),
    ("*;q=0", []),
    ("br, *;q=0", ["br"]),
    # q=0 means "not acceptable" (§12.4.2), even when "*" would allow it.
    ("gzip;q=0, *", ["br", "zstd"]),
    ("*, gzip;q=0", ["br", "zstd"]),                 # order of members does not matter
    ("br;q=0, gzip", ["gzip"]),
    ("br;q=0.000, zstd;q=0., gzip", ["gzip"]),
    ("gzip;q=0", []),
    # identity is never in `available`: it neither adds nor removes a coding.
    ("identity", []),
    ("identity;q=0", []),
    ("identity, gzip;q=0.5", ["gzip"]),
    ("identity;q=0, *", ["br", "zstd", "gzip"]),
    # x-gzip is gzip (§8.4.1.3).
    ("x-gzip", ["gzip"]),
    ("X-GZIP;q=0.5, br", ["br", "gzip"]),
    ("x-gzip;q=0, *", ["br", "zstd"]),
    # Codings, and the "q" of the weight, are case-insensitive.
    ("GZIP, Br", ["br", "gzip"]),
    ("gZiP;Q=0.5, zStD", ["zstd", "gzip"]),
    # OWS around members and around ";" (§5.6.3, §12.4.2), tabs included.
    ("  gzip ;  q=0.5 ,\tbr\t", ["br", "gzip"]),
    ("gzip;q=0.5 , br ; q=0.7", ["br", "gzip"]),
    # Empty list elements are tolerated (§5.6.1).
    (",, gzip ,, , br,", ["br", "gzip"]),
    # Invalid q values make that member invalid: it is ignored, the rest stands.
    ("gzip;q=2, br", ["br"]),
    ("gzip;q=1.5, br", ["br"]),
    ("gzip;q=1.001, br", ["br"]),
    ("gzip;q=abc, br", ["br"]),
    ("gzip;q=0.1234, br", ["br"]),                   # at most three decimals
    ("gzip;q=-0.5, br", ["br"]),
    ("gzip;q=.5, br", ["br"]),
    ("gzip;q=, br", ["br"]),
    ("gzip;q, br", ["br"]),
    ("gzip;q = 0.5, br", ["br"]),                    # no whitespace around "="
    ("gzip;q=0.5;q=0.6, br", ["br"]),                # one weight at most
    ("gzip;level=9, br", ["br"]),                    # no other parameters
    ("gzip;, br", ["br"]),
    ("gzip;q=٠.5, br", ["br"]),                      # only ASCII digits
    # An ignored q=0 member excludes nothing: "*" still covers gzip.
    ("gzip;q=0.0000, *", ["br", "zstd", "gzip"]),
    # Members that are not tokens are ignored.
    ("g zip, br", ["br"]),
    ('"gzip", br', ["br"]),
    ("gzip\x00, br", ["br"]),
    ("gzİp, br", ["br"]),
    ("\u212a, gzip", ["gzip"]),                     # the Kelvin sign lowers to "k", still no token
    # A coding listed twice keeps its first weight (a documented policy).
    ("gzip;q=0.1, br;q=0.5, gzip", ["br", "gzip"]),
    ("gzip, gzip;q=0", ["gzip"]),
    ("gzip;q=0, x-gzip", []),
    # Unknown codings with high weights do not disturb the ranking.
    ("compress, deflate;q=1, gzip;q=0.3", ["gzip"]),
])
def test_acceptable_encodings_with_all_codings_available(accept_encoding, expected):
    """The available codings the client accepts, in the order to try them."""
    assert acceptable_encodings(accept_encoding, ALL) == expected


@pytest.mark.parametrize("accept_encoding, available, expected", [
    ("gzip, br, zstd", {"gzip"}, ["gzip"]),
    ("gzip, br, zstd", set(), []),
    ("br", {"gzip", "zstd"}, []),
    ("*", {"zstd"}, ["zstd"]),
    ("gzip;q=0.5, *", {"gzip", "zstd"}, ["zstd", "gzip"]),
    ("br;q=0.2, gzip;q=0.9", frozenset({"br", "gzip"}), ["gzip", "br"]),
    # A name outside SERVER_PREFERENCE in `available` is never returned.
    ("deflate, gzip", {"deflate", "gzip"}, ["gzip"]),
])
def test_only_available_codings_are_returned(accept_encoding, available, expected):
    """Codings the file has no sibling for are never offered, whatever the client says."""
    assert acceptable_encodings(accept_encoding, available) == expected


coding_names = st.sampled_from(
    ["gzip", "GZIP", "x-gzip", "br", "zstd", "*", "identity", "deflate", "", " "])
weights = st.sampled_from(
    ["", ";q=0", ";q=1", ";q=0.5", ";q=0.001", ";Q=1.000", ";q=2", ";q=x", ";", " ; q=0.3 "])
structured_fields = st.lists(st.tuples(coding_names, weights)).map(
    lambda members: ",".join(name + weight for name, weight in members))


@given(accept_encoding=st.one_of(st.none(), st.text(), structured_fields),
       available=st.sets(st.sampled_from(["br", "zstd", "gzip"])))
@example(accept_encoding="gzip;q=0.5;", available={"gzip"})
@example(accept_encoding="\ud800;q=1", available={"gzip"})
def test_never_raises_and_returns_a_subset_without_duplicates(accept_encoding, available):
    """Any field value gives a duplicate-free list of available codings, in a
    fixed preference order when all weights are equal."""
    result = acceptable_encodings(accept_encoding, available)
    assert isinstance(result, list)
    assert set(result) <= available
    assert len(result) == len(set(result))


@given(accept_encoding=structured_fields)
def test_a_plain_list_follows_server_preference(accept_encoding):
    """With no weights at all, the result is in SERVER_PREFERENCE order."""
    plain = ",".join(member.split(";")[0] for member in accept_encoding.split(","))
    result = acceptable_encodings(plain, {"br", "zstd", "gzip"})
    assert result == [coding for coding in SERVER_PREFERENCE if coding in result]


@pytest.mark.parametrize("content_type, expected", [
    ("text/html; charset=utf-8", True),
    ("text/plain", True),
    ("text/css; charset=utf-8", True),
    ("text/javascript; charset=utf-8", True),
    ("TEXT/CSV", True),                              # media types are case-insensitive
    ("application/json", True),
    ("application/javascript", True),
    ("application/xml", True),
    ("image/svg+xml; charset=utf-8", True),
    ("application/manifest+json", True),
    ("application/wasm", True),
    (" application/JSON ;charset=utf-8", True),
    ("image/png", False),
    ("image/jpeg", False),
    ("image/webp", False),
    ("video/mp4", False),
    ("audio/mpeg", False),
    ("font/woff2", False),
    ("application/zip", False),
    ("application/gzip", False),
    ("application/pdf", False),
    ("application/octet-stream", False),
    ("text/", False),
    ("text", False),
    ("textual/plain", False),
    ("application/jsonx", False),
    ("", False),
    (None, False),
])
def test_is_compressible(content_type, expected):
    """Text and text-like types are worth gzipping; already-compressed media is not."""
    assert is_compressible(content_type) is expected


def test_is_compressible_agrees_with_the_content_type_table():
    """Every text type the server sends is compressed; no image (but SVG), audio,
    video, font or archive type is."""
    from reactor_http.static.content_types import CONTENT_TYPES
    for extension, value in CONTENT_TYPES.items():
        media_type = value.split(";")[0]
        if media_type.startswith("text/") or media_type == "image/svg+xml":
            assert is_compressible(value), extension
        elif media_type.split("/")[0] in ("image", "audio", "video", "font"):
            assert not is_compressible(value), extension
        elif media_type in ("application/zip", "application/gzip", "application/x-tar"):
            assert not is_compressible(value), extension
