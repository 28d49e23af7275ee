"""What the scripts print and save: tables, numbers, JSON, and the machine they ran on."""

import json
import os
import platform
import subprocess

KIB = 1024
MIB = 1024 * KIB


def format_number(value):
    """Three significant figures or so: 12,345 / 12.3 / 1.23; "-" for none."""
    if value is None or value == "":
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_count(value):
    """Threads and descriptors: whole numbers (a median may fall between two)."""
    return "-" if value is None or value == "" else f"{value:,.0f}"


def format_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def format_size(size):
    """Bytes in the largest binary unit that fits: "1.50 MiB", "512 B"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def escape_markdown(text):
    """The marks the tables use ("*", "~") would read as emphasis and strike-through."""
    return text.replace("*", "\\*").replace("~", "\\~")


def render_table(headers, rows, markdown=False):
    """Rows of cells as aligned columns under a rule, or as a Markdown table."""
    rows = [[str(cell) for cell in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(escape_markdown(cell) for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def save_json(value, path, indent=1):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=indent)
        file.write("\n")


def load_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def machine_description():
    """The CPU model, how many CPUs, the kernel, the Python and the memory."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def program_version(command):
    """The first line a program prints for ``command`` (e.g. ``nginx -v``), or None."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (completed.stdout + completed.stderr).strip()
    return text.splitlines()[0] if text else None


def write_report(report, tables, markdown_path=None, chart=None, chart_path=None, log=print):
    """Print ``tables(report)``; write them as Markdown to ``markdown_path``,
    and draw ``chart(report, chart_path)``, which returns None or why it drew
    nothing (said through ``log``)."""
    print(tables(report))
    if markdown_path:
        with open(markdown_path, "w", encoding="utf-8") as file:
            file.write(tables(report, markdown=True))
    if chart_path:
        problem = chart(report, chart_path)
        if problem:
            log(f"--png: {problem}")
