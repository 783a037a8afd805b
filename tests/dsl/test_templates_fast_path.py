"""The fast path for simple template expressions must give exactly what Jinja gives."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from engine.config.loader import build_snapshot
from engine.dsl.sizes import Size
from engine.dsl.templates import NativeExpr, RenderError, TextTemplate, compile_text
from engine.dsl.trees import ListNode, MapNode, compile_tree
from engine.runtime.calls.context import base_context, call_context
from engine.runtime.job import ImageJob, InputImage
from engine.runtime.routing.router import Attempt
from tests.dsl.shipped_steps import plain_steps
from tests.gateway import REPO


def _png() -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, "PNG")
    return InputImage(out.getvalue(), "image/png")


def leaves(node: Any) -> Iterator[NativeExpr | TextTemplate]:
    if isinstance(node, NativeExpr | TextTemplate):
        yield node
    elif isinstance(node, MapNode):
        for _, child in node.items:
            yield from leaves(child)
    elif isinstance(node, ListNode):
        for child in node.items:
            yield from leaves(child)


def slow(node: NativeExpr | TextTemplate, ctx: dict[str, Any]) -> Any:
    fast = node._fast
    node._fast = None
    try:
        return node.render(ctx)
    finally:
        node._fast = fast


JOBS = [
    ImageJob(task="generate", prompt="a cat"),
    ImageJob(
        task="generate",
        prompt="ü / ? #",
        n=3,
        seed=7,
        quality="hd",
        style="vivid",
        response_format="b64_json",
        output_format="webp",
        background="transparent",
        negative_prompt="dogs",
        extra={"watermark": True, "guidance_scale": 4.5, "steps": 0, "loras": {"a": 0.5}},
    ),
    ImageJob(task="edit", prompt="", images=[_png(), _png()], mask=_png(), extra={"cfg": None}),
]


def contexts() -> Iterator[tuple[str, dict[str, Any]]]:
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    for pid, provider in sorted(snap.providers.items()):
        for model in provider.models.values():
            for task in sorted(model.tasks & provider.tasks.keys()):
                attempt = Attempt("r", None, provider, model, task)  # type: ignore[arg-type]
                for i, job in enumerate(JOBS):
                    for stream in (False, True):
                        base = base_context(
                            job,
                            attempt,
                            Size(512, 768),
                            "k",
                            "req_1",
                            stream=stream,
                            partial_images=2 if stream else None,
                        )
                        ctx = call_context(base, job, 1, 2, 42)
                        ctx["steps"] = {}
                        yield f"{pid}/{model.name}/{task}/{i}/{stream}", ctx


def all_templates() -> list[NativeExpr | TextTemplate]:
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    found: list[NativeExpr | TextTemplate] = []
    for provider in snap.providers.values():
        for task in provider.tasks.values():
            for step in plain_steps(task):
                req = step.request
                for node in (
                    req.path,
                    req.url,
                    req.headers,
                    req.query,
                    req.json,
                    req.form,
                    req.body,
                ):
                    found.extend(leaves(node))
                for part in req.multipart or ():
                    found.extend(
                        n
                        for n in (part.value, part.file, part.filename)
                        if isinstance(n, NativeExpr | TextTemplate)
                    )
    return found


def test_every_shipped_template_renders_the_same_both_ways() -> None:
    templates = all_templates()
    fast = [t for t in templates if t._fast is not None]
    assert len(fast) > 0.8 * len(templates)  # the fast path really covers the shipped files
    compared = 0
    for label, ctx in contexts():
        for template in templates:
            if "steps." in template.source:
                continue  # needs earlier steps' values
            try:
                expected = slow(template, ctx)
            except Exception as exc:
                with pytest.raises(type(exc)):
                    template.render(ctx)
                continue
            assert template.render(ctx) == expected, (label, template.source)
            compared += 1
    assert compared > 1000


@pytest.mark.parametrize(
    "source",
    [
        "{{ extra.missing }}",
        "{{ extra.missing.deeper }}",
        "{{ params['k'] }}",
        "{{ n if n > 1 }}",
        "{{ 'b64_json' if response_format == 'b64_json' else 'url' }}",
        "{{ not stream }}",
        "x {{ prompt }} / {{ seed }}",
        "{{ images[0].data_uri if images }}",
        "{{ image.url }}",
        "{{ extra.items }}",
    ],
)
def test_expression_shapes(source: str) -> None:
    node = compile_text(source)
    assert isinstance(node, NativeExpr | TextTemplate)
    img = _png()
    for ctx in (
        {
            "extra": {},
            "params": {"k": 1},
            "n": 2,
            "response_format": "b64_json",
            "stream": False,
            "prompt": "p",
            "seed": None,
            "images": [img],
            "image": img,
        },
        {
            "extra": {"missing": {"deeper": 3}},
            "params": {"k": None},
            "n": 1,
            "response_format": "url",
            "stream": True,
            "prompt": "",
            "seed": 5,
            "images": [],
            "image": None,
        },
    ):
        assert node.render(ctx) == slow(node, ctx)


def test_data_uri_fast_path_matches() -> None:
    img = _png()
    node = compile_text("{{ image.data_uri }}")
    assert (
        node.render({"image": img})
        == "data:image/png;base64," + base64.b64encode(img.data).decode()
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ extra.flag is none }}",
        "{{ extra.flag is not none }}",
        "{{ seed is none }}",
        "{{ true if stream and params.gpt else none }}",
        "{{ stream or extra.x }}",
        "{{ n > 1 and n < 5 }}",
        "{{ extra.missing > 1 }}",  # Jinja raises on ordering an undefined: so must render
        "{{ extra.missing == 'x' }}",
        "{{ extra.missing != 'x' }}",
        "{{ 'a' if extra.k == 'v' else 'b' }}",
        "{{ partial_images if stream and params.gpt }}",
        "t {{ extra.missing }} {{ not extra.missing }}",
    ],
)
def test_more_expression_shapes(source: str) -> None:
    node = compile_text(source)
    assert isinstance(node, NativeExpr | TextTemplate)
    for ctx in (
        {
            "extra": {},
            "seed": None,
            "stream": False,
            "params": {"gpt": True},
            "n": 2,
            "partial_images": 2,
        },
        {
            "extra": {"flag": None, "x": 0, "k": "v", "missing": 3},
            "seed": 1,
            "stream": True,
            "params": {"gpt": True},
            "n": 7,
            "partial_images": None,
        },
        {
            "extra": {"flag": False},
            "seed": 0,
            "stream": True,
            "params": {},
            "n": 1,
            "partial_images": 0,
        },
    ):
        try:
            expected = slow(node, ctx)
        except Exception as exc:
            with pytest.raises(type(exc)):
                node.render(ctx)
            continue
        assert node.render(ctx) == expected, ctx


def maps_of(node: Any) -> Iterator[MapNode]:
    if isinstance(node, MapNode):
        yield node
        for _, child in node.items:
            yield from maps_of(child)
    elif isinstance(node, ListNode):
        for child in node.items:
            yield from maps_of(child)


def by_leaves(node: Any, ctx: dict[str, Any]) -> Any:
    """What a mapping renders to, leaf by leaf with Jinja: the generated function's model."""
    if isinstance(node, MapNode):
        out = {}
        for key, child in node.items:
            value = by_leaves(child, ctx)
            if value is not None and value != "":
                out[key] = value
        return out
    if isinstance(node, NativeExpr | TextTemplate):
        return node.jinja(ctx)
    return node.render(ctx)


