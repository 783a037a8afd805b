"""Request templates (engine/dsl/templates.py): native leaves, dropping, URL encoding, sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.templates import (
    CONTEXT_NAMES,
    Const,
    NativeExpr,
    RawText,
    RenderError,
    TemplateError,
    TextTemplate,
    compile_text,
    step_refs,
    template_sources,
)
from engine.dsl.trees import ListNode, MapNode, compile_tree
from engine.runtime.job import InputImage

PNG = InputImage(b"\x89PNG\r\n\x1a\n-png-", "image/png")
JPG = InputImage(b"\xff\xd8\xff-jpg-", "image/jpeg", public_url="https://gw.test/files/a.jpg")


@pytest.fixture
def ctx() -> dict[str, Any]:
    return {
        "prompt": "a cat",
        "n": 3,
        "seed": None,
        "size": {"width": 1024, "height": 768, "text": "1024x768", "aspect": "4:3"},
        "images": [PNG, JPG],
        "image": PNG,
        "mask": None,
        "extra": {"steps": 4, "loras": [{"name": "x", "scale": 0.5}], "flag": False},
        "params": {"gpt_image": True, "api_name": "infer"},
        "steps": {"submit": {"task_id": "t-1", "poll_url": "https://up.test/t/1?sig=a/b"}},
    }


# --- native types for whole-expression leaves -------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ n }}", 3),
        ("  {{ n }}  ", 3),
        ("{{ n > 1 }}", True),
        ("{{ size.width * 2 }}", 2048),
        ("{{ extra.loras }}", [{"name": "x", "scale": 0.5}]),
        ("{{ extra }}", {"steps": 4, "loras": [{"name": "x", "scale": 0.5}], "flag": False}),
        ("{{ extra.flag }}", False),
        ("{{ [n, size.width] }}", [3, 1024]),
        ("{{ seed }}", None),
        ("{{ seed if seed is not none else 7 }}", 7),
        ("{{ n if n > 5 }}", None),
        ("{{ extra.missing }}", None),
        ("{{ extra.missing.deeper }}", None),
        ("{{ steps.nope.task_id }}", None),
        ("{{ 'a' ~ n }}", "a3"),
        # `}}` inside the expression: still one expression (issue 13, defect 3)
        ("{{ {'a': {'b': 1}} }}", {"a": {"b": 1}}),
        (
            "{{ {'a': {'b': n}, 'c': [size.width, {'d': seed}]} }}",
            {"a": {"b": 3}, "c": [1024, {"d": None}]},
        ),
        ("{{ {'text': '}}'} }}", {"text": "}}"}),
        ("{{ {'a': extra.missing} }}", {"a": None}),
        ("{{ {'a': extra.missing | default(2)} }}", {"a": 2}),
    ],
)
def test_whole_expression_keeps_native_type(
    source: str, expected: Any, ctx: dict[str, Any]
) -> None:
    node = compile_text(source)
    assert isinstance(node, NativeExpr)
    value = node.render(ctx)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("source", ["{{ n }}{{ n }}", "{{ n }} and {{ n }}", "{{- n -}}"])
def test_two_outputs_or_whitespace_control_are_text(source: str, ctx: dict[str, Any]) -> None:
    node = compile_text(source)
    assert isinstance(node, TextTemplate)
    assert node.render(ctx) in ("33", "3 and 3", "3")


def test_whole_expression_returns_the_input_image_objects(ctx: dict[str, Any]) -> None:
    assert compile_text("{{ image }}").render(ctx) is PNG
    images = compile_text("{{ images }}").render(ctx)
    assert images == [PNG, JPG]
    assert all(a is b for a, b in zip(images, [PNG, JPG], strict=True))
    assert compile_text("{{ images[1] }}").render(ctx) is JPG
    assert compile_text("{{ image.data }}").render(ctx) == PNG.data


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("n={{ n }}", "n=3"),
        ("{{ n }}{{ n }}", "33"),
        ("{{ n }} images", "3 images"),
        ("{% if n > 1 %}many{% else %}one{% endif %}", "many"),
        ("seed={{ seed }}", "seed="),
        ("{{ size.width }}x{{ size.height }}", "1024x768"),
        ("Bearer {{ extra.missing }}", "Bearer "),
        # In text an input image stands for its URL: the gateway URL, else a data URI.
        ("{{ images[1] }} and more", "https://gw.test/files/a.jpg and more"),
        ("<{{ image }}>", "<" + PNG.data_uri + ">"),
    ],
)
def test_mixed_text_renders_a_string(source: str, expected: str, ctx: dict[str, Any]) -> None:
    node = compile_text(source)
    assert isinstance(node, TextTemplate)
    assert node.render(ctx) == expected


@pytest.mark.parametrize("source", ["plain", "", "{ not a template }", "50% off", "$x"])
def test_plain_strings_are_constants(source: str) -> None:
    node = compile_text(source)
    assert isinstance(node, Const)
    assert node.render({}) == source


# --- structures: empty mapping entries dropped, list items kept --------------------------


def test_mapping_drops_none_and_empty_string_but_keeps_falsy_values(ctx: dict[str, Any]) -> None:
    tree = compile_tree(
        {
            "prompt": "{{ prompt }}",
            "seed": "{{ seed }}",
            "style": "{{ extra.style }}",
            "empty": "",
            "null": None,
            "conditional": "{{ 'hd' if not params.gpt_image }}",
            "zero": 0,
            "zero_expr": "{{ n - 3 }}",
            "false": False,
            "false_expr": "{{ extra.flag }}",
            "empty_list": [],
            "empty_map": {},
            "nested": {"a": "{{ seed }}", "b": "{{ n }}"},
        }
    )
    assert isinstance(tree, MapNode)
    assert tree.render(ctx) == {
        "prompt": "a cat",
        "zero": 0,
        "zero_expr": 0,
        "false": False,
        "false_expr": False,
        "empty_list": [],
        "empty_map": {},
        "nested": {"b": 3},
    }


def test_list_keeps_every_item_in_position(ctx: dict[str, Any]) -> None:
    tree = compile_tree({"data": ["{{ prompt }}", "{{ seed }}", "", "{{ seed is none }}", None]})
    assert isinstance(tree, MapNode)
    assert isinstance(tree.items[0][1], ListNode)
    assert tree.render(ctx) == {"data": ["a cat", None, "", True, None]}


def test_tree_constants_pass_through(ctx: dict[str, Any]) -> None:
    tree = compile_tree({"a": 1, "b": 2.5, "c": True, "d": "x", "e": [1, {"f": "g"}]})
    assert tree.render(ctx) == {"a": 1, "b": 2.5, "c": True, "d": "x", "e": [1, {"f": "g"}]}


def test_render_does_not_share_state_between_calls(ctx: dict[str, Any]) -> None:
    tree = compile_tree({"prompt": "{{ prompt }}", "list": ["{{ n }}"]})
    first = tree.render(ctx)
    first["list"].append("mutated")
    assert tree.render({**ctx, "prompt": "dog", "n": 1}) == {"prompt": "dog", "list": [1]}


# --- URL paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("/image/{{ prompt }}", {"prompt": "a/b?c#d e é"}, "/image/a%2Fb%3Fc%23d%20e%20%C3%A9"),
        ("/p/{{ prompt | upper }}", {"prompt": "a b"}, "/p/A%20B"),
        ("/p/{{ prompt }}?x=1", {"prompt": "&="}, "/p/%26%3D?x=1"),
        ("/tasks/{{ steps.submit.task_id }}", {}, "/tasks/t-1"),
        ("/x/{{ n }}/y", {"n": 5}, "/x/5/y"),
        ("/x/{{ seed }}/y", {"seed": None}, "/x//y"),
        # `| raw` opts out of encoding for values that are already path segments.
        ("/call/{{ params.api_name | raw }}", {"params": {"api_name": "a/b c"}}, "/call/a/b c"),
        ("/a/{{ prompt | raw }}/{{ prompt }}", {"prompt": "x/y"}, "/a/x/y/x%2Fy"),
    ],
)
def test_url_interpolations_are_percent_encoded(
    source: str, values: dict[str, Any], expected: str, ctx: dict[str, Any]
) -> None:
    assert compile_text(source, url=True).render({**ctx, **values}) == expected


def test_whole_expression_url_is_kept_verbatim(ctx: dict[str, Any]) -> None:
    node = compile_text("{{ steps.submit.poll_url }}", url=True)
    assert isinstance(node, NativeExpr)
    assert node.render(ctx) == "https://up.test/t/1?sig=a/b"


def test_raw_filter_marks_text() -> None:
    value = compile_text("{{ prompt | raw }}").render({"prompt": "a/b"})
    assert value == "a/b"
    assert isinstance(value, RawText)


def test_text_templates_are_not_url_encoded(ctx: dict[str, Any]) -> None:
    assert compile_text("q={{ prompt }}/é").render({**ctx, "prompt": "a b"}) == "q=a b/é"


# --- sandbox -----------------------------------------------------------------------------

ABUSE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "x {{ ''.__class__.__mro__ }}",
    "{{ prompt.__class__.__mro__[1].__subclasses__() }}",
    "{{ image.__init__.__globals__ }}",
    "{{ image.__class__.__init__.__globals__['os'] }}",
    "{{ extra.update({'b': 2}) }}",
    "{{ extra.loras.append(1) }}",
    "{{ lipsum.__globals__ }}",
]


@pytest.mark.parametrize("source", ABUSE)
def test_sandbox_never_renders_python_internals(source: str, ctx: dict[str, Any]) -> None:
    before = repr(ctx["extra"])
    try:
        value = compile_text(source).render(ctx)
    except RenderError:
        pass
    else:
        text = repr(value)
        for leak in ("<class", "function", "module", "__", "object at 0x", "builtins"):
            assert leak not in text, f"{source} rendered {text[:120]}"
    assert repr(ctx["extra"]) == before, "the sandbox must not let templates mutate the context"


@pytest.mark.parametrize("source", ["{{ prompt.__class__.__mro__[1].__subclasses__() }}",
                                    "{{ extra.update({'b': 2}) }}"])  # fmt: skip
def test_sandbox_violation_on_call_is_a_render_error(source: str, ctx: dict[str, Any]) -> None:
    with pytest.raises(RenderError, match="unsafe"):
        compile_text(source).render(ctx)


@pytest.mark.parametrize(
    "source", ["{{ ''.__class__.__mro__ }}", "x {{ ''.__class__ }}", "{{ image.__init__ }}"]
)
def test_unsafe_attribute_access_is_a_render_error(source: str, ctx: dict[str, Any]) -> None:
    with pytest.raises(RenderError, match="unsafe"):
        compile_text(source).render(ctx)


@pytest.mark.parametrize("source", ["{{ extra.missing() }}", "x={{ extra.update({}) }}"])
def test_render_errors_name_the_template(source: str, ctx: dict[str, Any]) -> None:
    with pytest.raises(RenderError) as info:
        compile_text(source).render(ctx)
    assert str(info.value).startswith(source + ": ")


@pytest.mark.parametrize(
    "source",
    ["{{ n + prompt }}", "x={{ n + prompt }}", "{{ n / 0 }}", "{{ range(10**9) | list }}"],
)
def test_every_render_failure_is_a_render_error(source: str, ctx: dict[str, Any]) -> None:
    with pytest.raises(RenderError):
        compile_text(source).render(ctx)


# --- compile-time checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "unknown"),
    [
        ("{{ promt }}", "promt"),
        ("a {{ prompt }} {{ sed }}", "sed"),
        ("{% if foo %}x{% endif %}", "foo"),
        ("{{ prompt | default(fallback) }}", "fallback"),
        ("{{ zeta }}{{ alpha }}", "alpha, zeta"),
    ],
)
@pytest.mark.parametrize("url", [False, True])
def test_unknown_variables_are_rejected_at_compile_time(
    source: str, unknown: str, url: bool
) -> None:
    with pytest.raises(TemplateError) as info:
        compile_text(source, url=url)
    assert info.value.code == "E202"
    assert str(info.value).startswith(f"unknown template variable {unknown}; available: ")


def test_every_context_name_is_accepted() -> None:
    for name in sorted(CONTEXT_NAMES):
        compile_text("{{ " + name + " }}")


def test_locally_bound_names_are_not_unknown() -> None:
    node = compile_text("{% for i in images %}{{ loop.index }}{{ i.mime }},{% endfor %}")
    assert node.render({"images": [PNG, JPG]}) == "1image/png,2image/jpeg,"
    compile_text("{% set x = n * 2 %}{{ x }}")


@pytest.mark.parametrize(
    "source",
    ["{{ prompt }", "{{ prompt | }}", "{% if prompt %}x", "{{ key", "{% endfor %}", "{{ }}"],
)
def test_syntax_errors_are_e201(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_text(source)
    assert info.value.code == "E201"
    assert str(info.value).startswith("template syntax: ")


# --- step references ---------------------------------------------------------------------


def test_step_refs_collects_steps_and_variables() -> None:
    sources = [
        "/tasks/{{ steps.submit.task_id }}",
        "{{ steps.submit.poll_url }}",
        "{% if steps.check %}{{ steps.check.ok }}{% endif %}",
        "{{ steps.bare }}",
        "{{ prompt }}",
        "no template steps.fake.x",
    ]
    assert step_refs(sources) == {
        "submit": {"task_id", "poll_url"},
        "check": {"ok"},
        "bare": set(),
    }


def test_step_refs_understands_subscripts() -> None:
    assert step_refs(["{{ steps['nope'].task_id }}"]) == {"nope": {"task_id"}}


def test_template_sources_walks_structures() -> None:
    value = {"a": "{{ x }}", "b": ["plain", "{% if y %}{% endif %}", {"c": "{{ z }}"}], "d": 3}
    assert template_sources(value) == ["{{ x }}", "{% if y %}{% endif %}", "{{ z }}"]
