"""Text templates, fast code or Jinja, against a plain Jinja2 environment configured as the
docs say (sandboxed, chainable undefined, None written as nothing): the same text for every
kind of value, and no value kept after its render."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.dsl.templates import RenderError, compile_text
from engine.dsl.trees import compile_tree

REFERENCE = ImmutableSandboxedEnvironment(
    undefined=jinja2.ChainableUndefined,
    finalize=lambda value: "" if value is None else value,
    autoescape=False,
    keep_trailing_newline=False,
)

# Fast shapes and shapes left to Jinja (filters, calls, concatenation), each with text around
# so the leaf is a text template, not a native value.
SOURCES = [
    "a {{ prompt }} b",
    "{{ prompt }}{{ extra.k }}",
    "x {{ extra.k if extra else prompt }}",
    "{{ extra['k'] }} / {{ n }}",
    "[{{ prompt | string }}]",
    "[{{ extra.k | default('d') }}] {{ prompt }}",
    "{{ prompt ~ '!' }} {{ extra.k }}",
    "{{ extra | length if extra is mapping else 0 }} {{ prompt }}",
    "{{ prompt }} and {{ extra.k | tojson }}",
    # reads repeated within one template: made once, into a local
    "{{ extra.k }}-{{ extra.k }}-{{ extra['k'] }}",
    "= {{ extra.k.k if extra.k else extra }} {{ n if n is none else extra.k }}",
]

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
values = st.recursive(
    scalars | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    source=st.sampled_from(SOURCES),
    prompt=values,
    extra=values | st.dictionaries(st.just("k"), values, min_size=1),
    n=scalars,
)
def test_text_templates_render_as_plain_jinja(source: str, prompt: Any, extra: Any, n: Any) -> None:
    ctx = {"prompt": prompt, "extra": extra, "n": n}
    try:
        expected = REFERENCE.from_string(source).render(ctx)
    except Exception:
        return  # Jinja's own error: RenderError here, covered by test_templates.py
    assert compile_text(source).render(ctx) == expected


def test_a_list_or_dict_in_a_template_jinja_renders() -> None:
    # Jinja's path (a filter) hands each interpolation's value to the environment's finalize
    source = "{{ prompt | upper }}: {{ extra }} {{ images }}"
    ctx = {"prompt": "p", "extra": {"k": [1]}, "images": [None, "é"]}
    assert compile_text(source).render(ctx) == REFERENCE.from_string(source).render(ctx)


class _Value:
    def __str__(self) -> str:
        return "v"


def test_a_rendered_value_is_not_kept() -> None:
    # A prompt rendered by Jinja's path must not outlive its request (memory, privacy).
    template = compile_text("{{ prompt }} {{ extra | string }}")
    value = _Value()
    ref = weakref.ref(value)
    assert template.render({"prompt": value, "extra": 1}) == "v 1"
    del value
    gc.collect()
    assert ref() is None


MAPPING = {
    "p": "{{ prompt }}",
    "e": "{{ extra.k }}",
    "d": "{{ extra.k if extra is mapping else none }}",
    "l": "{{ [prompt, n] }}",
    "s": "{{ prompt | string }}",
    "t": "x {{ prompt }} {{ extra.k }}",
    "c": "const",
    "z": "",
}


def _reference_mapping(ctx: dict[str, Any]) -> dict[str, Any]:
    """Each field as Jinja gives it (a lone `{{ expr }}` keeps its type, an undefined is
    None), and the fields that come to None or "" left out (docs/providers.md)."""
    out = {}
    for key, source in MAPPING.items():
        text = source.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            value = REFERENCE.compile_expression(text[2:-2])(**ctx)
        else:
            value = REFERENCE.from_string(source).render(ctx)
        if value is not None and value != "":
            out[key] = value
    return out


@settings(max_examples=150, deadline=None)
@given(
    prompt=values,
    extra=values | st.dictionaries(st.just("k"), values, min_size=1),
    n=scalars,
)
def test_a_mapping_renders_as_jinja_renders_its_fields(prompt: Any, extra: Any, n: Any) -> None:
    ctx = {"prompt": prompt, "extra": extra, "n": n}
    try:
        expected = _reference_mapping(ctx)
    except Exception:
        return
    assert compile_tree(MAPPING).render(ctx) == expected


# Reads repeated across the fields (and within one), as OpenAI's body tests `params.gpt_image`
# in nine: the generated function reads each once, before the fields.
SHARED = {
    "a": "{{ extra.k if extra.k else prompt }}",
    "b": "{{ prompt if not extra.k }}",
    "c": "{{ extra.k.k }}",
    "d": "{{ [extra.k, extra['k'], n] }}",
    "e": "x {{ n }} {{ extra.k }}",
    "f": "{{ n if extra.k and n }}",
    "g": "{{ prompt is none }}",
    "h": "{{ prompt | string if extra.k }}",
}


def _reference(mapping: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
    """Each field as Jinja gives it (a lone `{{ expr }}` keeps its type, an undefined is
    None), and the fields that come to None or "" left out (docs/providers.md)."""
    out = {}
    for key, source in mapping.items():
        text = source.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            value = REFERENCE.compile_expression(text[2:-2])(**ctx)
        else:
            value = REFERENCE.from_string(source).render(ctx)
        if isinstance(value, list):
            value = [None if isinstance(v, jinja2.Undefined) else v for v in value]
        if value is not None and value != "" and not isinstance(value, jinja2.Undefined):
            out[key] = value
    return out


@settings(max_examples=200, deadline=None)
@given(
    prompt=values,
    extra=values | st.dictionaries(st.just("k"), values, min_size=1),
    n=scalars,
)
def test_a_mapping_that_repeats_reads_renders_as_jinja(prompt: Any, extra: Any, n: Any) -> None:
    ctx = {"prompt": prompt, "extra": extra, "n": n}
    try:
        expected = _reference(SHARED, ctx)
    except Exception:
        return
    assert compile_tree(SHARED).render(ctx) == expected


class _Reads(dict[str, Any]):
    """A context that counts the reads of each name."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.reads: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)


def test_a_repeated_read_is_made_once() -> None:
    ctx = _Reads({"prompt": "p", "extra": {"k": {"k": 1}}, "n": 2})
    assert compile_tree(SHARED).render(ctx) == _reference(SHARED, dict(ctx))
    assert ctx.reads == {"prompt": 1, "extra": 1, "n": 1}


def test_a_shared_read_that_raises_leaves_each_field_to_itself() -> None:
    # `extra.__class__` raises (the sandbox), read first for both fields; neither field reads
    # it when its condition is false, so Jinja gives the fields, and the mapping, without it.
    mapping = {"a": "{{ extra.__class__ if prompt }}", "b": "{{ extra.__class__ if n }}"}
    ctx = {"prompt": "", "extra": {}, "n": 1}
    with pytest.raises(RenderError, match="unsafe"):
        compile_tree(mapping).render(ctx)
    assert compile_tree(mapping).render({**ctx, "n": 0}) == _reference(mapping, {**ctx, "n": 0})
    assert compile_tree({**mapping, "c": "{{ n }}"}).render({**ctx, "n": 0}) == {"c": 0}
