#!/usr/bin/env python3
"""Write README.md's table of flags from the settings table in the code.

Every flag lives in one place, ``reactor_http.server.settings.SETTINGS``; this script
renders it as the Markdown table between the markers ``<!-- flags -->`` and
``<!-- /flags -->`` in README.md. tests/server/test_settings.py fails when the
committed table no longer matches, so the README cannot drift from the code.

    python3 scripts/flags_table.py            # rewrite the table in README.md
    python3 scripts/flags_table.py --check    # exit 1 if it is out of date
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from harness.generated import write_or_check  # noqa: E402

from reactor_http.server import settings  # noqa: E402

README = os.path.join(REPO, "README.md")
BEGIN, END = "<!-- flags -->", "<!-- /flags -->"


def _flag_cell(setting):
    if setting.kind == "switch":
        return f"`{setting.flag}`"
    if setting.kind == "optional":
        return f"`{setting.flag}[={setting.metavar}]`"
    return f"`{setting.flag} {setting.metavar}`"


def _default_cell(setting):
    default = settings.default_of(setting)
    if setting.kind == "switch" or default in (None, (), ""):
        return ""
    if setting.kind == "list":
        show = setting.show or str
        return ", ".join(show(item) for item in default)
    return str(setting.show(default) if setting.show else default)


def table():
    rows = ["| flag | default | meaning |", "|---|---|---|",
            "| `--help`, `--version` | | say what the flags are; print the version |",
            "| `--config FILE` | | read settings from a TOML file (see below) |",
            "| `--print-config` | | print the settings in effect, as TOML, with where each came from; then exit |"]
    for group, title in settings.GROUPS.items():
        rows.append(f"| **{title}** | | |")
        for setting in settings.SETTINGS:
            if setting.group == group:
                meaning = setting.help.replace("|", "\\|")
                rows.append(f"| {_flag_cell(setting).replace('|', chr(92) + '|')} | "
                            f"{_default_cell(setting)} | {meaning} |")
    return "\n".join(rows)


def updated(text):
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table() + "\n" + text[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the table is up to date")
    args = parser.parse_args(argv)
    with open(README, encoding="utf-8") as file:
        text = file.read()
    return write_or_check({README: updated(text)}, args.check, "scripts/flags_table.py")


if __name__ == "__main__":
    sys.exit(main())
