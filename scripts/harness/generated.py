"""Files made from the code (the README's flags table, the state diagrams): written, or checked.

A generator script renders what a file should hold from a table in the code;
``write_or_check`` then writes it, or, with ``check``, only says which files
no longer match (a test runs the check, so a drawing cannot drift from the
table it draws).
"""

import sys


def write_or_check(wanted, check, script):
    """``wanted`` maps each path to the text it should hold. Returns the exit
    status: 0, or 1 when ``check`` finds a file out of date."""
    if check:
        stale = [path for path, text in wanted.items() if _read(path) != text]
        for path in stale:
            print(f"{path} is out of date: run {script}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in wanted.items():
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote {path}")
    return 0


def _read(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        return None
