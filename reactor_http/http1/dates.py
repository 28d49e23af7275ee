"""HTTP-date (RFC 9110 §5.6.7): the one date format on the wire, and the two old ones.

The Date field of every response, Last-Modified, and the dates of
If-Modified-Since, If-Unmodified-Since and If-Range all use it. Pure
functions, with English names whatever the locale (``time.strftime`` would
follow the locale), and no I/O.
"""

from __future__ import annotations

import calendar
import re
import time

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_OWS = " \t"

# §5.6.7: HTTP-date = IMF-fixdate / obs-date, and it is case-sensitive.
# [0-9] rather than \d, which would also accept non-ASCII digits.
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_MONTH = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
#   e.g. "Sun, 06 Nov 1994 08:49:37 GMT"
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<day>[0-9]{2}) " + _MONTH
    + r" (?P<year>[0-9]{4}) " + _TIME + r" GMT")
# rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT
#   e.g. "Sunday, 06-Nov-94 08:49:37 GMT"
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (?P<day>[0-9]{2})-" + _MONTH
    + r"-(?P<year>[0-9]{2}) " + _TIME + r" GMT")
# asctime-date = day-name SP date3 SP time-of-day SP year
#   date3 = month SP ( 2DIGIT / ( SP DIGIT ) ), e.g. "Sun Nov  6 08:49:37 1994"
_ASCTIME_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) " + _MONTH + r" (?P<day>[0-9]{2}| [0-9]) "
    + _TIME + r" (?P<year>[0-9]{4})")

def parse_http_date(text, now=None):
    """Seconds since the epoch for an HTTP-date (§5.6.7), or None if ``text``
    is not one, in which case the caller ignores the field. Accepts the
    IMF-fixdate and the two obsolete forms; never raises for a str.
    ``now`` (seconds, default the current time) only matters for the
    two-digit years of the RFC 850 form."""
    text = text.strip(_OWS)
    match = _IMF_FIXDATE.fullmatch(text) or _ASCTIME_DATE.fullmatch(text)
    if match is not None:
        year = int(match["year"])
    else:
        match = _RFC850_DATE.fullmatch(text)
        if match is None:
            return None
        # §5.6.7: a two-digit year that appears to be more than 50 years in
        # the future means the most recent past year with the same last two
        # digits, i.e. the latest year ending in those digits that is at most
        # 50 years ahead of now.
        latest_year = time.gmtime(time.time() if now is None else now).tm_year + 50
        year = latest_year - (latest_year - int(match["year"])) % 100
    month = _MONTH_NUMBERS[match["month"]]
    day, hour, minute, second = (int(match[name]) for name in ("day", "hour", "minute", "second"))
    # The regular expressions check the shape; these check the values. A
    # second of 60 is a leap second (time-of-day in §5.6.7 follows RFC 5322).
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    # The day name is not checked against the date: it is redundant, and
    # §5.6.7 asks recipients to be robust when parsing timestamps.
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def format_http_date(seconds):
    """The IMF-fixdate (§5.6.7) for ``seconds`` since the epoch, always GMT,
    with English names whatever the locale; a fraction is dropped."""
    moment = time.gmtime(seconds)
    return (f"{_DAY_NAMES[moment.tm_wday]}, {moment.tm_mday:02d} {_MONTH_NAMES[moment.tm_mon - 1]} "
            f"{moment.tm_year:04d} {moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} GMT")
