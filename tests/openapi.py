"""Validate our responses against schemas from OpenAI's published OpenAPI document."""

from __future__ import annotations

from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_URI = "urn:openai-openapi"


def validate_component(spec: dict[str, Any], name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless `instance` fits components.schemas[name]."""
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_URI, resource)
    schema = {"$ref": f"{_URI}#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)
