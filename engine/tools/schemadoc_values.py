"""What a JSON Schema allows, defaults to and requires, in words (for the DSL reference)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]

_DEFAULT_IN_TEXT = re.compile(
    r"\((?:by )?default:? (?P<a>[^);]*)[);]|\bDefault:? (?P<b>[^.;]+?)[.;](?:\s|$)"
)


def constraints(schema: Schema) -> list[str]:
    """`oneOf`/`anyOf`/`not` over `required` lists, in words."""
    out: list[str] = []
    for key, words in (("oneOf", "exactly one of"), ("anyOf", "at least one of")):
        alternatives = schema.get(key)
        if isinstance(alternatives, list) and only_required(alternatives):
            names = [" + ".join(f"`{n}`" for n in alt["required"]) for alt in alternatives]
            out.append(f"{words}: {', '.join(names)}")
    for sub in schema.get("allOf", []):
        out += constraints(sub)
    negated = schema.get("not")
    if isinstance(negated, dict):
        groups = negated.get("anyOf", [negated])
        if only_required(groups):
            names = list(dict.fromkeys(n for g in groups for n in g["required"]))
            words = "not both" if len(groups) == 1 and len(names) == 2 else "at most one of"
            sep = " and " if words == "not both" else ", "
            out.append(f"{words}: {sep.join(f'`{n}`' for n in names)}")
    return out


def only_required(alternatives: Sequence[Any]) -> bool:
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
