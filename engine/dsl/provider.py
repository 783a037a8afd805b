"""Compile one provider document (already schema-valid) into a ProviderSpec."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from ..pricing import compile_price
from .authscope import check_auth_scope
from .durations import parse_duration
from .expressions import Expr
from .origins import OriginPattern, parse_pattern
from .sizes import parse_size
from .spec import (
    AuthSpec,
    ErrorRule,
    FanOutSpec,
    FanOutStep,
    InputsSpec,
    ModelSpec,
    PartSpec,
    ProviderSpec,
    RequestSpec,
    SizeRule,
    StepSpec,
    StreamSpec,
    TaskSpec,
)
from .templates import CONTEXT_NAMES, Const, Renderable, TemplateError, compile_text, step_refs
from .trees import DEFAULT_AS, LOOP, MapNode, compile_tree

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]

DEFAULT_ERROR_MESSAGE = (
    "error.message || error_description || message || errors.message || errors[0].message"
    " || detail[0].msg || detail || title || error || failReason || description"
)


class _Compiler:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.failed = False
        self.names: frozenset[str] = frozenset()  # template names besides the context

    def error(self, path: Path, code: str, message: str) -> None:
        self.failed = True
        self.report(path, code, message)

    def expr(self, source: str | None, path: Path) -> Expr | None:
        if source is None:
            return None
        try:
            return Expr(source)
        except ValueError as exc:
            self.error(path, "E211", f"JMESPath: {exc}")
            return None

    def text(self, source: Any, path: Path, *, url: bool = False) -> Renderable | None:
        if source is None:
            return None
        if not isinstance(source, str):
            return Const(source)
        try:
            return compile_text(source, url=url, names=self.names)
        except TemplateError as exc:
            self.error(path, exc.code, str(exc))
            return None

    def tree(self, value: Any, path: Path) -> Renderable | None:
        failed = self.failed
        self.failed = False
        node = compile_tree(
            value,
            on_error=lambda where, exc: self.error(where, exc.code, str(exc)),
            path=path,
            names=self.names,
        )
        ok, self.failed = not self.failed, failed or self.failed
        return node if ok else None

    def mapping(self, value: dict[str, Any] | None, path: Path) -> MapNode:
        node = self.tree(value or {}, path)
        return node if isinstance(node, MapNode) else MapNode(())

    def duration(self, value: Any, path: Path, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, "E231", str(exc))
            return default


def _leaf_strings(value: Any, path: Path) -> list[tuple[Path, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _leaf_strings(v, (*path, str(k)))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _leaf_strings(v, (*path, i))]
    return []


def compile_provider(doc: dict[str, Any], source: str, report: Report) -> ProviderSpec | None:
    c = _Compiler(report)
    auth = _auth(c, doc.get("auth") or {})
    params = dict(doc.get("params") or {})
    kind = doc.get("kind", "image")
    if kind == "chat":
        for name in ("models", "tasks"):
            if name in doc:
                c.error(
                    (name,),
                    "E101",
                    f"a `kind: chat` provider has no {name}: it only gives base_url and auth "
                    "for a route's prompt_optimizer",
                )
        models: dict[str, ModelSpec] = {}
        tasks: dict[str, TaskSpec] = {}
    else:
        models = {
            name: _model(c, name, spec or {}, params, ("models", name))
            for name, spec in (doc.get("models") or {}).items()
        }
        tasks = {
            name: _task(c, spec, ("tasks", name)) for name, spec in (doc.get("tasks") or {}).items()
        }
    for name, model in models.items():
        for task in sorted(model.tasks - tasks.keys()):
            c.error(
                ("models", name, "tasks"),
                "E101",
                f"model serves '{task}' but tasks has no '{task}'",
            )
    any_model = doc.get("any_model")
    if any_model is not None and any_model not in models:
        c.error(
            ("any_model",),
            "E101",
            f"'{any_model}' is not one of this file's models "
            f"(declared: {', '.join(sorted(models)) or 'none'})",
        )
    rules = []
    for i, rule in enumerate(doc.get("errors") or []):
        when = c.expr(rule["when"], ("errors", i, "when"))
        message = c.expr(rule.get("message"), ("errors", i, "message"))
        if when is not None:
            rules.append(ErrorRule(when, rule["kind"], message))
    error_message = c.expr(doc.get("error_message") or DEFAULT_ERROR_MESSAGE, ("error_message",))
    results = doc.get("results") or {}
    private_path = ("results", "private_origins")
    if c.failed or error_message is None:
        return None
    check_auth_scope(str(doc["base_url"]), auth, tasks, report)
    return ProviderSpec(
        id=doc["id"],
        title=doc.get("title") or doc["id"],
        description=doc.get("description") or "",
        base_url=str(doc["base_url"]).rstrip("/"),
        auth=auth,
        models=models,
        tasks=tasks,
        errors=tuple(rules),
        error_message=error_message,
        rehost_urls=bool(results.get("rehost_urls", False)),
        private_origins=_origins(c, results.get("private_origins") or [], private_path),
        params=params,
        source=source,
        kind=kind,
        any_model=any_model,
        inputs=_inputs(doc.get("inputs")),
    )


_BYTES = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB)?\s*$")
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024 * 1024}


def _inputs(raw: dict[str, Any] | None) -> InputsSpec | None:
    """`inputs:` (already schema-valid: `max_bytes` matches the byte-size pattern)."""
    if not raw:
        return None
    max_bytes = raw.get("max_bytes")
    if isinstance(max_bytes, str) and (match := _BYTES.match(max_bytes)):
        max_bytes = int(float(match.group(1)) * _UNITS[match.group(2)])
    return InputsSpec(
        format=raw.get("format"),
        max_side=raw.get("max_side"),
        max_bytes=max_bytes if isinstance(max_bytes, int) else None,
        mask=raw.get("mask"),
    )


def _auth(c: _Compiler, raw: dict[str, Any]) -> AuthSpec:
    keys_raw = raw.get("keys") or ()
    if isinstance(keys_raw, str):
        keys_raw = keys_raw.split(",")
    keys = tuple(dict.fromkeys(k.strip() for k in keys_raw if k and k.strip()))
    pattern = None
    if raw.get("key_pattern"):
        try:
            pattern = re.compile(raw["key_pattern"])
        except re.error as exc:
            c.error(("auth", "key_pattern"), "E221", f"regex: {exc}")
    header = raw.get("header")
    value = c.text(raw.get("value") or "{{ key }}", ("auth", "value")) if header else None
    return AuthSpec(
        header=header,
        value=value,
        query=raw.get("query"),
        keys=keys,
        key_pattern=pattern,
        required=bool(raw.get("required", bool(header or raw.get("query")))),
        send_to=_origins(c, raw.get("send_to") or [], ("auth", "send_to")),
    )


def _origins(c: _Compiler, raw: list[str], path: Path) -> tuple[OriginPattern, ...]:
    patterns = []
    for i, text in enumerate(raw):
        try:
            patterns.append(parse_pattern(str(text)))
        except ValueError as exc:
            c.error((*path, i), "E251", str(exc))
    return tuple(patterns)


def _model(
    c: _Compiler, name: str, raw: dict[str, Any], provider_params: dict[str, Any], path: Path
) -> ModelSpec:
    sizes = raw.get("sizes")
    rule_args: dict[str, Any] = {}
    try:
        if isinstance(sizes, list):
            rule_args["choices"] = tuple(parse_size(s) for s in sizes)
        elif isinstance(sizes, dict):
            for key in ("min", "max"):
                if key in sizes:
                    rule_args[key] = parse_size(sizes[key])
            rule_args["multiple_of"] = int(sizes.get("multiple_of", 1))
            if "max_pixels" in sizes:
                rule_args["max_pixels"] = int(sizes["max_pixels"])
        if raw.get("default_size"):
            rule_args["default"] = parse_size(raw["default_size"])
        elif rule_args.get("choices"):
            choices = rule_args["choices"]
            rule_args["default"] = (1024, 1024) if (1024, 1024) in choices else choices[0]
    except ValueError as exc:
        c.error((*path, "sizes"), "E241", str(exc))
    return ModelSpec(
        name=name,
        title=raw.get("title") or name,
        tasks=frozenset(raw.get("tasks") or ["generate"]),
        sizes=SizeRule(**rule_args),
        max_n=int(raw.get("max_n", 4)),
        images_per_call=int(raw["images_per_call"]) if "images_per_call" in raw else None,
        max_images=int(raw.get("max_images", 16)),
        response_format=raw.get("response_format"),
        pricing=compile_price(raw.get("pricing")),
        params={**provider_params, **(raw.get("params") or {})},
    )


def _task(c: _Compiler, raw: dict[str, Any], path: Path) -> TaskSpec:
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


def _fan_out(
    c: _Compiler, raw: dict[str, Any], seen: dict[str, set[str]], path: Path
) -> FanOutStep:
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
    c: _Compiler, raw: dict[str, Any], seen: dict[str, set[str]], path: Path
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


def _step(c: _Compiler, raw: dict[str, Any], path: Path) -> StepSpec:
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


def _stream(c: _Compiler, raw: dict[str, Any] | None, path: Path) -> StreamSpec | None:
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


def _request(c: _Compiler, raw: dict[str, Any], path: Path) -> RequestSpec:
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
        auth_to=_origins(c, auth, (*path, "auth")) if isinstance(auth, list) else (),
    )
