"""Generated JSON against jmespath itself: `Expr.search` (the generated code, with jmespath as
its fallback inside) and `first_true` (a provider's rules as one function) answer as jmespath
does for every kind of value: None, missing keys, non-dict values, booleans beside 0 and 1,
floats, unicode."""

from __future__ import annotations

from typing import Any

import jmespath
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dsl.expressions import _OPTIONS, Expr, first_true

SOURCES = [
    "a",
    "a.b.c",
    '"é".a || a',
    "a[0]",
    "a[-1].b",
    "a[]",
    "a[][]",
    "a[].b",
    "a[*].b",
    "a[?b].c",
    "a[?b == `1`].c",
    "a[?b == 'é'] || c",
    "a == `0`",
    "a == `false`",
    "a != b",
    "a == b",
    "a < b",
    "a >= `1.5`",
    "a > 'b'",
    "!a",
    "!!b",
    "a || b && c",
    "(a || b).c",
    "a == 'é' || b",
    "length(a)",
    "to_string(a)",
    "to_int(a)",
    "contains_ci(to_string(a), 'É')",
    "from_json(a)",
    "[0]",
    "[].a",
    "@",
    "a.b == `1` || a.b == `0` || a",
    "a[?b == `1`].c || a[?b].c",
    "a[].b || a[].c",  # one flatten of `a`, read by both sides
    "a[][].b || a[][] || a[]",
]
EXPRS = [Expr(source) for source in SOURCES]
KEYS = st.sampled_from(["a", "b", "c", "é", "A"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "b", "é", "É", "1.5", '{"a": 1}'])
    | st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
# Mostly an object with the fields the expressions read; any JSON value now and then.
DOC = (
    st.dictionaries(KEYS, JSON, max_size=4)
    | st.fixed_dictionaries({}, optional={"a": JSON, "b": JSON, "c": JSON})
    | JSON
)


def reference(source: str, data: Any) -> Any:
    try:
        return jmespath.search(source, data, options=_OPTIONS)
    except Exception:
        return None  # a type mismatch at run time is "nothing" (engine/dsl/expressions.py)


def _truthy(value: Any) -> bool:
    return not (value is None or value is False or value in ("", [], {}))


@settings(max_examples=500, deadline=None)
@given(doc=DOC)
def test_every_shape_answers_as_jmespath(doc: Any) -> None:
    for expr in EXPRS:
        expected = reference(expr.source, doc)
        got = expr.search(doc)
        assert got == expected and type(got) is type(expected), (expr.source, doc)
        assert expr.truthy(doc) == _truthy(expected), (expr.source, doc)


RULES = [Expr(source) for source in SOURCES if "from_json" not in source]


@settings(max_examples=200, deadline=None)
@given(doc=DOC, picks=st.lists(st.integers(0, len(RULES) - 1), min_size=1, max_size=5))
def test_rules_as_one_function_pick_the_first_jmespath_holds(doc: Any, picks: list[int]) -> None:
    rules = [RULES[i] for i in picks]
    envelope = {"status": 400, "headers": {"a": "1"}, "body": doc, "a": doc}
    expected = next((i for i, r in enumerate(rules) if _truthy(reference(r.source, envelope))), -1)
    assert first_true(rules)(envelope) == expected, [r.source for r in rules]
