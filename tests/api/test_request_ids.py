"""New request ids come from a pool of random blocks: each is unique, well-formed, and a
forked child never repeats its parent's."""

from __future__ import annotations

import os
import re
import threading

import pytest

from engine.api import requestids
from engine.api.requestids import RequestIds, new_request_id

SHAPE = re.compile(r"^req_[0-9a-f]{24}$")


def test_ids_are_well_formed_and_unique_across_blocks() -> None:
    pool = RequestIds(block=8)
    ids = [pool.next() for _ in range(8 * 50 + 3)]  # 51 blocks read
    assert all(SHAPE.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_module_pool_gives_new_ids() -> None:
    first, second = new_request_id(), new_request_id()
    assert SHAPE.match(first) and SHAPE.match(second) and first != second


def test_threads_never_share_an_id() -> None:
    pool = RequestIds(block=4)  # small blocks: many refills race
    seen: list[list[str]] = [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        out.extend(pool.next() for _ in range(2000))

    threads = [threading.Thread(target=take, args=(out,)) for out in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ids = [i for out in seen for i in out]
    assert len(ids) == 8000 and len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_request_id()  # the parent holds a block with ids left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first few ids to the parent, then out at once
        try:
            os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_request_id() for _ in range(requestids.BLOCK)]
    assert len(child) == 3 and all(SHAPE.match(i) for i in child)
    assert not set(child) & set(parent)
