"""`fan_out` steps compile once at load; their names and references are checked there."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.expressions import Expr
from engine.dsl.provider import compile_provider
from engine.dsl.spec import FanOutStep

GRID = {"name": "grid", "request": {"path": "/g"}, "extract": {"id": "id", "buttons": "b"}}


def _compile(steps: list[dict[str, Any]]) -> tuple[Any, list[tuple[Any, ...]]]:
    doc = {"id": "t", "base_url": "https://t.test", "auth": {"required": False},
           "models": {"m": None}, "tasks": {"generate": {"steps": steps}}}  # fmt: skip
    reports: list[tuple[Any, ...]] = []
    return compile_provider(doc, "t.yaml", lambda *a: reports.append(a)), reports


def _fan(sub: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"name": "up", "fan_out": {"items": "steps.grid.buttons", **spec}, "steps": sub}


BODY = {"b": "{{ button }}", "t": "{{ steps.grid.id }}", "i": "{{ loop.index }}"}
ACTION = {"name": "action", "request": {"path": "/a", "json": BODY}, "extract": {"task": "r"}}
FETCH = {"name": "fetch", "request": {"path": "/f/{{ steps.action.task }}"}, "images": "url"}


def test_a_fan_out_compiles_with_its_item_name_and_sub_steps() -> None:
    spec, reports = _compile([GRID, _fan([ACTION, FETCH], **{"as": "button", "limit": "n"})])
    assert reports == []
    step = spec.tasks["generate"].steps[1]
    assert isinstance(step, FanOutStep)
    assert (step.fan_out.name, step.fan_out.limit_n, step.fan_out.parallel) == ("button", True, 4)
    assert [s.name for s in step.steps] == ["action", "fetch"]


@pytest.mark.parametrize(
    ("steps", "where", "code"),
    [
        # the item name is only known inside its fan-out
        ([GRID, _fan([ACTION, FETCH])], ("steps", 1, "steps", 0, "request", "json", "b"), "E202"),
        ([GRID, _fan([FETCH], **{"as": "prompt"})], ("steps", 1, "fan_out", "as"), "E101"),
        ([GRID, _fan([{**FETCH, "name": "grid"}])], ("steps", 1, "steps", 0), "E101"),
        ([GRID, _fan([_fan([FETCH])])], ("steps", 1, "steps", 0), "E101"),
        ([_fan([FETCH]), GRID], ("steps", 0, "fan_out", "items"), "E203"),
        ([GRID, _fan([FETCH])], ("steps", 1, "steps", 0, "request", "path"), "E203"),
    ],
)
def test_problems_are_reported_where_they_are(
    steps: list[dict[str, Any]], where: tuple[Any, ...], code: str
) -> None:
    spec, reports = _compile(steps)
    assert spec is None
    assert ((("tasks", "generate", *where)), code) in [r[:2] for r in reports]


def test_slices_compile() -> None:
    """jmespath slice nodes hold numbers, not nodes (the fast compiler leaves them alone)."""
    assert Expr("buttons[1:3]").search({"buttons": [1, 2, 3, 4]}) == [2, 3]
