"""Plain Python for the common template expression shapes, generated once at load.

Building a Jinja Context per field was most of a request's template cost (about 100 µs for
an OpenAI request), and calling one small closure per node of an expression was most of what
was left. Names, attribute and item chains, constants, not/and/or, one comparison, `is none`,
list/tuple/dict literals and conditional expressions are written out here as Python source,
with attribute and item access through the sandbox's own getattr/getitem; a whole mapping of
templates (a JSON body) becomes one function (engine/dsl/trees.py). A name, attribute or item
read that a function repeats (OpenAI's body tests `params.gpt_image` nine times) is read once
into a local (`shared_reads`). Anything else, and any evaluation that raises, is left to
Jinja, so results and errors stay Jinja's (tests/dsl/test_templates_fast_path.py checks every
shipped template).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes

Getter = Callable[[Mapping[str, Any]], Any]
T = TypeVar("T")
# A read of the context: ("name", name), or (the key of what it reads from, ".", attribute),
# or (that key, "[]", type, constant item); the same key for the same read.
ReadKey = tuple[Any, ...]


class _Undefined:
    """What fast code yields where Jinja would have an undefined: falsy, equal to nothing,
    `is none` false. `render` turns it into None, as it does Jinja's undefined."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<undefined>"


UNDEFINED = _Undefined()
_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<="}


class NotFast(Exception):
    """The fast code cannot answer like Jinja would (e.g. comparing an undefined): Jinja
    answers instead."""


def plain(value: Any) -> Any:
    return None if value is UNDEFINED else value


def _defined(value: Any) -> Any:
    """Comparisons: Jinja's undefined equals nothing and cannot be ordered; so here."""
    if value is UNDEFINED:
        raise NotFast()
    return value


