"""tests/openapi.py: the strict validator every client-conformance test relies on, and the rule
for a missing spec (fail under CI=true, skip loudly otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.openapi import load_spec, validate_component

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "components": {
        "schemas": {
            "Event": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["done"]},
                    "reason": {"type": "string", "enum": ["stop"], "nullable": True},
                    "usage": {"$ref": "#/components/schemas/Usage"},
                    "meta": {"type": "object", "additionalProperties": True},
                    "url": {"type": "string", "format": "uri"},
                },
                "required": ["type"],
            },
            "Usage": {"type": "object", "properties": {"tokens": {"type": "integer"}}},
            "Base": {"type": "object", "properties": {"id": {"type": "string"}}},
            "Derived": {
                "allOf": [
                    {"$ref": "#/components/schemas/Base"},
                    {"type": "object", "properties": {"size": {"type": "integer"}}},
                ]
            },
            "ChatCompletionStreamResponseDelta": {
                "type": "object",
                "properties": {"content": {"type": "string"}},
            },
        }
    },
}


def test_declared_fields_pass() -> None:
    validate_component(SPEC, "Event", {"type": "done", "usage": {"tokens": 3}, "meta": {"x": 1}})


@pytest.mark.parametrize(
    "instance",
    [
        {"type": "done", "extra": 1},  # an undeclared top-level field
        {"type": "done", "usage": {"tokens": 3, "cost": 1}},  # ... inside a $ref'd object
        {"type": "other"},  # outside the enum
        {"type": "done", "url": "/files/x.png"},  # not an absolute URI
    ],
)
def test_undeclared_or_wrong_fields_fail(instance: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_component(SPEC, "Event", instance)


def test_lenient_mode_keeps_objects_open() -> None:
    validate_component(SPEC, "Event", {"type": "done", "extra": 1}, strict=False)


def test_nullable_admits_null() -> None:
    validate_component(SPEC, "Event", {"type": "done", "reason": None})
    with pytest.raises(jsonschema.ValidationError):
        validate_component(SPEC, "Event", {"type": "done", "reason": "length"})


def test_allof_is_closed_as_a_whole() -> None:
    validate_component(SPEC, "Derived", {"id": "a", "size": 2})
    with pytest.raises(jsonschema.ValidationError):
        validate_component(SPEC, "Derived", {"id": "a", "size": 2, "other": 0})


def test_documented_extensions_pass() -> None:
    delta = {"content": "", "reasoning_content": "rendering"}
    validate_component(SPEC, "ChatCompletionStreamResponseDelta", delta)


def test_unknown_component_is_an_error() -> None:
    with pytest.raises(KeyError):
        validate_component(SPEC, "Nope", {})


def test_missing_spec_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        load_spec(tmp_path / "absent.yaml")


def test_missing_spec_skips_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.warns(UserWarning, match="SKIPPED"), pytest.raises(pytest.skip.Exception):
        load_spec(tmp_path / "absent.yaml")
