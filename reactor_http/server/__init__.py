"""Operations: the parts wired together, and everything around serving.

In reading order:

- ``wiring``: builds a server's parts in one place (reactor, executor, site,
  logs, the connection context); ``server``: accepts connections, keeps within
  the limits, stops gracefully; ``limits``: the descriptor arithmetic;
- ``cli``: the command line, signals, the banner; ``settings``: one table of
  every flag (command line, TOML file, environment); ``listeners``: TCP, Unix
  and systemd sockets; ``workers``: several processes on one port;
- ``logs``: the access log and the error log; ``status``: the status page;
  ``trace``: ``--trace``, which watches the other packages at work.

May import: anything. Nothing else imports it (tests/meta/test_layering.py
enforces it): it is the top of the layers.
"""
