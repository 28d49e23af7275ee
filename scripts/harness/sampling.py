"""What a server spends: CPU, memory, threads, descriptors; and where it runs.

Readings of a process (or of a process and its children: nginx's worker)
through psutil, imported only where a reading is taken, so that a script
without psutil can still say so and exit cleanly. What psutil does not give
comes from /proc: the CPUs' busy time (how much other work shared the
server's core), every thread's context switches, what the descriptors are.
CPU lists are taskset's syntax; `pinned` puts a command on them.
"""

import os
import re
import shutil
import threading
import time

# -- the machine's CPUs ------------------------------------------------------------------


def parse_cpu_list(text):
    """taskset's list syntax ("0", "0-1", "0,2-3") -> a sorted list of CPU numbers."""
    cpus = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 0 or 0-1 or 0,2)")
        cpus.update(range(int(first), int(last if dash else first) + 1))
    return sorted(cpus)


def pinned(command, cpus):
    """``command`` run by taskset on the CPU list ``cpus`` (unpinned when None)."""
    return ["taskset", "-c", cpus, *command] if cpus else list(command)


def find_program(name):
    """A program on PATH, or in the sbin directories a non-root PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def cpu_ticks():
    """/proc/stat per CPU: {cpu: (busy, total)} in clock ticks. Busy is
    anything but idle and iowait, steal included: time the hypervisor gave
    to someone else is time the server did not get."""
    ticks = {}
    with open("/proc/stat") as file:
        for line in file:
            match = re.match(r"cpu(\d+) (.*)", line)
            if match:
                values = [int(value) for value in match.group(2).split()[:8]]
                ticks[int(match.group(1))] = (sum(values) - values[3] - values[4], sum(values))
    return ticks


def busy_percent(before, after, cpus):
    """How busy the given CPUs were between two cpu_ticks(), as a percent of one CPU."""
    busy = sum(after[cpu][0] - before[cpu][0] for cpu in cpus if cpu in after)
    total = sum(after[cpu][1] - before[cpu][1] for cpu in cpus if cpu in after)
    return 100.0 * len(cpus) * busy / total if total else 0.0


def busy_seconds(cpus):
    """Seconds the given CPUs have been busy since boot (see cpu_ticks); None
    where /proc/stat cannot be read."""
    try:
        ticks = cpu_ticks()
    except OSError:
        return None
    return sum(ticks[cpu][0] for cpu in cpus if cpu in ticks) / os.sysconf("SC_CLK_TCK")


# -- one process, or a process and its children -----------------------------------------


def process_tree(process):
    """A psutil.Process and every live descendant."""
    import psutil
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [process]


def tree_cpu_seconds(process):
    """(user, system) CPU seconds of a process and every live descendant (nginx's
    worker). User time is the server's own code (for a Python server, the
    interpreter); system time is the kernel working for it: system calls, and
    on loopback most of TCP."""
    import psutil
    user = system = 0.0
    for member in process_tree(process):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user += times.user
        system += times.system
    return user, system


def tree_snapshot(process, port=None):
    """RSS (bytes), threads and descriptors summed over the tree; with port, also the
    TCP connections established on that local port."""
    import psutil
    snapshot = {"rss": 0, "threads": 0, "fds": 0}
    members = process_tree(process)
    for member in members:
        try:
            snapshot["rss"] += member.memory_info().rss
            snapshot["threads"] += member.num_threads()
            snapshot["fds"] += member.num_fds()
        except psutil.NoSuchProcess:
            continue
    if port is not None:
        established = 0
        for member in members:
            try:
                connections = member.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            established += sum(1 for connection in connections
                               if connection.status == psutil.CONN_ESTABLISHED
                               and connection.laddr and connection.laddr.port == port)
        snapshot["established"] = established
    return snapshot


_SWITCHES = re.compile(rb"voluntary_ctxt_switches:\t(\d+)\nnonvoluntary_ctxt_switches:\t(\d+)")


def context_switches(pid):
    """(voluntary, involuntary) context switches summed over every thread of a
    process. psutil's num_ctx_switches() reads /proc/PID/status, which on Linux
    counts the main thread only: for a thread per connection that would miss
    nearly all of them, so read each thread's own status. (Threads that ended
    take their counts with them.)"""
    voluntary = involuntary = 0
    try:
        thread_ids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for thread_id in thread_ids:
        try:
            with open(f"/proc/{pid}/task/{thread_id}/status", "rb") as file:
                match = _SWITCHES.search(file.read())
        except OSError:
            continue  # that thread ended meanwhile
        if match:
            voluntary += int(match.group(1))
            involuntary += int(match.group(2))
    return voluntary, involuntary


def process_cpu_seconds(pid):
    """CPU time (user + system) of every thread a process has had, to the
    nanosecond. psutil's cpu_times() comes from /proc/PID/stat in 10 ms clock
    ticks, too coarse for a quiet step (80 requests of 100 us each is less
    than one tick). The kernel has a CPU clock per process: clock_getcpuclockid()
    in C, which on Linux is this arithmetic (a negated pid, shifted, and the
    "scheduler runtime" clock type, 2); Python does not wrap it, but
    clock_gettime() takes the id."""
    return time.clock_gettime(((~pid) << 3) | 2)


def socket_descriptor_count(pid):
    """How many of a process's descriptors are sockets (listeners included)."""
    count = 0
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            count += os.readlink(os.path.join(directory, name)).startswith("socket:")
        except OSError:
            pass  # closed while we looked
    return count


