"""`${VAR}` / `${VAR:-default}` / `$$` in config strings (engine/config/interpolate.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config.diagnostics import format_path
from engine.config.interpolate import UnsetVariable, interpolate_string, interpolate_tree

ENV = {"HOST": "api.test", "PORT": "8080", "EMPTY": "", "SPACE": " "}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${HOST}", "api.test"),
        ("https://${HOST}:${PORT}/v1", "https://api.test:8080/v1"),
        ("${MISSING:-fallback}", "fallback"),
        ("${HOST:-fallback}", "api.test"),
        ("${MISSING:-}", ""),
        ("${MISSING:-a:b/c d}", "a:b/c d"),
        # Set but empty: a default wins; without a default the empty value is used as is.
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("[${SPACE:-x}]", "[ ]"),
        # `$$` escapes a dollar, so `$${X}` is the literal text `${X}`.
        ("$$", "$"),
        ("cost: $$5", "cost: $5"),
        ("$${HOST}", "${HOST}"),
        ("$$$${HOST}", "$${HOST}"),
        ("$$${HOST}", "$api.test"),
        # Not references: left alone.
        ("$HOST", "$HOST"),
        ("${}", "${}"),
        ("${1X}", "${1X}"),
        ("{{ key }}", "{{ key }}"),
        ("no dollar at all", "no dollar at all"),
    ],
)
def test_interpolate_string(text: str, expected: str) -> None:
    assert interpolate_string(text, ENV) == expected


@pytest.mark.parametrize("text", ["${MISSING}", "x ${HOST} ${MISSING} y"])
def test_unset_without_default_raises_with_the_name(text: str) -> None:
    with pytest.raises(UnsetVariable) as info:
        interpolate_string(text, ENV)
    assert info.value.name == "MISSING"


def test_default_is_not_itself_interpolated() -> None:
    assert interpolate_string("${MISSING:-${HOST}", ENV) == "${HOST"


def test_tree_interpolates_every_string_and_keeps_other_values() -> None:
    data: dict[str, Any] = {
        "base_url": "https://${HOST}",
        "n": 3,
        "flag": True,
        "none": None,
        "${HOST}": "keys are not interpolated",
        "list": ["${PORT}", 1.5, {"deep": "${MISSING:-d}"}],
    }
    reported: list[tuple[tuple[str | int, ...], str]] = []
    out = interpolate_tree(data, ENV, lambda path, name: reported.append((path, name)))
    assert out == {
        "base_url": "https://api.test",
        "n": 3,
        "flag": True,
        "none": None,
        "${HOST}": "keys are not interpolated",
        "list": ["8080", 1.5, {"deep": "d"}],
    }
    assert reported == []
    assert data["base_url"] == "https://${HOST}", "the input must not be modified"


def test_tree_reports_unset_variables_with_their_path_and_leaves_them_empty() -> None:
    data = {
        "auth": {"keys": ["k0", "${KEY_1}"], "value": "Bearer ${TOKEN}"},
        "tasks": [{"steps": [{"path": "/x/${PORT}/${SEG}"}]}],
        "ok": "${HOST}",
    }
    reported: list[tuple[tuple[str | int, ...], str]] = []
    out = interpolate_tree(data, ENV, lambda path, name: reported.append((path, name)))
    assert [(format_path(path), name) for path, name in reported] == [
        ("auth.keys[1]", "KEY_1"),
        ("auth.value", "TOKEN"),
        ("tasks[0].steps[0].path", "SEG"),
    ]
    assert out["auth"] == {"keys": ["k0", ""], "value": ""}
    assert out["tasks"][0]["steps"][0]["path"] == ""
    assert out["ok"] == "api.test"


def test_tree_reports_every_unset_name_of_a_string() -> None:
    reported: list[str] = []
    interpolate_tree({"a": "https://${ONE}:${TWO}"}, {}, lambda path, name: reported.append(name))
    assert reported == ["ONE", "TWO"]