class Emitter:
    """Writes Python source for template expressions of one environment; the names that
    source uses (helpers, constants) collect in `namespace`. `function` compiles it."""

    def __init__(self, env: jinja2.Environment, shared: Sequence[nodes.Node] = ()) -> None:
        self.env = env
        self.namespace: dict[str, Any] = dict(_helpers(env))
        self._names = 0
        self.reads: Counter[ReadKey] = Counter()  # every read written, by key
        self._first: dict[ReadKey, nodes.Node] = {}  # each read's node, as first written
        self._locals: dict[ReadKey, str] = {}
        # Statements binding each of `shared` (reads, shortest first) to a local, which the
        # code written after them uses instead of reading again: the function's first lines.
        self.prologue: list[str] = []
        for node in shared:  # (each a Name, Getattr or Getitem)
            assert isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem)
            key, source = read_key(node), self._read(node)
            assert key is not None and source is not None
            local = self._locals[key] = f"_r{len(self._locals) + 1}"
            self.prologue.append(f"{local} = {source}")
        self.reads.clear()  # (the prologue's own reads)

    def name(self, value: Any) -> str:
        """A namespace name bound to `value` (a constant, or a slow path to call)."""
        self._names += 1
        name = f"_k{self._names}"
        self.namespace[name] = value
        return name

    def temp(self) -> str:
        self._names += 1
        return f"_t{self._names}"

    def function(self, source: str) -> Callable[..., Any]:
        """`source` defines `fn`; compiled once, at load. It is written by this module from a
        parsed template: identifiers, operators and repr() literals; every other value is
        bound by name in the namespace, never spelt out."""
        code = compile(source, "<pixgate template>", "exec")
        exec(code, self.namespace)
        fn: Callable[..., Any] = self.namespace.pop("fn")
        return fn

    def expression(self, node: nodes.Node) -> str | None:
        """Python source evaluating `node` against `ctx` (UNDEFINED where Jinja would have an
        undefined), or None for a shape left to Jinja."""
        if isinstance(node, nodes.Const):
            return self.name(node.value)
        if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
            key = read_key(node)
            if key is not None:
                self.reads[key] += 1
                self._first.setdefault(key, node)
                if key in self._locals:
                    return self._locals[key]
            return self._read(node)
        if isinstance(node, nodes.Not):
            inner = self.expression(node.node)
            return None if inner is None else f"(not {inner})"
        if isinstance(node, nodes.And | nodes.Or):
            left, right = self.expression(node.left), self.expression(node.right)
            if left is None or right is None:
                return None
            return f"({left} {'and' if isinstance(node, nodes.And) else 'or'} {right})"
        if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
            first, second = self.expression(node.expr), self.expression(node.ops[0].expr)
            if first is None or second is None:
                return None
            return f"(_d({first}) {_COMPARE[node.ops[0].op]} _d({second}))"
        if isinstance(node, nodes.Test) and node.name == "none" and not node.args:
            tested = self.expression(node.node)
            return None if tested is None else f"({tested} is None)"
        if isinstance(node, nodes.List | nodes.Tuple):
            items = [self.expression(item) for item in node.items]
            if any(item is None for item in items):
                return None
            inside = "".join(f"_p({item}), " for item in items)
            return f"[{inside}]" if isinstance(node, nodes.List) else f"({inside})"
        if isinstance(node, nodes.Dict):
            pairs = [(self.expression(p.key), self.expression(p.value)) for p in node.items]
            if any(k is None or v is None for k, v in pairs):
                return None
            return "{" + "".join(f"_p({k}): _p({v}), " for k, v in pairs) + "}"
        if isinstance(node, nodes.CondExpr):
            test, then = self.expression(node.test), self.expression(node.expr1)
            other = self.expression(node.expr2) if node.expr2 is not None else "U"
            if test is None or then is None or other is None:
                return None
            return f"({then} if {test} else {other})"
        return None

    def native(self, source: str) -> str | None:
        """Python source for a template that is exactly one `{{ expr }}`: the expression's
        value; else None."""
        body = self._parse(source)
        if body is None or len(body.nodes) != 1 or isinstance(body.nodes[0], nodes.TemplateData):
            return None
        return self.expression(body.nodes[0])

    def output(self, source: str) -> str | None:
        """Python source for a template that is only text and fast expressions: its text
        (finalised as the environment does), else None."""
        body = self._parse(source)
        if body is None:
            return None
        parts: list[str] = []
        for child in body.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(repr(child.data))
                continue
            expr = self.expression(child)
            if expr is None:
                return None
            parts.append(self._text(expr))
        return " + ".join(parts) if parts else "''"

    def _text(self, expr: str) -> str:
        """An interpolation's text: the text environment's finalize written out (no call
        per interpolation), any other environment's through `_s`."""
        if self.env.finalize is not finalize_text:
            return f"_s({expr})"
        held = expr if expr.isidentifier() else self.temp()
        bind = held if held == expr else f"({held} := {expr})"
        return f"('' if {bind} is None or {held} is U else str({held}))"

    def _parse(self, source: str) -> nodes.Output | None:
        """The template's one output node (text and expressions), else None."""
        return _output_node(self.env, source)

    def repeated(self) -> list[nodes.Node]:
        """The reads written more than once, shortest first, for an Emitter to share
        (`shared_reads`). A read always made as part of the same longer one (`params` of
        `params.gpt_image`) is left to that one."""
        # each read's count, and the most any one longer read made of it (directly) counts
        most_within: Counter[ReadKey] = Counter()
        for key, count in self.reads.items():
            if key[0] != "name":
                most_within[key[0]] = max(most_within[key[0]], count)
        kept = [k for k, count in self.reads.items() if count > 1 and most_within[k] < count]
        return [self._first[key] for key in sorted(kept, key=_depth)]

    def _read(self, node: nodes.Name | nodes.Getattr | nodes.Getitem) -> str | None:
        """Python source for a name, an attribute or a constant item, else None."""
        if isinstance(node, nodes.Name):
            return f"ctx.get({node.name!r}, U)" if node.ctx == "load" else None
        inner = self.expression(node.node)
        if inner is None:
            return None
        if isinstance(node, nodes.Getitem):
            if not isinstance(node.arg, nodes.Const):
                return None  # a computed item
            return f"_gi({inner}, {self.name(node.arg.value)})"
        attr = node.attr
        if hasattr(dict, attr):  # `x.items`: Jinja's rules (the method, not the item)
            return f"_ga({inner}, {attr!r})"
        # A dict's item, as Jinja finds it (no such attribute), without the sandbox's generic
        # getattr; anything else still goes through it. (A local needs no temporary.)
        held = inner if inner.isidentifier() else self.temp()
        bind = held if held == inner else f"{held} := {inner}"
        return f"({held}.get({attr!r}, U) if type({bind}) is dict else _ga({held}, {attr!r}))"


