"""Generate the DSL reference (docs/reference.md) from the JSON Schemas.

    python -m engine.tools.schemadoc            # print the page
    python -m engine.tools.schemadoc --write    # write docs/reference.md
    python -m engine.tools.schemadoc --check    # exit 1 when docs/reference.md is out of date

The schemas are the single source of truth (they also drive validation and editor completion):
every property gets its type, allowed values, default and description; nested objects become
sub-sections named by their path (`tasks.<task>.steps[].request`); `$ref`s to `$defs` are
resolved (object definitions are documented where first used, scalar ones in a table at the end
of each schema); an object whose shape was already documented links there instead of repeating.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schemas import schema_dir

Schema = dict[str, Any]

# (file stem, anchor prefix, heading, what the file is, where the prose lives)
SCHEMAS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "provider",
        "provider",
        "Provider files",
        "`providers.d/<id>.yaml`, one upstream API per file",
        "[providers.md](providers.md)",
    ),
    (
        "routes",
        "routes",
        "routes.yaml",
        "`routes.yaml`, the model names clients use and the providers behind them",
        "[routes.md](routes.md)",
    ),
    (
        "golden",
        "golden",
        "Golden cases",
        "`tests/providers/<provider-id>/<case>.yaml`, one replayed exchange per file",
        "[tests/providers/README.md](../tests/providers/README.md)",
    ),
)
COMMAND = "python -m engine.tools.schemadoc --write"
_DEFAULT_IN_TEXT = re.compile(
    r"\((?:by )?default:? (?P<a>[^);]*)[);]|\bDefault:? (?P<b>[^.;]+?)[.;](?:\s|$)"
)


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


class _SchemaDoc:
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
        if isinstance(alternatives, list) and not _only_required(alternatives):
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


def constraints(schema: Schema) -> list[str]:
    """`oneOf`/`anyOf`/`not` over `required` lists, in words."""
    out: list[str] = []
    for key, words in (("oneOf", "exactly one of"), ("anyOf", "at least one of")):
        alternatives = schema.get(key)
        if isinstance(alternatives, list) and _only_required(alternatives):
            names = [" + ".join(f"`{n}`" for n in alt["required"]) for alt in alternatives]
            out.append(f"{words}: {', '.join(names)}")
    for sub in schema.get("allOf", []):
        out += constraints(sub)
    negated = schema.get("not")
    if isinstance(negated, dict):
        groups = negated.get("anyOf", [negated])
        if _only_required(groups):
            names = list(dict.fromkeys(n for g in groups for n in g["required"]))
            words = "not both" if len(groups) == 1 and len(names) == 2 else "at most one of"
            sep = " and " if words == "not both" else ", "
            out.append(f"{words}: {sep.join(f'`{n}`' for n in names)}")
    return out


def _only_required(alternatives: Sequence[Any]) -> bool:
    return bool(alternatives) and all(
        isinstance(a, dict) and "required" in a and set(a) <= {"required", "description"}
        for a in alternatives
    )


def allowed_values(schema: Schema) -> str:
    parts: list[str] = []
    for alt in schema.get("oneOf") or schema.get("anyOf") or []:
        if isinstance(alt, dict) and "properties" not in alt and "required" not in alt:
            inner = allowed_values(alt)
            if inner:
                kind = alt.get("type")
                label = {"array": "list"}.get(kind, kind) if isinstance(kind, str) else None
                parts.append(f"{label}: {inner}" if label else inner)
    enum = schema.get("enum")
    items = schema.get("items")
    if enum is None and isinstance(items, dict):
        enum = items.get("enum")
    if isinstance(enum, list):
        parts.append(", ".join(_code(v) for v in enum))
    if "const" in schema:
        parts.append(_code(schema["const"]))
    pattern = schema.get("pattern") or (items.get("pattern") if isinstance(items, dict) else None)
    if pattern:
        parts.append(f"pattern {_code(pattern)}")
    bounds = (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    )
    for key, sign in bounds:
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    if "minLength" in schema:
        low = schema["minLength"]
        parts.append("not empty" if low == 1 else f"at least {low} characters")
    if "minItems" in schema or "maxItems" in schema:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and high is not None:
            parts.append(f"{low} to {high} items" if low != high else f"exactly {low} items")
        elif low is not None:
            parts.append(f"at least {low} item{'s' if low != 1 else ''}")
        else:
            parts.append(f"at most {high} items")
    if schema.get("uniqueItems"):
        parts.append("no duplicates")
    if "minProperties" in schema:
        low = schema["minProperties"]
        parts.append(f"at least {low} entr{'y' if low == 1 else 'ies'}")
    names = schema.get("propertyNames")
    if isinstance(names, dict) and "pattern" in names:
        parts.append(f"names match {_code(names['pattern'])}")
    return "; ".join(parts)


def default_of(schema: Schema) -> str:
    """The `default` keyword, else the default the description states ("(default 2s)")."""
    if "default" in schema:
        return _code(schema["default"])
    match = _DEFAULT_IN_TEXT.search(schema.get("description", ""))
    if match:
        text = (match.group("a") or match.group("b") or "").strip()
        return f"`{text}`" if text and not re.search(r"[\s`]", text) else text
    return ""


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _join(first: str, second: str) -> str:
    return f"{first.rstrip()} {second}".strip()


def _group(text: str) -> str:
    return f"({text})" if " or " in text else text


def _md(text: str) -> str:
    """Prose from a schema as Markdown: `<` outside code spans would start an HTML tag."""
    pieces = re.split(r"(`+[^`]*`+)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;") for p in pieces)


def _cell(text: str) -> str:
    return " ".join(_md(text).split()).replace("|", "\\|")


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| Property | Type | Required | Allowed values | Default | Description |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"`{r.name}`"
        cells = [name, r.type, "yes" if r.required else "", r.allowed, r.default, r.description]
        lines.append("| " + " | ".join(_cell(c) if i else c for i, c in enumerate(cells)) + " |")
    return lines


def _render_section(section: Section, level: str) -> list[str]:
    lines = [f'<a id="{section.anchor}"></a>', "", f"{level} {section.title}", ""]
    if section.description:
        lines += [_md(section.description), ""]
    meta: list[str] = []
    if section.definition:
        meta.append(f"Definition `{section.definition}` in `$defs`.")
    if section.used_by:
        meta.append("Also used by " + ", ".join(f"`{p}`" for p in section.used_by) + ".")
    if meta:
        lines += [" ".join(meta), ""]
    if section.rows:
        lines += [*_table(section.rows), ""]
    if section.value is not None:
        v = section.value
        value = f"Each entry (any name): {v.type}"
        if v.allowed:
            value += f"; {v.allowed}"
        if v.description:
            value += f". {v.description}"
        lines += [_md(value), ""]
    for rule in section.constraints:
        lines += [f"Constraint: {rule}.", ""]
    return lines


def generate(directory: Path | None = None) -> str:
    """The whole reference page, from the schemas in `directory` (default: the shipped ones)."""
    where = directory or schema_dir()
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from schemas/*.schema.json by `{COMMAND}`. Do not edit by hand:",
        "     change the schema, then regenerate (tests/cli/test_reference_doc.py checks it). -->",
        "",
        "Every field of the three YAML formats, generated from their JSON Schemas (which also",
        "drive `pixgate lint` and editor completion). Nested objects are sub-sections named by",
        "their path: `a.b` is a property, `a[]` an item of a list, `a.<name>` an entry of a map",
        "with names of your choice. The Default column is the `default` of the schema, else the",
        "default its description states.",
        "",
    ]
    for _stem, prefix, heading, what, prose in SCHEMAS:
        out.append(f"- [{heading}](#{prefix}): {what}; explained in {prose}")
    out.append("")
    for stem, prefix, heading, what, _prose in SCHEMAS:
        schema = json.loads((where / f"{stem}.schema.json").read_text(encoding="utf-8"))
        doc = _SchemaDoc(schema, prefix)
        doc.document_root()
        out += [f'<a id="{prefix}"></a>', "", f"## {heading}", ""]
        out += [
            f"{what}. Schema: [`schemas/{stem}.schema.json`](../schemas/{stem}.schema.json).",
            "",
        ]
        if schema.get("description"):
            out += [_md(schema["description"]), ""]
        top, *rest = doc.sections
        out += [*_table(top.rows), ""]
        out += [f"Constraint: {rule}." for rule in top.constraints]
        for section in rest:
            section.used_by = doc.used_by.get(section.anchor, [])
            out += _render_section(section, "###")
        scalars = [
            (name, d)
            for name, d in doc.defs.items()
            if not doc.has_properties(doc.resolve(d)[0]) and name in doc.used_defs
        ]
        if scalars:
            out += [f'<a id="{doc.anchor("defs")}"></a>', "", "### Definitions", ""]
            for name, d in scalars:
                resolved, _ = doc.resolve(d)
                type_text = doc.type_text(resolved, None, f"$defs.{name}", [])
                allowed = allowed_values(resolved) or "; ".join(
                    a for a in (allowed_values(x) for x in resolved.get("oneOf", [])) if a
                )
                out += [f'<a id="{doc.anchor("defs-" + name)}"></a>', "", f"#### `{name}`", ""]
                out += [_md(resolved.get("description", "")), ""]
                out += [f"Type: {type_text}." + (f" Allowed: {allowed}." if allowed else ""), ""]
    return "\n".join(out).rstrip() + "\n"


def default_output() -> Path:
    return schema_dir().parent / "docs" / "reference.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.schemadoc", description="Generate docs/reference.md"
    )
    parser.add_argument("--write", action="store_true", help="write the page instead of printing")
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    parser.add_argument("--output", type=Path, default=None, help="default: docs/reference.md")
    args = parser.parse_args(argv)
    page = generate()
    output = args.output or default_output()
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else ""
        if current != page:
            print(f"{output} is out of date; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if args.write:
        output.write_text(page, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
