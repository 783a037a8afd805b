"""A provider key's name in shared state: a keyed hash, never the key itself.

HMAC-SHA256 with the deployment secret (PIXGATE_STATE_SECRET), so someone who can read Redis
can neither use a key nor confirm a guess of one without the secret.
"""

from __future__ import annotations

import hashlib
import hmac


class KeyIds:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, provider: str, key: str) -> str:
        found = self._cache.get((provider, key))
        if found is None:
            digest = hmac.new(self._secret, f"{provider}\0{key}".encode(), hashlib.sha256)
            found = self._cache[(provider, key)] = digest.hexdigest()[:32]
        return found

    def forget(self, live: set[tuple[str, str]]) -> None:
        for item in [k for k in self._cache if k not in live]:
            del self._cache[item]
