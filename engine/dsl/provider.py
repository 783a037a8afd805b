"""Compile one provider document (already schema-valid) into a ProviderSpec: its auth,
models, inputs and results; each task's steps are steps.py's."""

from __future__ import annotations

import re
from typing import Any

from ..pricing import compile_price
from .authscope import check_auth_scope
from .compiler import Compiler, Path, Report, origins
from .sizes import parse_size
from .spec import (
    AuthSpec,
    ErrorRule,
    InputsSpec,
    ModelSpec,
    ProviderSpec,
    SizeRule,
    TaskSpec,
)
from .steps import compile_task

DEFAULT_ERROR_MESSAGE = (
    "error.message || error_description || message || errors.message || errors[0].message"
    " || detail[0].msg || detail || title || error || failReason || description"
)


def compile_provider(doc: dict[str, Any], source: str, report: Report) -> ProviderSpec | None:
    c = Compiler(report)
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
            name: compile_task(c, spec, ("tasks", name))
            for name, spec in (doc.get("tasks") or {}).items()
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
        private_origins=origins(c, results.get("private_origins") or [], private_path),
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


def _auth(c: Compiler, raw: dict[str, Any]) -> AuthSpec:
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
        send_to=origins(c, raw.get("send_to") or [], ("auth", "send_to")),
    )


def _model(
    c: Compiler, name: str, raw: dict[str, Any], provider_params: dict[str, Any], path: Path
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
