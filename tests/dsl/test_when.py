"""`when:` on a step: compiled at load, its `steps.*` references checked like templates'."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.expressions import Expr
from engine.dsl.provider import compile_provider


def _compile(steps: list[dict[str, Any]]) -> tuple[Any, list[tuple[Any, ...]]]:
    doc = {"id": "t", "base_url": "https://t.test", "auth": {"required": False},
           "models": {"m": None}, "tasks": {"generate": {"steps": steps}}}  # fmt: skip
    reports: list[tuple[Any, ...]] = []
    return compile_provider(doc, "t.yaml", lambda *a: reports.append(a)), reports


SUBMIT = {"name": "submit", "request": {"path": "/s"}, "extract": {"status": "status"}}


def test_when_compiles_to_an_expression() -> None:
    poll = {"name": "poll", "request": {"path": "/p"}, "when": "steps.submit.status != 'done'"}
    spec, reports = _compile([SUBMIT, poll])
    assert reports == []
    when = spec.tasks["generate"].steps[1].when
    assert when is not None and when.source == "steps.submit.status != 'done'"
    assert spec.tasks["generate"].steps[0].when is None


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("steps.later.x == 'a'", "steps.later: no earlier step named 'later'"),
        ("steps.submit.state == 'a'", "steps.submit.state: step 'submit' extracts no 'state'"),
        ("steps.submit.nope[0]", "steps.submit.nope: step 'submit' extracts no 'nope'"),
    ],
)
def test_when_references_are_checked(when: str, message: str) -> None:
    steps = [SUBMIT, {"name": "poll", "request": {"path": "/p"}, "when": when},
             {"name": "later", "request": {"path": "/l"}, "extract": {"x": "x"}}]  # fmt: skip
    spec, reports = _compile(steps)
    assert spec is None
    assert reports == [(("tasks", "generate", "steps", 1, "when"), "E203", message)]


def test_when_syntax_error_is_e211() -> None:
    spec, reports = _compile([{"name": "a", "request": {"path": "/a"}, "when": "steps.["}])
    assert spec is None
    assert [r[:2] for r in reports] == [(("tasks", "generate", "steps", 0, "when"), "E211")]


@pytest.mark.parametrize(
    ("source", "refs"),
    [
        ("steps.a.b == 'x' && steps.c", {"a": {"b"}, "c": set()}),
        ("length(steps.a.items[0]) > `1`", {"a": {"items"}}),
        ("n > `1` || extra.flag", {}),
    ],
)
def test_step_refs_of_an_expression(source: str, refs: dict[str, set[str]]) -> None:
    assert Expr(source).step_refs() == refs
