"""The live page (--dashboard-path) in a real browser, fed by a real server under real load.

Headless Chromium opens /_reactor; the page listens to /_reactor/events and
keeps every tick in ``window.reactorLive`` (live.js), which is what these
tests read: ``series(name)`` gives exactly the values a chart draws. The
load comes from this process (plain sockets), and each test waits until the
page has seen its effect: 200 connections held open show as 200 open, and
then as few again once closed; a loop blocked 50 ms by each file request
shows as a lag of about 50 ms; two workers show as two lines. What is drawn
is checked from the canvases' pixels, console errors from Chromium's own log,
and a phone-sized window for horizontal scrolling. A screenshot of the page
after the load is taken too; with REACTOR_HTTP_UPDATE_SCREENSHOTS=1 it
replaces docs/live-page.png (otherwise a test run would leave the checkout
changed).

Every wait is for a condition, with a generous deadline; nothing here asserts
how long something took. Chromium and chromedriver are Debian's packages: the
tests skip locally when one is missing and fail under CI=true
(support.browser.require_browser).
"""

import os
import threading

import pytest
from support.browser import require_browser, start_chromium
from support.clients import RawClient, get
from support.environment import DEMO_ROOT, REPO, wait_until
from support.servers import ServerProcess, stop_and_check

PATH = "/_reactor"
DEADLINE = 30
SCREENSHOT = os.path.join(REPO, "docs", "live-page.png")
DESKTOP = (1280, 1000)
PHONE = (390, 844)
HELD_CONNECTIONS = 200
# What "back to a few" means once they are closed: the page's own feed, and
# whatever keep-alive connections Chromium still holds from loading the page.
FEW = 10
# Every chart of page.html. After the load each has something drawn: "hits"
# has a value only for the seconds with file requests, a lone point (a dot).
CHARTS = ("states", "open", "requests", "bytes", "lag", "load", "executor", "hits", "threads", "memory", "fds")

# Chromium's console, through chromedriver: every message, of which SEVERE
# are errors (uncaught exceptions, console.error, failed loads).
LOGGING = {"goog:loggingPrefs": {"browser": "ALL"}}

# For each chart: how many of its series, how many values they hold (and how
# many are not null), and how many pixels of its canvas, in its right-hand
# tenth (where new points enter), are painted in one of its series' colours.
# The legend's line samples never reach there at the sizes used here: an entry
# starts only where its sample and its whole label fit before the right edge,
# and every label is wider than a tenth of these canvases. Partial coverage at
# a line's edges blends towards transparent, so only pixels mostly opaque and
# near the colour count.
CHART_PIXELS = """
const hex = (colour) => [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
const result = {};
for (const figure of document.querySelectorAll("figure[data-chart]")) {
    const name = figure.dataset.chart, canvas = figure.querySelector("canvas");
    const series = window.reactorLive.series(name);
    const colours = series.map((s) => hex(s.colour));
    const from = Math.floor(canvas.width * 0.9);
    const data = canvas.getContext("2d").getImageData(from, 0, canvas.width - from, canvas.height).data;
    let painted = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] < 160) continue;
        if (colours.some((c) => Math.abs(c[0] - data[i]) + Math.abs(c[1] - data[i + 1])
                                + Math.abs(c[2] - data[i + 2]) < 60)) painted++;
    }
    result[name] = {
        series: series.length,
        values: series.reduce((n, s) => n + s.values.length, 0),
        known: series.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0),
        painted: painted,
        size: [canvas.width, canvas.height],
    };
}
return result;
"""

LAYOUT = """
const figures = [...document.querySelectorAll("figure[data-chart]")].map((figure) => {
    const box = figure.getBoundingClientRect(), canvas = figure.querySelector("canvas");
    return {left: box.left, right: box.right, canvasWidth: canvas.clientWidth};
});
return {innerWidth: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
        bodyScrollWidth: document.body.scrollWidth, figures: figures};
"""


