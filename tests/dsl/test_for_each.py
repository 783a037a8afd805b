"""`$for_each` list builders in request structures (engine/dsl/trees.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.templates import TemplateError
from engine.dsl.trees import compile_tree
from engine.runtime.job import InputImage

PNG = InputImage(b"\x89PNG\r\n\x1a\n-png-", "image/png")
JPG = InputImage(b"\xff\xd8\xff-jpg-", "image/jpeg", public_url="https://gw.test/files/a.jpg")
CTX: dict[str, Any] = {"prompt": "a cat", "images": [PNG, JPG], "image": PNG, "mask": None}

GEMINI_PARTS = {
    "contents": [{"parts": [
        {"text": "{{ prompt }}"},
        {"$for_each": "{{ images }}", "$as": "img",
         "$item": {"inlineData": {"mimeType": "{{ img.mime }}", "data": "{{ img.b64 }}"}}},
    ]}],
}  # fmt: skip


def test_items_are_spliced_into_a_list_in_order() -> None:
    body = compile_tree(GEMINI_PARTS).render(CTX)
    assert body == {"contents": [{"parts": [
        {"text": "a cat"},
        {"inlineData": {"mimeType": "image/png", "data": PNG.b64}},
        {"inlineData": {"mimeType": "image/jpeg", "data": JPG.b64}},
    ]}]}  # fmt: skip


def test_outside_a_list_it_is_a_list_and_item_is_the_default_name() -> None:
    tree = compile_tree({"refs": {"$for_each": "{{ images }}", "$item": "{{ item.url }}"}})
    assert tree.render(CTX) == {"refs": [PNG.data_uri, "https://gw.test/files/a.jpg"]}


def test_loop_variables_and_native_values() -> None:
    tree = compile_tree(
        {"$for_each": "{{ images }}", "$item": {
            "i": "{{ loop.index0 }}", "n": "{{ loop.index }}", "first": "{{ loop.first }}",
            "last": "{{ loop.last }}", "of": "{{ loop.length }}", "img": "{{ item }}",
        }},
    )  # fmt: skip
    assert tree.render(CTX) == [
        {"i": 0, "n": 1, "first": True, "last": False, "of": 2, "img": PNG},
        {"i": 1, "n": 2, "first": False, "last": True, "of": 2, "img": JPG},
    ]


@pytest.mark.parametrize(
    ("images", "expected"),
    [([], []), (None, []), (PNG, [{"u": PNG.data_uri}])],
)
def test_none_is_empty_and_a_single_value_is_one_item(images: Any, expected: Any) -> None:
    tree = compile_tree(
        ["{{ prompt }}", {"$for_each": "{{ images }}", "$item": {"u": "{{ item.url }}"}}]
    )
    assert tree.render({**CTX, "images": images}) == ["a cat", *expected]


def test_nested_builders_see_both_names() -> None:
    tree = compile_tree(
        {"$for_each": "{{ [1, 2] }}", "$as": "row", "$item": {
            "$for_each": "{{ images }}", "$as": "img", "$item": "{{ row }}-{{ img.mime }}"}},
    )  # fmt: skip
    assert tree.render(CTX) == [
        ["1-image/png", "1-image/jpeg"],
        ["2-image/png", "2-image/jpeg"],
    ]


@pytest.mark.parametrize(
    "value",
    [
        {"$for_each": "{{ images }}"},
        {"$item": "x"},
        {"$for_each": "{{ images }}", "$item": "x", "$items": "y"},
        {"$for_each": "{{ images }}", "$as": "images", "$item": "x"},
        {"$for_each": "{{ images }}", "$as": "loop", "$item": "x"},
        {"$for_each": "{{ images }}", "$as": "Img", "$item": "x"},
        {"$for_each": ["{{ images }}"], "$item": "x"},
    ],
)
def test_malformed_builders_are_e204(value: dict[str, Any]) -> None:
    with pytest.raises(TemplateError) as info:
        compile_tree({"a": [value]})
    assert info.value.code == "E204"


def test_the_item_name_is_unknown_outside_its_builder() -> None:
    with pytest.raises(TemplateError) as info:
        compile_tree({"a": {"$for_each": "{{ images }}", "$item": "x"}, "b": "{{ item }}"})
    assert info.value.code == "E202"


def test_every_problem_is_reported_with_its_path() -> None:
    seen: list[tuple[tuple[str | int, ...], str]] = []
    compile_tree(
        {"a": [{"$item": 1}], "b": {"$for_each": "{{ images }}", "$item": {"c": "{{ nope }}"}}},
        on_error=lambda path, exc: seen.append((path, exc.code)),
        path=("json",),
    )
    assert seen == [(("json", "a", 0), "E204"), (("json", "b", "$item", "c"), "E202")]
