"""The one exception the protocol layer raises on purpose."""


class ProtocolError(Exception):
    """A request the server must refuse; ``status`` is the response to send
    (400 unless a more precise status applies), ``detail`` says why."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail
