"""Unit tests for files.py, the executor jobs that resolve, open and compress a file.

These run ``resolve``, ``open_variant`` and ``gzip_variant`` directly (on the
test thread, as an executor thread would) against real temporary directories:
real symlinks, a real FIFO, real permission bits. They check the second half
of the path promise, that what is read or opened is a regular file whose real
path is under the root (the file itself and each precompressed sibling alike),
and that no outcome leaks a file descriptor.
"""

import errno
import gzip
import json
import os
import shutil
import tempfile
import threading

import pytest

from reactor_http.connection.writer import read_cached_chunk, read_chunk
from reactor_http.static import files
from reactor_http.static.files import (
    SMALL_FILE_BYTES,
    Listing,
    MissingSlash,
    Refused,
    Resource,
    Variant,
    gzip_variant,
    open_variant,
    resolve,
)

SIBLING_SUFFIXES = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}


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


def serve(root, path, show_hidden=False, precompressed=True, autoindex=False):
    """resolve for a "/a/b/"-style path, as parse_target would split it."""
    segments = [segment for segment in path.split("/") if segment]
    return resolve(root, segments, path.endswith("/"), show_hidden, precompressed, autoindex)


def write(root, name, data):
    path = os.path.join(root, name)
    with open(path, "wb") as handle:
        handle.write(data)
    return os.stat(path)


def expected_etag(info, coding="identity"):
    """The validator files.py promises: mtime and size in hex, like nginx,
    plus the coding for a precompressed sibling (RFC 9110 §8.8.3: each
    representation needs its own strong validator)."""
    suffix = "" if coding == "identity" else "-" + coding
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}{suffix}"'


def assert_refused(outcome, status):
    """The outcome is a Refused with this status (never something to serve)."""
    assert isinstance(outcome, Refused), f"expected Refused({status}), got {outcome!r}"
    assert outcome.status == status


def assert_variant(variant, coding, real_path, data):
    """A variant describing the file at real_path as it is on disk now, holding
    ``data`` (bytes, or None for a file above SMALL_FILE_BYTES)."""
    info = os.stat(real_path)
    assert isinstance(variant, Variant)
    assert (variant.coding, variant.path, variant.data) == (coding, real_path, data)
    assert (variant.size, variant.mtime) == (info.st_size, int(info.st_mtime))
    assert variant.identity == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    assert variant.etag == expected_etag(info, coding)


def assert_served(outcome, name, data, real_path=None):
    """The outcome is a Resource named ``name`` whose only variant is the
    identity one, read whole (a small file)."""
    assert isinstance(outcome, Resource), f"expected Resource, got {outcome!r}"
    assert outcome.name == name
    assert sorted(outcome.variants) == ["identity"]
    identity = outcome.variants["identity"]
    assert identity.data == data
    assert identity.size == len(data)
    if real_path is not None:
        assert_variant(identity, "identity", real_path, data)


# --- files and directories -------------------------------------------------

def test_file(site):
    """A file at the top of the root is read whole, and described by the
    stat of the file that was read."""
    root, _ = site
    assert_served(serve(root, "/hello.txt"), "hello.txt", b"hello\n", os.path.join(root, "hello.txt"))


def test_nested_file(site):
    """Segments are joined under the root."""
    root, _ = site
    assert_served(serve(root, "/dir/sub/deep.css"), "deep.css", b"body{}\n",
                  os.path.join(root, "dir", "sub", "deep.css"))


def test_root_with_slash_serves_its_index(site):
    """"/" names the root directory, whose index.html is served."""
    root, _ = site
    assert_served(serve(root, "/"), "index.html", b"<h1>root</h1>\n", os.path.join(root, "index.html"))


def test_directory_without_slash_is_missing_slash(site):
    """"/dir" names a directory: the caller redirects to "/dir/" so relative
    links in its index resolve against the right base (RFC 3986 §5.2)."""
    root, _ = site
    assert isinstance(serve(root, "/dir"), MissingSlash)
    assert isinstance(serve(root, "/dir/sub"), MissingSlash)
    # Listing or not, the redirect comes first.
    assert isinstance(serve(root, "/noindex", autoindex=True), MissingSlash)


def test_directory_with_slash_serves_its_index(site):
    """"/dir/" is answered with dir/index.html, named index.html for its type."""
    root, _ = site
    assert_served(serve(root, "/dir/"), "index.html", b"<h1>dir</h1>\n",
                  os.path.join(root, "dir", "index.html"))


def test_directory_without_index_is_404_without_autoindex(site):
    """Without autoindex, no index.html means 404."""
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
    assert_refused(serve(root, "/hello.txt/", autoindex=True), 404)


