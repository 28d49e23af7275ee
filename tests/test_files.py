"""Unit tests for files.py, the executor job that resolves and opens a file.

These run open_for_serving directly (on the test thread, as an executor thread
would) against real temporary directories: real symlinks, a real FIFO, real
permission bits. They check the second half of the path promise, that what is
opened is a regular file whose real path is under the root, and that no
outcome leaks a file descriptor.
"""

import errno
import json
import os
import shutil
import tempfile
import threading

import pytest

from reactor_http import files
from reactor_http.files import (
    SMALL_FILE_BYTES, MissingSlash, OpenedFile, Refused, open_for_serving, read_chunk)


@pytest.fixture
def site(tmp_path):
    """A document root (as its real path, which is what StaticSite passes)
    plus a directory beside it that must never be served."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "noindex").mkdir()
    (root / ".private").mkdir()
    outside.mkdir()
    (root / "index.html").write_bytes(b"<h1>root</h1>\n")
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "dir" / "index.html").write_bytes(b"<h1>dir</h1>\n")
    (root / "dir" / "sub" / "deep.css").write_bytes(b"body{}\n")
    (root / "noindex" / "file.txt").write_bytes(b"x")
    (root / ".private" / "secret.txt").write_bytes(b"private\n")
    (outside / "secret.txt").write_bytes(b"outside secret\n")
    (outside / "index.html").write_bytes(b"outside index\n")
    return os.path.realpath(root), os.path.realpath(outside)


def serve(root, path, show_hidden=False, read_body=True):
    """open_for_serving for a "/a/b/"-style path, as parse_target would split it."""
    segments = [segment for segment in path.split("/") if segment]
    return open_for_serving(root, segments, path.endswith("/"), show_hidden, read_body)


def assert_refused(outcome, status):
    """The outcome is a Refused with this status (and never an open file)."""
    assert isinstance(outcome, Refused), f"expected Refused({status}), got {outcome!r}"
    assert outcome.status == status


def assert_served(outcome, name, data):
    """The outcome is a small file read whole, with no descriptor left open."""
    assert isinstance(outcome, OpenedFile), f"expected OpenedFile, got {outcome!r}"
    assert (outcome.name, outcome.data, outcome.size, outcome.fd) == (name, data, len(data), -1)


# --- files and directories -------------------------------------------------

def test_file(site):
    """A file at the top of the root is read whole."""
    root, _ = site
    outcome = serve(root, "/hello.txt")
    assert_served(outcome, "hello.txt", b"hello\n")
    assert outcome.mtime == os.stat(os.path.join(root, "hello.txt")).st_mtime


def test_nested_file(site):
    """Segments are joined under the root."""
    root, _ = site
    assert_served(serve(root, "/dir/sub/deep.css"), "deep.css", b"body{}\n")


def test_root_with_slash_serves_its_index(site):
    """"/" names the root directory, whose index.html is served."""
    root, _ = site
    assert_served(serve(root, "/"), "index.html", b"<h1>root</h1>\n")


def test_directory_without_slash_is_missing_slash(site):
    """"/dir" names a directory: the caller redirects to "/dir/" so relative
    links in its index resolve against the right base (RFC 3986 §5.2)."""
    root, _ = site
    assert isinstance(serve(root, "/dir"), MissingSlash)
    assert isinstance(serve(root, "/dir/sub"), MissingSlash)


def test_directory_with_slash_serves_its_index(site):
    """"/dir/" is answered with dir/index.html, named index.html for its type."""
    root, _ = site
    assert_served(serve(root, "/dir/"), "index.html", b"<h1>dir</h1>\n")


def test_directory_without_index_is_404(site):
    """There is no directory listing: no index.html means 404."""
    root, _ = site
    assert_refused(serve(root, "/noindex/"), 404)
    assert_refused(serve(root, "/dir/sub/"), 404)


def test_index_that_is_a_directory_is_404(site):
    """An index.html that is itself a directory is not a page."""
    root, _ = site
    os.mkdir(os.path.join(root, "noindex", "index.html"))
    assert_refused(serve(root, "/noindex/"), 404)


def test_file_with_trailing_slash_is_404(site):
    """"/hello.txt/" asks for a directory, and a file is not one."""
    root, _ = site
    assert_refused(serve(root, "/hello.txt/"), 404)


@pytest.mark.parametrize("path", ["/missing.txt", "/missing/", "/dir/missing.html", "/nodir/x/y"])
def test_missing_is_404(site, path):
    """ENOENT anywhere along the path is 404."""
    root, _ = site
    assert_refused(serve(root, path), 404)


@pytest.mark.parametrize("path", ["/hello.txt/x", "/hello.txt/x/", "/dir/index.html/x"])
def test_path_through_a_file_is_404(site, path):
    """ENOTDIR (a file used as a directory) is 404, not an I/O error."""
    root, _ = site
    assert_refused(serve(root, path), 404)


def test_name_too_long_is_404(site):
    """ENAMETOOLONG is 404, not a 500."""
    root, _ = site
    assert_refused(serve(root, "/" + "a" * 300), 404)
    assert_refused(serve(root, "/a" * 3000), 404)


def test_root_inside_a_hidden_directory_is_not_hidden(tmp_path):
    """Only the part of the real path below the root is checked for dot-segments."""
    root = tmp_path / ".config" / "site"
    root.mkdir(parents=True)
    (root / "page.html").write_bytes(b"page")
    assert_served(serve(os.path.realpath(root), "/page.html"), "page.html", b"page")


# --- symlinks -------------------------------------------------------------

def test_symlink_to_a_file_inside_the_root_is_served(site):
    """A link inside the root is followed; the name is the one requested."""
    root, _ = site
    os.symlink("dir/sub/deep.css", os.path.join(root, "alias.css"))
    os.symlink(os.path.join(root, "hello.txt"), os.path.join(root, "dir", "absolute.txt"))
    assert_served(serve(root, "/alias.css"), "alias.css", b"body{}\n")
    assert_served(serve(root, "/dir/absolute.txt"), "absolute.txt", b"hello\n")


def test_symlink_to_a_directory_inside_the_root(site):
    """A linked directory behaves like the directory: slash redirect, then index."""
    root, _ = site
    os.symlink("dir", os.path.join(root, "linked"))
    assert isinstance(serve(root, "/linked"), MissingSlash)
    assert_served(serve(root, "/linked/"), "index.html", b"<h1>dir</h1>\n")
    assert_served(serve(root, "/linked/sub/deep.css"), "deep.css", b"body{}\n")


@pytest.mark.parametrize("read_body", [True, False])
@pytest.mark.parametrize("show_hidden", [False, True])
def test_symlink_outside_the_root_is_403(site, read_body, show_hidden):
    """A link leading out of the root is refused with 403 for files and
    directories alike, whatever the flags: never an OpenedFile."""
    root, outside = site
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "file-link"))
    os.symlink(outside, os.path.join(root, "dir-link"))
    os.symlink("../../outside/secret.txt", os.path.join(root, "dir", "relative-link"))
    os.symlink(os.path.join(outside, "index.html"), os.path.join(root, "noindex", "index.html"))
    os.symlink("/", os.path.join(root, "slash"))
    for path in ("/file-link", "/dir-link", "/dir-link/", "/dir-link/secret.txt",
                 "/dir/relative-link", "/noindex/", "/slash/etc/passwd", "/slash/"):
        assert_refused(serve(root, path, show_hidden, read_body), 403)


def test_symlink_to_a_sibling_sharing_the_root_prefix_is_403(tmp_path):
    """"/srv/www2" is not under "/srv/www": the check is on whole path segments."""
    root = tmp_path / "www"
    sibling = tmp_path / "www2"
    root.mkdir()
    sibling.mkdir()
    (sibling / "secret.txt").write_bytes(b"secret")
    os.symlink(sibling / "secret.txt", root / "link")
    os.symlink(sibling, root / "dirlink")
    real_root = os.path.realpath(root)
    assert_refused(serve(real_root, "/link"), 403)
    assert_refused(serve(real_root, "/dirlink/secret.txt"), 403)
    # A root given with a trailing separator is handled the same way.
    assert_refused(serve(real_root + os.sep, "/link"), 403)


def test_symlink_loop_is_404(site):
    """ELOOP is 404, and resolving a loop terminates."""
    root, _ = site
    os.symlink("loop-b", os.path.join(root, "loop-a"))
    os.symlink("loop-a", os.path.join(root, "loop-b"))
    os.symlink("self", os.path.join(root, "self"))
    for path in ("/loop-a", "/loop-b", "/self", "/self/", "/loop-a/x"):
        assert_refused(serve(root, path), 404)


def test_dangling_symlink_is_404(site):
    """A link to nothing is as missing as nothing."""
    root, _ = site
    os.symlink("nowhere.txt", os.path.join(root, "dangling"))
    assert_refused(serve(root, "/dangling"), 404)


def test_symlink_into_a_hidden_directory_is_404_unless_shown(site):
    """parse_target cannot see where a link leads, so the resolved path is
    checked again: a public name must not expose a hidden file."""
    root, _ = site
    os.symlink(".private/secret.txt", os.path.join(root, "public.txt"))
    os.symlink(".private", os.path.join(root, "public-dir"))
    assert_refused(serve(root, "/public.txt"), 404)
    assert_refused(serve(root, "/public-dir/secret.txt"), 404)
    assert_served(serve(root, "/public.txt", show_hidden=True), "public.txt", b"private\n")
    assert_served(serve(root, "/public-dir/secret.txt", show_hidden=True), "secret.txt", b"private\n")


def test_index_symlink_into_a_hidden_directory_is_404(site):
    """The index.html lookup gets the same hidden check as the requested path."""
    root, _ = site
    os.symlink("../.private/secret.txt", os.path.join(root, "noindex", "index.html"))
    assert_refused(serve(root, "/noindex/"), 404)
    assert_served(serve(root, "/noindex/", show_hidden=True), "index.html", b"private\n")


def test_well_known_link_target_is_public(site):
    """A link into /.well-known/ is allowed, as /.well-known/ itself is (RFC 8615)."""
    root, _ = site
    os.mkdir(os.path.join(root, ".well-known"))
    with open(os.path.join(root, ".well-known", "security.txt"), "wb") as handle:
        handle.write(b"Contact: x\n")
    os.symlink(".well-known/security.txt", os.path.join(root, "security.txt"))
    assert_served(serve(root, "/security.txt"), "security.txt", b"Contact: x\n")
    assert_served(serve(root, "/.well-known/security.txt"), "security.txt", b"Contact: x\n")


# --- permissions ----------------------------------------------------------

def _open_ignores_permissions(directory):
    """Whether this process can read a mode-000 file (root with CAP_DAC_OVERRIDE)."""
    probe = os.path.join(directory, "probe")
    with open(probe, "wb"):
        pass
    os.chmod(probe, 0)
    try:
        os.close(os.open(probe, os.O_RDONLY))
        return True
    except PermissionError:
        return False
    finally:
        os.unlink(probe)


UNPRIVILEGED_ID = 65534  # "nobody"


def _outcomes(root, requests):
    """(class name, status) for each (segments, wants_directory) request.

    When this process ignores permission bits (root), the calls run in a
    forked child that has dropped to uid/gid 65534, so that chmod 000 means
    what it means for a real server account. (Forking, not exec'ing: the
    interpreter itself may live where that user cannot read.)
    """

    def run_all():
        results = []
        for segments, wants_directory in requests:
            outcome = open_for_serving(root, segments, wants_directory, False, True)
            results.append([type(outcome).__name__, getattr(outcome, "status", None)])
        return results

    if not _open_ignores_permissions(root):
        return [tuple(result) for result in run_all()]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(UNPRIVILEGED_ID)
            os.setuid(UNPRIVILEGED_ID)
            report = json.dumps(run_all())
        except BaseException as error:
            report = json.dumps({"error": repr(error)})
        try:
            os.write(write_end, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = json.loads(reader.read() or b"null")
    os.waitpid(pid, 0)
    if not isinstance(report, list):
        pytest.skip(f"running as root and could not drop to uid {UNPRIVILEGED_ID} "
                    f"to make permission bits effective: {report}")
    return [tuple(result) for result in report]


@pytest.fixture
def world_readable_root():
    """A root that uid 65534 can reach (pytest's tmp_path may be private to root)."""
    directory = tempfile.mkdtemp(prefix="reactor_http_perm_")
    os.chmod(directory, 0o755)
    yield os.path.realpath(directory)
    for path, _, _ in os.walk(directory):
        os.chmod(path, 0o755)  # so rmtree can descend into the chmod-000 directory
    shutil.rmtree(directory)


def test_permission_denied_is_403(world_readable_root):
    """EACCES on open (an unreadable file) or on stat (an untraversable
    directory) is 403: it exists, but the server may not serve it."""
    root = world_readable_root
    for name, mode in (("readable.txt", 0o644), ("locked.txt", 0o000)):
        path = os.path.join(root, name)
        with open(path, "wb") as handle:
            handle.write(b"data")
        os.chmod(path, mode)
    os.mkdir(os.path.join(root, "locked-dir"))
    with open(os.path.join(root, "locked-dir", "inside.txt"), "wb") as handle:
        handle.write(b"data")
    os.chmod(os.path.join(root, "locked-dir"), 0)
    os.mkdir(os.path.join(root, "locked-index"), 0o755)
    with open(os.path.join(root, "locked-index", "index.html"), "wb") as handle:
        handle.write(b"data")
    os.chmod(os.path.join(root, "locked-index", "index.html"), 0)
    results = _outcomes(root, [
        [["readable.txt"], False],         # the control: the same setup can serve
        [["locked.txt"], False],
        [["locked-dir", "inside.txt"], False],
        [["locked-index"], True],
    ])
    assert results == [("OpenedFile", None), ("Refused", 403), ("Refused", 403), ("Refused", 403)]


# --- not regular files ----------------------------------------------------

def _call_with_deadline(function, *args, timeout=10):
    """Run function(*args) on a thread; fail (instead of hanging) if it blocks."""
    result = {}

    def run():
        try:
            result["value"] = function(*args)
        except BaseException as error:  # reported on the test thread below
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread, result


def test_fifo_is_403_and_never_opened(site, monkeypatch):
    """A FIFO is refused from its stat alone. Opening one for reading would
    block the executor thread until some writer appeared."""
    root, _ = site
    fifo = os.path.join(root, "pipe")
    os.mkfifo(fifo)
    os.mkdir(os.path.join(root, "pipedir"))
    os.mkfifo(os.path.join(root, "pipedir", "index.html"))
    opened = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", recording_open)
    for path, status in (("/pipe", 403), ("/pipedir/", 404)):
        thread, result = _call_with_deadline(serve, root, path)
        if thread.is_alive():
            # Unblock the stuck reader so the process can exit, then fail.
            os.close(real_open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail(f"open_for_serving blocked on the FIFO {path}")
        assert "error" not in result, result.get("error")
        assert_refused(result["value"], status)
    assert opened == []


def test_device_is_403(tmp_path):
    """A character device (/dev/null, served from a root of "/" because a
    symlink to it would be refused as outside the root) is not a regular
    file: 403."""
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    assert_refused(open_for_serving("/", ["dev", "null"], False, False, True), 403)


# --- bodies ---------------------------------------------------------------

def write(root, name, data):
    with open(os.path.join(root, name), "wb") as handle:
        handle.write(data)
    return os.stat(os.path.join(root, name))


def test_small_file_is_read_whole(site):
    """Up to SMALL_FILE_BYTES the bytes come back in .data and no fd is kept."""
    root, _ = site
    data = bytes(range(256)) * (SMALL_FILE_BYTES // 256)
    assert len(data) == SMALL_FILE_BYTES  # the boundary itself is still "small"
    info = write(root, "small.bin", data)
    outcome = serve(root, "/small.bin")
    assert_served(outcome, "small.bin", data)
    assert outcome.mtime == info.st_mtime


def test_large_file_hands_over_an_open_descriptor(site):
    """Above SMALL_FILE_BYTES the caller gets an fd to stream, and owns it."""
    root, _ = site
    data = os.urandom(SMALL_FILE_BYTES + 1)
    info = write(root, "large.bin", data)
    outcome = serve(root, "/large.bin")
    assert isinstance(outcome, OpenedFile)
    try:
        assert outcome.fd >= 0
        assert outcome.data is None
        assert (outcome.name, outcome.size, outcome.mtime) == ("large.bin", len(data), info.st_mtime)
        assert os.pread(outcome.fd, len(data) + 1, 0) == data
        # The descriptor is not inherited by child processes (O_CLOEXEC).
        assert os.get_inheritable(outcome.fd) is False
    finally:
        os.close(outcome.fd)


@pytest.mark.parametrize("size", [0, 10, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1, 3 * SMALL_FILE_BYTES])
def test_metadata_only_when_read_body_is_false(site, size):
    """For HEAD (read_body=False): size and mtime, but neither data nor an fd."""
    root, _ = site
    info = write(root, "file.bin", b"z" * size)
    outcome = serve(root, "/file.bin", read_body=False)
    assert isinstance(outcome, OpenedFile)
    assert (outcome.name, outcome.size, outcome.mtime, outcome.fd, outcome.data) == (
        "file.bin", size, info.st_mtime, -1, None)


def test_empty_file(site):
    """An empty file is served with empty data (b"", not None)."""
    root, _ = site
    write(root, "empty.txt", b"")
    assert_served(serve(root, "/empty.txt"), "empty.txt", b"")


def test_file_that_keeps_changing_size_raises_and_closes(site, monkeypatch):
    """If every read disagrees with fstat, the job gives up with an OSError
    (the caller's 500) after READ_ATTEMPTS tries, and closes its fd."""
    root, _ = site
    write(root, "growing.txt", b"12345")
    calls = []

    def growing_pread(fd, length, offset):
        calls.append((length, offset))
        return b"x" * length  # always one byte more than fstat said

    monkeypatch.setattr(files.os, "pread", growing_pread)
    before = _open_descriptors()
    with pytest.raises(OSError) as caught:
        serve(root, "/growing.txt")
    monkeypatch.undo()
    assert caught.value.errno == errno.EAGAIN
    assert calls == [(6, 0)] * files.READ_ATTEMPTS
    assert _open_descriptors() == before


def test_file_that_changes_once_is_read_again(site, monkeypatch):
    """One disagreement between fstat and read is retried, not fatal."""
    root, _ = site
    write(root, "settling.txt", b"12345")
    real_pread = os.pread
    calls = []

    def pread_once_short(fd, length, offset):
        calls.append(length)
        data = real_pread(fd, length, offset)
        return data[:-1] if len(calls) == 1 else data

    monkeypatch.setattr(files.os, "pread", pread_once_short)
    assert_served(serve(root, "/settling.txt"), "settling.txt", b"12345")
    assert calls == [6, 6]


def test_unexpected_os_error_propagates(site, monkeypatch):
    """Only the expected errnos become a Refused; an I/O error is raised for
    the caller to turn into a 500, not mistaken for a 404."""
    root, _ = site

    def failing_stat(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(files.os, "stat", failing_stat)
    with pytest.raises(OSError) as caught:
        serve(root, "/hello.txt")
    assert caught.value.errno == errno.EIO


def test_read_chunk_reads_at_offsets(site):
    """read_chunk is a positional read: it does not depend on or move the file offset."""
    root, _ = site
    data = bytes(range(256)) * 1024
    write(root, "chunks.bin", data)
    fd = os.open(os.path.join(root, "chunks.bin"), os.O_RDONLY)
    try:
        assert read_chunk(fd, 0, 10) == data[:10]
        assert read_chunk(fd, 70000, 5) == data[70000:70005]
        assert read_chunk(fd, 1, 3) == data[1:4]  # backwards: positional, not sequential
        assert read_chunk(fd, len(data) - 4, 100) == data[-4:]  # short read at the end
        assert read_chunk(fd, len(data), 100) == b""
        assert read_chunk(fd, len(data) + 1000, 100) == b""
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)


# --- descriptor leaks -----------------------------------------------------

def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_no_descriptor_leaks(site):
    """Every outcome, refused or served, leaves the descriptor count as it was
    (the large file's fd is closed by the test, as the connection would)."""
    root, outside = site
    write(root, "large.bin", b"L" * (SMALL_FILE_BYTES * 2))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "escape"))
    os.symlink("loop", os.path.join(root, "loop"))
    os.mkfifo(os.path.join(root, "pipe"))
    os.symlink(".private/secret.txt", os.path.join(root, "hidden-link"))
    cases = [
        ("/hello.txt", True, OpenedFile), ("/hello.txt", False, OpenedFile),
        ("/large.bin", True, OpenedFile), ("/large.bin", False, OpenedFile),
        ("/dir", True, MissingSlash), ("/dir/", True, OpenedFile),
        ("/noindex/", True, Refused), ("/missing", True, Refused), ("/hello.txt/x", True, Refused),
        ("/hello.txt/", True, Refused), ("/escape", True, Refused), ("/loop", True, Refused),
        ("/pipe", True, Refused), ("/hidden-link", True, Refused),
    ]
    before = _open_descriptors()
    for _ in range(20):
        for path, read_body, expected in cases:
            outcome = serve(root, path, read_body=read_body)
            assert isinstance(outcome, expected), (path, outcome)
            if isinstance(outcome, OpenedFile) and outcome.fd >= 0:
                os.close(outcome.fd)
    assert _open_descriptors() == before
