"""The layering is the lesson: each package imports only what its __init__ says it may.

    loop        the standard library only: no HTTP
    http1       the standard library without socket, selectors, ssl or threading
    static      http1 and config: never the connection, the loop or the server
    access      http1 and config: never the connection, the loop or the server
    connection  loop, http1 and config (ssl in connection/tls.py only): never static
    server      anything; nothing imports it

Every import statement of every module is read from its source (those under
``if TYPE_CHECKING:`` too: a type names a dependency as surely as a call), so
a rule broken anywhere fails here, whether or not that line ever runs.
"""

import ast
import os
import subprocess
import sys

import pytest
from support.environment import REPO

PACKAGE = os.path.join(REPO, "reactor_http")
LAYERS = ("loop", "http1", "static", "access", "connection", "server")

# Which parts of reactor_http each layer may import (its own always).
ALLOWED = {
    "loop": set(),
    "http1": set(),
    "static": {"http1", "config"},
    "access": {"http1", "config"},
    "connection": {"loop", "http1", "config"},
    "server": {"loop", "http1", "static", "access", "connection", "config", "__init__"},
    "config": set(),
}

# Standard library modules that mean I/O or threads: the sans-I/O layer may
# not touch them (the parser and the bodies above all).
IO_MODULES = {"socket", "selectors", "ssl", "threading", "asyncio", "concurrent"}
FORBIDDEN_STDLIB = {
    "http1": IO_MODULES,
    "static": {"socket", "selectors", "ssl", "asyncio"},  # it runs on the loop and in executor jobs
    # The guard runs on the loop and its checks in executor jobs: it reaches
    # the executor only through the Exchange, never starts a thread itself.
    "access": {"socket", "selectors", "ssl", "asyncio", "threading", "concurrent"},
    "loop": {"ssl", "asyncio"},
    "connection": {"asyncio", "threading", "concurrent"},  # one thread: the loop's
}


def package_modules():
    for directory, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, PACKAGE)
                yield relative, path


def layer_of(relative):
    """'static/site.py' -> 'static'; 'config.py' -> 'config'; '__init__.py' -> '__init__'."""
    first = relative.split(os.sep)[0]
    return first[:-3] if first.endswith(".py") else first


def imports_of(path, relative):
    """(the reactor_http part imported or None, the top-level module name) for
    every import in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package_parts = relative.split(os.sep)[:-1]  # e.g. ["static"] for static/site.py
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[:len(package_parts) - (node.level - 1)] if node.level > 1 else package_parts
                module = ".".join(["reactor_http", *base, *(node.module.split(".") if node.module else [])])
                if node.module is None:  # from . import x: a module of that package, or a name in it
                    for alias in node.names:
                        where = os.path.join(PACKAGE, *base, alias.name)
                        is_module = os.path.isdir(where) or os.path.isfile(where + ".py")
                        found.append(f"{module}.{alias.name}" if is_module else module)
                else:
                    found.append(module)
            else:
                found.append(node.module)
    result = []
    for name in found:
        parts = name.split(".")
        if parts[0] == "reactor_http":
            target = parts[1] if len(parts) > 1 else "__init__"
            result.append((target, name))
        else:
            result.append((None, parts[0]))
    return result


MODULES = list(package_modules())


@pytest.mark.parametrize("relative,path", MODULES, ids=[relative for relative, _ in MODULES])
def test_each_module_imports_only_what_its_layer_allows(relative, path):
    layer = layer_of(relative)
    if layer in ("__init__", "__main__"):
        return  # the package's own front door: the version, and `python -m`
    allowed = ALLOWED[layer] | {layer}
    forbidden_stdlib = FORBIDDEN_STDLIB.get(layer, set())
    for target, name in imports_of(path, relative):
        if target is not None:
            assert target in allowed, f"{relative} imports {name}: {layer} may import only {sorted(allowed)}"
        else:
            assert name not in forbidden_stdlib, f"{relative} imports {name}, which {layer} may not"
            if layer == "connection" and name == "ssl":
                assert relative == os.path.join("connection", "tls.py"), f"{relative} imports ssl"


def test_only_the_server_layer_is_imported_by_nothing():
    """Nothing below the server imports it (its __init__ says so)."""
    for relative, path in MODULES:
        if layer_of(relative) in ("server", "__main__"):
            continue
        assert all(target != "server" for target, _ in imports_of(path, relative)), relative


def test_every_layer_is_a_package_that_says_what_it_may_import():
    for layer in LAYERS:
        init = os.path.join(PACKAGE, layer, "__init__.py")
        docstring = ast.get_docstring(ast.parse(open(init, encoding="utf-8").read()))
        assert docstring and "May import" in docstring, f"{layer}/__init__.py must say what it may import"


def test_the_checker_sees_a_broken_rule(tmp_path):
    """The test above would catch a violation: read a made-up module the way it reads the real ones."""
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom ..static import site\nfrom ..loop.reactor import Reactor\n")
    found = imports_of(str(bad), os.path.join("http1", "bad.py"))
    assert (None, "socket") in found
    assert ("static", "reactor_http.static") in found
    assert ("loop", "reactor_http.loop.reactor") in found


def test_the_sans_io_layer_loads_no_io_module():
    """Importing the parser, the bodies and the responses pulls in no socket,
    selectors or ssl module, even indirectly (the stdlib's email.utils, for
    one, imports socket: the Date field is formatted by http1/dates.py)."""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import reactor_http.http1.parser, reactor_http.http1.bodies, reactor_http.http1.responses\n"
            "import reactor_http.http1.fast_path, reactor_http.http1.persistence, reactor_http.http1.handler\n"
            "print(' '.join(sorted({'socket', 'selectors', 'ssl'} & (set(sys.modules) - before))))\n")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the sans-I/O layer loads {result.stdout.strip()}"
