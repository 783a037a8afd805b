"""Validate our responses strictly against schemas from OpenAI's published OpenAPI document.

`validate_component(spec, "ImagesResponse", body)` raises `jsonschema.ValidationError` unless
`body` fits `components.schemas.ImagesResponse`. Any client test (Python SDK, Node, LiteLLM,
the Responses API) can call it with the `openai_spec` fixture from tests/conftest.py.

Strict means more than the document says literally:
- Objects are closed. A property the schema does not declare fails, unless the schema allows
  extra properties itself (`additionalProperties`) or it is one of pixgate's documented
  extensions in `PIXGATE_EXTRAS`. Objects combined with `allOf` are closed as a whole (through
  `unevaluatedProperties`), so the members' properties all count.
- OpenAPI 3.0's `nullable: true`, which the 3.1 document still uses in places (a chunk's
  `finish_reason`), admits null as it means to; JSON Schema alone would ignore it.
- `format: uri` is checked (an absolute URL with a scheme).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.services import missing

_URI = "urn:openai-openapi"
_PREFIX = "#/components/schemas/"

# Fields pixgate sends beyond OpenAI's schemas, per component (each documented in README.md
# or docs/): nothing else may appear.
PIXGATE_EXTRAS: Mapping[str, frozenset[str]] = {
    # docs/chat.md: progress while an image is made, as reasoning models stream their thoughts
    "ChatCompletionStreamResponseDelta": frozenset({"reasoning_content"}),
    # README "The API": the exact WxH of a streamed image (`size` keeps to OpenAI's enum)
    "ImageGenPartialImageEvent": frozenset({"pixgate_size"}),
    # docs/jobs.md: an async job's events carry the URL of an image it handed out as one
    "ImageGenCompletedEvent": frozenset({"pixgate_size", "url"}),
    "ImageEditPartialImageEvent": frozenset({"pixgate_size"}),
    "ImageEditCompletedEvent": frozenset({"pixgate_size", "url"}),
    # docs/responses.md: an image call says what it made, as OpenAI's own answers do
    "ImageGenToolCall": frozenset(
        {"revised_prompt", "size", "quality", "background", "output_format"}
    ),
}

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or parts.scheme == "data")


def load_spec(path: Path) -> dict[str, Any]:
    """The document at `path`; missing, it fails under CI=true and skips loudly otherwise."""
    if not path.is_file():
        missing(
            f"OpenAI's spec ({path})",
            "put openai-openapi.yaml (github.com/openai/openai-openapi) there, or point "
            "PIXGATE_OPENAI_SPEC at it",
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)  # type: ignore[no-any-return]


def validate_component(
    spec: dict[str, Any], name: str, instance: Any, *, strict: bool = True
) -> None:
    """Raise jsonschema.ValidationError unless `instance` fits components.schemas[name].

    `strict=False` checks only what the document literally says (open objects)."""
    validator(spec, name, strict=strict).validate(instance)


def validator(spec: dict[str, Any], name: str, *, strict: bool = True) -> Any:
    """A jsonschema validator for one component (built once per document and name)."""
    if name not in spec.get("components", {}).get("schemas", {}):
        raise KeyError(f"OpenAI's spec has no component schema {name!r}")
    return _validator(_Keyed(spec), name, strict)


class _Keyed:
    """A document hashed by identity, so the strict copy is built once per loaded document."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def __hash__(self) -> int:
        return id(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and other.spec is self.spec


@functools.lru_cache(maxsize=64)
def _validator(keyed: _Keyed, name: str, strict: bool) -> Any:
    registry = _registry(keyed, strict)
    schema = {"$ref": f"{_URI}{_PREFIX}{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=_FORMATS)


@functools.lru_cache(maxsize=8)
def _registry(keyed: _Keyed, strict: bool) -> Registry[Any]:
    document = strict_document(keyed.spec, PIXGATE_EXTRAS) if strict else keyed.spec
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def strict_document(
    spec: dict[str, Any], extras: Mapping[str, Iterable[str]] = PIXGATE_EXTRAS
) -> dict[str, Any]:
    """A copy of the document with nullable read as null, extension fields declared, and
    every object schema closed (see the module docstring)."""
    doc = _nullable(copy.deepcopy(spec))
    schemas = doc.get("components", {}).get("schemas", {})
    for component, names in extras.items():
        if component not in schemas:
            continue
        props = schemas[component].setdefault("properties", {})
        for field in names:
            props.setdefault(field, {})
    members = _allof_members(schemas)
    for component, schema in schemas.items():
        _close(schema, open_here=component in members)
    return doc


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _allof_members(schemas: Mapping[str, Any]) -> set[str]:
    """Components used as an `allOf` member (directly or as a branch of one): closing them
    on their own would reject the properties their siblings add."""
    found: set[str] = set()

    def member(node: Any) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_PREFIX):
            found.add(ref[len(_PREFIX) :])
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, ()):
                member(branch)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for branch in node.get("allOf", ()):
                member(branch)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas)
    return found


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _close(node: Any, *, open_here: bool = False) -> None:
    """Close the object schemas in `node` (in place). `open_here`: this node is an allOf
    member, closed by its owner instead, and so are its anyOf/oneOf branches."""
    if not isinstance(node, dict):
        return
    declares = "properties" in node or "allOf" in node
    if declares and not open_here and not _says_extra(node):
        node["unevaluatedProperties"] = False
    for key in _SUBSCHEMA_MAPS:
        for sub in (node.get(key) or {}).values():
            _close(sub)
    for key in _SUBSCHEMA_ONE:
        _close(node.get(key))
    for sub in node.get("prefixItems", ()):
        _close(sub)
    for sub in node.get("allOf", ()):
        _close(sub, open_here=True)
    for key in ("anyOf", "oneOf"):
        for sub in node.get(key, ()):
            _close(sub, open_here=open_here)


def _says_extra(node: Mapping[str, Any]) -> bool:
    return "additionalProperties" in node or "unevaluatedProperties" in node
