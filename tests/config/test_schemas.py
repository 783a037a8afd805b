"""The published JSON Schemas: valid 2020-12, closed objects, every field described, and
every shipped file carries its $schema line for editors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.gateway import REPO

SCHEMAS = sorted((REPO / "schemas").glob("*.schema.json"))


def objects(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "properties" in node and node.get("type") == "object":  # not `if:` conditions
            yield where, node
        for key, value in node.items():
            yield from objects(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from objects(value, f"{where}[{i}]")


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schema_is_closed_and_described(path: Path) -> None:
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    problems = []
    for where, obj in objects(schema, path.name):
        if obj.get("additionalProperties") is not False and "additionalProperties" not in obj:
            problems.append(f"{where}: unknown keys are not rejected")
        for name, prop in obj["properties"].items():
            if isinstance(prop, dict) and not prop.get("description"):
                problems.append(f"{where}.properties.{name}: no description")
    assert problems == []


def test_shipped_files_name_their_schema() -> None:
    files = [*sorted((REPO / "providers.d").glob("*.yaml")), REPO / "routes.yaml"]
    for file in files:
        first = file.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), file
        target = (file.parent / first.split("=", 1)[1]).resolve()
        assert target.is_file(), f"{file}: {target} does not exist"
