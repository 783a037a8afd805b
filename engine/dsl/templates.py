"""Jinja2 templates for requests, compiled once at load into small render objects.

Rules (docs/providers.md): templates run sandboxed; a leaf that is exactly `{{ expr }}` keeps its
native type; a mapping entry that renders to nothing (None or "") is left out, so optional fields
vanish; in URL paths every interpolation is percent-encoded unless the whole path is one
expression (an absolute URL handed back by the upstream) or the value passes through `| raw`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Every name a template may use. Documented in docs/providers.md; `lint` rejects others.
CONTEXT_NAMES: frozenset[str] = frozenset(
    {
        "prompt",
        "negative_prompt",
        "model",
        "n",
        "total_n",
        "call_index",
        "size",
        "quality",
        "style",
        "seed",
        "response_format",
        "output_format",
        "background",
        "user",
        "images",
        "image",
        "mask",
        "extra",
        "params",
        "key",
        "request_id",
        "steps",
        "task",
        "random_seed",
        "stream",
        "partial_images",
    }
)

_WHOLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class RawText(str):
    """A value the URL template must not percent-encode (produced by the `raw` filter)."""


def _finalize_text(value: Any) -> Any:
    return "" if value is None else value


def _finalize_url(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, RawText):
        return str(value)
    return quote(str(value), safe="")


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # The default returns an Undefined that ChainableUndefined renders as "": fail instead.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe."
        )


def _make_env(finalize: Any) -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.ChainableUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters["raw"] = RawText
    return env


TEXT_ENV = _make_env(_finalize_text)
URL_ENV = _make_env(_finalize_url)


class TemplateError(ValueError):
    """A template that cannot compile; `code` is the diagnostic code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RenderError(RuntimeError):
    """A template failed while rendering a request (a provider-file bug or odd input)."""


