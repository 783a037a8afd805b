"""Generate the DSL reference (docs/reference.md) from the JSON Schemas.

    python -m engine.tools.schemadoc            # print the page
    python -m engine.tools.schemadoc --write    # write docs/reference.md
    python -m engine.tools.schemadoc --check    # exit 1 when docs/reference.md is out of date

The schemas are the single source of truth (they also drive validation and editor completion):
every property gets its type, allowed values, default and description; nested objects become
sub-sections named by their path (`tasks.<task>.steps[].request`); `$ref`s to `$defs` are
resolved (object definitions are documented where first used, scalar ones in a table at the end
of each schema); an object whose shape was already documented links there instead of repeating.
`schemadoc_sections` walks one schema into sections, `schemadoc_values` puts keywords in words.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config.schemas import schema_dir
from .schemadoc_sections import Row, SchemaDoc, Section
from .schemadoc_values import allowed_values

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
        "clients",
        "clients",
        "clients.yaml",
        "`clients.yaml`, who may call the gateway, with which models, limits and budgets",
        "[clients.md](clients.md)",
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
        doc = SchemaDoc(schema, prefix)
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
