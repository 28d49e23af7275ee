"""An Exchange (http1/handler.py) driven by the test: ``run_blocking`` only
records the job, and ``complete`` runs it (here, on the test's thread) and
hands its value to ``then``, as the connection would on the loop thread."""

from reactor_http.http1.parser import RequestParser


class FakeExchange:
    def __init__(self, client="127.0.0.1"):
        self.client = client
        self.jobs = []       # (job, args, then) waiting
        self.jobs_run = []   # the jobs completed, in order

    def run_blocking(self, job, args, then, shared=False):
        assert not self.jobs, "a handler asks for one job at a time"
        self.jobs.append((job, args, then))

    def complete(self):
        job, args, then = self.jobs.pop()
        self.jobs_run.append(job)
        return then(job(*args))


def drive(handler, request, exchange):
    """The Response, after running every job the handler chains."""
    response = handler.handle(request, exchange)
    while response is None:
        response = exchange.complete()
    assert not exchange.jobs
    return response


def parse(target="/", fields="", method="GET"):
    parser = RequestParser()
    parser.feed(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode("latin-1"))
    return parser.next_request()


class Site:
    """The next handler: one remembered Response for every request, as the
    static site's AnswerMemo gives one; counts who reached it."""

    def __init__(self, response):
        self.response = response
        self.calls = 0

    def handle(self, request, exchange):
        self.calls += 1
        return self.response
