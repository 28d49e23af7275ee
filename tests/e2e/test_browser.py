"""A real browser against the real server: headless Chromium, driven by Selenium.

What a person would see is checked from the DOM: the demo page rendered, its
script ran, its image decoded, its stylesheet applied; and a screenshot is kept
in pytest's temporary directory. What the browser asked for is checked from the
server's access log: a reload revalidates (304), and a <video> seeks with Range
requests (206).

Chromium and chromedriver come from Debian's packages, Selenium from PyPI: the
tests skip locally when one is missing and fail under CI=true (see
support.browser.require_browser). Every wait is for a condition, with a generous
deadline; nothing here asserts how long something took.
"""

import json
import os
import re
import shutil
import struct
import urllib.error
import urllib.request
import zlib

import pytest
from support.browser import require_browser, start_chromium
from support.environment import DEMO_ROOT, wait_until

# Chromium is slow to start on a small machine; the page loads themselves are quick.
DEADLINE = 30

DEMO_PAGE_RESOURCES = ("/", "/style.css", "/app.js", "/images/reactor.png")
VIDEO_PATH = "/media/test-pattern.webm"

_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<bytes>\d+|-)$')


def access_log(server, start=0):
    """The access-log lines from ``start`` on, as (target, status, body bytes)."""
    entries = []
    for line in list(server.stdout_lines)[start:]:
        match = _LOG_LINE.search(line.rstrip("\n"))
        if match:
            size = 0 if match["bytes"] == "-" else int(match["bytes"])
            entries.append((match["target"], int(match["status"]), size))
    return entries


