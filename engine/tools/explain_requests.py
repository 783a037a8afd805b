"""An attempt's upstream requests as serve would send them, unknowns as placeholders, elided."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from aiohttp.multipart import MultipartWriter, parse_content_disposition

from ..dsl.sizes import Size, fit_size
from ..dsl.spec import FanOutStep, ProviderSpec, StepSpec
from ..runtime.calls.context import base_context, call_context, call_counts
from ..runtime.calls.fanout import loop_vars
from ..runtime.calls.upstream import Outgoing, build_request
from ..runtime.job import ImageJob
from ..runtime.routing.failures import UpstreamFailure
from ..runtime.routing.keys import mask_key
from ..runtime.routing.router import Attempt
from .explain_output import format_duration
from .explain_views import StepView

ELIDE_OVER = 64  # base64 strings and data URIs longer than this are shown by their length

_TOKEN = re.compile(r"PXGATE0PH(\d{4})0")
_DATA_URI = re.compile(r"data:([\w.+/-]+);base64,[A-Za-z0-9+/=]+")
_B64_RUN = re.compile(rf"[A-Za-z0-9+/]{{{ELIDE_OVER + 1},}}={{0,2}}")
_ADDED_BY_CLIENT = "(set by the HTTP client)"
_MEANINGS = {
    "<random_seed>": "a fresh random 31-bit integer per call",
    "<request_id>": "the id of the client's request (x-request-id)",
}


class Placeholders:
    """URL-safe tokens standing in for values a dry run cannot know (or must not show); they
    survive templates, percent-encoding and JSON, and are swapped for their display text."""

    def __init__(self) -> None:
        self.display: list[str] = []
        self.shown: list[str] = []  # display texts substituted so far, in order

    def token(self, display: str) -> str:
        self.display.append(display)
        return f"PXGATE0PH{len(self.display) - 1:04d}0"

    def text(self, value: str) -> str:
        return _TOKEN.sub(self._show, value)

    def _show(self, match: re.Match[str]) -> str:
        shown = self.display[int(match.group(1))]
        self.shown.append(shown)
        return shown

    def tree(self, value: Any) -> Any:
        """A JSON value for display: tokens replaced, long base64 and data URIs elided."""
        if isinstance(value, str):
            return elide(self.text(value))
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value


def elide(text: str) -> str:
    """`<base64, 123456 chars>` for long base64 runs, `<data:image/png;base64, N chars>` for
    data URIs; shorter ones stay."""

    def data_uri(m: re.Match[str]) -> str:
        whole = m.group(0)
        if len(whole) <= ELIDE_OVER:
            return whole
        return f"<data:{m.group(1)};base64, {len(whole)} chars>"

    text = _DATA_URI.sub(data_uri, text)
    return _B64_RUN.sub(lambda m: f"<base64, {len(m.group(0))} chars>", text)


def render_steps(job: ImageJob, attempt: Attempt, base_url: str, key: str | None) -> list[StepView]:
    """Every step of one call (the first) of one attempt, as serve would send it."""
    provider, model = attempt.provider, attempt.model
    task = provider.tasks[attempt.task]
    converted = job
    if provider.inputs is not None:
        from ..runtime.images.transforms import transform_job  # Pillow: only when needed

        try:
            converted = transform_job(job, provider.inputs)
        except UpstreamFailure as exc:
            return [StepView(task.steps[0].name, error=f"input images: {exc}")]
    job = converted
    ph = Placeholders()
    key_token = ph.token(mask_key(key)) if key is not None else None
    size = Size(*fit_size(job.size, model.sizes))
    per_call = model.images_per_call or task.images_per_call
    count = call_counts(job.n, per_call)[0]
    base = base_context(job, attempt, size, key_token, ph.token("<request_id>"))
    ctx = call_context(base, job, 0, count, ph.token("<random_seed>"))
    steps: dict[str, dict[str, Any]] = {}
    ctx["steps"] = steps
    views: list[StepView] = []
    ran = False  # a step before this one (certainly or maybe) runs
    for step in task.steps:
        runs = _runs(step, ctx)
        when = step.when.source if step.when else None
        if runs is False:
            views.append(StepView(step.name, when=when, runs=False))
            continue  # as at run time: no request, no values for later steps
        if isinstance(step, FanOutStep):
            views += _fan_out_views(step, runs, ctx, ph, base_url, provider, key_token)
        else:
            view = _render_step(step, not ran, ctx, ph, base_url, provider, key_token)
            view.when, view.runs = when, runs
            views.append(view)
            steps[step.name] = {
                name: ph.token(f"<steps.{step.name}.{name}>") for name, _ in step.extract
            }
        ran = True
    return views


def _fan_out_views(
    step: FanOutStep,
    runs: bool | None,
    ctx: dict[str, Any],
    ph: Placeholders,
    base_url: str,
    provider: ProviderSpec,
    key: str | None,
) -> list[StepView]:
    """The sub-steps of a fan-out as one item's requests, the item as a placeholder."""
    spec = step.fan_out
    item = ph.token(f"<{spec.name}: an item of {spec.items.source}>")
    own: dict[str, Any] = dict(ctx["steps"])
    item_ctx = {**ctx, spec.name: item, "loop": loop_vars(0, 1), "steps": own}
    limit = "n" if spec.limit_n else spec.limit
    head = f"fans out over `{spec.items.source}`" + (f", at most {limit} items" if limit else "")
    head += f", {spec.parallel} at a time; images in item order; per item:"
    views: list[StepView] = []
    for index, sub in enumerate(step.steps):
        sub_runs = _runs(sub, item_ctx)
        sub_when = sub.when.source if sub.when else None
        name = f"{step.name}[].{sub.name}"
        if sub_runs is False:
            views.append(StepView(name, when=sub_when, runs=False))
            continue
        view = _render_step(sub, False, item_ctx, ph, base_url, provider, key)
        view.name, view.when = name, sub_when
        view.runs = None if runs is None or sub_runs is None else True
        if index == 0:
            view.behaviour.insert(0, head)
        views.append(view)
        own[sub.name] = {n: ph.token(f"<steps.{sub.name}.{n}>") for n, _ in sub.extract}
    return views


