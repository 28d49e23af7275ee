"""Unit tests for ranges.py: the Range field, Content-Range values, and the
layout of a multipart/byteranges body (RFC 9110 §14).

parse_range has three answers and each one changes the status: a list (206),
UNSATISFIABLE (416) and None (ignore the field: 200). The tables pin each
rule; the property tests compare parse_range with a byte-set model and
rebuild multipart bodies to check that the announced length is the real one.
"""

import email.parser
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reactor_http.static.ranges import (
    MAX_RANGES,
    UNSATISFIABLE,
    content_range,
    make_boundary,
    multipart_layout,
    parse_range,
    unsatisfied_range,
)

SIZE = 1000


# --- parse_range: satisfiable --------------------------------------------

@pytest.mark.parametrize("value, size, expected", [
    ("bytes=0-499", SIZE, [(0, 499)]),
    ("bytes=500-999", SIZE, [(500, 999)]),
    ("bytes=500-", SIZE, [(500, 999)]),                 # int-range without last-pos
    ("bytes=-500", SIZE, [(500, 999)]),                 # suffix-range
    ("bytes=0-0,-1", SIZE, [(0, 0), (999, 999)]),       # first and last byte (§14.1.2)
    ("bytes=0-999999", SIZE, [(0, 999)]),               # last-pos clipped to the end
    ("bytes=-2000", SIZE, [(0, 999)]),                  # suffix longer than the file: all of it
    ("bytes=999-", SIZE, [(999, 999)]),
    ("bytes=999-999", SIZE, [(999, 999)]),
    ("bytes=0-", 1, [(0, 0)]),
    ("bytes=-1", 1, [(0, 0)]),
    ("BYTES=0-1", SIZE, [(0, 1)]),                      # the unit is case-insensitive
    ("Bytes=0-1", SIZE, [(0, 1)]),
    (" bytes=0-1\t", SIZE, [(0, 1)]),
    ("bytes=000-001", SIZE, [(0, 1)]),                  # leading zeros are still DIGITs
    ("bytes=0-999999999999999999", SIZE, [(0, 999)]),   # 18 digits: allowed
    # Lists: OWS around commas and empty elements are accepted (§5.6.1).
    ("bytes=0-1,3-4", SIZE, [(0, 1), (3, 4)]),
    ("bytes= 0-1 ,\t3-4 ", SIZE, [(0, 1), (3, 4)]),
    ("bytes=0-1,,3-4", SIZE, [(0, 1), (3, 4)]),
    ("bytes=,0-1,", SIZE, [(0, 1)]),
    # Unsatisfiable members are dropped when another one is satisfiable.
    ("bytes=0-1,2000-3000", SIZE, [(0, 1)]),
    ("bytes=-0,0-1", SIZE, [(0, 1)]),
    ("bytes=1000-,-10", SIZE, [(990, 999)]),
    # Sorted, and overlapping or adjacent ranges coalesced (§14.6).
    ("bytes=500-599,0-99", SIZE, [(500, 599), (0, 99)]),  # the order asked for (§15.3.7.2)
    ("bytes=0-499,400-599", SIZE, [(0, 599)]),
    ("bytes=0-99,100-199", SIZE, [(0, 199)]),           # adjacent
    ("bytes=0-99,101-199", SIZE, [(0, 99), (101, 199)]),  # a one-byte gap stays
    ("bytes=0-999,10-20", SIZE, [(0, 999)]),            # contained
    ("bytes=10-20,0-999", SIZE, [(0, 999)]),
    ("bytes=-100,850-949", SIZE, [(850, 999)]),
    ("bytes=0-0,0-0,0-0", SIZE, [(0, 0)]),
    ("bytes=" + ",".join(["0-"] * 1000), SIZE, [(0, 999)]),   # no amplification
    ("bytes=" + ",".join(f"{offset}-{offset}" for offset in range(SIZE)), SIZE, [(0, 999)]),
])
def test_satisfiable_ranges(value, size, expected):
    """Valid, satisfiable Range values give coalesced inclusive offsets, in the
    order the client asked for them."""
    assert parse_range(value, size) == expected


