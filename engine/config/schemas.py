"""Validate documents against the JSON Schemas in schemas/, as diagnostics with positions."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

Path = tuple[str | int, ...]


def schema_dir() -> FsPath:
    """schemas/ beside the package in a checkout, else the copy installed with the package."""
    checkout = FsPath(__file__).resolve().parents[2] / "schemas"
    if (checkout / "provider.schema.json").is_file():
        return checkout
    return FsPath(__file__).resolve().parents[1] / "bundled" / "schemas"


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def validate(name: str, doc: Any, report: Callable[[Path, str], None]) -> bool:
    """Report every schema problem; True when there were none."""
    ok = True
    for error in validator(name).iter_errors(doc):
        ok = False
        for path, message in _explain(error):
            report(path, message)
    return ok


def _explain(error: ValidationError) -> Iterator[tuple[Path, str]]:
    path: Path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        for key in error.instance:
            if key not in allowed:
                hint = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
                yield (*path, str(key)), f"unknown key '{key}'{hint}"
        return
    if (choice := _required_choice(error)) is not None:
        yield path, choice
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Prefer the branch whose type matches; best_match would pick another branch's
        # `type` error ("is not of type 'null'") over the real problem.
        inner = best_match([e for e in error.context if e.validator != "type"] or error.context)
        if inner is not None and inner.validator not in ("required", "not"):
            yield from _explain(inner)
            return
    yield path, error.message


def _required_choice(error: ValidationError) -> str | None:
    """`oneOf` branches that each only require a key (a request's `path` / `url`): say which
    keys, instead of jsonschema's dump of the whole object."""
    branches = error.validator_value
    if error.validator == "not" and isinstance(branches, dict) and set(branches) == {"anyOf"}:
        if not _only_required(branches["anyOf"]) or not isinstance(error.instance, dict):
            return None
        keys = dict.fromkeys(k for b in branches["anyOf"] for k in b["required"])
        given = [f"`{k}`" for k in keys if k in error.instance]
        return f"takes only one of {', '.join(f'`{k}`' for k in keys)}; found {' and '.join(given)}"
    if error.validator not in ("oneOf", "anyOf") or not isinstance(branches, list):
        return None
    if not _only_required(branches):
        return None
    names = [f"`{name}`" for b in branches for name in b["required"]]
    if error.context:  # no branch held: every key is missing
        return f"needs {' or '.join(names)}"
    if len(names) == 2:
        return f"takes {names[0]} or {names[1]}, not both"
    return f"takes only one of {', '.join(names)}"


def _only_required(branches: Any) -> bool:
    return isinstance(branches, list) and all(
        isinstance(b, dict) and set(b) == {"required"} for b in branches
    )
