"""Plain-Python evaluation of the common template expression shapes.

Building a Jinja Context per field was most of a request's template cost (about 100 µs for
an OpenAI request). Names, attribute and item chains, constants, not/and/or, one comparison,
`is none`, list/tuple/dict literals and conditional expressions are evaluated here directly,
through the sandbox's own getattr/getitem; anything else, and any evaluation that raises, is
left to Jinja, so results and errors stay Jinja's (tests/dsl/test_templates_fast_path.py
checks every shipped template).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes

Getter = Callable[[Mapping[str, Any]], Any]


class _Undefined:
    """What a fast getter returns where Jinja would have an undefined: falsy, equal to nothing,
    `is none` false. `render` turns it into None, as it does Jinja's undefined."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<undefined>"


UNDEFINED = _Undefined()
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
}


def fast_getter(env: jinja2.Environment, node: nodes.Node) -> Getter | None:
    """A plain-Python evaluator for the common expression shapes, or None for anything else.

    Names, `a.b`, `a['k']`, constants, `not`, `and`, `or`, one comparison (`==`, `!=`, `<`,
    `<=`, `>`, `>=`), `is none`, and conditional expressions. Attribute and item access go
    through the sandbox's own `getattr`/`getitem`, so the rules are Jinja's. When an evaluation
    raises (e.g. comparing an undefined), `render` runs Jinja itself, so errors stay Jinja's.
    Building a Jinja Context per expression is most of a request's template cost; this skips it.
    """
    if isinstance(node, nodes.Const):
        value = node.value
        return lambda ctx: value
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name
        return lambda ctx: ctx.get(name, UNDEFINED)
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        return _member_getter(env, node)
    if isinstance(node, nodes.Not):
        negated = fast_getter(env, node.node)
        if negated is None:
            return None
        return lambda ctx: not negated(ctx)
    if isinstance(node, nodes.And | nodes.Or):
        left, right = fast_getter(env, node.left), fast_getter(env, node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.And):
            return lambda ctx: left(ctx) and right(ctx)
        return lambda ctx: left(ctx) or right(ctx)
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        first, second = fast_getter(env, node.expr), fast_getter(env, node.ops[0].expr)
        compare = _COMPARE[node.ops[0].op]
        if first is None or second is None:
            return None
        return lambda ctx: compare(_defined(first(ctx)), _defined(second(ctx)))
    if isinstance(node, nodes.Test) and node.name == "none" and not node.args:
        tested = fast_getter(env, node.node)
        if tested is None:
            return None
        return lambda ctx: tested(ctx) is None
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [fast_getter(env, item) for item in node.items]
        if any(item is None for item in items):
            return None
        getters = [item for item in items if item is not None]
        build: Callable[[Any], Any] = list if isinstance(node, nodes.List) else tuple
        return lambda ctx: build(plain(get(ctx)) for get in getters)
    if isinstance(node, nodes.Dict):
        pairs = [(fast_getter(env, p.key), fast_getter(env, p.value)) for p in node.items]
        if any(k is None or v is None for k, v in pairs):
            return None
        entries = [(k, v) for k, v in pairs if k is not None and v is not None]
        return lambda ctx: {plain(k(ctx)): plain(v(ctx)) for k, v in entries}
    if isinstance(node, nodes.CondExpr):
        test = fast_getter(env, node.test)
        then = fast_getter(env, node.expr1)
        other = fast_getter(env, node.expr2) if node.expr2 is not None else _undefined
        if test is None or then is None or other is None:
            return None
        return lambda ctx: then(ctx) if test(ctx) else other(ctx)
    return None


def _undefined(ctx: Mapping[str, Any]) -> Any:
    return UNDEFINED


def plain(value: Any) -> Any:
    return None if value is UNDEFINED else value


def _defined(value: Any) -> Any:
    """Comparisons: Jinja's undefined equals nothing and cannot be ordered; so here."""
    if value is UNDEFINED:
        raise _NotFast()
    return value


class _NotFast(Exception):
    """The fast path cannot answer like Jinja would; let Jinja answer."""


def _member_getter(env: jinja2.Environment, node: nodes.Getattr | nodes.Getitem) -> Getter | None:
    inner = fast_getter(env, node.node)
    if inner is None:
        return None
    if isinstance(node, nodes.Getattr):
        attr = node.attr
        if hasattr(dict, attr):
            lookup: Callable[[Any], Any] = lambda obj: env.getattr(obj, attr)  # noqa: E731
        else:
            # What Jinja does for a dict (no such attribute, so the item), without the
            # sandbox's generic getattr; anything else still goes through it.
            def lookup(obj: Any) -> Any:
                if type(obj) is dict:
                    return obj.get(attr, UNDEFINED)
                return env.getattr(obj, attr)

    elif isinstance(node.arg, nodes.Const):
        key = node.arg.value
        lookup = lambda obj: env.getitem(obj, key)  # noqa: E731
    else:
        return None

    def member(ctx: Mapping[str, Any]) -> Any:
        obj = inner(ctx)
        if obj is UNDEFINED or obj is None:
            return UNDEFINED  # Jinja: an (chainable) undefined
        value = lookup(obj)
        return UNDEFINED if isinstance(value, jinja2.Undefined) else value

    return member


def fast_output(env: jinja2.Environment, source: str) -> list[str | Getter] | None:
    """A template that is only text and fast expressions, as its parts; else None."""
    try:
        body = env.parse(source).body
    except jinja2.TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[str | Getter] = []
    for child in body[0].nodes:
        if isinstance(child, nodes.TemplateData):
            parts.append(child.data)
            continue
        getter = fast_getter(env, child)
        if getter is None:
            return None
        parts.append(getter)
    return parts
