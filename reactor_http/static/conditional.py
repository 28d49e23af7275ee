"""Conditional requests (RFC 9110 §13): validators in, a status or None out.

Pure functions, called on the loop thread once the executor has stat'ed the
file: they compare the request's If-* fields with the file's entity-tag and
modification time and say whether to answer 304 or 412 instead of the body,
and whether an If-Range lets a Range field apply. No I/O here, so every rule
of the precedence table can be tested with plain dicts.

Header values are str decoded as latin-1 (see http_parser.py), so obs-text
(bytes 0x80-0xFF) arrives as the characters U+0080-U+00FF.
"""

import re

from ..http1.dates import format_http_date, parse_http_date

__all__ = ["etag_list_matches", "evaluate_preconditions", "format_http_date", "if_range_allows_range",
           "parse_http_date"]

# §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/";
#   opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
# etagc includes ",", so a list of tags cannot simply be split on commas.
_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7E\x80-\xFF]*")')
# One element of #entity-tag with its surrounding OWS; the tag may be absent,
# since §5.6.1 asks recipients to accept empty list elements ("a, , b").
_LIST_ELEMENT = re.compile(r'[ \t]*(?:(W/)?("[\x21\x23-\x7E\x80-\xFF]*"))?[ \t]*')
_OWS = " \t"

# §13.2.1: conditional fields are ignored for methods that neither select nor
# modify a representation.
_METHODS_WITHOUT_PRECONDITIONS = frozenset(("CONNECT", "OPTIONS", "TRACE"))


def _parse_entity_tag_list(field_value):
    """The (weak, opaque_tag) pairs of a #entity-tag list, or None if the
    list is malformed. Linear: each turn consumes at least one comma."""
    tags = []
    position = 0
    while True:
        match = _LIST_ELEMENT.match(field_value, position)
        if match[2] is not None:
            tags.append((match[1] is not None, match[2]))
        position = match.end()
        if position == len(field_value):
            return tags
        if field_value[position] != ",":
            return None
        position += 1


def etag_list_matches(field_value, etag, strong):
    """Whether an If-Match / If-None-Match value matches ``etag``, the current
    entity-tag (like '"5f1e-576"' or 'W/"x"'; None when there is no current
    representation). ``strong`` picks the comparison function (§8.8.3.2).
    A malformed list matches nothing."""
    if etag is None:
        return False
    field_value = field_value.strip(_OWS)
    # §13.1.1, §13.1.2: "*" matches any current representation.
    if field_value == "*":
        return True
    current = _ENTITY_TAG.fullmatch(etag)
    tags = _parse_entity_tag_list(field_value)
    if current is None or tags is None:
        return False
    current_weak, current_opaque = current[1] is not None, current[2]
    for weak, opaque in tags:
        # §8.8.3.2: strong comparison needs both tags strong and the opaque
        # tags equal; weak comparison needs only the opaque tags equal.
        if opaque == current_opaque and not (strong and (weak or current_weak)):
            return True
    return False


def evaluate_preconditions(method, headers, etag, last_modified):
    """The status that replaces the normal response (304 or 412), or None to
    proceed, following the order of §13.2.2. ``headers`` maps lower-case
    field names to values; ``etag`` and ``last_modified`` (int seconds) are
    the current validators, either may be None.

    Call this only when the response without conditions would be 2xx
    (§13.2.1: otherwise the preconditions are ignored). Steps 5 and 6 of
    §13.2.2 (If-Range, then the normal response) are the caller's."""
    if method in _METHODS_WITHOUT_PRECONDITIONS:
        return None
    is_get_or_head = method in ("GET", "HEAD")
    # Step 1: If-Match, strong comparison (§13.1.1); false -> 412.
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_list_matches(if_match, etag, strong=True):
            return 412
    else:
        # Step 2: If-Unmodified-Since, only when If-Match is absent. Ignored
        # when not a valid date or when there is no modification date
        # (§13.1.4); false (modified after the date) -> 412.
        if_unmodified_since = headers.get("if-unmodified-since")
        if if_unmodified_since is not None and last_modified is not None:
            date = parse_http_date(if_unmodified_since)
            if date is not None and last_modified > date:
                return 412
    # Step 3: If-None-Match, weak comparison (§13.1.2); false (a tag matches)
    # -> 304 for GET/HEAD, 412 for other methods.
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if etag_list_matches(if_none_match, etag, strong=False):
            return 304 if is_get_or_head else 412
    # Step 4: If-Modified-Since, only for GET/HEAD and only when If-None-Match
    # is absent (§13.1.3). An invalid date, or a list of dates, is ignored;
    # false (not modified since the date) -> 304.
    elif is_get_or_head and last_modified is not None:
        if_modified_since = headers.get("if-modified-since")
        if if_modified_since is not None:
            date = parse_http_date(if_modified_since)
            if date is not None and last_modified <= date:
                return 304
    return None


def if_range_allows_range(if_range_value, etag, last_modified):
    """Whether an If-Range value (§13.1.5) lets the Range field apply: an
    entity-tag must match ``etag`` strongly, so a weak tag never does; an
    HTTP-date must equal ``last_modified`` exactly. Anything else -> False,
    and the caller ignores Range and sends the whole representation (200).

    Policy: an exactly matching date counts as a strong validator (§8.8.2.2)
    without checking that the file is at least a second older than the
    response, as nginx does."""
    if_range_value = if_range_value.strip(_OWS)
    # If-Range = entity-tag / HTTP-date; an entity-tag starts with W/ or '"',
    # which no HTTP-date does.
    if if_range_value.startswith(('"', "W/")):
        requested = _ENTITY_TAG.fullmatch(if_range_value)
        current = _ENTITY_TAG.fullmatch(etag) if etag is not None else None
        return (requested is not None and current is not None
                and requested[1] is None and current[1] is None
                and requested[2] == current[2])
    date = parse_http_date(if_range_value)
    return date is not None and last_modified is not None and date == last_modified
