"""Headless Chromium, driven through the system chromedriver with Selenium."""

import os

from .environment import skip_locally_fail_in_ci

# Debian's packages `chromium` and `chromium-driver` put them here; the driver
# is used as installed, so Selenium never tries to download one.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Headless, and quiet: no first-run UI, no background traffic of its own
# (updates, sync, QUIC probes) to show up in the server's log or the network.
CHROMIUM_ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync", "--disable-quic",
)


def require_browser():
    """The selenium.webdriver module, once Chromium, its driver and Selenium are
    all there: skip locally when one is missing, fail under CI=true."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        skip_locally_fail_in_ci(f"{' and '.join(missing)} not installed "
                                "(Debian packages chromium, chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        skip_locally_fail_in_ci("the selenium package is not installed (pip install selenium)")
    return webdriver


def start_chromium(user_data_directory, capabilities=None, window_size=(1024, 768)):
    """A headless Chromium driven through the system chromedriver, with a fresh
    profile in ``user_data_directory`` (so nothing is cached from an earlier
    run). The caller quits it."""
    webdriver = require_browser()
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={user_data_directory}")
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