def _runs(step: StepSpec | FanOutStep, ctx: dict[str, Any]) -> bool | None:
    """Whether a step runs for this request; None when its `when` reads earlier answers."""
    if step.when is None:
        return True
    if step.when.step_refs():
        return None
    return step.when.truthy(ctx)


def _render_step(
    step: StepSpec,
    first_step: bool,
    ctx: dict[str, Any],
    ph: Placeholders,
    base_url: str,
    provider: ProviderSpec,
    key: str | None,
) -> StepView:
    view = StepView(step.name, behaviour=_behaviour(step, first_step))
    notes: list[str] = []
    mark = len(ph.shown)
    try:
        out = build_request(step.request, ctx, base_url, provider.auth, key)
    except Exception as first:  # a template that computes with a placeholder, or a real bug
        try:
            fixed = {**ctx, "random_seed": 1234567890}
            out = build_request(step.request, fixed, base_url, provider.auth, key)
        except Exception:
            view.error = f"{type(first).__name__}: {first}"
            return view
        notes.append("random_seed is shown as 1234567890 (a template computes with it)")
    view.method = out.method
    view.timeout = out.timeout
    view.url = _display_url(step, ctx, out, ph)
    view.headers = {k: ph.text(v) for k, v in out.headers.items()}
    view.body, content_type, body_notes = _display_body(step, out, ph)
    notes += body_notes
    if content_type and not any(k.lower() == "content-type" for k in view.headers):
        view.headers["Content-Type"] = content_type
        notes.append(f"Content-Type {_ADDED_BY_CLIENT}")
    view.placeholders = [p for p in dict.fromkeys(ph.shown[mark:]) if p.startswith("<")]
    for name, meaning in _MEANINGS.items():
        if name in view.placeholders:
            notes.append(f"{name} is {meaning}")
    later = [p for p in view.placeholders if p.startswith("<steps.")]
    if later:
        notes.append(
            "depends on values an earlier step returns, unknown in a dry run: "
            + ", ".join(later)
            + " (shown as placeholders)"
        )
    view.notes = notes
    return view