class LivePage:
    """A Chromium showing the live page of one server."""

    def __init__(self, browser, server):
        self.browser = browser
        self.server = server
        self.console = []  # every console entry read so far (chromedriver hands each out once)

    def open(self):
        self.browser.get(self.server.url + PATH)
        # The history event, and then at least one tick: the page is fed.
        self.wait_for_ticks(2)

    def run(self, script, *arguments):
        return self.browser.execute_script(script, *arguments)

    def tick_count(self):
        return self.run("return window.reactorLive ? window.reactorLive.ticks.length : 0")

    def wait_for_ticks(self, count):
        return wait_until(lambda: self.tick_count() >= count, DEADLINE,
                          lambda: f"the page has {self.tick_count()} ticks, not {count}: "
                                  f"{self.console_entries()}")

    def series(self, name):
        """[{label, colour, values}], as the chart ``name`` draws them."""
        return self.run("return window.reactorLive.series(arguments[0])", name)

    def latest(self, name):
        """The newest value of each series of a chart, by label."""
        return {s["label"]: (s["values"][-1] if s["values"] else None) for s in self.series(name)}

    def console_entries(self):
        self.console.extend(self.browser.get_log("browser"))
        return self.console

    def console_errors(self):
        return [entry for entry in self.console_entries() if entry["level"] == "SEVERE"]

    def chart_pixels(self):
        return self.run(CHART_PIXELS)

    def emulate(self, size, mobile=False, scale=1):
        """Show the page in a viewport of exactly ``size`` CSS pixels (a phone's,
        with ``mobile``: the page's viewport meta tag then applies)."""
        self.browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": scale, "mobile": mobile})
        wait_until(lambda: self.run("return [window.innerWidth, window.innerHeight]") == list(size), DEADLINE,
                   lambda: f"the viewport is {self.run('return [window.innerWidth, window.innerHeight]')}, "
                           f"not {list(size)}")
        # The page redraws on resize; wait for a tick too, so each canvas is
        # drawn at its new size whatever the order of events.
        self.wait_for_ticks(self.tick_count() + 1)


def start_page(directory, server, size=DESKTOP):
    browser = start_chromium(directory, capabilities=LOGGING, window_size=size)
    browser.set_script_timeout(DEADLINE)
    page = LivePage(browser, server)
    try:
        page.open()
    except BaseException:
        browser.quit()
        raise
    return page


def open_value(page):
    """Open connections as the page's newest tick shows them (all workers)."""
    values = [value for value in page.latest("open").values() if value is not None]
    return sum(values) if values else None


def wait_for_open(page, accept, message):
    """Wait until the page shows a number of open connections that ``accept``s; return it."""
    def check():
        value = open_value(page)
        return (value,) if value is not None and accept(value) else None
    return wait_until(check, DEADLINE, lambda: f"{message}: {page.series('open')}")[0]


class HeldLoad:
    """What the page saw while HELD_CONNECTIONS connections made one request
    each, stayed open, and were closed."""

    def __init__(self, page):
        self.page = page
        self.before = None        # open connections on the page before
        self.peak = None          # the first value >= HELD_CONNECTIONS it showed
        self.after = None         # the first value <= FEW once they were closed
        self.responses = None     # the responses the page's ticks counted meanwhile
        self.requests = None      # the requests chart's series, afterwards

    def run(self, server):
        page = self.page
        self.before = open_value(page)
        first_responses = page.run("return window.reactorLive.ticks.at(-1)[0].responses")
        clients = []
        try:
            for _ in range(HELD_CONNECTIONS):
                client = RawClient(server.connect(), timeout=DEADLINE)
                clients.append(client)
                status, _, body = client.request(get("/"))
                assert status == 200 and body, status
            self.peak = wait_for_open(page, lambda value: value >= HELD_CONNECTIONS,
                                      f"the page never showed {HELD_CONNECTIONS} open")
        finally:
            for client in clients:
                client.close()
        self.after = wait_for_open(page, lambda value: value <= FEW, "the page never showed them closed")
        self.responses = page.run("return window.reactorLive.ticks.at(-1)[0].responses") - first_responses
        self.requests = page.series("requests")
        return self


