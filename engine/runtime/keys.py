"""Key selection per provider. Round-robin for now; health and cooldowns build on this."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ..dsl.spec import ProviderSpec


def mask_key(key: str) -> str:
    """`sk-a…9xQ`: enough to tell keys apart in output, never enough to use one."""
    if len(key) <= 8:
        return "…"
    return f"{key[:4]}…{key[-3:]}"


class KeyPools:
    """Runtime key state; lives beside the config snapshot, never inside it."""

    def __init__(self) -> None:
        self._cursors: dict[tuple[str, tuple[str, ...]], Iterator[int]] = {}

    def order(self, provider: ProviderSpec) -> list[str | None]:
        """Keys to try for one request, starting from the next in rotation."""
        keys = provider.auth.keys
        if not keys:
            return [None]
        cursor = self._cursors.setdefault((provider.id, keys), itertools.cycle(range(len(keys))))
        start = next(cursor)
        return list(keys[start:] + keys[:start])
