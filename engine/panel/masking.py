"""Secrets out of log lines: every provider key of the live config and the client, admin and
metrics keys, in every encoding `redact` knows (raw, percent-encoded, JSON-escaped, base64)."""

from __future__ import annotations

from collections.abc import Callable

from ..runtime.lifecycle.state import GatewayState
from ..runtime.redact import redact
from ..settings import Settings


def masker(state: GatewayState, settings: Settings) -> Callable[[str], str]:
    fixed = (*settings.api_keys, settings.admin_key, settings.metrics_key)
    cache: dict[str, tuple[str | None, ...]] = {}

    def mask(text: str) -> str:
        snapshot = state.snapshot
        secrets = cache.get(snapshot.version)
        if secrets is None:  # once per config version, not per line
            cache.clear()
            keys = [k for p in snapshot.providers.values() for k in p.auth.keys]
            secrets = cache[snapshot.version] = (*fixed, *keys)
        return redact(text, *secrets)

    return mask
