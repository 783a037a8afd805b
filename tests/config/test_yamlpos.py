"""Line and column of every YAML node, by path (engine/config/yamlpos.py)."""

from __future__ import annotations

import textwrap

import pytest

from engine.config.yamlpos import Located, YamlSyntaxError, load_located

Path = tuple[str | int, ...]

DOC = textwrap.dedent(
    """\
    # a comment line
    id: demo
    auth:
      header: Authorization
      keys: [k1, "k2"]
    models:
      m1: {sizes: [512x512, 1024x1024], max_n: 2}
      m2:
    tasks:
      generate:
        steps:
          - name: submit
            request:
              path: /x
          -   name: poll
              until: done
    list_of_lists:
      - - a
        - b
    multi: |
      line one
      line two
    """
)


@pytest.fixture(scope="module")
def located() -> Located:
    return load_located(DOC)


@pytest.mark.parametrize(
    ("path", "pos"),
    [
        ((), (2, 1)),
        (("id",), (2, 5)),
        (("auth", "header"), (4, 11)),
        (("auth", "keys"), (5, 9)),
        (("auth", "keys", 0), (5, 10)),
        (("auth", "keys", 1), (5, 14)),
        (("models", "m1"), (7, 7)),
        (("models", "m1", "sizes", 1), (7, 25)),
        (("models", "m1", "max_n"), (7, 44)),
        (("tasks", "generate", "steps", 0), (12, 9)),
        (("tasks", "generate", "steps", 0, "name"), (12, 15)),
        (("tasks", "generate", "steps", 0, "request", "path"), (14, 17)),
        (("tasks", "generate", "steps", 1), (15, 11)),
        (("tasks", "generate", "steps", 1, "until"), (16, 18)),
        (("list_of_lists", 0, 1), (19, 7)),
        (("multi",), (20, 8)),
    ],
)
def test_positions(located: Located, path: Path, pos: tuple[int, int]) -> None:
    assert located.where(path) == pos


def test_data_is_the_plain_document(located: Located) -> None:
    assert located.data["models"]["m1"] == {"sizes": ["512x512", "1024x1024"], "max_n": 2}
    assert located.data["models"]["m2"] is None
    assert located.data["multi"] == "line one\nline two\n"


def test_empty_value_points_at_the_key_line(located: Located) -> None:
    line, _ = located.where(("models", "m2"))
    assert line == 8


@pytest.mark.parametrize(
    ("path", "pos"),
    [
        # A missing key points at the deepest node that exists on the path.
        (("models", "m1", "tasks"), (7, 7)),
        (("models", "m1", "sizes", 5), (7, 15)),
        (("auth", "keys", 2, "x"), (5, 9)),
        (("tasks", "generate", "steps", 0, "name", "x"), (12, 15)),
        (("nope", "deeper"), (2, 1)),
    ],
)
def test_missing_paths_fall_back_to_the_nearest_ancestor(
    located: Located, path: Path, pos: tuple[int, int]
) -> None:
    assert located.where(path) == pos


def test_non_string_keys_are_addressed_as_strings() -> None:
    located = load_located("200: ok\n3.5: x\n")
    assert located.where(("200",)) == (1, 6)
    assert located.where(("3.5",)) == (2, 6)


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_empty_document(text: str) -> None:
    located = load_located(text)
    assert located.data is None
    assert located.where(("anything",)) == (1, 1)


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("a: 1\n  b: 2\n", 2, 4, "mapping values are not allowed here"),
        ("a:\n\t- x\n", 2, 1, "found character '\\t' that cannot start any token"),
        ("a: &x 1\nb: *y\n", 2, 4, "found undefined alias 'y'"),
        ("a: 1\n---\nb: 2\n", 2, 1, "but found another document"),
    ],
)
def test_syntax_errors_carry_line_and_column(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_located(text)
    assert (info.value.line, info.value.col) == (line, col)
    assert str(info.value).startswith(message)


def test_block_collection_value_is_located_at_its_key() -> None:
    located = load_located("a: 1\nextras:\n  # comment\n\n  steps: 4\nlist:\n- x\n")
    assert located.where(("extras",)) == (2, 1)
    assert located.where(("list",)) == (6, 1)


def test_unclosed_quote_says_where_it_started() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_located("a: 1\nb: 'open\nc: 2\n")
    assert "quoted scalar" in str(info.value)
    assert "line 2, column 4" in str(info.value)
