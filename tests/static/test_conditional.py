"""Unit tests for conditional.py: HTTP-dates, entity-tag lists, the §13.2.2
precedence of preconditions, and If-Range (RFC 9110 §13).

The precedence table includes rows where a lower-precedence field, evaluated
on its own, would give a different answer: those rows are what prove the
order of evaluation, not just each field in isolation.
"""

import calendar
import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reactor_http.static.conditional import (
    etag_list_matches,
    evaluate_preconditions,
    format_http_date,
    if_range_allows_range,
    parse_http_date,
)

# RFC 9110 §5.6.7's own example instant, in its three spellings.
EXAMPLE_SECONDS = 784111777
IMF_FIXDATE = "Sun, 06 Nov 1994 08:49:37 GMT"
RFC850_DATE = "Sunday, 06-Nov-94 08:49:37 GMT"
ASCTIME_DATE = "Sun Nov  6 08:49:37 1994"

# 2024-06-01T00:00:00Z: a fixed "now" for the RFC 850 two-digit-year window.
NOW_2024 = calendar.timegm((2024, 6, 1, 0, 0, 0))

# The current validators of the file in the precondition tables.
ETAG = '"5f1e-576"'
OTHER_ETAG = '"0-0"'
LAST_MODIFIED = EXAMPLE_SECONDS
EARLIER = format_http_date(LAST_MODIFIED - 1)   # the file was modified after this
SAME = format_http_date(LAST_MODIFIED)
LATER = format_http_date(LAST_MODIFIED + 1)     # the file was not modified since this


# --- HTTP-date ------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    (IMF_FIXDATE, EXAMPLE_SECONDS),
    (RFC850_DATE, EXAMPLE_SECONDS),
    (ASCTIME_DATE, EXAMPLE_SECONDS),
    ("Sun Nov 06 08:49:37 1994", EXAMPLE_SECONDS),          # date3 also allows 2DIGIT
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
    ("Thu, 29 Feb 2024 12:00:00 GMT", 1709208000),          # a leap day
    ("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800),          # a leap second: the next second
    ("Wed, 31 Dec 1969 23:59:59 GMT", -1),                  # before the epoch
    ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799),
    (" \t" + IMF_FIXDATE + "\t ", EXAMPLE_SECONDS),         # OWS around a field value
    ("Mon, 06 Nov 1994 08:49:37 GMT", EXAMPLE_SECONDS),     # wrong day name: tolerated (§5.6.7 robustness)
])
def test_parse_http_date_accepts_the_three_forms(text, seconds):
    """IMF-fixdate and both obsolete forms parse to seconds since the epoch (§5.6.7)."""
    assert parse_http_date(text, now=NOW_2024) == seconds


@pytest.mark.parametrize("text", [
    "",
    "   ",
    "GMT",
    "784111777",
    "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun, 06 Nov 1994 08:49:37 +0000",
    "Sun, 06 Nov 1994 08:49:37 gmt",            # HTTP-date is case-sensitive
    "sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 06 nov 1994 08:49:37 GMT",
    "Sun, 06 NOV 1994 08:49:37 GMT",
    "Sun, 6 Nov 1994 08:49:37 GMT",             # day must be 2DIGIT
    "Sun, 06 Nov 94 08:49:37 GMT",              # year must be 4DIGIT in IMF-fixdate
    "Sun, 06 Nov 1994 8:49:37 GMT",
    "Sun,  06 Nov 1994 08:49:37 GMT",           # exactly one SP
    "Sun 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06 Nov 1994 08:49:37 GMT",         # long day name in the IMF form
    "Sun, 06-Nov-94 08:49:37 GMT",              # short day name in the RFC 850 form
    "Sunday, 06-Nov-1994 08:49:37 GMT",
    "Sun Nov 6 08:49:37 1994",                  # asctime's single-digit day takes two SPs
    "Sun Nov  6 08:49:37 1994 GMT",
    "Sun, 31 Nov 1994 08:49:37 GMT",            # November has 30 days
    "Thu, 29 Feb 1900 08:49:37 GMT",            # 1900 is not a leap year
    "Sun, 00 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 0000 08:49:37 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:60:37 GMT",
    "Sun, 06 Nov 1994 08:49:61 GMT",
    IMF_FIXDATE + ", " + IMF_FIXDATE,           # a repeated field joined into a list
    IMF_FIXDATE + " x",
    IMF_FIXDATE + "\x00",
    "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # Arabic-Indic digits are not DIGIT
    "Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y",
])
def test_parse_http_date_rejects_everything_else(text):
    """Anything that is not exactly an HTTP-date gives None, so the field is ignored."""
    assert parse_http_date(text, now=NOW_2024) is None