def test_exactly_max_ranges_is_served():
    """MAX_RANGES disjoint ranges are served as they are."""
    value = "bytes=" + ",".join(f"{2 * index}-{2 * index}" for index in range(MAX_RANGES))
    assert parse_range(value, SIZE) == [(2 * index, 2 * index) for index in range(MAX_RANGES)]


def test_more_than_max_ranges_is_ignored():
    """One range too many, after coalescing: the field is ignored (§14.2), a 200."""
    value = "bytes=" + ",".join(f"{2 * index}-{2 * index}" for index in range(MAX_RANGES + 1))
    assert parse_range(value, SIZE) is None


def test_many_ranges_that_coalesce_are_served():
    """The limit counts ranges after coalescing, not as sent."""
    value = "bytes=" + ",".join(f"{index}-{index}" for index in range(MAX_RANGES * 4))
    assert parse_range(value, SIZE) == [(0, MAX_RANGES * 4 - 1)]


# --- parse_range: unsatisfiable (416) ------------------------------------

@pytest.mark.parametrize("value, size", [
    ("bytes=1000-", SIZE),            # starts at the end
    ("bytes=1000-2000", SIZE),
    ("bytes=5000-", SIZE),
    ("bytes=-0", SIZE),               # a zero-length suffix
    ("bytes=-0,1000-", SIZE),
    ("bytes=5000-6000,1000-,-0", SIZE),
    ("bytes=0-", 0),                  # nothing starts inside an empty file
    ("bytes=0-0", 0),
    ("bytes=-0", 0),
    ("BYTES=0-1, 5-6", 0),
])
def test_unsatisfiable_ranges(value, size):
    """Valid syntax, but no range overlaps the representation (§14.1.2)."""
    assert parse_range(value, size) is UNSATISFIABLE


# --- parse_range: ignored (200) ------------------------------------------

@pytest.mark.parametrize("value", [
    "",
    "bytes",
    "bytes=",
    "bytes=,",                         # range-set = 1#range-spec: one real element needed
    "bytes= , \t,",
    "bytes=-",
    "bytes=0-1,-",
    "bytes=a-b",
    "bytes=1-0",                       # last-pos below first-pos (§14.1.1)
    "bytes=1000-999",                  # ... checked before satisfiability
    "bytes=0-1,5-4",                   # one invalid member spoils the set
    "bytes=1 - 2",
    "bytes=0x10-",
    "bytes=+1-2",
    "bytes=-1-2",
    "bytes=1--2",
    "bytes=1-2-3",
    "bytes=0-1;2-3",
    "bytes=\u0661-\u0662",             # Arabic-Indic digits are not DIGIT
    "bytes =0-1",
    "bytes= =0-1",
    "bytes 0-1",
    "bytes:0-1",
    "=0-1",
    "items=0-1",                       # another range unit (§14.1)
    "none=0-1",
    "bytes=1000000000000000000-",      # 19 digits: refused
    "bytes=0-1000000000000000000",
    "bytes=-1000000000000000000",
    "bytes=" + "9" * 300 + "-",
])
def test_ignored_range_fields(value):
    """Invalid values and other units are ignored: None, for a 200 with the whole file."""
    assert parse_range(value, SIZE) is None


@pytest.mark.parametrize("value", ["bytes=-1", "bytes=-1,0-", "bytes=0-0,-5"])
def test_nonzero_suffix_on_an_empty_file_is_ignored(value):
    """§14.1.2 calls a non-zero suffix-range satisfiable even for zero bytes, so
    416 would be wrong, and a 206 cannot carry nothing; §14.2 lets a server
    ignore Range for an empty representation: a 200 with the empty body."""
    assert parse_range(value, 0) is None


def test_huge_input_is_answered():
    """Hundreds of thousands of digits or elements do not crash the parser."""
    assert parse_range("bytes=" + "1" * 200_000 + "-", SIZE) is None
    assert parse_range("bytes=-" + "1" * 200_000, SIZE) is None
    assert parse_range("bytes=" + "0-," * 50_000, SIZE) == [(0, 999)]


# --- parse_range: properties ---------------------------------------------