@pytest.mark.parametrize("autoindex", [False, True])
@pytest.mark.parametrize("path", ["/missing.txt", "/missing/", "/dir/missing.html", "/nodir/x/y"])
def test_missing_is_404(site, path, autoindex):
    """ENOENT anywhere along the path is 404 (a missing directory is not listed)."""
    root, _ = site
    assert_refused(serve(root, path, autoindex=autoindex), 404)


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


def test_root_with_a_trailing_separator(site):
    """A root given as "/srv/www/" works like "/srv/www", the root itself included."""
    root, _ = site
    assert_served(serve(root + os.sep, "/"), "index.html", b"<h1>root</h1>\n")
    assert_served(serve(root + os.sep, "/dir/"), "index.html", b"<h1>dir</h1>\n")
    os.unlink(os.path.join(root, "index.html"))
    assert {entry.name for entry in serve(root + os.sep, "/", autoindex=True).entries} == {
        "dir", "noindex", "hello.txt"}


def test_root_inside_a_hidden_directory_is_not_hidden(tmp_path):
    """Only the part of the real path below the root is checked for dot-segments."""
    root = tmp_path / ".config" / "site"
    root.mkdir(parents=True)
    (root / "page.html").write_bytes(b"page")
    assert_served(serve(os.path.realpath(root), "/page.html"), "page.html", b"page")


# --- directory listings ----------------------------------------------------

def listed(outcome):
    """{name: (is_directory, size)} of a Listing."""
    assert isinstance(outcome, Listing), f"expected Listing, got {outcome!r}"
    return {entry.name: (entry.is_directory, entry.size) for entry in outcome.entries}


def test_autoindex_lists_a_directory_without_index(site):
    """With autoindex, a directory with no index.html becomes a Listing of
    its entries (files with their sizes, directories without)."""
    root, _ = site
    os.mkdir(os.path.join(root, "noindex", "child"))
    write(root, "noindex/.dotfile", b"hidden")
    assert listed(serve(root, "/noindex/", autoindex=True)) == {
        "file.txt": (False, 1), "child": (True, None)}
    assert listed(serve(root, "/dir/sub/", autoindex=True)) == {"deep.css": (False, 7)}
    # show_hidden is passed on to the scan.
    assert listed(serve(root, "/noindex/", show_hidden=True, autoindex=True)) == {
        "file.txt": (False, 1), "child": (True, None), ".dotfile": (False, 6)}


def test_autoindex_lists_the_root_without_index(tmp_path):
    """The root itself (no segments) is listed like any directory."""
    write(str(tmp_path), "only.txt", b"abc")
    assert listed(resolve(os.path.realpath(tmp_path), [], True, autoindex=True)) == {"only.txt": (False, 3)}
    assert_refused(resolve(os.path.realpath(tmp_path), [], True), 404)


def test_autoindex_prefers_the_index(site):
    """A directory with an index.html serves it even when listings are on."""
    root, _ = site
    assert_served(serve(root, "/dir/", autoindex=True), "index.html", b"<h1>dir</h1>\n")


def test_autoindex_does_not_list_a_hidden_directory(site):
    """A directory that is hidden once symlinks are resolved is 404, not listed."""
    root, _ = site
    os.symlink(".private", os.path.join(root, "public-dir"))
    assert_refused(serve(root, "/public-dir/", autoindex=True), 404)
    assert_refused(serve(root, "/.private/", autoindex=True), 404)
    assert listed(serve(root, "/public-dir/", show_hidden=True, autoindex=True)) == {"secret.txt": (False, 8)}


# --- symlinks -------------------------------------------------------------

def test_symlink_to_a_file_inside_the_root_is_served(site):
    """A link inside the root is followed: the name is the one requested, the
    variant's path is the real file's."""
    root, _ = site
    os.symlink("dir/sub/deep.css", os.path.join(root, "alias.css"))
    os.symlink(os.path.join(root, "hello.txt"), os.path.join(root, "dir", "absolute.txt"))
    assert_served(serve(root, "/alias.css"), "alias.css", b"body{}\n", os.path.join(root, "dir", "sub", "deep.css"))
    assert_served(serve(root, "/dir/absolute.txt"), "absolute.txt", b"hello\n", os.path.join(root, "hello.txt"))


def test_symlink_to_a_directory_inside_the_root(site):
    """A linked directory behaves like the directory: slash redirect, then index."""
    root, _ = site
    os.symlink("dir", os.path.join(root, "linked"))
    assert isinstance(serve(root, "/linked"), MissingSlash)
    assert_served(serve(root, "/linked/"), "index.html", b"<h1>dir</h1>\n")
    assert_served(serve(root, "/linked/sub/deep.css"), "deep.css", b"body{}\n")


