"""clients.yaml -> Clients, with positioned diagnostics (duplicate names and keys, models
that nothing routes)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection
from typing import Any

from .spec import DIGEST_PREFIX, Clients, ClientSpec, Limits, digest

Report = Callable[[tuple[str | int, ...], str, str], None]


def compile_clients(
    data: dict[str, Any],
    raw: dict[str, Any],
    model_names: Collection[str],
    report: Report,
) -> Clients:
    """`data` is the interpolated document, `raw` the one as written (to tell a digest
    written in the file from a clear key an ${ENV} reference brought in)."""
    entries: list[tuple[bytes, ClientSpec]] = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    for i, item in enumerate(data.get("clients") or []):
        name = item["name"]
        if name in names:
            report(("clients", i, "name"), "E501", f"client '{name}' is also entry {names[name]}")
            continue
        names[name] = i
        models = tuple(item["models"]) if "models" in item else None
        for j, pattern in enumerate(models or ()):
            if not any(fnmatch.fnmatchcase(m, pattern) for m in model_names):
                report(
                    ("clients", i, "models", j),
                    "W502",
                    f"'{pattern}' matches no route, alias or provider/model name",
                )
        client = ClientSpec.build(
            name,
            models,
            Limits(**item.get("limits", {})),
            tuple(item.get("tags", ())),
        )
        for j, value in enumerate(item["keys"]):
            written = raw["clients"][i]["keys"][j]
            key_digest = _digest_of(value, written, (("clients", i, "keys", j)), report)
            if key_digest is None:
                continue
            if key_digest in owners:
                report(
                    ("clients", i, "keys", j),
                    "E503",
                    f"this key is also a key of client '{owners[key_digest]}'",
                )
                continue
            owners[key_digest] = name
            entries.append((bytes.fromhex(key_digest), client))
    return Clients(tuple(entries))


def _digest_of(value: str, written: str, path: tuple[str | int, ...], report: Report) -> str | None:
    if value.startswith(DIGEST_PREFIX):
        hexpart = value[len(DIGEST_PREFIX) :]
        if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
            return hexpart
        report(path, "E504", "a digest is 'sha256:' and 64 lowercase hex digits")
        return None
    if written.startswith("${"):
        if not value.strip():
            report(path, "E504", f"{written} is empty")
            return None
        return digest(value.strip())  # a clear key from a secret: digested, never kept
    report(path, "E504", "write a digest ('sha256:...'), never a clear key")
    return None
