"""Every command in docs/walkthrough.md runs, as written, and prints what the page shows.

Each ```sh block is run with bash from the repository's root. It must exit 0,
and the lines of the ```text block that follows it (if any) must appear in its
output in the same order, numbers aside: timestamps, descriptors and durations
differ from run to run, the words and their order do not.
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
    """A sample line as a regular expression: digits match any digits, runs of
    spaces any run of spaces, everything else itself."""
    parts = []
    for token in re.findall(r"\d+|\s+|[^\d\s]+", sample_line.strip()):
        if token.isdigit():
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
    lines = output.splitlines()
    position = 0  # the sample's lines must appear in this order (others may come between)
    for sample_line in (sample or "").splitlines():
        if not sample_line.strip():
            continue
        pattern = line_pattern(sample_line)
        found = next((index for index in range(position, len(lines)) if pattern.search(lines[index])), None)
        assert found is not None, f"not printed, or not in this order: {sample_line!r}\n{output}"
        position = found + 1