@pytest.fixture(scope="module")
def loaded_page(tmp_path_factory):
    """One server with the live page, one Chromium showing it (1280 x 1000),
    and the held-connections load run once, by whichever test asks first:
    (page, lambda: HeldLoad)."""
    require_browser()
    server = ServerProcess(["--dashboard-path", PATH], DEMO_ROOT)
    page = None
    try:
        page = start_page(tmp_path_factory.mktemp("profile"), server)
        page.emulate(DESKTOP)
        done = []

        def load():
            if not done:
                done.append(HeldLoad(page).run(server))
            return done[0]

        yield page, load
    finally:
        if page is not None:
            page.browser.quit()
        stop_and_check(server)


@pytest.fixture
def browser_on(tmp_path):
    """Factory: browser_on(server) -> a LivePage on that server's live page, fed; quit at teardown."""
    require_browser()
    pages = []

    def start(server):
        pages.append(start_page(tmp_path / f"profile-{len(pages)}", server))
        return pages[-1]

    yield start
    for page in pages:
        page.browser.quit()


def assert_no_console_errors(page):
    errors = page.console_errors()
    assert not errors, errors


def test_open_connections_rise_and_fall(loaded_page):
    """200 keep-alive connections, each after one GET, held open: the open
    chart climbs to at least 200 (the page's own feed counts too); closed,
    it falls back to a few. The requests chart saw them (a rate above zero),
    and the ticks counted at least 200 responses."""
    page, load = loaded_page
    seen = load()
    assert seen.before is not None and seen.before <= FEW, seen.before
    assert seen.peak >= HELD_CONNECTIONS
    assert seen.after <= FEW
    assert seen.responses >= HELD_CONNECTIONS, seen.responses
    rates = [value for s in seen.requests for value in s["values"] if value is not None]
    assert rates and max(rates) > 0, seen.requests
    # The open chart holds what was waited for: the rise, then the fall after it.
    values = [value for value in page.series("open")[0]["values"] if value is not None]
    top = values.index(max(values))
    assert max(values) >= HELD_CONNECTIONS and min(values[top:]) <= FEW, values


def test_charts_drawn_and_no_console_errors(loaded_page):
    """After the load: no console error, and every chart has series with
    values and a line painted in its series' colours (states, open and
    requests included: the load is in them)."""
    page, load = loaded_page
    load()
    pixels = page.chart_pixels()
    assert set(pixels) == set(CHARTS), pixels
    for name in CHARTS:
        chart = pixels[name]
        assert chart["series"] > 0 and chart["known"] > 0, (name, chart)
        assert chart["painted"] > 0, (name, chart)
    for name in ("states", "open", "requests"):
        for s in page.series(name):
            assert s["values"] and any(value is not None for value in s["values"]), (name, s)
    assert_no_console_errors(page)


def test_screenshot_after_load(loaded_page, tmp_path):
    """docs/live-page.png: the page at 1280 x 1000 after the load, its charts
    drawn, no console error. Several charts across, so the shot shows them.
    Written to the docs only when asked (REACTOR_HTTP_UPDATE_SCREENSHOTS=1)."""
    page, load = loaded_page
    load()
    page.emulate(DESKTOP)
    layout = page.run(LAYOUT)
    columns = {round(figure["left"]) for figure in layout["figures"]}
    assert len(columns) >= 3, layout
    pixels = page.chart_pixels()
    assert all(pixels[name]["painted"] > 0 for name in CHARTS), pixels
    assert_no_console_errors(page)
    png = page.browser.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    update_docs = os.environ.get("REACTOR_HTTP_UPDATE_SCREENSHOTS") == "1"
    with open(SCREENSHOT if update_docs else tmp_path / "live-page.png", "wb") as file:
        file.write(png)


