"""A provider key's name in shared state: a keyed hash, never the key itself.

HMAC-SHA256 with the deployment secret (PIXGATE_STATE_SECRET), so someone who can read Redis
can neither use a key nor confirm a guess of one without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

# Acquire KEYS lists kept per replica: one per provider and set of candidate keys, and a
# retry's candidates leave out the keys it tried, so the sets could reach 2^keys.
ATTEMPTS_KEPT = 1024


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


class Names:
    """Where a deployment's state lives in Redis: every name starts with its prefix, and one
    provider's names share the hash tag {provider}, so a Redis Cluster keeps them in one slot."""

    def __init__(self, prefix: str, ids: KeyIds) -> None:
        self.prefix = prefix
        self.ids = ids
        self.channel = f"{prefix}:changes"  # pub/sub: a provider's fleet-visible state changed
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._attempts: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def of(self, provider: str, *parts: str) -> str:
        return ":".join((self.prefix, "{" + provider + "}", *parts))

    def key(self, provider: str, key: str) -> tuple[str, str]:
        """A provider key's health hash and lease zset."""
        found = self._keys.get((provider, key))
        if found is None:
            kid = self.ids(provider, key)
            found = self._keys[(provider, key)] = (
                self.of(provider, "key", kid), self.of(provider, "lease", kid)
            )  # fmt: skip
        return found

    def attempt(self, provider: str, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The acquire script's KEYS for these candidate keys: the breaker, probe and cursor,
        then each key's health hash and lease zset (the same every attempt, so kept)."""
        found = self._attempts.get((provider, keys))
        if found is None:
            names = [self.of(provider, "breaker"), self.of(provider, "probe")]
            names.append(self.of(provider, "cursor"))
            for key in keys:
                names.extend(self.key(provider, key))
            if len(self._attempts) >= ATTEMPTS_KEPT:  # the oldest goes (rebuilt if needed)
                del self._attempts[next(iter(self._attempts))]
            found = self._attempts[(provider, keys)] = tuple(names)
        return found

    def forget(self, live: set[tuple[str, str]]) -> None:
        self.ids.forget(live)
        for item in [k for k in self._keys if k not in live]:
            del self._keys[item]
        self._attempts.clear()  # rebuilt on the next attempt

    def plain(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))
