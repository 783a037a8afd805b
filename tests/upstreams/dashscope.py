"""Fake Alibaba Cloud Model Studio (DashScope) Wan text-to-image, the asynchronous task API.

Routes (gateway base URL ``{base}/api/v1``):

* ``POST /api/v1/services/aigc/text2image/image-synthesis`` (endpoint ``"submit"``): Bearer
  auth; requires ``X-DashScope-Async: enable`` (else 403 ``AccessDenied``, as DashScope answers
  a synchronous call). JSON ``model``, ``input: {prompt, negative_prompt}``, ``parameters:
  {size: "W*H" (512..1440 each side), n (1..4), seed, prompt_extend, watermark}``. Answers
  ``{"output": {"task_status": "PENDING", "task_id"}, "request_id"}``.
* ``GET /api/v1/tasks/{task_id}`` (endpoint ``"poll"``): the first ``pending_polls`` polls
  answer ``PENDING`` then ``RUNNING``; the next ``SUCCEEDED`` with ``output.results[]``
  (``orig_prompt``, ``actual_prompt``, ``url``) and ``usage.image_count``.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): the result PNGs.

Errors are ``{"code", "message", "request_id"}``; a failed task is HTTP 200 with
``output.task_status: FAILED`` and ``output.code`` / ``output.message``. Scripted kinds beyond
the generic ones: ``task_failed`` and ``output_moderation`` (a FAILED task, on the poll).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    GENERIC_FAILURES,
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    failure_of,
    image_bytes,
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    origin,
    record_of,
    retry_after,
    serve_files,
)

_SIZE: Final = re.compile(r"^([0-9]{3,4})\*([0-9]{3,4})$")
PARAMETERS: Final = frozenset({"size", "n", "seed", "prompt_extend", "watermark"})


@dataclass(slots=True)
class Task:
    task_id: str
    prompt: str
    width: int
    height: int
    n: int
    seed: Any
    polls: int = 0
    status: str = "PENDING"
    output: dict[str, Any] = field(default_factory=dict)


class DashScopeState(FakeUpstream):
    provider = "dashscope"
    endpoints = frozenset({"submit", "poll", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = GENERIC_FAILURES | {"task_failed", "output_moderation"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "task_failed": frozenset({"poll"}),
        "output_moderation": frozenset({"poll"}),
        "*": frozenset({"submit"}),
    }

    def __init__(self, *, expected_key: str | None = None, pending_polls: int = 2) -> None:
        super().__init__(expected_key=expected_key)
        self.pending_polls = pending_polls
        self.tasks: dict[str, Task] = {}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return ds_error(
                429, "Throttling.RateQuota", msg or "Requests rate limit exceeded.", retry_after()
            )
        if kind == "bad_key":
            return ds_error(401, "InvalidApiKey", msg or "Invalid API-key provided.")
        if kind == "server_error":
            return ds_error(500, "InternalError", msg or "An internal error has occured.")
        if kind == "malformed":
            return malformed_json_response('{"output": {"task_status": "PEND')
        if kind == "content_policy":
            return ds_error(
                400, "DataInspectionFailed", msg or "Input data may contain inappropriate content."
            )
        return None  # task_failed / output_moderation: the poll handler fails the task


STATE: Final = web.AppKey("pixgate_fake_dashscope", DashScopeState)


def state(app: web.Application) -> DashScopeState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, pending_polls: int = 2) -> web.Application:
    app = make_app(DashScopeState(expected_key=expected_key, pending_polls=pending_polls), STATE)
    app.router.add_post("/api/v1/services/aigc/text2image/image-synthesis", _submit, name="submit")
    app.router.add_get("/api/v1/tasks/{task_id}", _poll, name="poll")
    app.router.add_get("/files/{name}", serve_files("NoSuchKey"), name="files")
    return app


def ds_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response(
        {"code": code, "message": message, "request_id": new_id()}, status, headers
    )


def _validate(body: Any) -> Task:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError('Required parameter "model" missing from request.')
    inp = body.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("prompt"), str) or not inp["prompt"]:
        raise ValueError("Required input parameter missing from request.")
    params = body.get("parameters", {})
    if not isinstance(params, dict) or set(params) - PARAMETERS:
        raise ValueError(f"Unknown parameters: {sorted(set(params) - PARAMETERS)}")
    match = _SIZE.match(str(params.get("size", "1024*1024")))
    width, height = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (512 <= width <= 1440 and 512 <= height <= 1440):
        raise ValueError(f"The size {params.get('size')!r} is invalid: W*H, 512 to 1440.")
    n = params.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
        raise ValueError(f"The n {n!r} is invalid: 1 to 4.")
    return Task(new_id(), inp["prompt"], width, height, n, params.get("seed"))


async def _submit(request: web.Request) -> web.StreamResponse:
    st, rec = state(request.app), record_of(request)
    if request.headers.get("X-DashScope-Async") != "enable":
        st.reject("submit: no X-DashScope-Async: enable")
        return ds_error(403, "AccessDenied", "current user api does not support synchronous calls.")
    try:
        task = _validate(rec.json)
    except ValueError as exc:
        st.reject(f"submit: {exc}")
        return ds_error(400, "InvalidParameter", str(exc))
    st.tasks[task.task_id] = task
    output = {"task_status": "PENDING", "task_id": task.task_id}
    return json_response({"output": output, "request_id": new_id()})


def _advance(st: DashScopeState, task: Task, request: web.Request) -> None:
    task.polls += 1
    failure = failure_of(request)
    if failure is not None:
        code, message = (
            ("DataInspectionFailed", "Output data may contain inappropriate content.")
            if failure.kind == "output_moderation"
            else ("InternalError.Algo", failure.message or "An internal error has occured.")
        )
        task.status, task.output = "FAILED", {"code": code, "message": message}
    elif task.polls <= st.pending_polls:
        task.status = "PENDING" if task.polls == 1 else "RUNNING"
    else:
        results = []
        for i in range(task.n):
            name = f"{task.task_id}-{i}.png"
            color = color_for(task.prompt, task.seed, i)
            st.store_file(name, image_bytes("png", task.width, task.height, color), "image/png")
            results.append(
                {
                    "orig_prompt": task.prompt,
                    "actual_prompt": f"{task.prompt}, detailed",
                    "url": f"{origin(request)}/files/{name}",
                }
            )
        task.status = "SUCCEEDED"
        task.output = {
            "results": results,
            "task_metrics": {"TOTAL": task.n, "SUCCEEDED": task.n, "FAILED": 0},
        }


async def _poll(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    task = st.tasks.get(request.match_info["task_id"])
    if task is None:
        st.reject(f"poll: unknown task {request.match_info['task_id']!r}")
        output = {"task_id": request.match_info["task_id"], "task_status": "UNKNOWN"}
        return json_response({"output": output, "request_id": new_id()})
    if task.status not in ("SUCCEEDED", "FAILED"):
        _advance(st, task, request)
    body: dict[str, Any] = {
        "request_id": new_id(),
        "output": {"task_id": task.task_id, "task_status": task.status, **task.output},
    }
    if task.status == "SUCCEEDED":
        body["usage"] = {"image_count": task.n}
    return json_response(body)
