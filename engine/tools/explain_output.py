"""`pixgate explain` output: an explanation as text or JSON, every configured key masked."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..runtime.redact import redact
from .explain_views import Explanation, StepView, size_text


def format_json(expl: Explanation) -> str:
    return scrub(json.dumps(expl.as_dict(), indent=2, ensure_ascii=False), expl.secrets)


def format_text(expl: Explanation) -> str:
    secrets = expl.secrets
    lines: list[str] = []
    add = lines.append
    job = expl.job
    if expl.diagnostics:
        add(f"pixgate explain: {expl.problem}:")
        lines += [f"  {d.format()}" for d in expl.diagnostics]
        return scrub("\n".join(lines), secrets)
    add(f"config: {expl.directory} (version {expl.version})")
    req = f"request: {job.task} model={job.model or '(none)'} prompt={job.prompt!r}"
    req += f" size={size_text(job.size) or 'auto'} n={job.n}"
    if job.seed is not None:
        req += f" seed={job.seed}"
    add(req)
    for image in expl.images:
        add(f"  input image: {image['file']} ({image['mime']}, {image['bytes']} bytes)")
    if expl.route is None:
        add(f"route: none: {expl.problem}")
        if expl.suggestions:
            add("  did you mean: " + ", ".join(expl.suggestions))
        return scrub("\n".join(lines), secrets)
    add(f"route: {expl.route} ({expl.resolution})")
    details = f"  strategy: {expl.strategy}"
    if expl.deadline is not None:
        details += f", deadline {format_duration(expl.deadline)}"
    if expl.fallbacks:
        details += f", fallbacks: {', '.join(expl.fallbacks)}"
    add(details)
    add("")
    add("targets:")
    for t in expl.targets:
        mark = "in " if t.selected else "out"
        add(
            f"  {mark} {t.provider}/{t.model} (route {t.route}, priority {t.priority}, "
            f"weight {t.weight:g}): {t.reason}"
        )
    if expl.attempts:
        add("")
        add("attempts, in order:")
    for a in expl.attempts:
        add(
            f"  {a.position}. {a.provider}: model {a.model} (route {a.route}, "
            f"strategy {a.strategy}, priority {a.priority}, weight {a.weight:g})"
        )
        if a.key is None:
            add("     key: none (this provider needs none and has none)")
        else:
            add(f"     key: {a.key} (1 of {a.keys}, {a.key_selection})")
        add(f"     circuit: {a.circuit} (fresh process)")
        if a.task != job.task:
            add(f"     runs its {a.task} task with the route's variation_prompt {a.prompt!r}")
        asked = a.size_requested or f"auto (default {a.size_default})"
        size = f"{asked} -> {a.size_used}"
        size += f" (allowed: {a.size_rule})"
        if a.size_adjusted:
            size += "; mapped to the nearest allowed size, reported in x-pixgate-size"
        add(f"     size: {size}")
        images = "+".join(str(c) for c in a.calls)
        noun = "image" if a.calls == [1] else "images"
        add(f"     calls: {len(a.calls)} ({images} {noun}), up to {a.parallel} at once")
    if expl.problem:
        add("")
        add(f"problem: {expl.problem}")
    for a in expl.attempts:
        if a.steps is None:
            continue
        add("")
        add(f"upstream requests of attempt {a.position} ({a.provider}, call 1), nothing sent:")
        for s in a.steps:
            lines += _step_lines(s)
    if expl.notes:
        add("")
        add("notes:")
        lines += [f"  - {n}" for n in expl.notes]
    return scrub("\n".join(lines), secrets)


def _step_lines(step: StepView) -> list[str]:
    if step.runs is False:
        return [f"  step {step.name}: skipped for this request (`when: {step.when}` is false)"]
    lines = [f"  step {step.name}:"]
    if step.when is not None:
        lines.append(
            f"    only when `{step.when}` (earlier answers decide at run time)"
            if step.runs is None
            else f"    runs: `when: {step.when}` holds for this request"
        )
    if step.error is not None:
        return [*lines, f"    cannot render: {step.error}"]
    lines.append(f"    {step.method} {step.url}")
    lines += [f"    {k}: {v}" for k, v in step.headers.items()]
    body = step.body
    if body is not None:
        lines.append("    body:")
        lines += ["      " + line for line in _body_lines(body)]
    lines.append(f"    (timeout {format_duration(step.timeout)})")
    lines += [f"    -> {b}" for b in step.behaviour]
    lines += [f"    note: {n}" for n in step.notes]
    return lines


def _body_lines(body: dict[str, Any]) -> list[str]:
    kind = body["kind"]
    if kind == "json":
        return json.dumps(body["json"], indent=2, ensure_ascii=False).splitlines()
    if kind == "form":
        return [f"{k}={v}" for k, v in body["fields"].items()] or ["(empty form)"]
    if kind == "multipart":
        out = []
        for part in body["parts"]:
            if "filename" in part:
                out.append(
                    f"part {part['name']}: file {part['filename']} "
                    f"({part['content_type']}, {part['size']} bytes)"
                )
            else:
                out.append(f"part {part['name']}: {part['value']!r}")
        return out
    return str(body.get("text", "")).splitlines() or [""]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Last line of defence: no configured key appears in the output, whatever a template did."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8:
            text = redact(text, secret)
    return text


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


Formatter = Callable[[Explanation], str]
FORMATTERS: dict[str, Formatter] = {"text": format_text, "json": format_json}
