"""Test support, in one place: what the tests share, by concern.

- ``environment``: where things are (the repository, the demo site), which
  programs are here, CI's rules, waiting for a condition, becoming nobody;
- ``servers``: the real server in a subprocess (ServerProcess), and the
  record of which connection transitions the end-to-end servers made;
- ``clients``: a raw-socket HTTP client that reads responses exactly as framed;
- ``checks``: what every response must carry, and "still serving";
- ``fakes``: a fake clock, socket, reactor and executor, for unit tests that
  drive one piece without a server;
- ``parsing``: feeding the parser three ways (whole, byte by byte, with
  trailing bytes), and a parser that keeps the bodies it frames;
- ``browser``: headless Chromium through the system chromedriver.
"""