@pytest.mark.parametrize("autoindex", [False, True])
@pytest.mark.parametrize("show_hidden", [False, True])
def test_symlink_outside_the_root_is_403(site, autoindex, show_hidden):
    """A link leading out of the root is refused with 403 for files and
    directories alike, whatever the flags: never a Resource or a Listing."""
    root, outside = site
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "file-link"))
    os.symlink(outside, os.path.join(root, "dir-link"))
    os.symlink("../../outside/secret.txt", os.path.join(root, "dir", "relative-link"))
    os.symlink(os.path.join(outside, "index.html"), os.path.join(root, "noindex", "index.html"))
    os.symlink("/", os.path.join(root, "slash"))
    for path in ("/file-link", "/dir-link", "/dir-link/", "/dir-link/secret.txt",
                 "/dir/relative-link", "/noindex/", "/slash/etc/passwd", "/slash/"):
        assert_refused(serve(root, path, show_hidden, autoindex=autoindex), 403)


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
        assert_refused(serve(root, path, autoindex=True), 404)


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
    write(root, ".well-known/security.txt", b"Contact: x\n")
    os.symlink(".well-known/security.txt", os.path.join(root, "security.txt"))
    assert_served(serve(root, "/security.txt"), "security.txt", b"Contact: x\n")
    assert_served(serve(root, "/.well-known/security.txt"), "security.txt", b"Contact: x\n")


# --- precompressed siblings -------------------------------------------------

def write_siblings(directory, name, codings=("br", "zstd", "gzip")):
    """Write name and a sibling per coding, each with its own distinct bytes
    (the test checks which file each variant came from, not real compression)."""
    contents = {"identity": b"body { color: red }\n" * 4}
    write(directory, name, contents["identity"])
    for coding in codings:
        contents[coding] = f"pretend {coding} bytes".encode()
        write(directory, name + SIBLING_SUFFIXES[coding], contents[coding])
    return contents


def test_precompressed_siblings_become_variants(site):
    """a.css.br, a.css.zst and a.css.gz are found beside a.css, each as a
    variant of its own coding, read from its own file."""
    root, _ = site
    contents = write_siblings(root, "a.css")
    outcome = serve(root, "/a.css")
    assert isinstance(outcome, Resource)
    assert outcome.name == "a.css"
    assert sorted(outcome.variants) == ["br", "gzip", "identity", "zstd"]
    real_path = os.path.join(root, "a.css")
    assert_variant(outcome.variants["identity"], "identity", real_path, contents["identity"])
    for coding, suffix in SIBLING_SUFFIXES.items():
        assert_variant(outcome.variants[coding], coding, real_path + suffix, contents[coding])


def test_precompressed_siblings_ignored_when_disabled(site):
    """With precompressed=False only the file itself is a variant."""
    root, _ = site
    contents = write_siblings(root, "a.css")
    assert_served(serve(root, "/a.css", precompressed=False), "a.css", contents["identity"],
                  os.path.join(root, "a.css"))


def test_only_existing_siblings_are_variants(site):
    """A file with just a .gz beside it has identity and gzip, nothing else."""
    root, _ = site
    write_siblings(root, "a.js", codings=("gzip",))
    assert sorted(serve(root, "/a.js").variants) == ["gzip", "identity"]


def test_sibling_etags_differ_even_with_the_same_size_and_mtime(site):
    """Each coding's ETag carries the coding, so a sibling never shares the
    identity file's validator, even when size and mtime coincide (a cache
    must not answer a gzip request with identity bytes, RFC 9110 §8.8.3)."""
    root, _ = site
    write(root, "same.txt", b"0123456789")
    for suffix in SIBLING_SUFFIXES.values():
        write(root, "same.txt" + suffix, b"abcdefghij")
    times = (1_600_000_000, 1_600_000_000)
    for name in ("same.txt", "same.txt.br", "same.txt.zst", "same.txt.gz"):
        os.utime(os.path.join(root, name), times)
    variants = serve(root, "/same.txt").variants
    assert {coding: variant.etag for coding, variant in variants.items()} == {
        "identity": f'"{1_600_000_000 * 10**9:x}-a"',
        "br": f'"{1_600_000_000 * 10**9:x}-a-br"',
        "zstd": f'"{1_600_000_000 * 10**9:x}-a-zstd"',
        "gzip": f'"{1_600_000_000 * 10**9:x}-a-gzip"',
    }


