"""An expression nested deeper than Python lets generated code nest (20 blocks, 100
indentation levels) is still an expression: jmespath answers it, and a provider file that
uses one loads. Compiling it to Python must not fail the file with a SyntaxError."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest

from engine.dsl.expressions import _OPTIONS, Expr, first_true


def nested_filters(depth: int) -> str:
    return "body.a" + "[?b" * depth + "]" * depth


def nested_ands(depth: int) -> str:
    return "body.a" + " && (body.b" * depth + ")" * depth


DATA: list[Any] = [
    {"body": {"a": [{"b": [{"b": 1}]}], "b": "x"}},
    {"body": {"a": "x", "b": 0}},
    {"body": None},
    [],
]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(nested_filters(19), id="filters-19"),
        pytest.param(nested_filters(20), id="filters-20"),  # too deep for the rules' function
        pytest.param(nested_filters(24), id="filters-24"),  # too deep for one expression's
        pytest.param(nested_ands(97), id="ands-97"),
        pytest.param(nested_ands(99), id="ands-99"),
    ],
)
def test_a_deep_condition_answers_as_jmespath(source: str) -> None:
    expr = Expr(source)
    pick = first_true([Expr("body.missing"), expr])
    for data in DATA:
        want = jmespath.search(source, data, options=_OPTIONS)
        assert expr.search(data) == want
        assert pick(data) == (1 if expr.truthy(data) else -1)
