"""JSON-like request structures whose string leaves are templates, compiled once at load.

Mappings drop entries that render to nothing (None or ""), lists keep every item, and a
mapping `{$for_each: "{{ list }}", $as: name, $item: <structure>}` builds one `$item` per
element of the list (Jinja has no comprehensions): spliced in place inside a list, a list
anywhere else. docs/providers.md, "Lists built from the input images".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fastpath import Emitter, shared_reads
from .templates import (
    CONTEXT_NAMES,
    TEXT_ENV,
    Const,
    NativeExpr,
    Renderable,
    TemplateError,
    TextTemplate,
    compile_text,
)

FOR_EACH, AS, ITEM = "$for_each", "$as", "$item"
DEFAULT_AS = "item"
LOOP = "loop"  # {index0, index, first, last, length}, as in a Jinja for loop
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

TreePath = tuple[str | int, ...]
OnError = Callable[[TreePath, TemplateError], None]


@dataclass(frozen=True, slots=True)
class MapNode:
    """Entries that render to nothing (None or "") are left out. Rendered by one function
    generated at load (`_map_function`): a JSON body's fields inline, not one call each."""

    items: tuple[tuple[str, Renderable], ...]
    # `render(ctx)` is that function itself, not a method calling it: one call per render
    render: Callable[[Mapping[str, Any]], dict[str, Any]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "render", _map_function(self.items))


def _map_function(
    items: tuple[tuple[str, Renderable], ...],
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """`MapNode.render` as one Python function. A leaf with fast code (engine/dsl/fastpath.py)
    is inlined, and Jinja answers when that code raises (the leaf's `jinja`), as the leaf's
    own `render` does; any other node is called; a constant is known now. A read the leaves
    repeat is made once, first: should one of those raise, each leaf renders on its own."""
    if not items:
        return _empty  # most steps' headers and queries
    emitter, fast = shared_reads(TEXT_ENV, lambda e: [_inline(e, node) for _, node in items])
    lines = ["def fn(ctx):"]
    if emitter.prologue:
        lines += ["    try:", *(f"        {s}" for s in emitter.prologue), "    except Exception:"]
        lines.append(f"        return {emitter.name(functools.partial(_each, items))}(ctx)")
    lines.append("    out = {}")
    for (key, node), code in zip(items, fast, strict=True):
        if isinstance(node, Const):
            if node.value is not None and node.value != "":
                lines.append(f"    out[{key!r}] = {emitter.name(node.value)}")
            continue
        if code is None:
            lines.append(f"    v = {emitter.name(node.render)}(ctx)")
        else:
            assert isinstance(node, NativeExpr | TextTemplate)
            lines += [
                "    try:",
                f"        v = {code}",
                "    except Exception:",
                f"        v = {emitter.name(node.jinja)}(ctx)",
            ]
        lines += ["    if v is not None and v is not U and v != '':", f"        out[{key!r}] = v"]
    lines.append("    return out")
    render: Callable[[Mapping[str, Any]], dict[str, Any]] = emitter.function(
        "\n".join(lines) + "\n"
    )
    return render


def _inline(emitter: Emitter, node: Renderable) -> str | None:
    """A leaf's fast code, to write inline; None for a node that is called (or a constant)."""
    return node.emit(emitter) if isinstance(node, NativeExpr | TextTemplate) else None


def _each(items: tuple[tuple[str, Renderable], ...], ctx: Mapping[str, Any]) -> dict[str, Any]:
    """What the generated function answers, leaf by leaf (each its fast code, then Jinja)."""
    out = {}
    for key, node in items:
        value = node.render(ctx)
        if value is not None and value != "":
            out[key] = value
    return out


def _empty(ctx: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class EachNode:
    """`$item` once per element of `$for_each`'s value, in order. None is no elements; a single
    value (an image, an object, a string) is one element."""

    items: Renderable
    name: str
    item: Renderable

    def render(self, ctx: Mapping[str, Any]) -> list[Any]:
        found = self.items.render(ctx)
        values = [] if found is None else found if isinstance(found, list | tuple) else [found]
        last = len(values) - 1
        return [
            self.item.render(
                {
                    **ctx,
                    self.name: value,
                    LOOP: {
                        "index0": i,
                        "index": i + 1,
                        "first": i == 0,
                        "last": i == last,
                        "length": last + 1,
                    },
                }
            )
            for i, value in enumerate(values)
        ]


@dataclass(frozen=True, slots=True)
class ListNode:
    """Lists keep every item, None included: positional inputs (Gradio `data`) must not shift.
    A `$for_each` item is spliced in: its items take its place."""

    items: tuple[Renderable, ...]

    def render(self, ctx: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for node in self.items:
            if isinstance(node, EachNode):
                out.extend(node.render(ctx))
            else:
                out.append(node.render(ctx))
        return out


def compile_tree(
    value: Any,
    *,
    on_error: OnError | None = None,
    path: TreePath = (),
    names: frozenset[str] = frozenset(),
) -> Renderable:
    """Compile a structure. Each template error goes to `on_error` with its path (compiling
    goes on, so every problem is reported); without `on_error` the first one raises."""

    def fail(where: TreePath, exc: TemplateError) -> Renderable:
        if on_error is None:
            raise exc
        on_error(where, exc)
        return Const(None)

    if isinstance(value, dict):
        if any(key in value for key in (FOR_EACH, AS, ITEM)):
            return _for_each(value, fail, on_error, path, names)
        return MapNode(
            tuple(
                (str(k), compile_tree(v, on_error=on_error, path=(*path, str(k)), names=names))
                for k, v in value.items()
            )
        )
    if isinstance(value, list):
        return ListNode(
            tuple(
                compile_tree(v, on_error=on_error, path=(*path, i), names=names)
                for i, v in enumerate(value)
            )
        )
    if isinstance(value, str):
        try:
            return compile_text(value, names=names)
        except TemplateError as exc:
            return fail(path, exc)
    return Const(value)


def _for_each(
    value: dict[str, Any],
    fail: Callable[[TreePath, TemplateError], Renderable],
    on_error: OnError | None,
    path: TreePath,
    names: frozenset[str],
) -> Renderable:
    extra = sorted(set(value) - {FOR_EACH, AS, ITEM})
    if extra or FOR_EACH not in value or ITEM not in value:
        why = f"unknown key {extra[0]}" if extra else f"needs both {FOR_EACH} and {ITEM}"
        return fail(path, TemplateError("E204", f"list builder: {why} ({AS} is optional)"))
    name = value.get(AS, DEFAULT_AS)
    if not isinstance(name, str) or not _NAME.match(name) or name in CONTEXT_NAMES | {LOOP}:
        return fail(
            (*path, AS),
            TemplateError(
                "E204",
                f"{AS}: {name!r} must be a lower-case name that is not a context variable",
            ),
        )
    source = value[FOR_EACH]
    if not isinstance(source, str):
        return fail((*path, FOR_EACH), TemplateError("E204", f"{FOR_EACH} must be a template"))
    try:
        items = compile_text(source, names=names)
    except TemplateError as exc:
        return fail((*path, FOR_EACH), exc)
    item = compile_tree(
        value[ITEM], on_error=on_error, path=(*path, ITEM), names=names | {name, LOOP}
    )
    return EachNode(items, name, item)