def descriptor_targets(pid):
    """What a process's descriptors point at, counted: "socket", "pipe",
    "anon_inode:[eventpoll]", or a file's path. For a report that says what leaked."""
    counts = {}
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            target = os.readlink(os.path.join(directory, name))
        except OSError:
            continue
        kind = target.split(":[")[0] if target.startswith(("socket:", "pipe:")) else target
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


class ProcessSampler(threading.Thread):
    """Every ``interval`` seconds, one reading of a process: threads,
    descriptors, RSS and CPU time (every thread's), kept in ``samples``."""

    def __init__(self, pid, interval, cpus=None):
        import psutil
        super().__init__(name="sampler", daemon=True)
        self.cpus = set(cpus) if cpus else None  # the server's CPUs, when it is pinned
        self.interval = interval
        # One psutil.Process per thread: oneshot() caches on the object.
        self.process = psutil.Process(pid)
        self.edge_process = psutil.Process(pid)
        self.samples = []
        self._stop_event = threading.Event()

    @staticmethod
    def reading(process):
        """{t, threads, fds, rss, cpu_seconds, system_seconds}, or None once the process is gone."""
        import psutil
        try:
            with process.oneshot():
                reading = {"t": time.monotonic(), "threads": process.num_threads(),
                           "fds": process.num_fds(), "rss": process.memory_info().rss}
                times = process.cpu_times()
                try:
                    reading["cpu_seconds"] = process_cpu_seconds(process.pid)
                except OSError:  # a kernel without per-process CPU clocks
                    reading["cpu_seconds"] = times.user + times.system
                # The kernel's share, in ticks: enough to tell over a step
                # whether the time went to the server's code or to the kernel.
                reading["system_seconds"] = times.system
                return reading
        except psutil.Error:
            return None

    def sample(self):
        """Take a reading now and keep it (before the thread starts: the first sample)."""
        reading = self.reading(self.process)
        if reading is not None:
            self.samples.append(reading)
        return reading

    def edge(self):
        """A reading plus the context switches of every thread and, when pinned,
        the busy time of the server's CPUs: taken at the edges of a measured
        window (reading every thread's status costs ~10 us a thread, too much
        to do ten times a second with 10,000 of them). Not kept in ``samples``."""
        reading = self.reading(self.edge_process)
        if reading is not None and self.cpus:
            reading["cpus_busy_seconds"] = busy_seconds(self.cpus)
        switches = context_switches(self.edge_process.pid)
        if reading is not None and switches is not None:
            reading["voluntary"], reading["involuntary"] = switches
        return reading

    def run(self):
        previous = self.samples[-1] if self.samples else None
        while not self._stop_event.wait(self.interval):
            reading = self.reading(self.process)
            if reading is None:
                return  # the server is gone: what comes after the run will say so
            if previous is not None:
                elapsed = reading["t"] - previous["t"]
                reading["cpu_percent"] = 100.0 * (reading["cpu_seconds"] - previous["cpu_seconds"]) / elapsed
            self.samples.append(reading)
            previous = reading

    def latest(self):
        return self.samples[-1] if self.samples else None

    def stop(self):
        self._stop_event.set()
        self.join(10)