class Renderable(Protocol):
    def render(self, ctx: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Const:
    value: Any

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return self.value


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


def _fast_getter(env: jinja2.Environment, node: nodes.Node) -> Getter | None:
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
        negated = _fast_getter(env, node.node)
        if negated is None:
            return None
        return lambda ctx: not negated(ctx)
    if isinstance(node, nodes.And | nodes.Or):
        left, right = _fast_getter(env, node.left), _fast_getter(env, node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.And):
            return lambda ctx: left(ctx) and right(ctx)
        return lambda ctx: left(ctx) or right(ctx)
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        first, second = _fast_getter(env, node.expr), _fast_getter(env, node.ops[0].expr)
        compare = _COMPARE[node.ops[0].op]
        if first is None or second is None:
            return None
        return lambda ctx: compare(_defined(first(ctx)), _defined(second(ctx)))
    if isinstance(node, nodes.Test) and node.name == "none" and not node.args:
        tested = _fast_getter(env, node.node)
        if tested is None:
            return None
        return lambda ctx: tested(ctx) is None
    if isinstance(node, nodes.CondExpr):
        test = _fast_getter(env, node.test)
        then = _fast_getter(env, node.expr1)
        other = _fast_getter(env, node.expr2) if node.expr2 is not None else _undefined
        if test is None or then is None or other is None:
            return None
        return lambda ctx: then(ctx) if test(ctx) else other(ctx)
    return None


def _undefined(ctx: Mapping[str, Any]) -> Any:
    return UNDEFINED


def _value(value: Any) -> Any:
    return None if value is UNDEFINED else value


def _defined(value: Any) -> Any:
    """Comparisons: Jinja's undefined equals nothing and cannot be ordered; so here."""
    if value is UNDEFINED:
        raise _NotFast()
    return value


class _NotFast(Exception):
    """The fast path cannot answer like Jinja would; let Jinja answer."""


def _member_getter(env: jinja2.Environment, node: nodes.Getattr | nodes.Getitem) -> Getter | None:
    inner = _fast_getter(env, node.node)
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


def _fast_output(env: jinja2.Environment, source: str) -> list[str | Getter] | None:
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
        getter = _fast_getter(env, child)
        if getter is None:
            return None
        parts.append(getter)
    return parts


class NativeExpr:
    """`{{ expr }}` alone: evaluates to the expression's own value (list, number, object)."""

    __slots__ = ("_fast", "_fn", "source")

    def __init__(self, env: jinja2.Environment, expr: str, source: str) -> None:
        self.source = source
        self._fn = env.compile_expression(expr, undefined_to_none=False)
        parts = _fast_output(env, "{{" + expr + "}}")
        self._fast = parts[0] if parts and len(parts) == 1 and callable(parts[0]) else None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        if self._fast is not None:
            try:
                value = self._fast(ctx)
            except Exception:
                pass
            else:
                return None if value is UNDEFINED else value
        try:
            value = self._fn(**ctx)
        except Exception as exc:  # TemplateError, but also TypeError, OverflowError...
            raise RenderError(f"{self.source}: {exc}") from None
        return None if isinstance(value, jinja2.Undefined) else value


class TextTemplate:
    __slots__ = ("_fast", "_finalize", "_tpl", "source")

    def __init__(self, env: jinja2.Environment, source: str) -> None:
        self.source = source
        self._tpl = env.from_string(source)
        self._fast = _fast_output(env, source)
        self._finalize = env.finalize or (lambda value: value)

    def render(self, ctx: Mapping[str, Any]) -> str:
        if self._fast is not None:
            fin = self._finalize
            try:
                return "".join(
                    part if isinstance(part, str) else str(fin(_value(part(ctx))))
                    for part in self._fast
                )
            except Exception:
                pass
        try:
            return self._tpl.render(ctx)
        except Exception as exc:  # TemplateError, but also TypeError, OverflowError...
            raise RenderError(f"{self.source}: {exc}") from None


@dataclass(frozen=True, slots=True)
class MapNode:
    items: tuple[tuple[str, Renderable], ...]

    def render(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, node in self.items:
            value = node.render(ctx)
            if value is None or value == "":
                continue
            out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class ListNode:
    """Lists keep every item, None included: positional inputs (Gradio `data`) must not shift."""

    items: tuple[Renderable, ...]

    def render(self, ctx: Mapping[str, Any]) -> list[Any]:
        return [node.render(ctx) for node in self.items]


@dataclass(frozen=True, slots=True)
class StepRefs:
    """What a template reads from earlier steps: {step name: {variable, ...}}."""

    refs: dict[str, set[str]]


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def compile_text(source: str, *, url: bool = False) -> Renderable:
    """A string field: constant, native expression, or text template."""
    env = URL_ENV if url else TEXT_ENV
    if not _is_template(source):
        return Const(source)
    check_source(env, source)
    whole = _WHOLE_EXPR.match(source)
    if whole:
        try:
            return NativeExpr(env, whole.group("expr"), source)
        except jinja2.TemplateSyntaxError:
            pass  # fall through: a text template reports the syntax error precisely
    try:
        return TextTemplate(env, source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError("E201", f"template syntax: {exc.message}") from None


def compile_tree(value: Any) -> Renderable:
    """A JSON-like structure whose string leaves may be templates."""
    if isinstance(value, dict):
        return MapNode(tuple((str(k), compile_tree(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ListNode(tuple(compile_tree(v) for v in value))
    if isinstance(value, str):
        return compile_text(value)
    return Const(value)


def check_source(env: jinja2.Environment, source: str) -> None:
    """Syntax and variable names, at load. Raises TemplateError."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError("E201", f"template syntax: {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES)
    if unknown:
        raise TemplateError(
            "E202",
            f"unknown template variable {', '.join(unknown)!s}; "
            f"available: {', '.join(sorted(CONTEXT_NAMES))}",
        )


def step_refs(sources: Iterable[str]) -> dict[str, set[str]]:
    """`steps.<step>.<var>` references in the given template sources."""
    found: dict[str, set[str]] = {}
    for source in sources:
        if "steps" not in source or not _is_template(source):
            continue
        try:
            ast = TEXT_ENV.parse(source)
        except jinja2.TemplateSyntaxError:
            continue
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            if not isinstance(node, nodes.Getattr | nodes.Getitem):
                continue
            key, inner = _member(node), node.node
            if key is None:
                continue
            if isinstance(inner, nodes.Name) and inner.name == "steps":
                found.setdefault(key, set())
            elif (
                isinstance(inner, nodes.Getattr | nodes.Getitem)
                and isinstance(inner.node, nodes.Name)
                and inner.node.name == "steps"
                and (step := _member(inner)) is not None
            ):
                found.setdefault(step, set()).add(key)
    return found


def _member(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """`x.name` or `x['name']`: the name; None for a computed subscript."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def template_sources(value: Any) -> list[str]:
    """Every template string inside a JSON-like structure."""
    if isinstance(value, str):
        return [value] if _is_template(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in template_sources(v)]
    if isinstance(value, list):
        return [s for v in value for s in template_sources(v)]
    return []