def check_well_formed(result, size):
    """A list answer is non-empty, inside the file, with no two ranges
    overlapping or touching, and no longer than MAX_RANGES."""
    assert result is None or result is UNSATISFIABLE or isinstance(result, list)
    if isinstance(result, list):
        assert 1 <= len(result) <= MAX_RANGES
        for first, last in result:
            assert 0 <= first <= last <= size - 1
        in_file_order = sorted(result)
        for (_, previous_last), (next_first, _) in zip(in_file_order, in_file_order[1:], strict=False):
            assert next_first > previous_last + 1


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(),
                 st.text(alphabet="0123456789-, \t").map(lambda text: "bytes=" + text),
                 st.text(alphabet="0123456789-,=bytesBYTES ")),
       st.integers(min_value=0, max_value=2000))
@example("bytes=0-,0-,0-", 10)
@example("bytes=-5", 0)
def test_parse_range_never_raises_and_is_well_formed(value, size):
    """Any str gives None, UNSATISFIABLE, or a well-formed list."""
    check_well_formed(parse_range(value, size), size)


def covered_bytes(value_specs, size):
    """The model: the set of byte offsets the range-specs ask for, one byte at
    a time, or None if some spec is invalid (§14.1.1, §14.1.2)."""
    covered = set()
    for first, last in value_specs:
        if first is None:                   # suffix-range "-last"
            covered.update(range(max(0, size - last), size))
        elif last is None:                  # "first-"
            covered.update(range(first, size))
        elif last < first:
            return None
        else:
            covered.update(range(first, min(last, size - 1) + 1))
    return covered


def runs(offsets):
    """Sorted maximal runs of consecutive offsets, as (first, last) pairs."""
    result = []
    for offset in sorted(offsets):
        if result and offset == result[-1][1] + 1:
            result[-1] = (result[-1][0], offset)
        else:
            result.append((offset, offset))
    return result


POSITION = st.integers(min_value=0, max_value=80)
RANGE_SPEC = st.one_of(st.tuples(POSITION, POSITION),
                       st.tuples(POSITION, st.none()),
                       st.tuples(st.none(), POSITION))


@settings(max_examples=300, deadline=None)
@given(st.lists(RANGE_SPEC, min_size=1, max_size=24), st.integers(min_value=0, max_value=64),
       st.sampled_from([",", ", ", " ,\t", ",,"]))
def test_parse_range_agrees_with_a_byte_set_model(specs, size, separator):
    """For generated Range values, the answer covers exactly the requested
    bytes, and is UNSATISFIABLE or None exactly when the model says so."""
    value = "bytes=" + separator.join(
        f"{'' if first is None else first}-{'' if last is None else last}" for first, last in specs)
    result = parse_range(value, size)
    check_well_formed(result, size)
    covered = covered_bytes(specs, size)
    if covered is None:
        assert result is None
    elif not covered:
        nonzero_suffix = any(first is None and last > 0 for first, last in specs)
        assert result is (None if size == 0 and nonzero_suffix else UNSATISFIABLE)
    elif len(runs(covered)) > MAX_RANGES:
        assert result is None
    else:
        assert sorted(result) == runs(covered)


@pytest.mark.parametrize("value, expected", [
    ("bytes=900-999,0-99,500-599", [(900, 999), (0, 99), (500, 599)]),
    # A merged range takes the place of the earliest range-spec in it.
    ("bytes=900-999,0-99,50-149", [(900, 999), (0, 149)]),
    ("bytes=900-999,50-149,0-99", [(900, 999), (0, 149)]),
    ("bytes=0-99,900-999,100-199", [(0, 199), (900, 999)]),
])
def test_parts_keep_the_requested_order(value, expected):
    """§15.3.7.2: parts SHOULD come in the order the range-specs were asked for."""
    assert parse_range(value, SIZE) == expected


# --- Content-Range values -------------------------------------------------

@pytest.mark.parametrize("first, last, size, expected", [
    (0, 99, 1000, "bytes 0-99/1000"),
    (0, 0, 1, "bytes 0-0/1"),
    (999, 999, 1000, "bytes 999-999/1000"),
    (42, 2**40, 2**40 + 1, "bytes 42-1099511627776/1099511627777"),
])
def test_content_range(first, last, size, expected):
    """§14.4: "bytes first-last/complete-length"."""
    assert content_range(first, last, size) == expected


