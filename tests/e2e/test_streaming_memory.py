"""Streaming keeps memory flat: many clients downloading huge files at once must
not grow the server's resident memory with the file size.

A large file is sent from its open descriptor, with os.sendfile (the kernel
copies page cache to socket) or, with --no-sendfile, in bounded chunks read by
the executor. Either way the server holds at most a chunk per connection, never
the file. The files here are sparse (one hole), so they cost no disk space and
reading them is as fast as reading zeros.
"""

import threading

import psutil
import pytest
from support.clients import get, read_head
from support.environment import make_sparse_file

MIB = 1 << 20
GIB = 1 << 30

# The whole bound for ten concurrent 1 GiB downloads. A server that buffered
# even one file would grow by a gigabyte; one that leaked a chunk per send
# would grow by far more than this.
RSS_GROWTH_LIMIT = 16 * MIB
SAMPLE_SECONDS = 0.05
RECEIVE_BUFFER_BYTES = 4 * MIB


class PeakMemory:
    """Samples a process's RSS in a thread; on Linux, also reads the kernel's own
    high-water mark (VmHWM), reset first through /proc/PID/clear_refs, so that
    a short spike between two samples is not missed."""

    def __init__(self, pid):
        self.process = psutil.Process(pid)
        self.pid = pid
        self.peak = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.kernel_peak_available = self._reset_kernel_peak()

    def _reset_kernel_peak(self):
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # "5": reset the peak RSS (Linux 4.0+)
            return self.kernel_peak() is not None
        except OSError:
            return False

    def kernel_peak(self):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return None

    def _sample(self):
        while not self._stopped.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stopped.wait(SAMPLE_SECONDS)

    def __enter__(self):
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stopped.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        if self.kernel_peak_available:
            self.peak = max(self.peak, self.kernel_peak())


def download(server, path, results, index):
    """Fetch path on a new connection, counting body bytes without keeping them.
    Asks for Connection: close, so reading to end-of-file also proves that no
    byte follows the announced body."""
    try:
        with server.connect(timeout=30) as sock:  # a healthy server never pauses this long
            sock.sendall(get(path, extra="Connection: close\r\n"))
            status, headers, first_bytes = read_head(sock)
            received = len(first_bytes)
            nonzero = first_bytes.count(0) != len(first_bytes)
            buffer = bytearray(RECEIVE_BUFFER_BYTES)
            view = memoryview(buffer)
            last = 0
            while True:
                count = sock.recv_into(view)
                if count == 0:
                    break
                received += count
                last = count
            # Only the last read is checked for stray non-zero bytes: checking
            # every read of a gigabyte would cost more than the download.
            nonzero = nonzero or buffer[:last].count(0) != last
            results[index] = (status, headers.get("content-length"), received, nonzero)
    except Exception as error:  # reported by the test, on the main thread
        results[index] = error


def download_concurrently(server, path, clients):
    results = [None] * clients
    threads = [threading.Thread(target=download, args=(server, path, results, index), daemon=True)
               for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a download did not finish"
    return results


@pytest.mark.parametrize("flags, clients, size", [
    pytest.param((), 10, GIB, id="sendfile-10x1GiB"),
    pytest.param(("--no-sendfile",), 4, 256 * MIB, id="no-sendfile-4x256MiB"),
])
def test_concurrent_huge_downloads_do_not_grow_memory(start_server, tmp_path, flags, clients, size):
    """Many clients each receive every byte of a huge file while the server's
    resident memory grows by less than RSS_GROWTH_LIMIT."""
    make_sparse_file(tmp_path / "huge.bin", size)
    make_sparse_file(tmp_path / "warm-up.bin", 8 * MIB)
    server = start_server("--quiet", *flags, root=str(tmp_path))

    # Warm up first: lazy imports, the first executor thread, the Date cache
    # and the allocator's first arenas are one-time costs, not streaming.
    [warm_up] = download_concurrently(server, "/warm-up.bin", 1)
    assert not isinstance(warm_up, Exception), warm_up
    assert warm_up[:3] == (200, str(8 * MIB), 8 * MIB)

    before = psutil.Process(server.pid).memory_info().rss
    with PeakMemory(server.pid) as memory:
        results = download_concurrently(server, "/huge.bin", clients)

    for result in results:
        assert not isinstance(result, Exception), result
        status, content_length, received, nonzero = result
        assert (status, content_length, received) == (200, str(size), size)
        assert not nonzero, "a sparse file must read as zeros"
    growth = memory.peak - before
    assert growth < RSS_GROWTH_LIMIT, (
        f"RSS grew by {growth / MIB:.1f} MiB (from {before / MIB:.1f} MiB) "
        f"while {clients} clients downloaded {size // MIB} MiB each")
    assert server.process.poll() is None, "the server died during the downloads"
