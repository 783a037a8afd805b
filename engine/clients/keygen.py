"""`pixgate key new`: a fresh client key, and the digest that goes into clients.yaml."""

from __future__ import annotations

import secrets

from .spec import DIGEST_PREFIX, digest

PREFIX = "pg-"


def new_key() -> str:
    key = PREFIX + secrets.token_urlsafe(32)
    return (
        f"key:    {key}\n"
        f"digest: {DIGEST_PREFIX}{digest(key)}\n"
        "Give the key to the client (it is shown once); put only the digest in clients.yaml."
    )
