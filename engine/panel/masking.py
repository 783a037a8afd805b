"""Secrets out of log lines: every provider key of the live config, the client, admin and
metrics keys, in the forms a line may carry them (raw, percent-encoded, JSON-escaped)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from ..runtime.keys import mask_key
from ..runtime.state import GatewayState
from ..settings import Settings


def encodings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


def replacements(secrets: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(form, masked) pairs, longest form first so that no form is masked half-way."""
    pairs = {form: mask_key(s) for s in secrets if s for form in encodings(s)}
    return tuple(sorted(pairs.items(), key=lambda p: -len(p[0])))


def masker(state: GatewayState, settings: Settings) -> Callable[[str], str]:
    fixed = [*settings.api_keys, settings.admin_key or "", settings.metrics_key or ""]
    cache: dict[str, tuple[tuple[str, str], ...]] = {}

    def mask(text: str) -> str:
        snapshot = state.snapshot
        pairs = cache.get(snapshot.version)
        if pairs is None:
            cache.clear()
            provider_keys = [k for p in snapshot.providers.values() for k in p.auth.keys]
            pairs = cache[snapshot.version] = replacements([*fixed, *provider_keys])
        for form, masked in pairs:
            if form in text:
                text = text.replace(form, masked)
        return text

    return mask
