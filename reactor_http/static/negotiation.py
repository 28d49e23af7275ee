"""Content negotiation for Accept-Encoding: which stored coding to send.

A file may sit beside precompressed siblings ("app.js.br", "app.js.gz"). This
pure module reads the request's Accept-Encoding field (RFC 9110 §12.5.3) and
says which of those codings the client accepts, best first; the caller then
opens the first sibling that exists, or the file itself. It also says which
content types are worth compressing on the fly. No I/O, so it runs on the loop
thread and is fuzzed.
"""

import re

# The sibling file that holds each coding of a file.
PRECOMPRESSED_SUFFIXES = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}

# Policy: when the client likes several codings equally, send the smallest:
# brotli, then zstd, then gzip.
SERVER_PREFERENCE = ("br", "zstd", "gzip")

# RFC 9110 §8.4.1.3: a recipient SHOULD consider "x-gzip" equivalent to "gzip".
_ALIASES = {"x-gzip": "gzip"}

# content-coding is a token (RFC 9110 §5.6.2, §8.4.1).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 9110 §12.4.2:
#   qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

_WHITESPACE = " \t"  # OWS is spaces and tabs only (RFC 9110 §5.6.3)


def acceptable_encodings(accept_encoding, available):
    """The codings in ``available`` that the client accepts, best first.

    ``accept_encoding`` is the field value, or None when the field is absent;
    ``available`` is a set drawn from SERVER_PREFERENCE (other names are
    ignored). Higher q comes first; equal q falls back to SERVER_PREFERENCE.
    An empty list means "send the identity (unencoded) file". Never raises.
    """
    if accept_encoding is None:
        # RFC 9110 §12.5.3: no field means any coding is acceptable. Policy:
        # send identity anyway, as every common server does, since a client
        # that sent no field may well not decode anything.
        return []
    # An empty field value means "no coding, please" (§12.5.3): the loop below
    # finds no member and returns [].
    weights = {}
    for member in accept_encoding.split(","):
        if not member.strip(_WHITESPACE):
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        parsed = _parse_member(member)
        if parsed is None:
            continue  # an invalid member is ignored, not the whole field
        coding, weight = parsed
        # Policy: a coding listed twice keeps its first weight (the RFC says
        # nothing; the client is confused either way).
        weights.setdefault(coding, weight)
    # "*" matches any coding not listed explicitly (§12.5.3); unlisted and no
    # "*" means not acceptable.
    wildcard_weight = weights.get("*", 0)
    ranked = []
    for rank, coding in enumerate(SERVER_PREFERENCE):
        if coding in available:
            weight = weights.get(coding, wildcard_weight)
            if weight > 0:  # q=0 means "not acceptable" (§12.4.2)
                ranked.append((-weight, rank, coding))
    ranked.sort()
    # "identity;q=0" or "*;q=0" also refuses the unencoded file, and the RFC
    # would allow a 406 then. Policy: return [] and send identity anyway, as
    # nginx and Apache do; a readable body beats an error page.
    return [coding for _, _, coding in ranked]


def _parse_member(member):
    """(lowercase coding, weight in thousandths) of one list member, or None
    if it does not match ``codings [ weight ]`` (RFC 9110 §12.5.3)."""
    coding, *parameters = member.split(";")
    coding = coding.strip(_WHITESPACE)
    if not _TOKEN.fullmatch(coding):  # checked before lower(), which maps some non-ASCII to ASCII
        return None
    coding = coding.lower()  # codings are case-insensitive (§8.4.1)
    if not parameters:
        return _ALIASES.get(coding, coding), 1000
    # The only parameter allowed here is the weight: OWS ";" OWS "q=" qvalue.
    if len(parameters) > 1:
        return None
    name, equals, value = parameters[0].strip(_WHITESPACE).partition("=")
    if name not in ("q", "Q") or not equals or not _QVALUE.fullmatch(value):
        return None
    whole, _, fraction = value.partition(".")
    weight = int(whole) * 1000 + int((fraction + "000")[:3])
    return _ALIASES.get(coding, coding), weight


# Types whose bodies shrink well under gzip. Policy: everything else (images,
# audio, video, fonts, archives) is already compressed, and a second pass only
# costs CPU.
_COMPRESSIBLE_TYPES = frozenset((
    "application/json",
    "application/javascript",
    "application/xml",
    "application/manifest+json",
    "application/wasm",  # bytecode, not compressed: it typically halves
    "image/svg+xml",
))


def is_compressible(content_type):
    """Whether a response of this Content-Type is worth gzipping on the fly.

    Parameters such as "; charset=utf-8" are ignored; media types are
    case-insensitive (RFC 9110 §8.3.1).
    """
    if not content_type:
        return False
    media_type = content_type.partition(";")[0].strip(_WHITESPACE).lower()
    if media_type.startswith("text/") and len(media_type) > len("text/"):
        return True
    return media_type in _COMPRESSIBLE_TYPES