def _display_url(step: StepSpec, ctx: Mapping[str, Any], out: Outgoing, ph: Placeholders) -> str:
    url = ph.text(str(out.url))
    if step.request.url is not None:
        # A URL handed over by an earlier step is absolute: it does not sit under base_url.
        rendered = str(step.request.url.render(ctx))
        if _TOKEN.match(rendered):
            query = out.url.raw_query_string
            url = ph.text(rendered) + (f"?{ph.text(query)}" if query else "")
    return url


def _display_body(
    step: StepSpec, out: Outgoing, ph: Placeholders
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(body for display, the Content-Type the client adds if none is set, notes)."""
    data = out.data
    request = step.request
    if data is None:
        return None, None, []
    if request.json is not None and isinstance(data, bytes):
        return {"kind": "json", "json": ph.tree(orjson.loads(data))}, "application/json", []
    if isinstance(data, dict):
        fields = {str(k): elide(ph.text(str(v))) for k, v in data.items()}
        return {"kind": "form", "fields": fields}, "application/x-www-form-urlencoded", []
    if isinstance(data, aiohttp.FormData):
        payload = data()
        if isinstance(payload, MultipartWriter):
            parts = [_part(p[0], ph) for p in payload]
            body = {"kind": "multipart", "parts": parts}
            return body, "multipart/form-data; boundary=<random>", []
        text = payload.decode() if hasattr(payload, "decode") else ""
        fields = {k: elide(ph.text(v)) for k, v in parse_qsl(text, keep_blank_values=True)}
        return (
            {"kind": "form", "fields": fields},
            "application/x-www-form-urlencoded",
            ["multipart without any file part: the HTTP client sends it url-encoded"],
        )
    if isinstance(data, bytes):
        body = {"kind": "text", "text": elide(ph.text(data.decode("utf-8", errors="replace")))}
        return body, "application/octet-stream", []
    return {"kind": "other", "text": repr(data)[:200]}, None, []


def _part(payload: Any, ph: Placeholders) -> dict[str, Any]:
    headers = payload.headers
    _, params = parse_content_disposition(headers.get("Content-Disposition"))
    part: dict[str, Any] = {
        "name": params.get("name"),
        "content_type": headers.get("Content-Type"),
        "size": payload.size,
    }
    if "filename" in params:
        part["filename"] = params["filename"]
    else:
        try:
            part["value"] = elide(ph.text(payload.decode()))
        except (UnicodeDecodeError, AttributeError):
            part["value"] = None
    return part


def _behaviour(step: StepSpec, first_step: bool) -> list[str]:
    out: list[str] = []
    if step.until is not None:
        line = f"polls until `{step.until.source}` every {format_duration(step.every)}"
        wait = step.first_wait(first_step)
        line += f" (the first after {format_duration(wait)})" if wait else " (the first at once)"
        if step.backoff != 1.0:
            line += f" (x{step.backoff:g} each time, at most {format_duration(step.max_every)})"
        out.append(line + f", for at most {format_duration(step.timeout)}")
        if step.fail_if is not None:
            out.append(f"fails ({step.fail_kind}) when `{step.fail_if.source}`")
    if step.stream is not None:
        stream = step.stream
        until = f"until event `{stream.done_event}`" if stream.done_event else "to its end"
        line = f"reads an event stream {until}"
        if stream.error_event:
            line += f" (`{stream.error_event}` means failure)"
        out.append(line)
        if stream.partial_event:
            out.append(f"previews from `{stream.partial_event}` events (when the client streams)")
        if stream.image_event:
            out.append(f"finished images from `{stream.image_event}` events")
    if step.response == "bytes":
        out.append("the answer's body is the image (response: bytes)")
    for name, expr in step.extract:
        out.append(f"extracts {name} = `{expr.source}` (steps.{step.name}.{name})")
    if step.images is not None:
        out.append(f"images from `{step.images.source}`")
    return out
