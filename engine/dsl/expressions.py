"""JMESPath expressions compiled once at load; request time only calls `search`."""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath import exceptions as jexc
from jmespath import functions as jfunc


class _Functions(jfunc.Functions):  # type: ignore[misc]
    """Extra functions that provider files may use besides JMESPath's built-ins."""

    @jfunc.signature({"types": ["string"]}, {"types": ["string"]})  # type: ignore[untyped-decorator]
    def _func_contains_ci(self, haystack: str, needle: str) -> bool:
        return needle.lower() in haystack.lower()

    @jfunc.signature({"types": ["string", "number", "null"]})  # type: ignore[untyped-decorator]
    def _func_to_int(self, value: Any) -> int | None:
        if value is None:
            return None
        digits = "".join(ch for ch in str(value) if ch.isdigit() or ch == ".")
        return int(float(digits)) if digits else None


_OPTIONS = jmespath.Options(custom_functions=_Functions())


class Expr:
    """A compiled JMESPath expression with its source text (for docs and diagnostics)."""

    __slots__ = ("_parsed", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._parsed = jmespath.compile(source)
        except jexc.JMESPathError as exc:
            raise ValueError(_one_line(exc)) from None

    def search(self, data: Any) -> Any:
        try:
            return self._parsed.search(data, options=_OPTIONS)
        except jexc.JMESPathError:
            # A type mismatch at run time (e.g. a number where a string was expected) means
            # "no match" for conditions and "nothing" for extraction.
            return None

    def truthy(self, data: Any) -> bool:
        value = self.search(data)
        return value not in (None, False, "", [], {})

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def _one_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    return lines[0].removesuffix(":").removesuffix(", for expression")
