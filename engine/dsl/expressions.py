"""JMESPath expressions compiled once at load; request time only calls `search`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jmespath
from jmespath import exceptions as jexc
from jmespath import functions as jfunc

from ..rawtext import plain
from .jmesfast import compile_fast, compile_first_true, is_false
from .jsontext import parse_json_text
from .markdown import markdown_image_urls


class _Functions(jfunc.Functions):  # type: ignore[misc]
    """Extra functions that provider files may use besides JMESPath's built-ins."""

    @jfunc.signature({"types": ["string"]}, {"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_contains_ci(self, haystack: str, needle: str) -> bool:
        return needle.lower() in haystack.lower()

    @jfunc.signature({"types": ["string", "number", "null"]})  # type: ignore[untyped-decorator]
    def _func_to_int(self, value: Any) -> int | None:
        if value is None:
            return None
        digits = "".join(ch for ch in str(value) if ch in "0123456789.")
        try:  # upstream text: "1.2.3", "." or 400 digits are None, never an error
            number = float(digits)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None

    @jfunc.signature({"types": ["string", "null"]})  # type: ignore[untyped-decorator]
    def _func_from_json(self, value: str | None) -> Any:
        """JSON held inside a string (`from_json(fields)`); null when it is not JSON."""
        return parse_json_text(value)

    @jfunc.signature({"types": ["string", "null"]})  # type: ignore[untyped-decorator]
    def _func_markdown_images(self, text: str | None) -> list[str]:
        """The URLs of markdown images (`![alt](url)`) in a text, in order: chat upstreams
        that answer with images inside `content`."""
        return markdown_image_urls(text) if isinstance(text, str) else []


_FUNCTIONS = _Functions()
_OPTIONS = jmespath.Options(custom_functions=_FUNCTIONS)


class Expr:
    """A compiled JMESPath expression with its source text (for docs and diagnostics).

    `search(data)` is its value: the expression's generated code (jmesfast.py), which hands
    over to jmespath itself when that code raises, or jmespath alone for a shape the code
    does not cover. It is set per expression, so a search is one call."""

    __slots__ = ("_fast", "_parsed", "search", "source")

    search: Callable[[Any], Any]

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._parsed = jmespath.compile(source)
        except jexc.JMESPathError as exc:
            raise ValueError(_one_line(exc)) from None
        slow = _interpreted(self._parsed)
        self._fast = compile_fast(self._parsed.parsed, _FUNCTIONS.call_function, slow)
        self.search = self._fast or slow

    def truthy(self, data: Any) -> bool:
        return not is_false(self.search(data))

    def may_read(self, name: str) -> bool:
        """Whether the expression may read its data's field `name`: a field of that name
        anywhere in it, or `@` or `*`, which can reach any field. (False is certain; True is
        not, which is enough to skip preparing a field nothing reads.)"""
        return _may_read(self._parsed.parsed, name)

    def step_refs(self) -> dict[str, set[str]]:
        """`steps.<step>.<var>` paths this expression reads: {step: {var, ...}}."""
        found: dict[str, set[str]] = {}
        _walk_step_refs(self._parsed.parsed, found)
        return found

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def _interpreted(parsed: jmespath.parser.ParsedResult) -> Callable[[Any], Any]:
    """jmespath's own search of `parsed` (a closure over it, not over the Expr: no cycle)."""

    def search(data: Any) -> Any:
        try:
            return parsed.search(data, options=_OPTIONS)
        except Exception:
            pass
        # Long strings of an upstream's answer stay unparsed (engine/rawtext.py); functions
        # such as to_string() or length() need them as real strings. Rare, so only now.
        real = plain(data)
        if real is not data:
            try:
                return parsed.search(real, options=_OPTIONS)
            except Exception:
                pass
        # A type mismatch at run time (e.g. a number where a string was expected) means
        # "no match" for conditions and "nothing" for extraction.
        return None

    return search


def first_true(conditions: Sequence[Expr]) -> Callable[[Any], int]:
    """A function of data: the index of the first condition `truthy` on it, -1 if none is
    (one call per answer for a provider's error rules, not three per rule)."""
    trees = [c._parsed.parsed for c in conditions]
    return compile_first_true(trees, [c.search for c in conditions], _FUNCTIONS.call_function)


def _may_read(node: dict[str, Any], name: str) -> bool:
    kind = node["type"]
    if kind in ("current", "value_projection") or (kind == "field" and node["value"] == name):
        return True
    return any(isinstance(c, dict) and _may_read(c, name) for c in node.get("children", ()))


def _walk_step_refs(node: dict[str, Any], found: dict[str, set[str]]) -> None:
    children = node.get("children", [])
    if node["type"] == "subexpression" and len(children) >= 2:
        head, step = children[0], children[1]
        if head == {"type": "field", "children": [], "value": "steps"} and step["type"] == "field":
            variables = found.setdefault(step["value"], set())
            if len(children) > 2:
                var = children[2]
                if var["type"] == "index_expression":
                    var = var["children"][0]
                if var["type"] == "field":
                    variables.add(var["value"])
    for child in children:
        if isinstance(child, dict):
            _walk_step_refs(child, found)


def _one_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    return lines[0].removesuffix(":").removesuffix(", for expression")
