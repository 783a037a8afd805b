"""New request ids (`req_` + 24 hex digits: 96 random bits), unpredictable and unique.

`secrets.token_hex` per request costs a getrandom system call each; here one `os.urandom`
read makes a block of ids that requests then take in turn. A forked child drops the block it
inherited (`os.register_at_fork`), so parent and child never hand out the same ids. Taking an
id is one `next()` on a list iterator: atomic under the GIL, so two threads never get the
same one either (at worst both read a new block).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

PREFIX = "req_"
ID_BYTES = 12
BLOCK = 256  # ids per os.urandom read


class RequestIds:
    """A pool of fresh ids, read from the OS a block at a time."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._ids: Iterator[str] = iter(())

    def next(self) -> str:
        new = next(self._ids, None)
        if new is None:
            new = self._refill()
        return new

    def reset(self) -> None:
        """Forget the ids not handed out yet (a forked child must not repeat its parent's)."""
        self._ids = iter(())

    def _refill(self) -> str:
        text = os.urandom(ID_BYTES * self._block).hex()
        step = 2 * ID_BYTES
        ids = iter([PREFIX + text[i : i + step] for i in range(0, len(text), step)])
        self._ids = ids
        return next(ids)


_POOL = RequestIds()
os.register_at_fork(after_in_child=_POOL.reset)
new_request_id = _POOL.next
