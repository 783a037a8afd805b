"""The provider compiler's shared part: where errors are reported, and compiling one leaf
(an expression, a template, a tree, a duration, origins). provider.py compiles the document,
steps.py its tasks' steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .durations import parse_duration
from .expressions import Expr
from .origins import OriginPattern, parse_pattern
from .templates import Const, Renderable, TemplateError, compile_text
from .trees import MapNode, compile_tree

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]


class Compiler:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.failed = False
        self.names: frozenset[str] = frozenset()  # template names besides the context

    def error(self, path: Path, code: str, message: str) -> None:
        self.failed = True
        self.report(path, code, message)

    def expr(self, source: str | None, path: Path) -> Expr | None:
        if source is None:
            return None
        try:
            return Expr(source)
        except ValueError as exc:
            self.error(path, "E211", f"JMESPath: {exc}")
            return None

    def text(self, source: Any, path: Path, *, url: bool = False) -> Renderable | None:
        if source is None:
            return None
        if not isinstance(source, str):
            return Const(source)
        try:
            return compile_text(source, url=url, names=self.names)
        except TemplateError as exc:
            self.error(path, exc.code, str(exc))
            return None

    def tree(self, value: Any, path: Path) -> Renderable | None:
        failed = self.failed
        self.failed = False
        node = compile_tree(
            value,
            on_error=lambda where, exc: self.error(where, exc.code, str(exc)),
            path=path,
            names=self.names,
        )
        ok, self.failed = not self.failed, failed or self.failed
        return node if ok else None

    def mapping(self, value: dict[str, Any] | None, path: Path) -> MapNode:
        node = self.tree(value or {}, path)
        return node if isinstance(node, MapNode) else MapNode(())

    def duration(self, value: Any, path: Path, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, "E231", str(exc))
            return default


def origins(c: Compiler, raw: list[str], path: Path) -> tuple[OriginPattern, ...]:
    patterns = []
    for i, text in enumerate(raw):
        try:
            patterns.append(parse_pattern(str(text)))
        except ValueError as exc:
            c.error((*path, i), "E251", str(exc))
    return tuple(patterns)