def test_every_shipped_mapping_renders_as_jinja_renders_its_fields() -> None:
    """A mapping of templates (a JSON body, headers, a query) renders through one generated
    function: the same as its fields rendered one by one by Jinja, empty ones left out."""
    snap = build_snapshot(REPO, {}).snapshot
    assert snap is not None
    maps: dict[str, list[MapNode]] = {}
    for pid, provider in snap.providers.items():
        for task in provider.tasks.values():
            for step in plain_steps(task):
                req = step.request
                for node in (req.headers, req.query, req.json, req.form):
                    maps.setdefault(pid, []).extend(maps_of(node))
    compared = 0
    for label, ctx in contexts():
        for node in maps[label.split("/")[0]]:
            if any("steps." in leaf.source for leaf in leaves(node)):
                continue  # needs earlier steps' values
            try:
                expected = by_leaves(node, ctx)
            except Exception as exc:
                with pytest.raises(type(exc)):
                    node.render(ctx)
                continue
            assert node.render(ctx) == expected, (label, node)
            compared += 1
    assert compared > 500


def test_a_field_the_fast_code_cannot_answer_is_jinja_s_inside_a_mapping() -> None:
    node = compile_tree(
        {"a": "{{ extra.x > 1 }}", "b": "x {{ prompt }}", "c": "{{ seed }}", "d": 0, "e": ""}
    )
    assert isinstance(node, MapNode)
    assert node.render({"extra": {"x": 2}, "prompt": "p", "seed": None}) == {
        "a": True,
        "b": "x p",
        "d": 0,
    }
    with pytest.raises(RenderError, match=r"extra\.x > 1"):  # Jinja: an undefined is not ordered
        node.render({"extra": {}, "prompt": "p", "seed": 1})