@pytest.mark.parametrize("two_digits, year", [
    ("94", 1994),
    ("24", 2024),
    ("00", 2000),
    ("74", 2074),   # 50 years ahead: not "more than 50 years in the future"
    ("75", 1975),   # 51 years ahead: the most recent past year ending in 75
    ("99", 1999),
])
def test_rfc850_two_digit_year_window(two_digits, year):
    """§5.6.7: a two-digit year more than 50 years in the future means the past."""
    text = f"Sunday, 06-Nov-{two_digits} 08:49:37 GMT"
    assert parse_http_date(text, now=NOW_2024) == calendar.timegm((year, 11, 6, 8, 49, 37))


@pytest.mark.parametrize("seconds, text", [
    (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
    (EXAMPLE_SECONDS, IMF_FIXDATE),
    (EXAMPLE_SECONDS + 0.99, IMF_FIXDATE),     # a fraction is dropped
    (1709208000, "Thu, 29 Feb 2024 12:00:00 GMT"),
    (253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"),
])
def test_format_http_date(seconds, text):
    """format_http_date writes the IMF-fixdate, in GMT, with zero-padded fields."""
    assert format_http_date(seconds) == text


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-62135596800, max_value=253402300799))  # years 1 to 9999
def test_format_then_parse_round_trips(seconds):
    """Every instant the IMF-fixdate can spell comes back unchanged."""
    text = format_http_date(seconds)
    assert len(text) == 29
    assert parse_http_date(text) == seconds


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="0123456789:,- \tGMTSunMonNovFebday")))
@example("Sunday, 99-Feb-99 99:99:99 GMT")
@example("Sun, 29 Feb 0000 00:00:00 GMT")
def test_parse_http_date_never_raises(text):
    """Any str gives an int or None, never an exception."""
    result = parse_http_date(text)
    assert result is None or isinstance(result, int)


# --- entity-tag lists -----------------------------------------------------

# (field value, current etag, expected with strong comparison, expected with weak comparison)
ETAG_LIST_CASES = [
    # §8.8.3.2's table: strong needs both strong and equal; weak needs equal.
    ('"1"', '"1"', True, True),
    ('W/"1"', '"1"', False, True),
    ('"1"', 'W/"1"', False, True),
    ('W/"1"', 'W/"1"', False, True),
    ('"1"', '"2"', False, False),
    ('W/"1"', 'W/"2"', False, False),
    # Lists, with and without OWS, and with empty elements (§5.6.1).
    ('"x", "1"', '"1"', True, True),
    ('"x","1"', '"1"', True, True),
    ('  "x" ,\t"1"  ', '"1"', True, True),
    ('"x", , "1"', '"1"', True, True),
    (', "1",', '"1"', True, True),
    ('"x", "y"', '"1"', False, False),
    ('W/"x", W/"1"', '"1"', False, True),
    ('"", "1"', '""', True, True),                 # an empty opaque-tag is valid
    # etagc includes ",": the list is not split inside a quoted tag.
    ('"a,b"', '"a,b"', True, True),
    ('"a,b"', '"a"', False, False),
    ('"a", "b"', '"a,b"', False, False),
    ('"caf\xe9"', '"caf\xe9"', True, True),        # obs-text, as latin-1 characters
    # "*" matches any current representation (§13.1.1, §13.1.2).
    ("*", '"1"', True, True),
    (" * ", 'W/"1"', True, True),
    # Malformed lists match nothing, even if a valid element would match.
    ("", '"1"', False, False),
    ("1", '"1"', False, False),
    ('"1', '"1"', False, False),
    ('1"', '"1"', False, False),
    ('"1" "1"', '"1"', False, False),              # missing comma
    ('"1", x', '"1"', False, False),
    ('w/"1"', '"1"', False, False),                # %s"W/": case-sensitive
    ('W/ "1"', '"1"', False, False),
    ('*, "1"', '"1"', False, False),               # "*" is only valid alone
    ('"1"*', '"1"', False, False),
    ('"a b"', '"a b"', False, False),              # SP is not etagc
    ('"a\x7f"', '"a\x7f"', False, False),          # DEL is not etagc
    ('"a"b"', '"a"b"', False, False),
    # A current etag that is not an entity-tag matches nothing but "*".
    ('"1"', "1", False, False),
    ("*", "1", True, True),
]


