"""The worker board (server/board.py): snapshots shared between worker processes.

Real shared memory and, for the point of it, a real fork: what a child posts
the parent reads. The sequence lock is checked by catching a slot mid-write.
"""

import os
import struct

import pytest

from reactor_http.server.board import SLOT_BYTES, WorkerBoard


def test_each_worker_reads_the_others_posts():
    board = WorkerBoard(3)
    assert board.read(1) is None and board.read_others(0) == []
    board.post(0, {"worker": 0, "responses": 10})
    board.post(2, {"worker": 2, "responses": 30})
    assert board.read_others(0) == [{"worker": 2, "responses": 30}]
    assert board.read_others(1) == [{"worker": 0, "responses": 10}, {"worker": 2, "responses": 30}]
    board.post(2, {"worker": 2, "responses": 31})  # a newer post replaces the slot's
    assert board.read(2) == {"worker": 2, "responses": 31}
    board.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_what_a_forked_child_posts_the_parent_reads():
    board = WorkerBoard(2)
    pid = os.fork()
    if pid == 0:  # the child: a worker
        try:
            board.post(1, {"worker": 1, "pid": os.getpid()})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert board.read_others(0) == [{"worker": 1, "pid": pid}]
    board.close()


def test_a_slot_caught_mid_write_is_not_read():
    """An odd sequence count means its worker is writing: the reader does not
    take the half-written bytes (here, forever odd: it gives up, None)."""
    board = WorkerBoard(2)
    board.post(1, {"worker": 1, "n": 1})
    sequence, length = struct.unpack_from("<QI", board._memory, SLOT_BYTES)
    struct.pack_into("<QI", board._memory, SLOT_BYTES, sequence + 1, length)  # a write begun, never ended
    assert board.read(1) is None
    struct.pack_into("<QI", board._memory, SLOT_BYTES, sequence + 2, length)  # ...and ended
    assert board.read(1) == {"worker": 1, "n": 1}
    board.close()


def test_a_snapshot_too_large_for_its_slot_is_not_posted():
    board = WorkerBoard(1)
    assert board.post(0, {"n": 1})
    assert not board.post(0, {"junk": "x" * SLOT_BYTES})
    assert board.read(0) == {"n": 1}  # the previous one stays
    board.close()