def test_readable_on_a_phone(loaded_page, tmp_path):
    """At 390 x 844 (a phone, its viewport meta tag applied) the page does not
    scroll sideways: one column of charts, each within the screen, and still
    drawn."""
    page, load = loaded_page
    load()
    try:
        page.emulate(PHONE, mobile=True, scale=3)
        layout = page.run(LAYOUT)
        page.browser.save_screenshot(str(tmp_path / "phone.png"))
        assert layout["innerWidth"] == PHONE[0], layout
        assert layout["scrollWidth"] <= layout["innerWidth"], layout
        assert layout["bodyScrollWidth"] <= layout["innerWidth"], layout
        assert len({round(figure["left"]) for figure in layout["figures"]}) == 1, layout
        assert all(0 <= figure["left"] and figure["right"] <= PHONE[0] and figure["canvasWidth"] > 0
                   for figure in layout["figures"]), layout
        pixels = page.chart_pixels()
        assert all(pixels[name]["painted"] > 0 for name in CHARTS), pixels
        assert_no_console_errors(page)
    finally:
        page.emulate(DESKTOP)


def test_lag_chart_shows_a_blocked_loop(start_server, browser_on):
    """With --disk-delay 50ms --file-work-on-loop --cache-bytes 0, every file
    request holds the loop's thread 50 ms per file job. Quiet, the lag chart
    shows a few ms; under requests, a lag or busiest turn of 40 ms or more
    appears, and the ticks count the slow callbacks --slow-callback-ms saw."""
    server = start_server("--dashboard-path", PATH, "--disk-delay", "50ms", "--file-work-on-loop",
                          "--cache-bytes", "0", "--slow-callback-ms", "30")
    page = browser_on(server)

    def quiet():
        values = list(page.latest("lag").values())
        return values if values and all(value is not None and value < 20 for value in values) else None

    baseline = wait_until(quiet, DEADLINE, lambda: f"the loop never looked quiet: {page.series('lag')}")
    quiet_ticks = page.tick_count()
    slow_callbacks = page.run("return window.reactorLive.ticks.at(-1)[0].loop.slow_callbacks")

    stop = threading.Event()
    failures = []

    def requests():
        try:
            with server.connect(timeout=DEADLINE) as sock:
                client = RawClient(sock, timeout=DEADLINE)
                while not stop.is_set():
                    status, _, body = client.request(get("/"))
                    assert status == 200 and body, status
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)

    def blocked():
        series = page.series("lag")
        values = [value for s in series for value in s["values"][quiet_ticks:] if value is not None]
        return max(values) if values and max(values) >= 40 else None

    client = threading.Thread(target=requests, daemon=True)
    client.start()
    try:
        worst = wait_until(blocked, DEADLINE, lambda: f"no lag of 40 ms on the page: {page.series('lag')}")
    finally:
        stop.set()
        client.join(DEADLINE)
    assert not failures, failures
    assert all(value < 20 for value in baseline), baseline
    assert worst >= 40
    wait_until(lambda: page.run("return window.reactorLive.ticks.at(-1)[0].loop.slow_callbacks") > slow_callbacks,
               DEADLINE, "the ticks never counted the slow callbacks")
    assert_no_console_errors(page)


def test_one_line_per_worker(start_server, browser_on):
    """With --workers 2 the open chart has one series per worker, each with a
    value, in colours of their own: the feed carries every worker's snapshot,
    whichever worker serves it."""
    server = start_server("--dashboard-path", PATH, "--workers", "2")
    page = browser_on(server)

    def both():
        # Both lines have a newest value, and it counts the page's own feed,
        # open on one of them (the history's ticks may predate it).
        series = page.series("open")
        latest = [s["values"][-1] if s["values"] else None for s in series]
        return series if len(series) == 2 and None not in latest and sum(latest) >= 1 else None

    series = wait_until(both, DEADLINE, lambda: f"not two workers' lines: {page.series('open')}")
    assert [s["label"] for s in series] == ["worker 0", "worker 1"], series
    assert series[0]["colour"] != series[1]["colour"], series
    assert page.run("return document.getElementById('summary').textContent").startswith("2 workers"), \
        page.run("return document.getElementById('summary').textContent")
    assert_no_console_errors(page)