@pytest.mark.parametrize("field_value, etag, strong_expected, weak_expected", ETAG_LIST_CASES)
def test_etag_list_matches(field_value, etag, strong_expected, weak_expected):
    """Each list is checked with both comparison functions (§8.8.3.2)."""
    assert etag_list_matches(field_value, etag, strong=True) is strong_expected
    assert etag_list_matches(field_value, etag, strong=False) is weak_expected


@pytest.mark.parametrize("field_value", ["*", '"1"', 'W/"1"', ""])
def test_nothing_matches_without_a_current_representation(field_value):
    """With no current representation (etag None) even "*" is false."""
    assert etag_list_matches(field_value, None, strong=True) is False
    assert etag_list_matches(field_value, None, strong=False) is False


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet='"W/*, \t1a\x7f\xe9')),
       st.one_of(st.none(), st.just(ETAG), st.text(alphabet='"W/1a')), st.booleans())
def test_etag_list_matches_never_raises(field_value, etag, strong):
    """Any field value gives a bool, never an exception."""
    assert etag_list_matches(field_value, etag, strong) in (True, False)


# --- evaluate_preconditions: the §13.2.2 order ----------------------------

PRECEDENCE_TABLE = [
    # (method, request fields, expected)
    ("GET", {}, None),
    # Step 1: If-Match, strong comparison.
    ("GET", {"if-match": ETAG}, None),
    ("GET", {"if-match": OTHER_ETAG}, 412),
    ("GET", {"if-match": "*"}, None),
    ("GET", {"if-match": f"{OTHER_ETAG}, {ETAG}"}, None),
    ("GET", {"if-match": "W/" + ETAG}, 412),                    # a weak tag never matches strongly
    ("GET", {"if-match": "garbage"}, 412),
    ("PUT", {"if-match": OTHER_ETAG}, 412),
    # Step 2: If-Unmodified-Since, only without If-Match.
    ("GET", {"if-unmodified-since": SAME}, None),
    ("GET", {"if-unmodified-since": LATER}, None),
    ("GET", {"if-unmodified-since": EARLIER}, 412),
    ("PUT", {"if-unmodified-since": EARLIER}, 412),
    ("GET", {"if-unmodified-since": "yesterday"}, None),        # invalid: ignored
    ("GET", {"if-unmodified-since": f"{EARLIER}, {EARLIER}"}, None),   # a list: ignored
    ("GET", {"if-match": ETAG, "if-unmodified-since": EARLIER}, None),  # If-Match wins
    ("GET", {"if-match": OTHER_ETAG, "if-unmodified-since": LATER}, 412),
    # Step 3: If-None-Match, weak comparison; 304 for GET/HEAD, else 412.
    ("GET", {"if-none-match": ETAG}, 304),
    ("HEAD", {"if-none-match": ETAG}, 304),
    ("PUT", {"if-none-match": ETAG}, 412),
    ("POST", {"if-none-match": ETAG}, 412),
    ("DELETE", {"if-none-match": ETAG}, 412),
    ("GET", {"if-none-match": "W/" + ETAG}, 304),               # weak comparison matches
    ("GET", {"if-none-match": f"{OTHER_ETAG}, {ETAG}"}, 304),
    ("GET", {"if-none-match": OTHER_ETAG}, None),
    ("GET", {"if-none-match": "*"}, 304),
    ("PUT", {"if-none-match": "*"}, 412),
    ("GET", {"if-none-match": "garbage"}, None),
    # Step 1 or 2 failing comes before step 3.
    ("GET", {"if-match": OTHER_ETAG, "if-none-match": ETAG}, 412),
    ("GET", {"if-match": ETAG, "if-none-match": ETAG}, 304),
    ("GET", {"if-unmodified-since": EARLIER, "if-none-match": ETAG}, 412),
    ("GET", {"if-unmodified-since": LATER, "if-none-match": ETAG}, 304),
    # Step 4: If-Modified-Since, GET/HEAD only, ignored when If-None-Match is present.
    ("GET", {"if-modified-since": SAME}, 304),
    ("HEAD", {"if-modified-since": SAME}, 304),
    ("GET", {"if-modified-since": LATER}, 304),
    ("GET", {"if-modified-since": EARLIER}, None),
    ("PUT", {"if-modified-since": SAME}, None),
    ("POST", {"if-modified-since": LATER}, None),
    ("GET", {"if-modified-since": "yesterday"}, None),
    ("GET", {"if-modified-since": f"{SAME}, {SAME}"}, None),    # more than one member: ignored
    ("GET", {"if-modified-since": ASCTIME_DATE}, 304),          # obsolete forms count
    ("GET", {"if-none-match": OTHER_ETAG, "if-modified-since": SAME}, None),   # INM present: IMS ignored
    ("GET", {"if-none-match": ETAG, "if-modified-since": EARLIER}, 304),       # INM decides
    ("GET", {"if-none-match": "garbage", "if-modified-since": SAME}, None),    # even a malformed INM
    ("GET", {"if-match": ETAG, "if-modified-since": SAME}, 304),
    ("GET", {"if-match": OTHER_ETAG, "if-modified-since": SAME}, 412),         # 412 before 304
    ("GET", {"if-unmodified-since": EARLIER, "if-modified-since": SAME}, 412),
    ("GET", {"if-unmodified-since": LATER, "if-modified-since": SAME}, 304),
    # All four at once: step 1 passes, step 2 is skipped, step 3 decides.
    ("GET", {"if-match": ETAG, "if-unmodified-since": EARLIER,
             "if-none-match": ETAG, "if-modified-since": EARLIER}, 304),
    ("PUT", {"if-match": ETAG, "if-unmodified-since": EARLIER,
             "if-none-match": OTHER_ETAG, "if-modified-since": SAME}, None),
    # §13.2.1: methods that do not select a representation ignore preconditions.
    ("OPTIONS", {"if-match": OTHER_ETAG}, None),
    ("TRACE", {"if-none-match": "*"}, None),
    ("CONNECT", {"if-unmodified-since": EARLIER}, None),
]


