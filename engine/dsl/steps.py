"""Compile a task's steps: requests, streams, extraction, polling, fan-outs, cancel, and the
check that a step refers only to what earlier steps extract."""

from __future__ import annotations

import contextlib
from typing import Any

from .compiler import Compiler, Path, origins
from .expressions import Expr
from .spec import (
    FanOutSpec,
    FanOutStep,
    PartSpec,
    RequestSpec,
    StepSpec,
    StreamSpec,
    TaskSpec,
)
from .templates import CONTEXT_NAMES, step_refs
from .trees import DEFAULT_AS, LOOP


def _leaf_strings(value: Any, path: Path) -> list[tuple[Path, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _leaf_strings(v, (*path, str(k)))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _leaf_strings(v, (*path, i))]
    return []


def compile_task(c: Compiler, raw: dict[str, Any], path: Path) -> TaskSpec:
    steps: list[StepSpec | FanOutStep] = []
    seen: dict[str, set[str]] = {}
    for i, step_raw in enumerate(raw["steps"]):
        step_path = (*path, "steps", i)
        _check_step_refs(c, step_raw, seen, step_path)
        if "fan_out" in step_raw:
            steps.append(_fan_out(c, step_raw, seen, step_path))
        else:
            steps.append(_step(c, step_raw, step_path))
        seen[step_raw["name"]] = set((step_raw.get("extract") or {}).keys())
    cancel = None
    if isinstance(raw.get("cancel"), dict):  # may read any step's values: it runs after them
        cancel_raw = {"name": "cancel", **raw["cancel"]}
        _check_step_refs(c, cancel_raw, seen, (*path, "cancel"))
        cancel = _step(c, cancel_raw, (*path, "cancel"))
    return TaskSpec(
        steps=tuple(steps),
        images_per_call=int(raw.get("images_per_call", 1)),
        parallel=int(raw.get("parallel", 4)),
        cancel=cancel,
    )


def _fan_out(c: Compiler, raw: dict[str, Any], seen: dict[str, set[str]], path: Path) -> FanOutStep:
    spec = raw["fan_out"]
    name = spec.get("as", DEFAULT_AS)
    if name in CONTEXT_NAMES | {LOOP}:
        c.error((*path, "fan_out", "as"), "E101", f"as: '{name}' is a context name")
    limit = spec.get("limit")
    fan_out = FanOutSpec(
        items=c.expr(spec["items"], (*path, "fan_out", "items")) or Expr("`[]`"),
        name=name,
        limit=limit if isinstance(limit, int) else None,
        limit_n=limit == "n",
        parallel=int(spec.get("parallel", 4)),
    )
    inner = dict(seen)
    steps: list[StepSpec] = []
    outer_names, c.names = c.names, c.names | {name, LOOP}
    try:
        for i, step_raw in enumerate(raw["steps"]):
            step_path = (*path, "steps", i)
            if "fan_out" in step_raw or step_raw["name"] in inner:
                why = "a fan-out cannot nest" if "fan_out" in step_raw else "name already used"
                c.error(step_path, "E101", f"step '{step_raw['name']}': {why}")
                continue
            _check_step_refs(c, step_raw, inner, step_path)
            steps.append(_step(c, step_raw, step_path))
            inner[step_raw["name"]] = set((step_raw.get("extract") or {}).keys())
    finally:
        c.names = outer_names
    return FanOutStep(
        name=raw["name"],
        fan_out=fan_out,
        steps=tuple(steps),
        when=c.expr(raw.get("when"), (*path, "when")),
    )


def _check_step_refs(
    c: Compiler, raw: dict[str, Any], seen: dict[str, set[str]], path: Path
) -> None:
    found = [
        (leaf, step_refs([source]))
        for leaf, source in _leaf_strings(raw.get("request"), (*path, "request"))
    ]
    expressions = [
        (("when",), raw.get("when")),
        (("fan_out", "items"), (raw.get("fan_out") or {}).get("items")),
    ]
    for where, source in expressions:
        if isinstance(source, str):
            with contextlib.suppress(ValueError):  # a syntax error is reported where it compiles
                found.append(((*path, *where), Expr(source).step_refs()))
    for leaf, refs in found:
        for step_name, variables in sorted(refs.items()):
            if step_name not in seen:
                c.error(leaf, "E203", f"steps.{step_name}: no earlier step named '{step_name}'")
                continue
            for var in sorted(variables - seen[step_name]):
                c.error(
                    leaf, "E203", f"steps.{step_name}.{var}: step '{step_name}' extracts no '{var}'"
                )


def _step(c: Compiler, raw: dict[str, Any], path: Path) -> StepSpec:
    request = _request(c, raw["request"], (*path, "request"))
    stream = _stream(c, raw.get("stream"), (*path, "stream"))
    response = raw.get("response", "sse" if stream else "auto")
    extract = []
    for var, source in (raw.get("extract") or {}).items():
        expr = c.expr(source, (*path, "extract", var))
        if expr is not None:
            extract.append((var, expr))
    step = StepSpec(
        name=raw["name"],
        request=request,
        response=response,
        stream=stream,
        extract=tuple(extract),
        until=c.expr(raw.get("until"), (*path, "until")),
        fail_if=c.expr(raw.get("fail_if"), (*path, "fail_if")),
        fail_kind=raw.get("fail_kind", "upstream"),
        every=c.duration(raw.get("every"), (*path, "every"), 2.0),
        first_after=c.duration(raw["first_after"], (*path, "first_after"), 0.0)
        if raw.get("first_after") is not None
        else None,
        backoff=float(raw.get("backoff", 1.0)),
        max_every=c.duration(raw.get("max_every"), (*path, "max_every"), 30.0),
        timeout=c.duration(raw.get("timeout"), (*path, "timeout"), 600.0),
        error_message=c.expr(raw.get("error_message"), (*path, "error_message")),
        images=c.expr(raw.get("images"), (*path, "images")),
        image_kind=raw.get("image_kind", "auto"),
        revised_prompt=c.expr(raw.get("revised_prompt"), (*path, "revised_prompt")),
        usage=c.expr(raw.get("usage"), (*path, "usage")),
        progress=c.expr(raw.get("progress"), (*path, "progress")),
        when=c.expr(raw.get("when"), (*path, "when")),
    )
    if response == "sse" and stream is None:
        c.error((*path, "stream"), "E101", "response: sse needs stream.done_event")
    if step.every <= 0 and step.polls:
        c.error((*path, "every"), "E231", "polling interval must be greater than zero")
    return step


# What `stream.image`, `stream.partial_image` read when not given (OpenAI's event fields).
DEFAULT_STREAM_IMAGE = "b64_json || url"
DEFAULT_PARTIAL_IMAGE = "b64_json"


def _stream(c: Compiler, raw: dict[str, Any] | None, path: Path) -> StreamSpec | None:
    if not raw:
        return None
    if not raw.get("done_event") and not raw.get("image_event"):
        c.error(path, "E101", "stream needs done_event, image_event or both")
    partial = raw.get("partial_event")
    image = raw.get("image_event")
    return StreamSpec(
        done_event=raw.get("done_event"),
        error_event=raw.get("error_event"),
        progress_event=raw.get("progress_event"),
        partial_event=partial,
        image_event=image,
        partial_image=c.expr(
            raw.get("partial_image", DEFAULT_PARTIAL_IMAGE) if partial else None,
            (*path, "partial_image"),
        ),
        partial_index=c.expr(
            raw.get("partial_index") if partial else None, (*path, "partial_index")
        ),
        image=c.expr(raw.get("image", DEFAULT_STREAM_IMAGE) if image else None, (*path, "image")),
    )


def _request(c: Compiler, raw: dict[str, Any], path: Path) -> RequestSpec:
    auth = raw.get("auth", True)  # true, false, or a list of more origins
    multipart = None
    if "multipart" in raw:
        parts = []
        for i, part in enumerate(raw["multipart"]):
            ppath = (*path, "multipart", i)
            parts.append(
                PartSpec(
                    name=part["name"],
                    value=c.text(part.get("value"), (*ppath, "value")),
                    file=c.text(part.get("file"), (*ppath, "file")),
                    filename=c.text(part.get("filename"), (*ppath, "filename")),
                    content_type=part.get("content_type"),
                )
            )
        multipart = tuple(parts)
    return RequestSpec(
        method=raw.get("method", "POST"),
        path=c.text(raw.get("path"), (*path, "path"), url=True),
        url=c.text(raw.get("url"), (*path, "url"), url=True),
        headers=c.mapping(raw.get("headers"), (*path, "headers")),
        query=c.mapping(raw.get("query"), (*path, "query")),
        json=c.tree(raw["json"], (*path, "json")) if "json" in raw else None,
        form=c.mapping(raw["form"], (*path, "form")) if "form" in raw else None,
        multipart=multipart,
        body=c.text(raw.get("body"), (*path, "body")),
        content_type=raw.get("content_type"),
        timeout=c.duration(raw.get("timeout"), (*path, "timeout"), 60.0),
        auth=auth is not False,
        auth_to=origins(c, auth, (*path, "auth")) if isinstance(auth, list) else (),
    )
