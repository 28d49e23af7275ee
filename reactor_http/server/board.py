"""The worker board: where each worker process posts its snapshot, for any of them to read.

With --workers, a request for the live page or the metrics reaches one worker
(whichever the kernel gave the connection to), but should show all of them.
So the parent maps one block of shared memory before it forks (an anonymous
``mmap``, shared with every child), with a slot per worker; once a second each
worker writes its snapshot (telemetry.py) as JSON into its own slot, and reads
the others' from theirs. No locks, no pipes, no extra process: each slot has a
single writer, and a reader that catches a slot mid-write sees that and takes
the slot's previous state instead.

That is a sequence lock. Each slot begins with a counter, odd while its
worker writes. A reader reads the counter, the data, the counter again, and
keeps the data only if both counts are the same even number; else it tries
again (a write takes microseconds), and after a few tries leaves that worker
out of this one answer.

Each slot holds SLOT_BYTES; a snapshot is about 2 KiB. One that does not fit
is not posted (the worker's previous one stays, and says how old it is).
"""

from __future__ import annotations

import json
import mmap
import struct
from typing import Any

SLOT_BYTES = 16 * 1024
# A slot's head: the sequence count (even: stable) and the data's length.
_HEAD = struct.Struct("<QI")
READ_TRIES = 5


class WorkerBoard:
    """A slot per worker in shared memory. Made by the parent before forking."""

    def __init__(self, workers: int):
        self.workers = workers
        self._memory = mmap.mmap(-1, workers * SLOT_BYTES)  # anonymous and shared with children

    def post(self, worker: int, snapshot: dict[str, Any]) -> bool:
        """Write this worker's snapshot into its slot. Returns False if it is
        too large to fit (the slot keeps the previous one)."""
        data = json.dumps(snapshot, separators=(",", ":")).encode()
        if _HEAD.size + len(data) > SLOT_BYTES:
            return False
        memory = self._memory
        start = worker * SLOT_BYTES
        sequence, _ = _HEAD.unpack_from(memory, start)
        _HEAD.pack_into(memory, start, sequence + 1, 0)           # odd: being written
        memory[start + _HEAD.size:start + _HEAD.size + len(data)] = data
        _HEAD.pack_into(memory, start, sequence + 2, len(data))   # even again: stable
        return True

    def read(self, worker: int) -> dict[str, Any] | None:
        """A worker's last snapshot, or None if it has posted none (or is
        being written every time we look, which does not happen in practice)."""
        memory = self._memory
        start = worker * SLOT_BYTES
        for _ in range(READ_TRIES):
            before, length = _HEAD.unpack_from(memory, start)
            if before % 2 or length == 0:
                if before == 0:
                    return None  # never posted
                continue
            data = memory[start + _HEAD.size:start + _HEAD.size + length]
            after, _ = _HEAD.unpack_from(memory, start)
            if after == before:
                try:
                    return json.loads(data)
                except ValueError:
                    return None
        return None

    def read_others(self, worker: int) -> list[dict[str, Any]]:
        """Every other worker's last snapshot, in worker order."""
        found = []
        for other in range(self.workers):
            if other != worker:
                snapshot = self.read(other)
                if snapshot is not None:
                    found.append(snapshot)
        return found

    def close(self) -> None:
        self._memory.close()