@pytest.mark.parametrize("method, headers, expected", PRECEDENCE_TABLE)
def test_precedence_table(method, headers, expected):
    """evaluate_preconditions follows RFC 9110 §13.2.2 step by step."""
    assert evaluate_preconditions(method, headers, ETAG, LAST_MODIFIED) == expected


@pytest.mark.parametrize("method, headers, expected", [
    ("GET", {"if-match": "*"}, 412),                 # "*" is false with no representation
    ("GET", {"if-match": ETAG}, 412),
    ("GET", {"if-none-match": "*"}, None),
    ("PUT", {"if-none-match": "*"}, None),            # "create only if absent" proceeds
    ("GET", {"if-unmodified-since": EARLIER}, None),  # no modification date: ignored
    ("GET", {"if-modified-since": LATER}, None),
])
def test_preconditions_without_validators(method, headers, expected):
    """No etag and no modification date (§13.1.1 to §13.1.4)."""
    assert evaluate_preconditions(method, headers, None, None) == expected


# Each conditional field in one of four states: absent, true, false, or a
# value that is not valid for the field. The rows below give the value for
# each state; whether the field is "true" is its condition, not the outcome.
FIELD_STATES = {
    "if-match": {"true": ETAG, "false": OTHER_ETAG, "invalid": "no-quotes"},
    "if-unmodified-since": {"true": LATER, "false": EARLIER, "invalid": "soon"},
    "if-none-match": {"true": OTHER_ETAG, "false": ETAG, "invalid": "no-quotes"},
    "if-modified-since": {"true": EARLIER, "false": LATER, "invalid": "soon"},
}


