"""Fixtures and hooks shared by every test; the helpers themselves live in tests/support/."""

import os
import shutil

import pytest
from support import servers
from support.clients import RawClient
from support.environment import DEMO_ROOT
from support.servers import ServerProcess

# Test modules that make up the end-to-end suite: the transition coverage
# check needs them all to have run in the same session.
END_TO_END_MODULES = ("e2e.test_http", "e2e.test_static", "e2e.test_wire_hostile", "e2e.test_resource_limits",
                      "e2e.test_faults", "server.test_cli", "server.test_shutdown", "e2e.test_tls",
                      "server.test_listeners", "e2e.test_guard")
_collected_modules = set()


def pytest_collection_modifyitems(session, config, items):
    """Run tests marked ``after_everything`` last, and remember which modules
    this session runs."""
    _collected_modules.update(item.module.__name__ for item in items)
    items.sort(key=lambda item: item.get_closest_marker("after_everything") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "after_everything: run after every other test of the session")


def whole_end_to_end_suite_collected():
    return set(END_TO_END_MODULES) <= _collected_modules


def pytest_sessionfinish(session, exitstatus):
    if servers.TRANSITIONS_SEEN_DIR is not None:
        shutil.rmtree(servers.TRANSITIONS_SEEN_DIR, ignore_errors=True)


@pytest.fixture
def start_server():
    """Factory: start_server(*flags, root=...) -> ServerProcess; all stopped at teardown."""
    servers = []

    def start(*args, root=DEMO_ROOT, **kwargs):
        server = ServerProcess(list(args), root, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        stderr = "".join(server.stderr_lines)
        assert "Traceback" not in stderr or getattr(server, "tracebacks_expected", False), stderr


@pytest.fixture(scope="module", params=["epoll", "poll"])
def shared_selector(request):
    """The readiness backend of a module's shared servers (both are tested)."""
    return request.param


@pytest.fixture(params=["epoll", "poll"])
def selector(request):
    """Run a test under each readiness backend (the portable path must work too)."""
    return request.param


@pytest.fixture
def server(start_server, selector):
    """The demo site served with the given selector."""
    return start_server("--selector", selector)


@pytest.fixture
def client_for():
    """Factory: client_for(server) -> RawClient on a new connection; closed at teardown."""
    clients = []

    def connect(server, timeout=10):
        client = RawClient(server.connect(), timeout)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def world_readable_tmp():
    """A fresh directory under /tmp that user nobody can enter (tmp_path's
    parents may be 0o700); emptied and removed at teardown whatever modes the
    test left inside."""
    import tempfile
    directory = tempfile.mkdtemp(prefix="reactor-http-reliability-", dir="/tmp")
    os.chmod(directory, 0o755)
    yield directory
    for path, directories, files in os.walk(directory):
        for name in directories + files:
            try:
                os.chmod(os.path.join(path, name), 0o755)
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)
