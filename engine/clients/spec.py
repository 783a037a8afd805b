"""What clients.yaml compiles to: immutable, looked up once per request by key digest."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from dataclasses import dataclass, field

DIGEST_PREFIX = "sha256:"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    images_per_minute: int | None = None
    images_per_day: int | None = None
    concurrent: int | None = None
    max_n: int | None = None
    max_pixels: int | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """USD at list price per UTC day and month; None: no cap."""

    usd_per_day: float | None = None
    usd_per_month: float | None = None

    def __bool__(self) -> bool:
        return self.usd_per_day is not None or self.usd_per_month is not None


@dataclass(frozen=True, slots=True)
class ClientSpec:
    name: str
    models: tuple[str, ...] | None = None  # None: every model
    limits: Limits = field(default_factory=Limits)
    tags: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = None
    budget: Budget = field(default_factory=Budget)

    @classmethod
    def build(
        cls,
        name: str,
        models: tuple[str, ...] | None = None,
        limits: Limits | None = None,
        tags: tuple[str, ...] = (),
        budget: Budget | None = None,
    ) -> ClientSpec:
        pattern = (
            re.compile("|".join(f"(?:{fnmatch.translate(m)})" for m in models)) if models else None
        )
        return cls(name, models, limits or Limits(), tags, pattern, budget or Budget())

    def allows(self, *names: str) -> bool:
        """Whether any of the names a request resolves to (model, route) is allowed."""
        if self.models is None:
            return True
        pattern = self._pattern
        return pattern is not None and any(pattern.fullmatch(n) for n in names if n)

    @property
    def limited(self) -> bool:
        return self.limits != Limits()


@dataclass(frozen=True, slots=True)
class Clients:
    entries: tuple[tuple[bytes, ClientSpec], ...] = ()  # (key digest, client)

    def find(self, token: str) -> ClientSpec | None:
        """The client whose key this is: the token's digest is compared with every known
        digest in constant time, without stopping at a match, so the time taken says nothing
        about which keys exist."""
        wanted = hashlib.sha256(token.encode()).digest()
        found: ClientSpec | None = None
        for known, client in self.entries:
            if hmac.compare_digest(known, wanted):
                found = client
        return found

    def __bool__(self) -> bool:
        return bool(self.entries)
