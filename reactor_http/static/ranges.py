"""Range requests (RFC 9110 §14): a Range field in, byte offsets out.

Pure functions, called on the loop thread once the file's size is known:
parse_range turns "bytes=0-99,-500" into sorted inclusive (first, last)
offsets, or says to ignore the field (200) or that nothing is satisfiable
(416); multipart_layout plans a multipart/byteranges body as head bytes
around file slices, so the connection can still send each slice straight
from the file and announce an exact Content-Length up front.
"""

import re
import secrets

# Policy: more ranges than this, after coalescing, and the Range field is
# ignored (a 200 with the whole file). §14.2 lets a server ignore a Range
# with many small ranges, an amplification and DoS tool; Apache's default
# MaxRanges is 200, and 16 is ample for real clients (PDF readers, media).
MAX_RANGES = 16

# Policy: a position longer than this is refused as bad syntax. 18 digits
# already exceed any real file size, and the cap keeps int() cheap.
_MAX_DIGITS = 18

# §14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length;
# each position is 1*DIGIT. [0-9], not \d, which would accept non-ASCII digits.
_RANGE_SPEC = re.compile(rf"([0-9]{{1,{_MAX_DIGITS}}})?-([0-9]{{1,{_MAX_DIGITS}}})?")
_OWS = " \t"


class _Unsatisfiable:
    """The type of UNSATISFIABLE; a named singleton reads better than a flag."""

    __slots__ = ()

    def __repr__(self):
        return "UNSATISFIABLE"


# parse_range's answer when the syntax is valid but no range is satisfiable
# (answer 416 with Content-Range: unsatisfied_range(size), §15.5.17).
UNSATISFIABLE = _Unsatisfiable()


def parse_range(value, size):
    """Resolve a Range field value against a representation of ``size`` bytes.

    Returns None to ignore the field (bad syntax, a unit other than bytes,
    more than MAX_RANGES ranges), UNSATISFIABLE, or a non-empty list of
    inclusive (first, last) offsets, with overlapping or adjacent ranges
    merged, in the order the client asked for them. Never raises for a str."""
    # §14.1.1: ranges-specifier = range-unit "=" range-set; the unit is
    # case-insensitive and the only one defined is "bytes" (§14.1.2).
    unit, equals, range_set = value.strip(_OWS).partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    satisfiable = []
    saw_range_spec = False
    saw_nonzero_suffix = False
    for element in range_set.split(","):
        # §5.6.1: OWS around commas and empty list elements are accepted,
        # but range-set = 1#range-spec needs at least one real element.
        element = element.strip(_OWS)
        if not element:
            continue
        match = _RANGE_SPEC.fullmatch(element)
        if match is None:
            return None
        saw_range_spec = True
        first_text, last_text = match.groups()
        if first_text is None:
            if last_text is None:
                return None  # a lone "-"
            # §14.1.2: a suffix-range asks for the last n bytes, or the whole
            # representation when it is shorter than n; n == 0 is unsatisfiable.
            suffix_length = int(last_text)
            if suffix_length > 0:
                saw_nonzero_suffix = True
                if size > 0:
                    satisfiable.append((max(0, size - suffix_length), size - 1))
            continue
        first = int(first_text)
        last = size - 1 if last_text is None else int(last_text)
        # §14.1.1: a range-spec whose last-pos is below its first-pos is invalid.
        if last_text is not None and last < first:
            return None
        # §14.1.2: an int-range is satisfiable only if it starts inside the
        # representation; a last-pos beyond the end is clipped to the end.
        if first < size:
            satisfiable.append((first, min(last, size - 1)))
    if not saw_range_spec:
        return None
    if not satisfiable:
        # §14.1.2 counts a non-zero suffix-range satisfiable even against zero
        # bytes, yet a 206 cannot carry an empty range; §14.2 lets a server
        # ignore Range when the representation has no content, so: a 200.
        if size == 0 and saw_nonzero_suffix:
            return None
        return UNSATISFIABLE
    # §14.6 lets a server coalesce overlapping ranges whatever their order:
    # sorting and merging means "bytes=0-,0-,0-" costs one pass over the
    # file, not one per copy. Each merged range then takes the place of the
    # earliest range-spec in it, because §15.3.7.2 says the parts SHOULD come
    # in the order the client asked for them.
    ordered = sorted((first, last, position) for position, (first, last) in enumerate(satisfiable))
    merged = [list(ordered[0])]
    for first, last, position in ordered[1:]:
        previous = merged[-1]
        if first <= previous[1] + 1:
            previous[1] = max(previous[1], last)
            previous[2] = min(previous[2], position)
        else:
            merged.append([first, last, position])
    if len(merged) > MAX_RANGES:
        return None
    merged.sort(key=lambda entry: entry[2])
    return [(first, last) for first, last, _ in merged]


def content_range(first, last, size):
    """The Content-Range value of a 206 part (§14.4): "bytes 0-99/1000"."""
    return f"bytes {first}-{last}/{size}"


def unsatisfied_range(size):
    """The Content-Range value of a 416 (§14.4, §15.5.17): "bytes */1000"."""
    return f"bytes */{size}"


def make_boundary():
    """A fresh multipart boundary: 32 hex digits, token-safe and within the
    70 characters RFC 2046 §5.1.1 allows. Random, so that a file's bytes
    cannot be crafted to contain the delimiter."""
    return secrets.token_hex(16)


def multipart_layout(ranges, size, content_type, boundary):
    """Plan a multipart/byteranges body (§14.6) for ``ranges`` of a file of
    ``size`` bytes.

    Returns (parts, closing, total_length): ``parts`` is a list of
    (head_bytes, first, last) where the body is each head followed by bytes
    first..last of the file, then ``closing``; ``total_length`` is the exact
    length of that body, for Content-Length. Every head, the first included,
    starts with CRLF: before the first delimiter that makes an empty preamble
    (RFC 2046 §5.1.1), as Apache and nginx send it, and it keeps all heads
    alike. A ``content_type`` of None leaves out the part's Content-Type."""
    type_line = "" if content_type is None else f"Content-Type: {content_type}\r\n"
    parts = []
    total_length = 0
    for first, last in ranges:
        head = (f"\r\n--{boundary}\r\n{type_line}"
                f"Content-Range: {content_range(first, last, size)}\r\n\r\n").encode("latin-1")
        parts.append((head, first, last))
        total_length += len(head) + (last - first + 1)
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    return parts, closing, total_length + len(closing)