@pytest.mark.parametrize("size, expected", [(1000, "bytes */1000"), (0, "bytes */0")])
def test_unsatisfied_range(size, expected):
    """§14.4: a 416 says "bytes */complete-length"."""
    assert unsatisfied_range(size) == expected


# --- multipart/byteranges ------------------------------------------------

def assemble(parts, closing, data):
    """The body a server sends: each part head, then its slice of the file."""
    return b"".join(head + data[first:last + 1] for head, first, last in parts) + closing


def test_multipart_layout_exact_bytes():
    """The whole body, byte for byte, for two ranges of a ten-byte file."""
    parts, closing, total_length = multipart_layout([(0, 1), (8, 9)], 10, "text/plain", "XYZ")
    assert parts == [
        (b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n", 0, 1),
        (b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n", 8, 9),
    ]
    assert closing == b"\r\n--XYZ--\r\n"
    body = assemble(parts, closing, b"0123456789")
    assert body == (b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
                    b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89"
                    b"\r\n--XYZ--\r\n")
    assert total_length == len(body) == 2 * 66 + 4 + 11   # two heads, four bytes, closing


def test_multipart_layout_without_content_type():
    """No Content-Type line when the representation has none (§14.6)."""
    parts, closing, total_length = multipart_layout([(2, 4)], 5, None, "b")
    assert parts == [(b"\r\n--b\r\nContent-Range: bytes 2-4/5\r\n\r\n", 2, 4)]
    assert total_length == len(parts[0][0]) + 3 + len(closing)


def test_make_boundary():
    """A boundary is 32 hex digits (token characters, under RFC 2046's 70)
    and differs from call to call."""
    boundaries = {make_boundary() for _ in range(50)}
    assert len(boundaries) == 50
    for boundary in boundaries:
        assert re.fullmatch(r"[0-9a-f]{32}", boundary)


def parse_parts_by_hand(body, boundary):
    """A strict multipart/byteranges reader: (fields, payload) per part,
    failing on any byte out of place."""
    delimiter = b"\r\n--" + boundary.encode("ascii")
    assert body.endswith(delimiter + b"--\r\n")
    preamble, *chunks = body[:-len(b"--\r\n")].split(delimiter)
    assert preamble == b""
    assert chunks[-1] == b""              # what follows the close delimiter's "--"
    parts = []
    for chunk in chunks[:-1]:
        assert chunk.startswith(b"\r\n")
        head, separator, payload = chunk[2:].partition(b"\r\n\r\n")
        assert separator
        fields = dict(line.decode("ascii").split(": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields, payload))
    return parts


FILE_AND_RANGES = st.integers(min_value=1, max_value=600).flatmap(lambda size: st.tuples(
    st.binary(min_size=size, max_size=size),
    st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1))
             .map(lambda pair: (min(pair), max(pair))), min_size=1, max_size=MAX_RANGES)))


@settings(max_examples=150, deadline=None)
@given(FILE_AND_RANGES, st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8"]))
def test_multipart_length_and_content(file_and_ranges, content_type):
    """total_length is the length of the assembled body, and the body reads
    back, with a strict reader and with the stdlib email parser, as one part
    per range carrying exactly that slice of the file."""
    data, ranges = file_and_ranges
    size = len(data)
    boundary = make_boundary()
    parts, closing, total_length = multipart_layout(ranges, size, content_type, boundary)
    body = assemble(parts, closing, data)
    assert total_length == len(body)
    assert [(first, last) for _, first, last in parts] == ranges

    expected = [({"Content-Type": content_type, "Content-Range": f"bytes {first}-{last}/{size}"},
                 data[first:last + 1]) for first, last in ranges]
    assert parse_parts_by_hand(body, boundary) == expected

    # compat32, the default policy, keeps field values as sent.
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: multipart/byteranges; boundary=" + boundary.encode("ascii") + b"\r\n\r\n" + body)
    assert message.is_multipart()
    assert message.defects == []
    read_back = [(part["Content-Type"], part["Content-Range"], part.get_payload(decode=True))
                 for part in message.get_payload()]
    assert read_back == [(content_type, f"bytes {first}-{last}/{size}", data[first:last + 1])
                         for first, last in ranges]
