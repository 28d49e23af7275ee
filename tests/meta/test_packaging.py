"""Packaging: the sdist and the wheel that `python -m build` makes, met as a
user of PyPI or a distribution's packager would meet them.

One build for the module (isolated, as any build of this project is: pip
fetches setuptools and wheel into a temporary environment), then:
``twine check --strict`` on both; the sdist holds what is needed to run the
tests and read the docs; the wheel holds the package and nothing else, and,
installed into a fresh virtual environment and run from outside the
repository, answers ``--version`` and serves a file.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import venv
import zipfile

import pytest
from support.environment import REPO

from reactor_http import __version__


def only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


# Not part of a source tree: what tools and earlier builds leave in a checkout.
# (An old *.egg-info would even feed its file list to the next sdist.)
LEFT_BEHIND = shutil.ignore_patterns(".git", ".venv", ".venv-*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, sdist) paths, built from a copy of the source tree."""
    source = tmp_path_factory.mktemp("source") / "reactor_http"
    shutil.copytree(REPO, source, ignore=LEFT_BEHIND, symlinks=True)
    out = tmp_path_factory.mktemp("dist")
    completed = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(source)],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return only(out.glob("*.whl")), only(out.glob("*.tar.gz"))


def test_twine_accepts_both(built):
    completed = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("PASSED") == 2, completed.stdout


def test_the_sdist_holds_the_tests_docs_and_scripts(built):
    _, sdist = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("README.md", "setup.cfg", "setup.py", "pyproject.toml", "reactor_http/__main__.py",
                   "tests/conftest.py", "tests/support/environment.py", "tests/e2e/test_http.py",
                   "docs/architecture.md", "docs/walkthrough.md", "scripts/bench.py", "scripts/test.sh",
                   "www/index.html"):
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or name.startswith(".venv")]


def test_the_wheel_holds_the_package_only(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(only(name for name in names if name.endswith("entry_points.txt"))).decode()
    assert "reactor_http/server/cli.py" in names
    for live in ("page.html", "live.js", "live.css"):  # the live page's own files, package data
        assert f"reactor_http/server/live/{live}" in names, live
    assert not [name for name in names if name.startswith(("tests/", "docs/", "scripts/", "www/"))]
    assert "reactor-http = reactor_http.server.cli:main" in entry_points


def test_the_installed_wheel_runs_and_serves(built, tmp_path):
    wheel, _ = built
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    # No dependencies to fetch: the standard library is all it needs.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", str(wheel)], check=True, timeout=300)
    clean = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import reactor_http; print(reactor_http.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=clean, check=True).stdout
    assert where.startswith(str(environment)), where  # not the checkout's copy
    command = str(environment / "bin" / "reactor-http")
    version = subprocess.run([command, "--version"], capture_output=True, text=True, cwd=tmp_path, env=clean,
                             timeout=30)
    assert (version.returncode, version.stdout.strip()) == (0, f"reactor_http {__version__}")
    root = tmp_path / "site"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from the wheel\n")
    server = subprocess.Popen([command, "--port", "0", "--root", str(root), "--quiet", "--dashboard-path", "/_live"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=clean)
    try:
        banner = server.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        assert port, banner + server.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/hello.txt", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"hello from the wheel\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/_live/live.js", timeout=10) as response:
            assert response.status == 200 and b"EventSource" in response.read()
    finally:
        server.terminate()
        server.communicate(timeout=30)
