"""The one exception the protocol layer raises on purpose."""

from __future__ import annotations


class ProtocolError(Exception):
    """A request the server must refuse; ``status`` is the response to send
    (400 unless a more precise status applies), ``detail`` says why."""

    def __init__(self, status: int, detail: str, method: str | None = None,
                 request_line: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        # The refused request's method and request line, when they are known:
        # a HEAD must get its error without a body, and the log names the request.
        self.method = method
        self.request_line = request_line
