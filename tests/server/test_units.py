"""Sizes, durations, "did you mean" and the banner's advice, as functions."""

import pytest

from reactor_http.server import settings
from reactor_http.server.banner import listing_line, reach_lines
from reactor_http.server.units import closest, edit_distance, parse_duration, parse_size


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("65536", 65536), ("64k", 64 << 10), ("64K", 64 << 10), ("64M", 64 << 20),
    ("1G", 1 << 30), ("64KiB", 64 << 10), ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("1.5k", 1536),
    (" 8 M ", 8 << 20), ("64mb", 64 << 20),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "64 megs", "-1", "1.1", "64iB", "1e3", "0x10", "64MM"])
def test_not_sizes(text):
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("text, value", [
    ("30", 30.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0),
    ("1e7", 1e7), ("0", 0.0), (" 10 S ", 10.0),
])
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text, words", [
    ("inf", ["no wait can be endless"]),
    ("nan", ["not a duration", "500ms, 30s, 2m"]),
    ("1e400", ["too long"]),
    ("2 weeks", ["not a duration"]),
    ("-1", ["not a duration"]),
])
def test_not_durations(text, words):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    for word in words:
        assert word in str(caught.value)


def test_edit_distance_counts_a_swap_as_one():
    assert edit_distance("prot", "port") == 1
    assert edit_distance("prot", "root") == 2
    assert edit_distance("port", "port") == 0
    assert edit_distance("", "port") == 4


@pytest.mark.parametrize("word, names, nearest", [
    ("prot", ["root", "port", "bind"], "port"),         # not root: PROT is a swap from PORT
    ("PORTT", ["port", "root"], "port"),
    ("autoindx", ["autoindex", "access-log"], "autoindex"),
    ("frobnicate", ["port", "root"], None),            # too far from everything to be a typo
    ("x", [], None),
])
def test_closest(word, names, nearest):
    assert closest(word, names) == nearest


def test_the_environment_suggests_over_every_setting():
    assert settings._suggestion("prot", environment=True) == " (did you mean REACTOR_HTTP_PORT?)"
    assert settings._suggestion("prot") == " (did you mean 'port'?)"


def test_without_a_toml_reader_config_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text("port = 1\n")
    monkeypatch.setattr(settings, "tomllib", None)
    with pytest.raises(settings.SettingsError) as caught:
        settings.read_config_file(str(path))
    message = str(caught.value)
    assert "\n" not in message and "Python 3.11" in message and "tomli" in message


def test_reach_lines():
    assert reach_lines(["127.0.0.1"], 8080, "http", ["192.168.1.5"]) == [
        "Only this machine can connect; --bind 0.0.0.0 (or -b 0.0.0.0) lets others on the network in."]
    assert reach_lines(["0.0.0.0"], 8080, "http", ["192.168.1.5", "10.0.0.2"]) == [
        "Open http://127.0.0.1:8080/ here.",
        "From another device on this network: http://192.168.1.5:8080/, http://10.0.0.2:8080/"]
    assert reach_lines(["::"], 8443, "https", []) == [
        "Open https://127.0.0.1:8443/ here.", "Other machines can connect to this one's addresses on that port."]
    assert reach_lines(["192.168.1.5"], 8080, "http", []) == []  # the listener line says it all
    assert reach_lines([], None, "http", []) == []                # a Unix socket only


def test_listing_line():
    assert "--autoindex" in listing_line(False, root_has_index=False)
    assert listing_line(False, root_has_index=True) is None
    assert "listed" in listing_line(True, root_has_index=True)
