"""Sizes, durations and "did you mean": the words a person types in a setting.

``parse_size`` takes ``65536``, ``64k``, ``64M``, ``1G`` and ``64KiB``,
``64MiB``, ``1GiB``: a suffix counts in powers of 1024, as nginx's ``64k`` and
``1m`` do. ``parse_duration`` takes ``30`` (seconds), ``500ms``, ``30s``,
``2m`` and ``1h``. Both raise ValueError with a message that says what is
accepted.

``closest`` finds the name someone probably meant, by edit distance with
transpositions (so ``prot`` is one step from ``port`` and two from ``root``),
over every name a setting goes by.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
SIZE_FORMS = "a number of bytes, or with k, M, G (or KiB, MiB, GiB): 64M"

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)\s*(ms|s|m|h)?", re.IGNORECASE)
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_FORMS = "seconds, or with ms, s, m or h: 500ms, 30s, 2m"


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64k``, ``64MiB``... Raises ValueError."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match.group(3) and match.group(3).lower() == "ib" and not match.group(2)):
        raise ValueError(f"{text!r} is not a size ({SIZE_FORMS})")
    number, unit = match.group(1), match.group(2).lower()
    value = float(number) * _SIZE_FACTORS[unit]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``500ms``, ``30s``, ``2m``, ``1h``. Raises ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        if text.strip().lower() in ("inf", "infinity"):
            raise ValueError(f"{text!r}: no wait can be endless here; give a number of seconds "
                             f"(1e7 is 116 days)")
        raise ValueError(f"{text!r} is not a duration ({DURATION_FORMS})")
    unit = match.group(2).lower() if match.group(2) else None
    value = float(match.group(1)) * _DURATION_FACTORS[unit]
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too long a duration; give a number of seconds (1e7 is 116 days)")
    return value


def edit_distance(first: str, second: str) -> int:
    """The optimal string alignment distance: insertions, deletions,
    substitutions and swaps of two neighbours each cost one."""
    previous_previous: list[int] = []
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i] + [0] * len(second)
        for j, b in enumerate(second, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b))
            if i > 1 and j > 1 and a == second[j - 2] and first[i - 2] == b:
                current[j] = min(current[j], previous_previous[j - 2] + 1)
        previous_previous, previous = previous, current
    return previous[-1]


def closest(word: str, names: Iterable[str]) -> str | None:
    """The name nearest to ``word`` (case-insensitive), if it is near enough
    to be a typing mistake: at most a third of the word's length away."""
    word = word.lower()
    best, best_distance = None, None
    for name in names:
        distance = edit_distance(word, name.lower())
        if best_distance is None or distance < best_distance:
            best, best_distance = name, distance
    if best is None or best_distance is None or best_distance > max(1, len(word) // 3):
        return None
    return best