def test_siblings_of_a_directory_index(site):
    """"/dir/" serves dir/index.html, and its siblings are index.html's."""
    root, _ = site
    write(root, "dir/index.html.br", b"br index")
    outcome = serve(root, "/dir/")
    assert outcome.name == "index.html"
    assert sorted(outcome.variants) == ["br", "identity"]
    assert_variant(outcome.variants["br"], "br", os.path.join(root, "dir", "index.html.br"), b"br index")


def test_siblings_of_a_symlinked_file_are_the_targets(site):
    """Siblings are looked for beside the real file, not beside the link."""
    root, _ = site
    write(root, "dir/sub/deep.css.gz", b"deep gz")
    write(root, "alias.css.gz", b"not the link's sibling")
    os.symlink("dir/sub/deep.css", os.path.join(root, "alias.css"))
    outcome = serve(root, "/alias.css")
    assert sorted(outcome.variants) == ["gzip", "identity"]
    assert_variant(outcome.variants["gzip"], "gzip", os.path.join(root, "dir", "sub", "deep.css.gz"), b"deep gz")


def test_large_sibling_is_not_read(site):
    """A sibling above SMALL_FILE_BYTES is described but left on disk."""
    root, _ = site
    write(root, "big.js", b"j" * 10)
    large = os.urandom(SMALL_FILE_BYTES + 1)
    write(root, "big.js.zst", large)
    variant = serve(root, "/big.js").variants["zstd"]
    assert_variant(variant, "zstd", os.path.join(root, "big.js.zst"), None)
    assert variant.size == len(large)


def test_sibling_symlink_inside_the_root_is_used(site):
    """The control for the next test: a sibling may be a link within the root."""
    root, _ = site
    write(root, "a.css", b"plain")
    write(root, "dir/shared.gz", b"gz bytes")
    os.symlink("dir/shared.gz", os.path.join(root, "a.css.gz"))
    variant = serve(root, "/a.css").variants["gzip"]
    assert_variant(variant, "gzip", os.path.join(root, "dir", "shared.gz"), b"gz bytes")


@pytest.mark.parametrize("show_hidden", [False, True])
def test_sibling_leading_out_of_the_root_is_ignored(site, show_hidden):
    """A sibling that is a symlink out of the root never becomes a variant:
    it would serve a file the root does not contain."""
    root, outside = site
    write(root, "a.css", b"plain")
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "a.css.gz"))
    os.symlink("../outside/secret.txt", os.path.join(root, "a.css.br"))
    os.symlink("/etc/hostname", os.path.join(root, "a.css.zst"))
    assert_served(serve(root, "/a.css", show_hidden), "a.css", b"plain")


def test_sibling_into_a_hidden_directory_is_ignored_unless_shown(site):
    """A sibling that leads into a hidden directory is as hidden as its target."""
    root, _ = site
    write(root, "a.css", b"plain")
    write(root, ".private/a.css.gz", b"private gz")
    os.symlink(".private/a.css.gz", os.path.join(root, "a.css.gz"))
    assert_served(serve(root, "/a.css"), "a.css", b"plain")
    shown = serve(root, "/a.css", show_hidden=True)
    assert_variant(shown.variants["gzip"], "gzip", os.path.join(root, ".private", "a.css.gz"), b"private gz")


def test_siblings_of_a_hidden_file_are_served_only_with_it(site):
    """A hidden file requested with show_hidden gets its siblings; without
    show_hidden the file (and so every sibling) is 404."""
    root, _ = site
    write(root, ".env.txt", b"SECRET=1\n" * 10)
    write(root, ".env.txt.gz", b"hidden gz")
    assert_refused(serve(root, "/.env.txt"), 404)
    assert sorted(serve(root, "/.env.txt", show_hidden=True).variants) == ["gzip", "identity"]


def test_sibling_that_is_not_a_regular_file_is_ignored(site):
    """A directory, a dangling link or a link loop where a sibling would be
    is simply no sibling."""
    root, _ = site
    write(root, "a.css", b"plain")
    os.mkdir(os.path.join(root, "a.css.gz"))
    os.symlink("nowhere", os.path.join(root, "a.css.br"))
    os.symlink("a.css.zst", os.path.join(root, "a.css.zst"))
    assert_served(serve(root, "/a.css"), "a.css", b"plain")


def test_fifo_sibling_is_ignored_and_never_opened(site, monkeypatch):
    """A FIFO named a.css.gz is refused from its stat: opening one could block
    the executor thread until a writer appeared."""
    root, _ = site
    write(root, "a.css", b"plain")
    fifo = os.path.join(root, "a.css.gz")
    os.mkfifo(fifo)
    opened = record_opens(monkeypatch)
    outcome = call_or_unblock(fifo, serve, root, "/a.css")
    assert_served(outcome, "a.css", b"plain")
    assert fifo not in opened
    assert opened == [os.path.join(root, "a.css")]


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


