"""JMESPath expressions compiled to plain Python functions, for the shapes provider files use.

jmespath's tree-walking interpreter costs ~18 µs per search; a request runs several (error
rules on every response, images, usage, ...), and one closure per node still cost a call per
node. Fields, sub-expressions, indexes, projections, flatten, filters, comparisons, and/or/not,
literals and function calls are written out here as the statements of one function per
expression, with jmespath's own semantics (its truthiness, its equality that keeps 0/1 apart
from booleans, ordering only between numbers or strings); any other node leaves the expression
to jmespath, and `Expr.search` falls back to jmespath whenever the function raises, so answers
and errors stay jmespath's (tests/dsl/test_jmesfast.py compares both on every shipped
expression).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Sequence
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


def _ordered(op: str, a: Any, b: Any) -> Any:
    if not ((_number(a) or isinstance(a, str)) and (_number(b) or isinstance(b, str))):
        return None
    return _ORDER[op](a, b)


def _not(found: Any) -> bool:
    if _number(found) and found == 0:
        return False  # jmespath: !0 is false; 0 is not a falsy value there
    return not found


_HELPERS = {
    "_false": is_false,
    "_eq": _equals,
    "_ord": _ordered,
    "_not": _not,
}


def compile_fast(
    node: dict[str, Any], call_function: Callable[[str, list[Any]], Any], fallback: Fn
) -> Fn | None:
    """A function evaluating the parsed expression `node` that answers with `fallback(v)`
    when its own code raises, or None when a node is not covered. (The fallback inside:
    one call per search, not a wrapper's and this function's.)"""
    make = _compiled(json.dumps(node), call_function)
    return make(fallback) if make is not None else None


@functools.lru_cache(maxsize=4096)
def _compiled(
    tree: str, call_function: Callable[[str, list[Any]], Any]
) -> Callable[[Fn], Fn] | None:
    """The maker of `fn(v)` for a fallback: one per distinct expression and function table
    (the same text recurs)."""
    writer = _Writer(call_function)
    result = writer.node(json.loads(tree), "v", 3)
    if result is None:
        return None
    lines = ["def make(_fallback):", "    def fn(v):", "        try:", *writer.lines]
    lines += [f"            return {result}", "        except Exception:"]
    lines += ["            return _fallback(v)", "    return fn", ""]
    namespace = writer.namespace
    # Written here from a parsed expression: identifiers, operators and repr() literals;
    # literal values are bound by name in the namespace, never spelt out.
    try:
        code = compile("\n".join(lines), "<pixgate jmespath>", "exec")
    except (SyntaxError, RecursionError):  # nested deeper than Python allows: jmespath's
        return None
    exec(code, namespace)
    make: Callable[[Fn], Fn] = namespace.pop("make")
    return make


def compile_first_true(
    trees: Sequence[dict[str, Any]],
    searches: Sequence[Fn],
    call_function: Callable[[str, list[Any]], Any],
) -> Callable[[Any], int]:
    """One function for a list of conditions (a provider's error rules): the index of the
    first whose value is true by jmespath's rules, -1 when none is. Each condition's code is
    written inline; one that has no code, or whose code raises, is answered by its `search`
    (Expr.search: that code again, then jmespath), exactly as `Expr.truthy` would."""
    writer = _Writer(call_function)
    lines = ["def fn(v):"]
    for index, tree in enumerate(trees):
        # Fields an earlier rule read are not read again. Should that rule's code have
        # raised before reading one, the name is unbound here: this rule's code raises too,
        # and its search answers, as for any rule whose code raises.
        writer.lines = []
        result = writer.node(tree, "v", 2)
        if result is None:
            lines += [f"    r = _s{index}(v)", "    if not _false(r):"]
        else:
            lines += ["    try:", *writer.lines, f"        r = {result}"]
            lines += ["    except Exception:", f"        r = _s{index}(v)"]
            lines.append("    if r:" if result in writer.bools else "    if not _false(r):")
        lines.append(f"        return {index}")
    lines.append("    return -1")
    namespace = writer.namespace
    namespace.update({f"_s{index}": search for index, search in enumerate(searches)})
    # As _compiled: identifiers, operators and repr() literals; values bound by name.
    try:
        code = compile("\n".join(lines) + "\n", "<pixgate conditions>", "exec")
    except (SyntaxError, RecursionError):  # a condition nested deeper than Python allows
        return functools.partial(_first_true, tuple(searches))
    exec(code, namespace)
    fn: Callable[[Any], int] = namespace.pop("fn")
    return fn


def _first_true(searches: tuple[Fn, ...], v: Any) -> int:
    """compile_first_true's answer, a search per condition."""
    for index, search in enumerate(searches):
        if not is_false(search(v)):
            return index
    return -1


class _Writer:
    """The statements of one function: each node's value goes to a local variable, written
    once. A field already read from the same variable on the way here is not read again,
    and a value known to be a boolean is tested with `not`, not jmespath's `_false`."""

    def __init__(self, call_function: Callable[[str, list[Any]], Any]) -> None:
        self.namespace: dict[str, Any] = {**_HELPERS, "_call": call_function}
        self.lines: list[str] = []
        self._count = 0
        # (variable, field name) -> the variable holding it, for the code written so far at
        # this block or around it (a nested block's reads are forgotten when it ends); a
        # flatten of the variable is kept as its field None (`a[].b || a[].c` flattens once)
        self.fields: dict[tuple[str, str | None], str] = {}
        self.bools: set[str] = set()  # variables that always hold True or False
        self.lists: set[str] = set()  # variables that hold a list or None

    def _var(self) -> str:
        self._count += 1
        return f"t{self._count}"

    def false(self, value: str) -> str:
        """The test that `value` is false by jmespath's rules."""
        plain = value in self.bools or value in self.lists  # Python's truth is jmespath's
        return f"not {value}" if plain else f"_false({value})"

    def _nested(self, node: dict[str, Any], subject: str, depth: int) -> str | None:
        """`node` written in a block of its own (a branch, a loop's body)."""
        outer = dict(self.fields)
        try:
            return self.node(node, subject, depth)
        finally:
            self.fields = outer

    def _emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def node(self, node: dict[str, Any], subject: str, depth: int) -> str | None:
        """Write the statements that evaluate `node` on the variable `subject`, at `depth`;
        the variable (or constant) holding its value, or None for a shape left to jmespath."""
        kind = node["type"]
        children = node.get("children", [])
        if kind == "field":
            name = node["value"]
            known = self.fields.get((subject, name))
            if known is not None:
                return known
            out = self.fields[(subject, name)] = self._var()
            self._emit(
                depth, f"{out} = {subject}.get({name!r}) if isinstance({subject}, dict) else None"
            )
            return out
        if kind in ("current", "identity"):
            return subject
        if kind == "literal":
            self._count += 1
            name = f"k{self._count}"
            self.namespace[name] = node["value"]
            return name
        if kind in ("subexpression", "index_expression"):
            current = subject  # each child applies to what the one before it found
            for child in children:
                found = self.node(child, current, depth)
                if found is None:
                    return None
                current = found
            return current
        if kind == "index":  # None for what is not a list or has no such item: jmespath's
            out = self._var()
            index = int(node["value"])
            inside = f"len({subject}) > {index}" if index >= 0 else f"len({subject}) >= {-index}"
            test = f"isinstance({subject}, list) and {inside}"
            self._emit(depth, f"{out} = {subject}[{index}] if {test} else None")
            return out
        if kind == "flatten":
            return self._flatten(children, subject, depth)
        if kind in ("projection", "filter_projection"):
            return self._projection(kind, children, subject, depth)
        if kind == "comparator":
            return self._comparator(node["value"], children, subject, depth)
        if kind in ("or_expression", "and_expression"):
            left = self.node(children[0], subject, depth)
            if left is None:
                return None
            out = self._var()
            # or: the right side only when the left is false; and: only when it is true
            test = "" if kind == "or_expression" else "not "
            self._emit(depth, f"if {test}{self.false(left)}:")
            right = self._nested(children[1], subject, depth + 1)
            if right is None:
                return None
            self._emit(depth + 1, f"{out} = {right}")
            self._emit(depth, "else:")
            self._emit(depth + 1, f"{out} = {left}")
            if left in self.bools and right in self.bools:
                self.bools.add(out)
            return out
        if kind == "not_expression":
            negated = self._call("_not", children, subject, depth)
            if negated is not None:
                self.bools.add(negated)
            return negated
        if kind == "function_expression":
            args = [self.node(child, subject, depth) for child in children]
            if any(arg is None for arg in args):
                return None
            out = self._var()
            self._emit(depth, f"{out} = _call({node['value']!r}, [{', '.join(map(str, args))}])")
            return out
        return None  # slices and the rest: jmespath's

    def _call(self, helper: str, children: list[Any], subject: str, depth: int) -> str | None:
        found = self.node(children[0], subject, depth)
        if found is None:
            return None
        out = self._var()
        self._emit(depth, f"{out} = {helper}({found})")
        return out

    def _flatten(self, children: list[Any], subject: str, depth: int) -> str | None:
        """The base list with its list elements merged in, null when it is not a list."""
        found = self.node(children[0], subject, depth)
        if found is None:
            return None
        known = self.fields.get((found, None))
        if known is not None:
            return known
        out, element = self._var(), self._var()
        self.fields[(found, None)] = out
        self._emit(depth, f"if isinstance({found}, list):")
        self._emit(depth + 1, f"{out} = []")
        self._emit(depth + 1, f"for {element} in {found}:")
        self._emit(depth + 2, f"if isinstance({element}, list):")
        self._emit(depth + 3, f"{out}.extend({element})")
        self._emit(depth + 2, "else:")
        self._emit(depth + 3, f"{out}.append({element})")
        self._emit(depth, "else:")
        self._emit(depth + 1, f"{out} = None")
        self.lists.add(out)
        return out

    def _projection(self, kind: str, children: list[Any], subject: str, depth: int) -> str | None:
        """Each element of the base list (that passes the filter), its value kept unless
        null; null when the base is not a list."""
        base = self.node(children[0], subject, depth)
        if base is None:
            return None
        out, element = self._var(), self._var()
        self._emit(depth, f"if isinstance({base}, list):")
        self._emit(depth + 1, f"{out} = []")
        self._emit(depth + 1, f"for {element} in {base}:")
        inner = depth + 2
        outer = dict(self.fields)  # the loop's body is a block of its own
        try:
            if kind == "filter_projection":
                keep = self.node(children[2], element, inner)
                if keep is None:
                    return None
                self._emit(inner, f"if {self.false(keep)}:")
                self._emit(inner + 1, "continue")
            each = self.node(children[1], element, inner)
        finally:
            self.fields = outer
        if each is None:
            return None
        self._emit(inner, f"if {each} is not None:")
        self._emit(inner + 1, f"{out}.append({each})")
        self._emit(depth, "else:")
        self._emit(depth + 1, f"{out} = None")
        self.lists.add(out)
        return out

    def _comparator(self, op: str, children: list[Any], subject: str, depth: int) -> str | None:
        left = self.node(children[0], subject, depth)
        right = self.node(children[1], subject, depth) if left is not None else None
        if left is None or right is None:
            return None
        out = self._var()
        if op in ("eq", "ne"):
            literal = [child["value"] for child in children if child["type"] == "literal"]
            # against a string literal jmespath's equality is Python's: no call needed
            plain = any(isinstance(value, str) for value in literal)
            same = f"{left} == {right}" if plain else f"_eq({left}, {right})"
            self._emit(depth, f"{out} = {same}" if op == "eq" else f"{out} = not {same}")
            self.bools.add(out)  # JSON values compare to True or False
        else:
            self._emit(depth, f"{out} = _ord({op!r}, {left}, {right})")
        return out
