"""The real server in a subprocess, and the record of the transitions it made."""

import os
import socket

from harness.server import ReactorHttpProcess, ServerError, parse_banner

from .environment import REPO, wait_until

# -- which connection transitions the end-to-end servers went through ------------------------
#
# Every server started by ServerProcess (unless a test brings its own
# PYTHONPATH, for fault injection) runs this sitecustomize first: it wraps
# Connection._enter, the one place the state changes, and appends each
# transition the first time that process makes it to a file of its own.
# tests/meta/test_transition_coverage.py, run after everything else, checks
# that together they made every transition in the table.

TRANSITIONS_SEEN_DIR = None  # made on first use, one per test session

_TRANSITION_RECORDER_CODE = """
import os
import reactor_http.connection.connection as connection

_directory = os.environ.get("TEST_TRANSITIONS_SEEN_DIR")
_seen = set()
_enter = connection.Connection._enter


def recording_enter(self, new_state):
    old_state = self.state
    _enter(self, new_state)
    if (old_state, new_state) not in _seen:
        _seen.add((old_state, new_state))
        with open(os.path.join(_directory, str(os.getpid())), "a") as record:
            record.write(old_state.name + " " + new_state.name + "\\n")


if _directory:  # a process started without the variable records nothing
    connection.Connection._enter = recording_enter
"""


def transitions_seen_dir():
    global TRANSITIONS_SEEN_DIR
    if TRANSITIONS_SEEN_DIR is None:
        import tempfile
        TRANSITIONS_SEEN_DIR = tempfile.mkdtemp(prefix="reactor-http-transitions-")
        os.chmod(TRANSITIONS_SEEN_DIR, 0o777)  # servers running as nobody record too
        recorder = os.path.join(TRANSITIONS_SEEN_DIR, "recorder")
        os.mkdir(recorder)
        os.chmod(recorder, 0o755)
        with open(os.path.join(recorder, "sitecustomize.py"), "w", encoding="utf-8") as file:
            file.write(_TRANSITION_RECORDER_CODE)
        os.chmod(os.path.join(recorder, "sitecustomize.py"), 0o644)
    return TRANSITIONS_SEEN_DIR


def transitions_seen():
    """Every (old, new) state-name pair the end-to-end servers of this session made."""
    seen = set()
    if TRANSITIONS_SEEN_DIR is None:
        return seen
    for name in os.listdir(TRANSITIONS_SEEN_DIR):
        path = os.path.join(TRANSITIONS_SEEN_DIR, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as file:
                seen.update(tuple(line.split()) for line in file if line.strip())
    return seen


def sitecustomize_env(directory, code, record_transitions=True):
    """Write ``code`` as ``directory``/sitecustomize.py and return the environment
    that makes a server started by start_server run it before `-m reactor_http`:
    fault injection (a slow disk, a jumping clock) without touching the package.
    Python runs one sitecustomize only, so it also records the connection's
    transitions, as every end-to-end server does (see the top of this file)."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "sitecustomize.py")
    with open(path, "w", encoding="utf-8") as file:
        if record_transitions:
            file.write(_TRANSITION_RECORDER_CODE)
        file.write(code)
    os.chmod(path, 0o644)
    return {"PYTHONPATH": os.pathsep.join((str(directory), REPO)), "PYTHONDONTWRITEBYTECODE": "1",
            "TEST_TRANSITIONS_SEEN_DIR": transitions_seen_dir()}



class ServerProcess(ReactorHttpProcess):
    """A running `python -m reactor_http` (from this checkout, on a port of its
    own) and what it printed, recording the connection's transitions."""

    def __init__(self, args, root, cwd=None, env=None, preexec_fn=None, launcher=(), pass_fds=()):
        self.root = root
        seen_dir = transitions_seen_dir()
        environment = {"PYTHONPATH": os.pathsep.join((os.path.join(seen_dir, "recorder"), REPO)),
                       "TEST_TRANSITIONS_SEEN_DIR": seen_dir, **(env or {})}
        super().__init__(["--port", "0", "--root", root, *args], launcher=launcher, env=environment, cwd=cwd,
                         preexec_fn=preexec_fn, pass_fds=pass_fds)
        self.wait_until_serving()
        if parse_banner(self.stdout_lines[0]) is None:
            self.stop()
            raise ServerError(f"the server printed something before its banner: {self.stdout_lines[0]!r}")
        # One banner line per listener, TCP ones first: host and port are the first's.
        self.scheme, self.host, self.port = self.banner.scheme, self.banner.host, self.banner.port

    def banners(self, count, timeout=10):
        """The first ``count`` banner lines (one per listener), once printed."""
        return [banner.line for banner in self.wait_for_banners(count, timeout)]

    def unix_path(self, listeners=1):
        """The Unix socket path the banners name (``listeners``: how many banner
        lines to wait for)."""
        for banner in self.wait_for_banners(listeners):
            if banner.unix_path:
                return banner.unix_path
        raise AssertionError(f"no unix: banner in {self.stdout_lines}")

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def connect(self, timeout=10):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def wait_for_log(self, predicate, timeout=10):
        """Wait until an access-log line satisfies predicate; return it."""
        return wait_until(lambda: next((line for line in list(self.stdout_lines) if predicate(line)), None),
                          timeout, lambda: f"no such log line in {self.stdout_lines[-20:]}", interval=0.02)


def stop_and_check(server):
    """Stop a (module-shared) server and prove it never printed a traceback."""
    server.stop()
    stderr = "".join(server.stderr_lines)
    assert "Traceback" not in stderr, stderr


def refuses_connections(server):
    try:
        probe = socket.create_connection((server.host, server.port), timeout=5)
    except (ConnectionRefusedError, ConnectionResetError):
        # Refused; or reset, when the listener closed with this connection
        # still in its backlog.
        return True
    probe.close()
    return False


def wait_for_exit(server, timeout=60):
    status = server.process.wait(timeout)
    server.stop()  # joins the output readers
    return status
