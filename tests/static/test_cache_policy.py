"""--cache-control by path: static/cache_policy.py, and how the setting is read.

In-process: which rule a path gets (first match in the order given, "*"
crossing "/", a directory matched also as its index.html, the plain value
for the rest), and what --cache-control accepts from each source. The
end-to-end checks are in tests/e2e/test_static.py.
"""

import pytest

from reactor_http.server import settings
from reactor_http.static.cache_policy import CachePolicy

RULES = (
    ("/assets/*", "public, max-age=31536000, immutable"),
    ("*.html", "no-cache"),
    (None, "max-age=600"),
    ("/*.[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].js", "max-age=31536000, immutable"),
)


def value_for(policy, path):
    line = policy.field_for(path)
    assert line == "" or (line.startswith("Cache-Control: ") and line.endswith("\r\n"))
    return line[len("Cache-Control: "):-2] if line else None


@pytest.mark.parametrize("path, expected", [
    ("/assets/app.css", "public, max-age=31536000, immutable"),
    ("/assets/deep/er/font.woff2", "public, max-age=31536000, immutable"),   # "*" crosses "/"
    ("/assets/page.html", "public, max-age=31536000, immutable"),            # the first match wins
    ("/index.html", "no-cache"),
    ("/docs/guide/intro.html", "no-cache"),
    ("/", "no-cache"),                  # answered with /index.html, and matched as it
    ("/docs/", "no-cache"),
    ("/app.3f9a1c.js", "max-age=31536000, immutable"),
    ("/app.js", "max-age=600"),         # the plain value: no pattern matched
    ("/ASSETS/x.css", "max-age=600"),   # paths are case-sensitive, as on the disk
    ("/notes.html.txt", "max-age=600"),
])
def test_the_first_matching_rule_wins(path, expected):
    assert value_for(CachePolicy(RULES), path) == expected


def test_without_a_plain_value_unmatched_paths_get_none():
    policy = CachePolicy((("*.html", "no-cache"),))
    assert value_for(policy, "/a.html") == "no-cache"
    assert value_for(policy, "/a.css") is None


def test_no_rules_no_field():
    assert value_for(CachePolicy(), "/anything") is None


def test_a_plain_value_alone_is_the_old_flag():
    assert value_for(CachePolicy(((None, "max-age=60, public"),)), "/x/y.bin") == "max-age=60, public"


def load(*argv, environ=None):
    return settings.load(list(argv), environ or {}).config


@pytest.mark.parametrize("text, parsed", [
    ("max-age=3600", (None, "max-age=3600")),                       # "=" in a plain value
    ("public, max-age=60", (None, "public, max-age=60")),
    ("no-store", (None, "no-store")),
    ("*.html=no-cache", ("*.html", "no-cache")),
    ("/assets/*=public, max-age=31536000, immutable", ("/assets/*", "public, max-age=31536000, immutable")),
    ("/a=b=c", ("/a", "b=c")),                                      # the first "=" ends the pattern
])
def test_plain_values_and_rules_are_told_apart(text, parsed):
    assert settings.cache_control_rule(text) == parsed


@pytest.mark.parametrize("text", ["/assets/*", "*.html=", "max-age=60\r\nX-Injected: 1", "", "*.js=a\x00b"])
def test_bad_values_are_refused(text):
    with pytest.raises(ValueError):
        settings.cache_control_rule(text)


def test_repeated_on_the_command_line_in_order():
    config = load("--cache-control", "*.html=no-cache", "--cache-control", "max-age=60",
                  "--cache-control", "/assets/*=immutable")
    assert config.cache_control == (("*.html", "no-cache"), (None, "max-age=60"), ("/assets/*", "immutable"))


def test_two_plain_values_are_an_error():
    with pytest.raises(settings.SettingsError, match="2 plain values"):
        load("--cache-control", "max-age=60", "--cache-control", "no-cache")


def test_from_a_file_a_string_or_a_list(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('cache-control = "max-age=60"\n')
    assert load("--config", str(path)).cache_control == ((None, "max-age=60"),)
    path.write_text('cache-control = ["*.html=no-cache", "max-age=60"]\n')
    assert load("--config", str(path)).cache_control == (("*.html", "no-cache"), (None, "max-age=60"))


def test_from_the_environment():
    config = load(environ={"REACTOR_HTTP_CACHE_CONTROL": "'*.html=no-cache' 'public, max-age=60'"})
    assert config.cache_control == (("*.html", "no-cache"), (None, "public, max-age=60"))
    assert load(environ={"REACTOR_HTTP_CACHE_CONTROL": "max-age=60"}).cache_control == ((None, "max-age=60"),)


def test_print_config_gives_back_the_rules(tmp_path):
    loaded = settings.load(["--cache-control", "*.html=no-cache", "--cache-control", "max-age=60"], {})
    path = tmp_path / "again.toml"
    path.write_text(settings.render(loaded))
    assert load("--config", str(path)).cache_control == loaded.config.cache_control
