"""`from_json`: JSON inside a string, as a Jinja filter and a JMESPath function."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.dsl.expressions import Expr
from engine.dsl.templates import RenderError, compile_text
from engine.rawtext import loads

FIELDS = '{"key": "uploads/a.png", "policy": "cG9s", "n": 2}'
CTX: dict[str, Any] = {"steps": {"init": {"fields": FIELDS, "bad": "{nope"}}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ steps.init.fields | from_json }}", {"key": "uploads/a.png", "policy": "cG9s", "n": 2}),
        ("{{ (steps.init.fields | from_json).key }}", "uploads/a.png"),
        ("{{ (steps.init.fields | from_json)['n'] + 1 }}", 3),
        ("{{ steps.init.missing | from_json }}", None),
        ("key={{ (steps.init.fields | from_json).key }}", "key=uploads/a.png"),
    ],
)
def test_filter(source: str, expected: Any) -> None:
    assert compile_text(source).render(CTX) == expected


def test_filter_on_text_that_is_not_json_fails_the_render() -> None:
    with pytest.raises(RenderError, match="from_json: not JSON"):
        compile_text("{{ steps.init.bad | from_json }}").render(CTX)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from_json(upload.fields).key", "uploads/a.png"),
        ("from_json(upload.fields)", {"key": "uploads/a.png", "policy": "cG9s", "n": 2}),
        ("from_json(upload.bad)", None),
        ("from_json(upload.missing)", None),
        ("from_json(upload.list)[1]", 2),
        ("from_json(upload.number)", None),  # not a string: no match, as for any type error
    ],
)
def test_jmespath_function(source: str, expected: Any) -> None:
    body = {"upload": {"fields": FIELDS, "bad": "{nope", "list": "[1, 2]", "number": 5}}
    assert Expr(source).search(body) == expected


def test_jmespath_function_reads_long_strings_kept_unparsed() -> None:
    """A successful answer's long strings stay raw bytes (engine/rawtext.py); from_json gets
    the real string."""
    inner = '{"data": "' + "A" * 70000 + '"}'
    body = loads(('{"payload": ' + json.dumps(inner) + "}").encode())
    assert Expr("length(from_json(payload).data)").search(body) == 70000
