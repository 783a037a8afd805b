"""One JSON Schema walked into sections of the DSL reference: property rows, nested sub-sections."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .schemadoc_values import Schema, allowed_values, constraints, default_of, only_required


@dataclass(slots=True)
class Row:
    name: str
    type: str
    required: bool
    allowed: str
    default: str
    description: str


@dataclass(slots=True)
class Section:
    anchor: str
    title: str
    description: str
    definition: str | None = None  # the $defs name it documents, if any
    rows: list[Row] = field(default_factory=list)
    value: Row | None = None  # for a map or list of scalars: what one entry is
    constraints: list[str] = field(default_factory=list)
    used_by: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Child:
    schema: Schema
    path: str
    definition: str | None


class SchemaDoc:
    """One schema turned into sections."""

    def __init__(self, schema: Schema, prefix: str) -> None:
        self.schema = schema
        self.prefix = prefix
        self.defs: dict[str, Schema] = schema.get("$defs", {})
        self.sections: list[Section] = []
        self.planned: dict[str, tuple[str, str]] = {}  # shape -> (anchor, title)
        self.used_by: dict[str, list[str]] = {}  # anchor -> other paths with that shape
        self.used_defs: set[str] = set()
        self._reused: list[str] = []

    # -- schema helpers -------------------------------------------------------------------

    def resolve(self, schema: Schema) -> tuple[Schema, str | None]:
        """Merge a `$ref` to `#/$defs/x` with its siblings (the local description wins)."""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return schema, None
        name = ref.removeprefix("#/$defs/")
        self.used_defs.add(name)
        target, _ = self.resolve(self.defs[name])
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return merged, name

    def anchor(self, path: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
        return f"{self.prefix}-{slug}" if slug else self.prefix

    @staticmethod
    def shape(schema: Schema) -> str:
        return json.dumps({k: v for k, v in schema.items() if k != "description"}, sort_keys=True)

    @staticmethod
    def has_properties(schema: Schema) -> bool:
        return isinstance(schema.get("properties"), dict)

    # -- documenting ----------------------------------------------------------------------

    def document_root(self) -> None:
        self.planned[self.shape(self.schema)] = (self.prefix, "the top level")
        self.document(self.schema, "", "Top level", None)

    def document(self, schema: Schema, path: str, title: str, definition: str | None) -> None:
        section = Section(self.anchor(path), title, schema.get("description", ""), definition)
        self.sections.append(section)
        section.constraints = constraints(schema)
        required = set(schema.get("required", []))
        children: list[_Child] = []
        for name, prop in schema.get("properties", {}).items():
            resolved, ref = self.resolve(prop)
            child_path = f"{path}.{name}" if path else name
            section.rows.append(
                self.row(name, resolved, ref, child_path, name in required, children)
            )
        if not section.rows and isinstance(schema.get("additionalProperties"), dict):
            value, ref = self.resolve(schema["additionalProperties"])
            section.value = self.row("<name>", value, ref, f"{path}.<name>", False, children)
        for child in children:
            self.document(child.schema, child.path, f"`{child.path}`", child.definition)

    def row(
        self,
        name: str,
        schema: Schema,
        ref: str | None,
        path: str,
        required: bool,
        children: list[_Child],
    ) -> Row:
        self._reused = []
        type_text = self.type_text(schema, ref, path, children)
        description = schema.get("description", "")
        for title in dict.fromkeys(self._reused):
            description = _join(description, f"Same shape as {title}.")
        return Row(
            name=name,
            type=type_text,
            required=required,
            allowed=allowed_values(schema) if ref is None or self.has_properties(schema) else "",
            default=default_of(schema),
            description=description,
        )

    def type_text(self, schema: Schema, ref: str | None, path: str, children: list[_Child]) -> str:
        """Readable type; plans nested objects as sub-sections (links to them)."""
        if ref is not None and not self.has_properties(schema) and ref in self.defs:
            return f"[{ref}](#{self.anchor('defs-' + ref)})"
        if self.has_properties(schema):
            return f"[object](#{self.target(schema, path, ref, children)})"
        alternatives = schema.get("oneOf") or schema.get("anyOf")
        if isinstance(alternatives, list) and not only_required(alternatives):
            texts: list[str] = []
            shaped = [a for a in alternatives if self.has_properties(self.resolve(a)[0])]
            for alt in alternatives:
                resolved, alt_ref = self.resolve(alt)
                alt_path = path if len(shaped) <= 1 else f"{path} (form {len(texts) + 1})"
                texts.append(self.type_text(resolved, alt_ref, alt_path, children))
            return " or ".join(dict.fromkeys(texts))
        kind = schema.get("type")
        if kind == "array" or "items" in schema:
            items, item_ref = self.resolve(schema.get("items", {}))
            return "list of " + _group(self.type_text(items, item_ref, f"{path}[]", children))
        additional = schema.get("additionalProperties")
        if kind in ("object", None) and isinstance(additional, dict):
            values, value_ref = self.resolve(additional)
            inner = self.type_text(values, value_ref, f"{path}.<name>", children)
            return "map of " + _group(inner)
        if isinstance(kind, list):
            return " | ".join(str(k) for k in kind)
        if isinstance(kind, str):
            return kind
        if "enum" in schema:
            types = {type(v).__name__ for v in schema["enum"]}
            return "string" if types == {"str"} else "any"
        return "any"

    def target(self, schema: Schema, path: str, ref: str | None, children: list[_Child]) -> str:
        """The anchor documenting this object shape: planned now, or where it already is."""
        key = self.shape(schema)
        if key in self.planned:
            anchor, title = self.planned[key]
            self.used_by.setdefault(anchor, []).append(path)
            self._reused.append(title)
            return anchor
        anchor = self.anchor(path)
        self.planned[key] = (anchor, f"[`{path}`](#{anchor})")
        children.append(_Child(schema, path, ref))
        return anchor


def _join(first: str, second: str) -> str:
    return f"{first.rstrip()} {second}".strip()


def _group(text: str) -> str:
    return f"({text})" if " or " in text else text
