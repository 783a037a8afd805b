"""Text templates, fast code or Jinja, against a plain Jinja2 environment configured as the
docs say (sandboxed, chainable undefined, None written as nothing): the same text for every
kind of value, and no value kept after its render."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import jinja2
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.dsl.templates import compile_text
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
