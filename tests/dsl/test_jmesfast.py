"""Compiled JMESPath functions must answer exactly like jmespath itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jmespath
import pytest
import yaml

from engine.config.loader import build_snapshot
from engine.dsl.expressions import _OPTIONS, Expr, first_true
from tests.dsl.shipped_steps import plain_steps
from tests.gateway import REPO


def reference(expr: Expr, data: Any) -> Any:
    try:
        return jmespath.search(expr.source, data, options=_OPTIONS)
    except Exception:
        return None


def shipped_expressions() -> list[Expr]:
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    found: list[Expr] = []
    for provider in snap.providers.values():
        found.append(provider.error_message)
        found += [r.when for r in provider.errors] + [
            r.message for r in provider.errors if r.message
        ]
        for task in provider.tasks.values():
            for step in plain_steps(task):
                found += [e for _, e in step.extract]
                for name in (
                    "until",
                    "fail_if",
                    "error_message",
                    "images",
                    "revised_prompt",
                    "usage",
                    "progress",
                ):
                    value = getattr(step, name)
                    if value is not None:
                        found.append(value)
    return found


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("json",) and isinstance(value, dict | list):
                yield value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def corpus() -> list[Any]:
    """Every JSON body in the golden cases, wrapped as bodies and as error-rule envelopes,
    plus values that separate jmespath's rules from Python's (0, False, "", [] ...)."""
    docs: list[Any] = []
    for case in sorted(Path(REPO / "tests" / "providers").rglob("*.yaml")):
        docs += list(_walk(yaml.safe_load(case.read_text())))
    edge = [None, 0, 1, False, True, "", "x", [], {}, [0], [None, 1], {"a": 0}, 3.5, [[1], [2, 3]]]
    out: list[Any] = []
    for doc in docs + edge:
        out.append(doc)
        for status in (200, 400, 429, 503):
            out.append({"status": status, "headers": {"retry-after": "7"}, "body": doc})
    return out


def test_every_shipped_expression_agrees_with_jmespath() -> None:
    expressions = shipped_expressions()
    assert sum(e._fast is not None for e in expressions) == len(expressions)  # all compiled
    docs = corpus()
    assert len(docs) > 300
    for expr in expressions:
        for doc in docs:
            assert expr.search(doc) == reference(expr, doc), (expr.source, doc)


@pytest.mark.parametrize(
    "source",
    [
        "a == `0`",
        "a == `false`",
        "a != `1`",
        "a < b",
        "a >= `2`",
        "a > 'b'",
        "!a",
        "!!a",
        "a || b",
        "a && b",
        "a[0]",
        "a[-1]",
        "a[]",
        "a[].b",
        "a[?b].c",
        "a[?b == `1`].c",
        "a.b.c",
        "@",
        "`[1, 2]`",
        "'lit'",
        "length(a)",
        "contains_ci(to_string(a), 'X')",
        "to_int(a)",
        "a[0].b || c",
        "a == 'b' || b",  # a boolean or whatever b is
        "a == `1` && b == 'c'",
        "!a || a == 'b'",
        "a.b == `1` || a.b == `0` || a",  # a.b read once
        "a[?b == `1`].c || a[?b].c",
        "a[] || c[]",  # lists (or null) tested as jmespath does
        "a[][] && b",
        "[0]",
        "[].a",
    ],
)
def test_shapes_agree_on_edge_values(source: str) -> None:
    expr = Expr(source)
    values = [
        None,
        0,
        1,
        2,
        -1,
        1.5,
        False,
        True,
        "",
        "b",
        "X",
        [],
        {},
        [0],
        [1, 2],
        {"b": 1},
        [{"b": 1, "c": "x"}, {"b": 0, "c": "y"}, {"c": "z"}],
        [[1], [2]],
    ]
    for a in values:
        for b in (None, 0, 1, "a", "c", True, [1]):
            doc = {"a": a, "b": b, "c": a}
            assert expr.search(doc) == reference(expr, doc), (source, doc)
            assert expr.truthy(doc) == (
                reference(expr, doc) not in (None, False, "", [], {})
                or (reference(expr, doc) == 0 and reference(expr, doc) is not False)
            ), (source, doc)
    assert expr.search([{"a": 1}, {"a": 2}]) == reference(expr, [{"a": 1}, {"a": 2}])


def _first_rule(rules: list[Expr], doc: Any) -> int:
    """The reference: the rules' `truthy` one by one, as the executor checked them before."""
    return next((i for i, rule in enumerate(rules) if rule.truthy(doc)), -1)


def test_every_providers_error_rules_pick_as_one_function_what_they_pick_one_by_one() -> None:
    """`ProviderSpec.first_error` (one generated function per provider) against each rule's
    own `truthy` and against jmespath itself, on every golden body as an envelope."""
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    docs = corpus()
    matched = 0
    for provider in snap.providers.values():
        rules = [r.when for r in provider.errors]
        for doc in docs:
            found = provider.first_error(doc)
            assert found == _first_rule(rules, doc), (provider.id, doc)
            by_jmespath = next(
                (
                    i
                    for i, r in enumerate(rules)
                    if reference(r, doc) not in (None, False, "", [], {})
                ),
                -1,
            )
            assert found == by_jmespath, (provider.id, doc)
            matched += found >= 0
    assert matched > 50  # the corpus does trip rules, not only the "none" answer


def test_a_rule_whose_code_raises_or_is_left_to_jmespath_answers_as_jmespath() -> None:
    rules = [
        Expr("a[1:2]"),  # a slice: no generated code, jmespath answers
        Expr("length(b) > `2`"),  # length() of a number raises in the code
        Expr("c == 'x'"),
    ]
    first = first_true(rules)
    for doc in ({"a": [1, 2, 3]}, {"b": 5, "c": "x"}, {"b": "abcd"}, {"c": "x"}, {}, None, 7):
        assert first(doc) == _first_rule(rules, doc), doc
    assert first({"a": [1, 2, 3]}) == 0 and first({"b": 5, "c": "x"}) == 2


def test_a_rule_reading_a_field_an_earlier_rule_never_reached_answers_as_jmespath() -> None:
    """Rules share the fields they read; when an earlier rule's code raised before reading
    one, the later rule's code cannot use it and its search answers instead."""
    rules = [Expr("length(a) == c.d"), Expr("c.d == 'x'"), Expr("c.e")]
    first = first_true(rules)
    for doc in ({"a": 5, "c": {"d": "x"}}, {"a": "x", "c": {"d": 1}}, {"c": {"e": 1}}, {"a": 5}):
        assert first(doc) == _first_rule(rules, doc), doc
    assert first({"a": 5, "c": {"d": "x"}}) == 1


class _CountedList(list[Any]):
    """A list that counts how often it is iterated."""

    iterations = 0

    def __iter__(self) -> Iterator[Any]:
        self.iterations += 1
        return super().__iter__()


def test_a_flatten_both_sides_read_is_made_once() -> None:
    # OpenAI's `data[].b64_json || data[].url`: a URL answer flattens `data` for the left side,
    # and the right side reads that same flatten
    data = _CountedList([{"url": "u"}, [{"url": "v"}]])
    assert Expr("data[].b64_json || data[].url").search({"data": data}) == ["u", "v"]
    assert data.iterations == 1