def read_key(node: nodes.Node) -> ReadKey | None:
    """The key of a read (a name, or attribute and constant-item reads on one), else None."""
    if isinstance(node, nodes.Name):
        return ("name", node.name) if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        inner = read_key(node.node)
        return None if inner is None else (inner, ".", node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner, item = read_key(node.node), node.arg.value
        if inner is None or not isinstance(item, str | int | float | bool | None):
            return None
        return (inner, "[]", type(item), item)  # (the type: x[1] is not x[True])
    return None


def _depth(key: ReadKey) -> int:
    return 0 if key[0] == "name" else 1 + _depth(key[0])


def shared_reads(env: jinja2.Environment, write: Callable[[Emitter], T]) -> tuple[Emitter, T]:
    """`write(emitter)` twice: first to find the reads it repeats, then with those read once
    each, into locals, by the emitter's `prologue`."""
    counting = Emitter(env)
    write(counting)
    emitter = Emitter(env, counting.repeated())
    return emitter, write(emitter)


def finalize_text(value: Any) -> Any:
    """The text environment's `finalize` (templates.py): None is written as nothing."""
    return "" if value is None else value


@functools.cache  # one set per environment (there are two: text and URL)
def _helpers(env: jinja2.Environment) -> dict[str, Any]:
    """What generated code calls: attribute and item access by the sandbox's rules, and an
    interpolation's text as the environment finalises it."""

    def getattr_(obj: Any, attr: str) -> Any:
        if obj is UNDEFINED or obj is None:
            return UNDEFINED  # Jinja: an (chainable) undefined
        value = env.getattr(obj, attr)
        return UNDEFINED if isinstance(value, jinja2.Undefined) else value

    def getitem(obj: Any, key: Any) -> Any:
        if obj is UNDEFINED or obj is None:
            return UNDEFINED
        value = env.getitem(obj, key)
        return UNDEFINED if isinstance(value, jinja2.Undefined) else value

    finalize = env.finalize or (lambda value: value)

    def text(value: Any) -> str:  # (the text environment's is written inline: Emitter._text)
        return str(finalize(None if value is UNDEFINED else value))

    return {
        "U": UNDEFINED,
        "_p": plain,
        "_d": _defined,
        "_ga": getattr_,
        "_gi": getitem,
        "_s": text,
    }


# Compiled once per distinct template text: the shipped files repeat `{{ prompt }}`,
# `{{ model }}`... hundreds of times (fewer functions to compile at load and to hold).
@functools.lru_cache(maxsize=4096)
def fast_expression(env: jinja2.Environment, source: str) -> Getter | None:
    """A template that is one `{{ expr }}` as a compiled function of the context giving the
    expression's value (UNDEFINED for Jinja's undefined), or None (left to Jinja)."""
    emitter, expr = shared_reads(env, lambda e: e.native(source))
    if expr is None:
        return None
    getter: Getter = emitter.function(_body(emitter.prologue, expr))
    return getter


@functools.lru_cache(maxsize=4096)
def fast_output(env: jinja2.Environment, source: str) -> Callable[[Mapping[str, Any]], str] | None:
    """A template that is only text and fast expressions, as a compiled function of the
    context giving its text; else None."""
    emitter, text = shared_reads(env, lambda e: e.output(source))
    if text is None:
        return None
    render: Callable[[Mapping[str, Any]], str] = emitter.function(_body(emitter.prologue, text))
    return render


def _body(prologue: list[str], value: str) -> str:
    """`fn(ctx)`: the prologue's statements, then the value. (Should one of them raise, the
    function raises, and Jinja answers, as for any fast code that raises.)"""
    lines = ["def fn(ctx):", *(f"    {statement}" for statement in prologue), f"    return {value}"]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=4096)
def _output_node(env: jinja2.Environment, source: str) -> nodes.Output | None:
    """The template's one output node (text and expressions), else None. Parsed once per
    text: code is written twice (`shared_reads`), and many templates recur."""
    try:
        body = env.parse(source).body
    except jinja2.TemplateSyntaxError:
        return None
    return body[0] if len(body) == 1 and isinstance(body[0], nodes.Output) else None
