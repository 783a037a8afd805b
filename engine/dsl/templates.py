"""Jinja2 templates for requests, compiled once at load into small render objects.

Rules (docs/providers.md): templates run sandboxed; a leaf that is exactly `{{ expr }}` keeps its
native type; a mapping entry that renders to nothing (None or "") is left out, so optional fields
vanish; in URL paths every interpolation is percent-encoded unless the whole path is one
expression (an absolute URL handed back by the upstream) or the value passes through `| raw`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .fastpath import UNDEFINED, Emitter, fast_expression, fast_output
from .fastpath import finalize_text as _finalize_text
from .jsontext import from_json_filter

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


class RawText(str):
    """A value the URL template must not percent-encode (produced by the `raw` filter)."""


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
    env.filters["from_json"] = from_json_filter
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


class NativeExpr:
    """`{{ expr }}` alone: evaluates to the expression's own value (list, number, object)."""

    __slots__ = ("_fast", "_fn", "_whole", "env", "source")

    def __init__(self, env: jinja2.Environment, expr: str, source: str) -> None:
        self.source = source
        self.env = env
        self._fn = env.compile_expression(expr, undefined_to_none=False)
        self._whole = "{{" + expr + "}}"
        self._fast = fast_expression(env, self._whole)

    def emit(self, emitter: Emitter) -> str | None:
        """Python source for the value (UNDEFINED where Jinja has an undefined), for code that
        inlines this leaf; None when Jinja must evaluate it."""
        return emitter.native(self._whole) if emitter.env is self.env else None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        if self._fast is not None:
            try:
                value = self._fast(ctx)
            except Exception:
                pass
            else:
                return None if value is UNDEFINED else value
        return self.jinja(ctx)

    def jinja(self, ctx: Mapping[str, Any]) -> Any:
        """Jinja's own answer: where the fast code cannot answer, and its errors."""
        try:
            value = self._fn(**ctx)
        except Exception as exc:  # TemplateError, but also TypeError, OverflowError...
            raise RenderError(f"{self.source}: {exc}") from None
        return _defined(value)


def _defined(value: Any) -> Any:
    """Undefined values become None, inside literal lists and dicts too (JSON has no
    undefined; the fast path does the same)."""
    if isinstance(value, jinja2.Undefined):
        return None
    if isinstance(value, list | tuple):
        return type(value)(_defined(v) for v in value)
    if isinstance(value, dict):
        return {k: _defined(v) for k, v in value.items()}
    return value


class TextTemplate:
    __slots__ = ("_fast", "_tpl", "env", "source")

    def __init__(self, env: jinja2.Environment, source: str) -> None:
        self.source = source
        self.env = env
        self._tpl = env.from_string(source)
        self._fast = fast_output(env, source)

    def emit(self, emitter: Emitter) -> str | None:
        """Python source for the text, for code that inlines this leaf; None when Jinja must
        render it."""
        return emitter.output(self.source) if emitter.env is self.env else None

    def render(self, ctx: Mapping[str, Any]) -> str:
        if self._fast is not None:
            try:
                return self._fast(ctx)
            except Exception:
                pass
        return self.jinja(ctx)

    def jinja(self, ctx: Mapping[str, Any]) -> str:
        """Jinja's own answer: where the fast code cannot answer, and its errors."""
        try:
            return self._tpl.render(ctx)
        except Exception as exc:  # TemplateError, but also TypeError, OverflowError...
            raise RenderError(f"{self.source}: {exc}") from None


@dataclass(frozen=True, slots=True)
class StepRefs:
    """What a template reads from earlier steps: {step name: {variable, ...}}."""

    refs: dict[str, set[str]]


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def compile_text(
    source: str, *, url: bool = False, names: frozenset[str] = frozenset()
) -> Renderable:
    """A string field: constant, native expression, or text template. `names` are variables
    allowed besides the context (a `$for_each` item's name and `loop`)."""
    env = URL_ENV if url else TEXT_ENV
    if not _is_template(source):
        return Const(source)
    check_source(env, source, names)
    expr = whole_expression(env, source)
    if expr is not None:
        try:
            return NativeExpr(env, expr, source)
        except jinja2.TemplateSyntaxError:
            pass  # fall through: a text template reports the syntax error precisely
    try:
        return TextTemplate(env, source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError("E201", f"template syntax: {exc.message}") from None


def whole_expression(env: jinja2.Environment, source: str) -> str | None:
    """The expression of a leaf that is exactly one `{{ expr }}` (surrounding whitespace
    aside), else None. Decided by Jinja's parser, not a regex: `}}` may occur inside the
    expression (`{{ {'a': {'b': 1}} }}`), and `{{ a }}{{ b }}` is two outputs, not one."""
    text = source.strip()
    if not (text.startswith("{{") and text.endswith("}}")):
        return None
    try:
        body = env.parse(text).body
    except jinja2.TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    if isinstance(body[0].nodes[0], nodes.TemplateData):
        return None
    return text[2:-2]


def check_source(env: jinja2.Environment, source: str, names: frozenset[str] = frozenset()) -> None:
    """Syntax and variable names, at load. Raises TemplateError."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError("E201", f"template syntax: {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES - names)
    if unknown:
        raise TemplateError(
            "E202",
            f"unknown template variable {', '.join(unknown)!s}; "
            f"available: {', '.join(sorted(CONTEXT_NAMES | names))}",
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
