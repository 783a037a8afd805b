"""`from_json`: JSON held inside a string (a presigned upload's `fields`, a nested payload),
for templates (a filter) and JMESPath (a function)."""

from __future__ import annotations

from typing import Any

import jinja2
import orjson

from ..rawtext import plain


def parse_json_text(value: Any) -> Any:
    """The parsed value; None for None, for what is not a string and for text that is not JSON
    (an expression cannot raise at request time; a template that needs it says so itself)."""
    value = plain(value)
    if not isinstance(value, str | bytes):
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def from_json_filter(value: Any) -> Any:
    """The Jinja filter: like the JMESPath function, but text that is not JSON is an error."""
    value = plain(value)
    if value is None or isinstance(value, jinja2.Undefined):
        return None
    if not isinstance(value, str | bytes):
        raise ValueError(f"from_json needs a string, got {type(value).__name__}")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"from_json: not JSON ({exc})") from None