def expected_by_rfc(method, states):
    """§13.2.2 in its own words. An invalid If-Match or If-None-Match is a
    list that matches nothing: false and true respectively; an invalid date
    means the field is ignored, as if absent."""
    def condition(name):
        state = states[name]
        if state == "invalid":
            return {"if-match": "false", "if-none-match": "true"}.get(name, "absent")
        return state

    if condition("if-match") == "false":
        return 412                                             # step 1
    if states["if-match"] == "absent" and condition("if-unmodified-since") == "false":
        return 412                                             # step 2
    if condition("if-none-match") == "false":
        return 304 if method in ("GET", "HEAD") else 412       # step 3
    if (method in ("GET", "HEAD") and states["if-none-match"] == "absent"
            and condition("if-modified-since") == "false"):
        return 304                                             # step 4
    return None


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_every_combination_of_fields(method):
    """All 4**4 combinations of the four fields agree with the RFC's steps."""
    names = list(FIELD_STATES)
    for combination in itertools.product(["absent", "true", "false", "invalid"], repeat=len(names)):
        states = dict(zip(names, combination, strict=True))
        headers = {name: FIELD_STATES[name][state] for name, state in states.items() if state != "absent"}
        assert evaluate_preconditions(method, headers, ETAG, LAST_MODIFIED) == \
            expected_by_rfc(method, states), headers


# --- If-Range -------------------------------------------------------------

@pytest.mark.parametrize("if_range, etag, last_modified, expected", [
    (ETAG, ETAG, LAST_MODIFIED, True),
    (f" {ETAG}\t", ETAG, LAST_MODIFIED, True),
    ("W/" + ETAG, ETAG, LAST_MODIFIED, False),           # a weak tag never matches (§13.1.5)
    (ETAG, "W/" + ETAG, LAST_MODIFIED, False),           # nor does a weak current tag
    ("W/" + ETAG, "W/" + ETAG, LAST_MODIFIED, False),
    (OTHER_ETAG, ETAG, LAST_MODIFIED, False),
    ('"5f1e-576', ETAG, LAST_MODIFIED, False),           # malformed
    (f"{ETAG}, {OTHER_ETAG}", ETAG, LAST_MODIFIED, False),  # one validator, not a list
    ("*", ETAG, LAST_MODIFIED, False),
    (ETAG, None, LAST_MODIFIED, False),
    (SAME, ETAG, LAST_MODIFIED, True),                   # a date must match exactly
    (f" {SAME} ", ETAG, LAST_MODIFIED, True),
    (ASCTIME_DATE, ETAG, LAST_MODIFIED, True),
    (EARLIER, ETAG, LAST_MODIFIED, False),
    (LATER, ETAG, LAST_MODIFIED, False),                 # later is not "not modified" here
    (SAME, ETAG, None, False),
    ("yesterday", ETAG, LAST_MODIFIED, False),
    ("", ETAG, LAST_MODIFIED, False),
])
def test_if_range(if_range, etag, last_modified, expected):
    """If-Range: strong entity-tag match or exact date, anything else is false."""
    assert if_range_allows_range(if_range, etag, last_modified) is expected


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_if_range_never_raises(if_range):
    """Any value gives a bool."""
    assert if_range_allows_range(if_range, ETAG, LAST_MODIFIED) in (True, False)
