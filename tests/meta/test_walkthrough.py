"""Every command in docs/walkthrough.md runs, as written, and prints what the page shows.

Each ```sh block is run with bash from the repository's root. It must exit 0,
and what it prints must be the ```text block that follows it (if any), line for
line and in order, numbers aside: timestamps, descriptors, ports and durations
differ from run to run, the words, the lines and their order do not. "..." in
a sample stands for text that depends on the machine (the clone's path).
"""

import os
import re
import signal
import subprocess
import sys

import pytest
from support.environment import REPO, require_program

WALKTHROUGH = os.path.join(REPO, "docs", "walkthrough.md")
BLOCK = re.compile(r"^```sh\n(.*?)^```\n(?:\s*^```text\n(.*?)^```)?", re.MULTILINE | re.DOTALL)


def blocks():
    with open(WALKTHROUGH, encoding="utf-8") as file:
        text = file.read()
    found = [(command, sample) for command, sample in BLOCK.findall(text)]
    assert len(found) >= 7, "the walkthrough lost its commands"
    return found


def line_pattern(sample_line):
    """A sample line as a regular expression for a whole line: digits match
    any digits, runs of spaces any run of spaces, "..." any text, everything
    else itself."""
    parts = []
    for token in re.findall(r"\.\.\.|\d+|\s+|(?:[^\d\s.]|\.(?!\.\.))+", sample_line.strip()):
        if token == "...":
            parts.append(r".*?")
        elif token.isdigit():
            parts.append(r"\d+")
        elif token.isspace():
            parts.append(r"\s+")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


@pytest.mark.parametrize("number", range(len(blocks())), ids=lambda number: f"command-{number + 1}")
def test_walkthrough_command(number):
    require_program("curl")
    command, sample = blocks()[number]
    environment = dict(os.environ, PATH=os.pathsep.join((os.path.dirname(sys.executable), os.environ["PATH"])))
    environment.pop("PYTHONPATH", None)  # as a reader runs it: from the root, nothing installed
    process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", command], cwd=REPO, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # a server the command left behind
        except ProcessLookupError:
            pass
    assert process.returncode == 0, f"exit status {process.returncode}:\n{output}"
    printed = [line.strip() for line in output.splitlines() if line.strip()]
    shown = [line for line in (sample or "").splitlines() if line.strip()]
    if not sample:
        return  # a command whose output the page does not show
    assert len(printed) == len(shown), f"the page shows {len(shown)} lines, a run prints {len(printed)}:\n{output}"
    for number, (line, sample_line) in enumerate(zip(printed, shown, strict=True), start=1):
        assert line_pattern(sample_line).fullmatch(line), \
            f"line {number} differs from the page's {sample_line!r}:\n{output}"