def settle_log(server):
    """Wait until every response sent so far is in the captured log: the
    server logs in the order responses complete, so once a request of our own,
    sent now, is logged, so is everything the browser asked for before it."""
    marker = f"/log-marker-{len(server.stdout_lines)}"
    try:
        urllib.request.urlopen(server.url + marker, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 404
    wait_until(lambda: any(target == marker for target, _, _ in access_log(server)), DEADLINE,
               f"the marker request {marker} never reached the access log")
    return [entry for entry in access_log(server) if entry[0] != marker and not entry[0].startswith("/log-marker-")]


def browser_requests(entries):
    """The log entries the page caused: the marker requests and the favicon
    (which Chromium asks for on its own schedule) left out."""
    return [(target, status) for target, status, _ in entries
            if target != "/favicon.ico" and not target.startswith("/log-marker-")]


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium with a fresh profile, quit at teardown."""
    require_browser()
    driver = start_chromium(tmp_path / "profile")
    driver.set_script_timeout(DEADLINE)
    yield driver
    driver.quit()


@pytest.fixture
def servers(start_server):
    """Factory: servers(root, *flags) -> a running server (conftest's
    start_server: stopped, and checked for tracebacks, at teardown)."""
    return lambda root, *flags: start_server(*flags, root=str(root))


@pytest.fixture
def aged_demo_root(tmp_path):
    """A copy of the demo site whose files are all dated 1 January 2020.

    A browser's reload depends on the files' age: with no Cache-Control, a
    cache may reuse a response for a tenth of the time since Last-Modified
    (heuristic freshness, RFC 9111 §4.2.2), so a freshly checked-out file is
    stale within seconds while an old one stays fresh for weeks. Fixing the
    dates makes what Chromium revalidates the same on every machine."""
    root = tmp_path / "www"
    shutil.copytree(DEMO_ROOT, root)
    for directory, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(directory, name), (1577836800, 1577836800))
    return root


def read_png(data):
    """(width, height, decompressed image bytes) of a PNG; asserts its structure."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    position = 8
    chunks = []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        (checksum,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + body) == checksum, f"bad CRC in the {kind} chunk"
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return width, height, pixels


def wait_for_demo_page(browser):
    """Wait until app.js has run (it fills #js-status on DOMContentLoaded)."""
    wait_until(lambda: browser.execute_script(
        "const s = document.getElementById('js-status'); return s && s.classList.contains('ok');"),
        DEADLINE, "app.js never set #js-status")


def test_demo_page_renders(browser, servers, tmp_path):
    """The demo page as Chromium renders it: the heading, the text app.js
    writes, the decoded image, the colours and layout from style.css; and a
    screenshot that is a valid PNG showing more than a blank page."""
    server = servers(DEMO_ROOT)
    browser.get(server.url + "/")
    wait_for_demo_page(browser)
    assert browser.title == "reactor_http demo"
    page = browser.execute_script("""
        const image = document.querySelector('figure img');
        const status = document.getElementById('js-status');
        const style = (element) => getComputedStyle(element);
        return {
            heading: document.querySelector('h1').textContent,
            status: status.textContent,
            imageComplete: image.complete,
            imageWidth: image.naturalWidth,
            imageHeight: image.naturalHeight,
            bodyBackground: style(document.body).backgroundColor,
            mainMaxWidth: style(document.querySelector('main')).maxWidth,
            statusColour: style(status).color,
            statusBorder: style(status).borderLeftColor,
            viewport: [window.innerWidth, window.innerHeight],
            ratio: window.devicePixelRatio,
        };
    """)
    assert page["heading"] == "reactor_http"
    assert page["status"] == "JavaScript ran: this script was served by reactor_http."
    # The PNG is 320 x 160: naturalWidth is what was decoded, not the attribute.
    assert (page["imageComplete"], page["imageWidth"], page["imageHeight"]) == (True, 320, 160)
    # Values from style.css: --bg #fbfbfd, main's 42rem, --ok #1f7a3d on #js-status.ok.
    assert page["bodyBackground"] == "rgb(251, 251, 253)"
    assert page["mainMaxWidth"] == "672px"
    assert page["statusColour"] == page["statusBorder"] == "rgb(31, 122, 61)"

    screenshot = browser.get_screenshot_as_png()
    path = tmp_path / "demo-page.png"
    path.write_bytes(screenshot)
    width, height, pixels = read_png(path.read_bytes())
    expected_size = [round(side * page["ratio"]) for side in page["viewport"]]
    assert [width, height] == expected_size
    # A blank or single-colour page compresses to a handful of distinct bytes;
    # text, a photo-like image and coloured boxes give hundreds.
    assert len(set(pixels)) > 100, f"the screenshot looks blank: {path}"

    entries = settle_log(server)
    assert sorted(browser_requests(entries)) == sorted((target, 200) for target in DEMO_PAGE_RESOURCES)


def test_reload_revalidates_the_page(browser, servers, aged_demo_root):
    """A normal reload revalidates the page itself and nothing else: Chromium
    sends a conditional GET for "/" (answered 304, no body), and takes the
    stylesheet, script and image from its cache, still fresh by heuristic
    (their Last-Modified is years old and no Cache-Control says otherwise)."""
    server = servers(aged_demo_root)
    browser.get(server.url + "/")
    wait_for_demo_page(browser)
    first_load = settle_log(server)
    assert sorted(browser_requests(first_load)) == sorted((target, 200) for target in DEMO_PAGE_RESOURCES)

    browser.refresh()
    wait_for_demo_page(browser)
    reload = settle_log(server)[len(first_load):]
    assert browser_requests(reload) == [("/", 304)]
    assert [size for target, _, size in reload if target == "/"] == [0]


def test_reload_with_no_cache_revalidates_everything(browser, servers, aged_demo_root):
    """With --cache-control no-cache, a stored response may not be used
    without revalidation (RFC 9111 §5.2.2.4): on reload Chromium revalidates
    the page, the stylesheet, the script and the image, and all four are 304."""
    server = servers(aged_demo_root, "--cache-control", "no-cache")
    browser.get(server.url + "/")
    wait_for_demo_page(browser)
    first_load = settle_log(server)
    assert sorted(browser_requests(first_load)) == sorted((target, 200) for target in DEMO_PAGE_RESOURCES)

    browser.refresh()
    wait_for_demo_page(browser)
    reload = settle_log(server)[len(first_load):]
    assert sorted(browser_requests(reload)) == sorted((target, 304) for target in DEMO_PAGE_RESOURCES)
    assert all(size == 0 for target, _, size in reload if target != "/favicon.ico"), reload


def media_requests(performance_log, path):
    """The Range header of each request Chromium sent for ``path``, in order,
    from its DevTools performance log (None for a request without one)."""
    messages = [json.loads(entry["message"])["message"] for entry in performance_log]
    # The two events of a request may come in either order: map ids to URLs first.
    urls = {message["params"]["requestId"]: message["params"]["request"]["url"]
            for message in messages if message["method"] == "Network.requestWillBeSent"}
    ranges = []
    for message in messages:
        if message["method"] == "Network.requestWillBeSentExtraInfo":
            # The headers as sent on the wire, Range included (the renderer's
            # view of the request does not show headers the media stack adds).
            params = message["params"]
            if urls.get(params["requestId"], "").endswith(path):
                headers = {name.lower(): value for name, value in params["headers"].items()}
                ranges.append(headers.get("range"))
    return ranges


def test_video_seeks_with_range_requests(tmp_path, servers):
    """video.html's <video> plays the WebM (Chromium decodes its metadata), and
    a seek to a part it has not loaded is served by a new Range request,
    answered 206.

    Two facts about Chromium shape this test. On loopback its first request
    ("Range: bytes=0-") would bring the whole 271 KiB file before any seek,
    so its network is throttled (DevTools emulation, 50 KB/s). And it waits
    for a running request to arrive at the seek target when the target is
    less than five 32 KiB blocks ahead of it, asking anew only beyond that
    (MultiBuffer's look-ahead). So the seek goes near the end (4.6 s of 5,
    the key frame at 4.52 s is past 240 KB), the moment the metadata is in,
    while the first request is still around 50 KB: a middle point would be
    served by the first request, still with a 206, but no second one."""
    require_browser()
    server = servers(DEMO_ROOT)
    browser = start_chromium(tmp_path / "profile", capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    try:
        browser.set_script_timeout(DEADLINE)
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": 50_000, "uploadThroughput": 50_000})
        browser.get(server.url + "/video.html")
        result = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const video = document.getElementById('video');
            const result = {};
            const seek = () => {
                Object.assign(result, {readyState: video.readyState, duration: video.duration,
                                       width: video.videoWidth, height: video.videoHeight});
                video.addEventListener('seeked', () => {
                    Object.assign(result, {time: video.currentTime, readyStateAfterSeek: video.readyState});
                    done(result);
                }, {once: true});
                video.currentTime = 4.6;
            };
            video.addEventListener('error', () => done({error: video.error.code}), {once: true});
            if (video.readyState >= 1) seek();
            else video.addEventListener('loadedmetadata', seek, {once: true});
        """)
        performance_log = browser.get_log("performance")
    finally:
        browser.quit()

    assert "error" not in result, result
    assert result["readyState"] >= 1, result   # HAVE_METADATA: Chromium can play it
    assert result["duration"] == pytest.approx(5.0, abs=0.1), result
    assert (result["width"], result["height"]) == (320, 180), result
    assert result["time"] == pytest.approx(4.6, abs=0.05), result
    assert result["readyStateAfterSeek"] >= 2, result   # HAVE_CURRENT_DATA: the frame there was decoded

    # Every request for the video asked for a range: the first from the
    # start, and then one from further on for the seek.
    video_size = os.path.getsize(os.path.join(DEMO_ROOT, VIDEO_PATH.lstrip("/")))
    requested = media_requests(performance_log, VIDEO_PATH)
    assert requested[0] == "bytes=0-", requested
    later = [re.fullmatch(r"bytes=(\d+)-(\d*)", value) for value in requested[1:]]
    assert all(later) and any(int(match[1]) > 0 for match in later), requested
    # Every one was answered 206 with part of the file, never a 200; the
    # seek's own range was sent whole (the first response may have been cut
    # short when Chromium had what it needed).
    wait_until(lambda: len([entry for entry in access_log(server) if entry[0] == VIDEO_PATH]) >= len(requested),
               DEADLINE, lambda: f"not every video request was logged: {access_log(server)}")
    video_entries = [(status, size) for target, status, size in access_log(server) if target == VIDEO_PATH]
    # Chromium may repeat a range request (a media cache retry) without its
    # performance log showing it, so the log may hold more entries than seen.
    assert len(video_entries) >= len(requested), (video_entries, requested)
    assert {status for status, _ in video_entries} == {206}, video_entries
    assert all(0 < size <= video_size for _, size in video_entries), video_entries
    seek_range = next(match for match in later if int(match[1]) > 0)
    first = int(seek_range[1])
    last = int(seek_range[2]) if seek_range[2] else video_size - 1
    assert (206, last - first + 1) in video_entries, (video_entries, requested)


CORS_FETCHES = """
const target = arguments[0], done = arguments[arguments.length - 1];
const attempt = (promise) => promise.then((value) => value, (error) => "refused: " + error.name);
Promise.all([
    // A simple request: no preflight, the response must carry Allow-Origin.
    attempt(fetch(target + "/data.txt").then((response) => response.text())),
    // A request field that is not safelisted: the browser sends a preflight first.
    attempt(fetch(target + "/data.txt", {headers: {"X-Requested-With": "reactor-test"}})
        .then((response) => response.text())),
    // A range: the script may read Content-Range only if it is exposed.
    attempt(fetch(target + "/data.txt", {headers: {"Range": "bytes=0-3"}})
        .then((response) => response.status + " " + response.headers.get("Content-Range"))),
]).then(done);
"""


def test_cors_as_chromium_enforces_it(browser, servers, tmp_path):
    """A page served by one server reads files from another. Chromium allows
    it, preflight and exposed Content-Range included, when the other server
    has --cors with the page's origin; and refuses when it names another
    origin, or has no --cors at all."""
    page_root, data_root = tmp_path / "page", tmp_path / "data"
    page_root.mkdir()
    data_root.mkdir()
    (page_root / "index.html").write_bytes(b"<!DOCTYPE html><title>cors</title><p>page</p>\n")
    (data_root / "data.txt").write_bytes(b"cross-origin data\n")
    page_server = servers(page_root)
    origin = f"http://127.0.0.1:{page_server.port}"
    allowing = servers(data_root, "--cors", origin)
    other = servers(data_root, "--cors", "https://elsewhere.example")
    closed = servers(data_root)
    browser.get(origin + "/")
    wait_until(lambda: browser.title == "cors", DEADLINE, "the page did not load")

    results = browser.execute_async_script(CORS_FETCHES, allowing.url)
    assert results == ["cross-origin data\n", "cross-origin data\n", "206 bytes 0-3/18"], results
    preflights = [(target, status) for target, status, _ in settle_log(allowing)
                  if target == "/data.txt" and status == 204]
    assert preflights, "Chromium sent no preflight"  # OPTIONS /data.txt, answered 204

    for refusing in (other, closed):
        results = browser.execute_async_script(CORS_FETCHES, refusing.url)
        assert results == ["refused: TypeError"] * 3, results


def test_basic_authentication_as_chromium_meets_it(browser, servers, tmp_path):
    """Chromium asks for the page without credentials and gets the 401 (and,
    headless, has nobody to ask for a password: the page stays empty); given
    them in the URL, it answers the challenge and loads the whole page, its
    stylesheet, script and image asked for with the same credentials."""
    from reactor_http.access.passwords import password_line
    users = tmp_path / "htpasswd"
    users.write_text(password_line("alice", "wonderland") + "\n")
    server = servers(DEMO_ROOT, "--auth-file", str(users), "--auth-realm", "demo")
    browser.get(server.url + "/")
    wait_until(lambda: ("/", 401) in browser_requests(access_log(server)), DEADLINE,
               lambda: f"no 401 for Chromium: {access_log(server)}")
    assert browser.title != "reactor_http demo"

    browser.get(server.url.replace("http://", "http://alice:wonderland@") + "/")
    wait_for_demo_page(browser)
    assert browser.title == "reactor_http demo"
    assert browser.execute_script("return document.querySelector('figure img').naturalWidth") == 320
    wait_until(lambda: set(DEMO_PAGE_RESOURCES) <= {target for target, status in browser_requests(access_log(server))
                                                    if status == 200},
               DEADLINE, lambda: f"not every file of the page was served: {access_log(server)}")
    assert all(status in (200, 401) for _, status in browser_requests(access_log(server)))