def _run_where_permissions_apply(root, job):
    """job() -> a JSON-able value, run so that permission bits bind.

    When this process ignores permission bits (root), job runs in a forked
    child that has dropped to uid/gid 65534, so that chmod 000 means what it
    means for a real server account. (Forking, not exec'ing: the interpreter
    itself may live where that user cannot read.)
    """
    if not _open_ignores_permissions(root):
        return json.loads(json.dumps(job()))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(UNPRIVILEGED_ID)
            os.setuid(UNPRIVILEGED_ID)
            report = json.dumps({"value": job()})
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
    if not isinstance(report, dict) or "value" not in report:
        pytest.skip(f"running as root and could not drop to uid {UNPRIVILEGED_ID} "
                    f"to make permission bits effective: {report}")
    return report["value"]


def _outcome_summary(outcome):
    """A JSON-able summary of what resolve returned."""
    if isinstance(outcome, Resource):
        return ["Resource", sorted(outcome.variants)]
    return [type(outcome).__name__, getattr(outcome, "status", None)]


@pytest.fixture
def world_readable_root():
    """A root that uid 65534 can reach (pytest's tmp_path may be private to root)."""
    directory = tempfile.mkdtemp(prefix="reactor_http_perm_")
    os.chmod(directory, 0o755)
    yield os.path.realpath(directory)
    for path, _, _ in os.walk(directory):
        os.chmod(path, 0o755)  # so rmtree can descend into the chmod-000 directory
    shutil.rmtree(directory)


def write_with_mode(root, name, data, mode):
    write(root, name, data)
    os.chmod(os.path.join(root, name), mode)


def test_permission_denied_is_403(world_readable_root):
    """EACCES on open (an unreadable file) or on stat (an untraversable
    directory) is 403: it exists, but the server may not serve it. An
    unreadable index is 403 even with autoindex: it is not a missing one."""
    root = world_readable_root
    write_with_mode(root, "readable.txt", b"data", 0o644)
    write_with_mode(root, "locked.txt", b"data", 0o000)
    os.mkdir(os.path.join(root, "locked-dir"))
    write(root, "locked-dir/inside.txt", b"data")
    os.chmod(os.path.join(root, "locked-dir"), 0)
    os.mkdir(os.path.join(root, "locked-index"), 0o755)
    write_with_mode(root, "locked-index/index.html", b"data", 0o000)
    requests = [
        (["readable.txt"], False, False),      # the control: the same setup can serve
        (["locked.txt"], False, False),
        (["locked-dir", "inside.txt"], False, False),
        (["locked-index"], True, False),
        (["locked-index"], True, True),
    ]
    results = _run_where_permissions_apply(root, lambda: [
        _outcome_summary(resolve(root, segments, wants_directory, autoindex=autoindex))
        for segments, wants_directory, autoindex in requests])
    assert results == [["Resource", ["identity"]], ["Refused", 403], ["Refused", 403],
                       ["Refused", 403], ["Refused", 403]]


def test_unreadable_sibling_is_ignored(world_readable_root):
    """A sibling the server may not read is no variant (it would only fail
    later, when chosen); a readable one beside it still is."""
    root = world_readable_root
    write_with_mode(root, "a.css", b"plain", 0o644)
    write_with_mode(root, "a.css.br", b"br", 0o000)
    write_with_mode(root, "a.css.gz", b"gz", 0o644)
    os.mkdir(os.path.join(root, "locked"))
    write(root, "locked/b.css", b"b")
    write_with_mode(root, "b.css", b"plain", 0o644)
    os.symlink("locked/b.css", os.path.join(root, "b.css.gz"))
    os.chmod(os.path.join(root, "locked"), 0o000)  # untraversable: stat of the link's target fails
    results = _run_where_permissions_apply(root, lambda: [
        _outcome_summary(resolve(root, ["a.css"], False)),
        _outcome_summary(resolve(root, ["b.css"], False))])
    assert results == [["Resource", ["gzip", "identity"]], ["Resource", ["identity"]]]


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


def call_or_unblock(fifo, function, *args):
    """function(*args), failing the test (and freeing the thread) if it
    blocks on the FIFO."""
    thread, result = _call_with_deadline(function, *args)
    if thread.is_alive():
        # Unblock the stuck reader so the process can exit, then fail.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{function.__name__}{args} blocked on the FIFO {fifo}")
    assert "error" not in result, result.get("error")
    return result["value"]


def record_opens(monkeypatch):
    """Record every path files.py passes to os.open (from here on)."""
    opened = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", recording_open)
    return opened


