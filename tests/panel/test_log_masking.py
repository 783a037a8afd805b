"""The live log keeps no secret in any encoding: panel lines go through runtime.redact."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from engine.panel.masking import masker

KEY = "sk-live+provider/key=0123456789abcdef"
ADMIN = "admin-key-for-logs-0123456789"


def make() -> Any:
    provider = SimpleNamespace(auth=SimpleNamespace(keys=(KEY,)))
    state = SimpleNamespace(snapshot=SimpleNamespace(version="v1", providers={"p": provider}))
    settings = SimpleNamespace(api_keys=(), admin_key=ADMIN, metrics_key=None)
    return masker(state, settings)  # type: ignore[arg-type]


def test_every_encoding_of_a_key_is_masked_in_a_log_line() -> None:
    mask = make()
    forms = [
        KEY,
        quote(KEY, safe=""),
        json.dumps(KEY)[1:-1],
        base64.b64encode(f"user:{KEY}".encode()).decode(),
        ADMIN,
    ]
    for form in forms:
        line = mask(f"upstream said: {form} (request_id=req_1)")
        assert form not in line and "request_id=req_1" in line, form
