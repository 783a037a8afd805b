"""JMESPath expressions compiled to plain Python closures, for the shapes provider files use.

jmespath's tree-walking interpreter costs ~18 µs per search; a request runs several (error
rules on every response, images, usage, ...). Fields, sub-expressions, indexes, projections,
flatten, filters, comparisons, and/or/not, literals and function calls are compiled here with
jmespath's own semantics (its truthiness, its equality that keeps 0/1 apart from booleans,
ordering only between numbers or strings); any other node leaves the expression to jmespath,
and `Expr.search` falls back to jmespath whenever a closure raises, so answers and errors stay
jmespath's (tests/dsl/test_jmesfast.py compares both on every shipped expression).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

Fn = Callable[[Any], Any]


def is_false(value: Any) -> bool:
    """jmespath's falsy values: null, false, "", [] and {} (0 is true)."""
    if value is None or value is False:
        return True
    return isinstance(value, str | list | dict) and not value


def _number(x: Any) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool)


def _equals(x: Any, y: Any) -> bool:
    if isinstance(x, bool) is isinstance(y, bool):  # both or neither a boolean: plain equality
        return bool(x == y)
    if _number(x) and x in (0, 1) and isinstance(y, bool):
        return False
    if _number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return bool(x == y)


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "gt": operator.gt,
    "lte": operator.le,
    "gte": operator.ge,
}


def compile_fast(node: dict[str, Any], call_function: Callable[[str, list[Any]], Any]) -> Fn | None:
    """A closure evaluating the parsed expression `node`, or None when a node is not covered."""
    kind = node["type"]
    if kind == "slice":  # its children are the numbers, not nodes: left to jmespath
        return None
    children = [compile_fast(child, call_function) for child in node.get("children", [])]
    if any(child is None for child in children):
        return None
    kids: list[Fn] = [c for c in children if c is not None]
    if kind == "field":
        name = node["value"]
        return lambda v: v.get(name) if isinstance(v, dict) else None
    if kind in ("current", "identity"):
        return lambda v: v
    if kind == "literal":
        literal = node["value"]
        return lambda v: literal
    if kind in ("subexpression", "index_expression"):
        names = [child["value"] for child in node["children"] if child["type"] == "field"]
        if len(names) == len(kids):  # `a.b.c`, the commonest shape: one closure, not one a name
            return _path(names)
        return _chain(kids)
    if kind == "index":
        index = node["value"]
        return lambda v: _index(v, index)
    if kind == "flatten":
        return _flatten(kids[0])
    if kind == "projection":
        return _projection(kids[0], kids[1])
    if kind == "filter_projection":
        return _filter(kids[0], kids[1], kids[2])
    if kind == "comparator":
        return _comparator(node["value"], kids[0], kids[1])
    if kind == "or_expression":
        left, right = kids
        return lambda v: right(v) if is_false(found := left(v)) else found
    if kind == "and_expression":
        left, right = kids
        return lambda v: found if is_false(found := left(v)) else right(v)
    if kind == "not_expression":
        return _not(kids[0])
    if kind == "function_expression":
        name = node["value"]
        return lambda v: call_function(name, [arg(v) for arg in kids])
    return None


def _chain(steps: list[Fn]) -> Fn:
    def run(v: Any) -> Any:
        for step in steps:
            v = step(v)
        return v

    return run


def _path(names: list[str]) -> Fn:
    def run(v: Any) -> Any:
        for name in names:
            if not isinstance(v, dict):
                return None
            v = v.get(name)
        return v

    return run


def _index(v: Any, index: int) -> Any:
    if not isinstance(v, list):
        return None
    try:
        return v[index]
    except IndexError:
        return None


def _flatten(base: Fn) -> Fn:
    def run(v: Any) -> Any:
        found = base(v)
        if not isinstance(found, list):
            return None
        merged: list[Any] = []
        for element in found:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    return run


def _projection(base: Fn, each: Fn) -> Fn:
    def run(v: Any) -> Any:
        found = base(v)
        if not isinstance(found, list):
            return None
        return [x for x in map(each, found) if x is not None]

    return run


def _filter(base: Fn, each: Fn, keep: Fn) -> Fn:
    def run(v: Any) -> Any:
        found = base(v)
        if not isinstance(found, list):
            return None
        kept = (each(element) for element in found if not is_false(keep(element)))
        return [x for x in kept if x is not None]

    return run


def _comparator(op: str, left: Fn, right: Fn) -> Fn:
    if op == "eq":
        return lambda v: _equals(left(v), right(v))
    if op == "ne":
        return lambda v: not _equals(left(v), right(v))
    order = _ORDER[op]

    def run(v: Any) -> Any:
        a, b = left(v), right(v)
        if not ((_number(a) or isinstance(a, str)) and (_number(b) or isinstance(b, str))):
            return None
        return order(a, b)

    return run


def _not(operand: Fn) -> Fn:
    def run(v: Any) -> Any:
        found = operand(v)
        if _number(found) and found == 0:
            return False  # jmespath: !0 is false; 0 is not a falsy value there
        return not found

    return run