def test_fifo_is_403_and_never_opened(site, monkeypatch):
    """A FIFO is refused from its stat alone. Opening one for reading could
    block the executor thread until some writer appeared."""
    root, _ = site
    fifo = os.path.join(root, "pipe")
    os.mkfifo(fifo)
    os.mkdir(os.path.join(root, "pipedir"))
    os.mkfifo(os.path.join(root, "pipedir", "index.html"))
    opened = record_opens(monkeypatch)
    for path, status in (("/pipe", 403), ("/pipedir/", 404)):
        assert_refused(call_or_unblock(fifo, serve, root, path), status)
    monkeypatch.undo()
    assert opened == []


def test_device_is_403(tmp_path):
    """A character device (/dev/null, served from a root of "/" because a
    symlink to it would be refused as outside the root) is not a regular
    file: 403."""
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    assert_refused(resolve("/", ["dev", "null"], False), 403)


# --- bodies ---------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, SMALL_FILE_BYTES - 1, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1,
                                  3 * SMALL_FILE_BYTES])
def test_size_boundary_between_read_and_streamed(site, size):
    """Up to SMALL_FILE_BYTES (inclusive) the bytes are read into .data;
    above it, data is None and the file is left to open_variant."""
    root, _ = site
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    write(root, "file.bin", data)
    variant = serve(root, "/file.bin").variants["identity"]
    assert_variant(variant, "identity", os.path.join(root, "file.bin"),
                   data if size <= SMALL_FILE_BYTES else None)
    assert variant.size == size


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


def test_unexpected_stat_error_propagates(site, monkeypatch):
    """Only the expected errnos become a Refused; an I/O error is raised for
    the caller to turn into a 500, not mistaken for a 404."""
    root, _ = site

    def failing_stat(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(files.os, "stat", failing_stat)
    with pytest.raises(OSError) as caught:
        serve(root, "/hello.txt")
    assert caught.value.errno == errno.EIO


def test_unexpected_read_error_propagates_and_closes(site, monkeypatch):
    """EIO while reading a small file is raised too, and the fd is closed."""
    root, _ = site

    def failing_pread(fd, length, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files.os, "pread", failing_pread)
    before = _open_descriptors()
    with pytest.raises(OSError) as caught:
        serve(root, "/hello.txt")
    monkeypatch.undo()
    assert caught.value.errno == errno.EIO
    assert _open_descriptors() == before


@pytest.mark.parametrize("reader", ["executor", "cached"])
def test_read_chunk_reads_at_offsets(site, reader):
    """read_chunk (and read_cached_chunk, its loop-thread form) is a
    positional read into a buffer: it does not depend on or move the file
    offset."""
    root, _ = site
    data = bytes(range(256)) * 1024
    write(root, "chunks.bin", data)
    fd = os.open(os.path.join(root, "chunks.bin"), os.O_RDONLY)

    def read(offset, length):
        buffer = bytearray(length)
        count = (read_chunk if reader == "executor" else read_cached_chunk)(fd, memoryview(buffer), offset)
        if count is None:
            pytest.skip("no preadv2(RWF_NOWAIT) here")
        return bytes(buffer[:count])

    try:
        assert read(0, 10) == data[:10]
        assert read(70000, 5) == data[70000:70005]
        assert read(1, 3) == data[1:4]  # backwards: positional, not sequential
        assert read(len(data) - 4, 100) == data[-4:]  # short read at the end
        assert read(len(data), 100) == b""
        assert read(len(data) + 1000, 100) == b""
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)


# --- open_variant ------------------------------------------------------------

def large_variant(root, name="large.bin", size=SMALL_FILE_BYTES * 2):
    data = os.urandom(size)
    write(root, name, data)
    variant = serve(root, "/" + name).variants["identity"]
    assert variant.data is None
    return data, variant


def test_open_variant_hands_over_a_descriptor(site):
    """A large variant is opened for sendfile: the caller owns a readable,
    non-inheritable fd and a variant equal to the one it asked for."""
    root, _ = site
    data, variant = large_variant(root)
    opened = open_variant(variant)
    assert isinstance(opened, tuple)
    fd, fresh = opened
    try:
        assert os.pread(fd, len(data) + 1, 0) == data
        # The descriptor is not inherited by child processes (O_CLOEXEC).
        assert os.get_inheritable(fd) is False
        assert_variant(fresh, "identity", os.path.join(root, "large.bin"), None)
        assert (fresh.etag, fresh.identity) == (variant.etag, variant.identity)
    finally:
        os.close(fd)


def test_open_variant_describes_the_file_now_open(site):
    """If the file changed between resolve and open, the fresh variant
    describes the bytes the fd will send (so Content-Length, ETag and ranges
    match them), not what resolve saw."""
    root, _ = site
    _, variant = large_variant(root)
    changed = os.urandom(SMALL_FILE_BYTES * 3)
    write(root, "large.bin", changed)
    os.utime(os.path.join(root, "large.bin"), (variant.mtime + 100, variant.mtime + 100))
    fd, fresh = open_variant(variant)
    try:
        assert os.pread(fd, len(changed) + 1, 0) == changed
        assert_variant(fresh, "identity", os.path.join(root, "large.bin"), None)
        assert (fresh.size, fresh.mtime) == (len(changed), variant.mtime + 100)
        assert fresh.etag != variant.etag
    finally:
        os.close(fd)


def test_open_variant_of_a_sibling_keeps_its_coding(site):
    """A precompressed variant opens its own file and keeps its coding and
    coding-specific ETag."""
    root, _ = site
    write(root, "app.js", b"plain")
    data = os.urandom(SMALL_FILE_BYTES + 10)
    write(root, "app.js.br", data)
    variant = serve(root, "/app.js").variants["br"]
    fd, fresh = open_variant(variant)
    try:
        assert os.pread(fd, len(data) + 1, 0) == data
        assert_variant(fresh, "br", os.path.join(root, "app.js.br"), None)
        assert fresh.etag == variant.etag
    finally:
        os.close(fd)


def test_open_variant_of_a_deleted_file_is_404(site):
    """The file went away after resolve: 404, and no descriptor."""
    root, _ = site
    _, variant = large_variant(root)
    os.unlink(os.path.join(root, "large.bin"))
    before = _open_descriptors()
    assert_refused(open_variant(variant), 404)
    assert _open_descriptors() == before


def test_open_variant_of_a_file_replaced_by_a_fifo_or_directory_is_403(site):
    """What is there now is opened without blocking (O_NONBLOCK) and refused
    from its fstat, with the fd closed."""
    root, _ = site
    path = os.path.join(root, "large.bin")
    _, variant = large_variant(root)
    os.unlink(path)
    os.mkfifo(path)
    before = _open_descriptors()
    assert_refused(call_or_unblock(path, open_variant, variant), 403)
    os.unlink(path)
    os.mkdir(path)
    assert_refused(open_variant(variant), 403)
    assert _open_descriptors() == before


# --- gzip_variant -------------------------------------------------------------

TEXT = b"".join(b"line %d of a very compressible text file\n" % number for number in range(2000))


def text_variant(root, data=TEXT, name="page.txt"):
    write(root, name, data)
    return serve(root, "/" + name).variants["identity"]


@pytest.mark.parametrize("size", [1000, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1, len(TEXT)])
def test_gzip_variant_compresses(site, size):
    """The gzip variant decompresses to the file, is smaller, and describes
    itself: coding "gzip", its own size, the file's mtime. A small variant's
    bytes and a large one's (read from disk) alike."""
    root, _ = site
    data = (TEXT * 2)[:size]
    variant = text_variant(root, data)
    compressed = gzip_variant(variant, max_bytes=10 * 1024 * 1024)
    assert isinstance(compressed, Variant)
    assert gzip.decompress(compressed.data) == data
    assert (compressed.coding, compressed.size, compressed.mtime) == ("gzip", len(compressed.data), variant.mtime)
    assert compressed.size < len(data)
    assert compressed.path == variant.path


def test_gzip_variant_etag_is_its_own(site):
    """On-the-fly gzip bytes get a strong ETag of their own, different from
    the identity file's and from a precompressed sibling's (RFC 9110 §8.8.3)."""
    root, _ = site
    variant = text_variant(root)
    write(root, "page.txt.gz", b"precompressed")
    sibling = serve(root, "/page.txt").variants["gzip"]
    compressed = gzip_variant(variant, max_bytes=len(TEXT))
    assert compressed.etag != variant.etag
    assert compressed.etag != sibling.etag
    assert compressed.etag.startswith('"') and compressed.etag.endswith('"')  # strong, not W/


def test_gzip_variant_is_deterministic(site):
    """The same file compresses to the same bytes every time: the gzip header
    carries no timestamp, which is what lets its ETag be strong."""
    root, _ = site
    variant = text_variant(root)
    first = gzip_variant(variant, max_bytes=len(TEXT))
    second = gzip_variant(variant, max_bytes=len(TEXT))
    assert first.data == second.data
    assert first.etag == second.etag
    assert first.data[4:8] == b"\0\0\0\0"  # MTIME field (RFC 1952 §2.3.1): none


def test_gzip_variant_max_bytes_boundary(site):
    """A file of exactly max_bytes is compressed; one byte over is not."""
    root, _ = site
    variant = text_variant(root)
    assert gzip_variant(variant, max_bytes=len(TEXT)) is not None
    assert gzip_variant(variant, max_bytes=len(TEXT) - 1) is None


def test_gzip_variant_of_incompressible_bytes_is_none(site):
    """Random bytes do not get smaller: better send them as they are."""
    root, _ = site
    for size in (0, 300, SMALL_FILE_BYTES + 1):
        variant = text_variant(root, os.urandom(size), name=f"random{size}.bin")
        assert gzip_variant(variant, max_bytes=10 * SMALL_FILE_BYTES) is None


@pytest.mark.parametrize("size", [len(TEXT) // 100, len(TEXT)])
def test_gzip_variant_of_a_changed_file_is_none(site, size):
    """If the file is no longer the one the variant describes (new size,
    new mtime, another inode, or gone), nothing is compressed: the bytes
    would not match the variant's validators."""
    root, _ = site
    path = os.path.join(root, "page.txt")
    data = TEXT[:size]
    variant = text_variant(root, data)
    original = os.stat(path)

    write(root, "page.txt", data + b"more")
    assert gzip_variant(variant, max_bytes=len(TEXT) * 2) is None

    write(root, "page.txt", data)  # same size, later mtime
    os.utime(path, ns=(original.st_atime_ns, original.st_mtime_ns + 1_000_000_000))
    assert gzip_variant(variant, max_bytes=len(TEXT) * 2) is None

    # Same size and mtime, but another file renamed over it. It is written
    # while the old one still exists, so its inode number must differ.
    os.utime(path, ns=(original.st_atime_ns, original.st_mtime_ns))
    write(root, "replacement.txt", data)
    os.utime(os.path.join(root, "replacement.txt"), ns=(original.st_atime_ns, original.st_mtime_ns))
    os.replace(os.path.join(root, "replacement.txt"), path)
    assert os.stat(path).st_ino != original.st_ino
    assert gzip_variant(variant, max_bytes=len(TEXT) * 2) is None

    os.unlink(path)
    assert gzip_variant(variant, max_bytes=len(TEXT) * 2) is None


# --- descriptor leaks -----------------------------------------------------

def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_no_descriptor_leaks(site):
    """Every outcome, refused or served, leaves the descriptor count as it was
    (open_variant's fd is closed by the test, as the connection would)."""
    root, outside = site
    write(root, "large.bin", b"L" * (SMALL_FILE_BYTES * 2))
    write(root, "large.bin.gz", b"G" * (SMALL_FILE_BYTES * 2))
    write(root, "hello.txt.br", b"br")
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "hello.txt.gz"))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "escape"))
    os.symlink("loop", os.path.join(root, "loop"))
    os.mkfifo(os.path.join(root, "pipe"))
    os.mkfifo(os.path.join(root, "hello.txt.zst"))
    os.symlink(".private/secret.txt", os.path.join(root, "hidden-link"))
    write(root, "text.txt", TEXT)
    cases = [
        ("/hello.txt", False, Resource), ("/large.bin", False, Resource),
        ("/dir", False, MissingSlash), ("/dir/", False, Resource),
        ("/noindex/", False, Refused), ("/noindex/", True, Listing),
        ("/missing", False, Refused), ("/hello.txt/x", False, Refused),
        ("/hello.txt/", False, Refused), ("/escape", False, Refused), ("/loop", False, Refused),
        ("/pipe", False, Refused), ("/hidden-link", False, Refused), ("/text.txt", False, Resource),
    ]
    before = _open_descriptors()
    for _ in range(20):
        for path, autoindex, expected in cases:
            outcome = serve(root, path, autoindex=autoindex)
            assert isinstance(outcome, expected), (path, outcome)
            if isinstance(outcome, Resource):
                for variant in outcome.variants.values():
                    opened = open_variant(variant)
                    if isinstance(opened, tuple):
                        os.close(opened[0])
                    gzip_variant(variant, max_bytes=len(TEXT))
                # Large variants stay open for the cache; closing the
                # Resource (as the cache does) must release every one.
                outcome.close()
                assert all(variant.fd == -1 for variant in outcome.variants.values())
        # A variant whose file is gone: open_variant and gzip_variant refuse.
        write(root, "brief.bin", b"B" * (SMALL_FILE_BYTES + 1))
        brief = serve(root, "/brief.bin")
        gone = brief.variants["identity"]
        brief.close()
        os.unlink(os.path.join(root, "brief.bin"))
        assert_refused(open_variant(gone), 404)
        assert gzip_variant(gone, max_bytes=len(TEXT)) is None
    assert _open_descriptors() == before
