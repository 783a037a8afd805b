"""Fake midjourney-proxy (novicezk/midjourney-proxy, provider-apis.md §8).

Routes (gateway base URL ``{base}/mj``), header ``mj-api-secret`` when ``expected_key`` is set
(a wrong one gets a bare 401):

* ``POST /mj/submit/imagine`` (endpoint ``"imagine"``): ``prompt`` (``--ar W:H`` sets the
  ratio), optional ``base64Array`` of data URIs (image prompts).
* ``POST /mj/submit/blend`` (endpoint ``"blend"``): ``base64Array`` (2..5 data URIs),
  ``dimensions`` ``PORTRAIT|SQUARE|LANDSCAPE``.
* ``POST /mj/submit/change`` (endpoint ``"change"``): ``taskId`` of a finished IMAGINE or BLEND,
  ``action`` ``UPSCALE|VARIATION|REROLL``, ``index`` 1..4.
* ``GET /mj/task/{id}/fetch`` (endpoint ``"fetch"``): the Task; ``IN_PROGRESS`` with a
  ``progress`` string for ``pending_polls`` fetches, then ``SUCCESS`` with ``imageUrl`` (the
  2x2 grid, twice the upscale size, or an upscale) or ``FAILURE`` with ``failReason``; an
  unknown id is a 200 with an empty body.
* ``GET /attachments/{name}`` (endpoint ``"cdn"``, no key): Discord's CDN.

Submits answer ``{"code","description","result","properties"}`` with HTTP 200, failures
included. ``content_policy``: imagine answers code 24 (banned prompt); ``server_error``: the
task ends ``FAILURE``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    decode_data_uri,
    failure_of,
    image_bytes,
    image_info,
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    origin,
    record_of,
)

UPSCALE_SIZES: Final = {
    "1:1": (1024, 1024), "16:9": (1456, 816), "9:16": (816, 1456), "4:3": (1232, 928),
    "3:4": (928, 1232), "3:2": (1344, 896), "2:3": (896, 1344),
}  # fmt: skip
DIMENSIONS: Final = {"SQUARE": "1:1", "LANDSCAPE": "3:2", "PORTRAIT": "2:3"}
_AR: Final = re.compile(r"--ar\s+(\d+:\d+)")


@dataclass
class _Task:
    id: str
    action: str
    prompt: str
    ratio: str
    index: int = 0
    polls: int = 0
    fail: str | None = None

    def view(self, status: str, image_url: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "status": status,
            "prompt": self.prompt,
            "promptEn": self.prompt,
            "description": f"/{self.action.lower()} {self.prompt}",
            "state": None,
            "submitTime": 1689231405854,
            "startTime": 1689231442755,
            "finishTime": None if status == "IN_PROGRESS" else 1689231500000,
            "progress": {"IN_PROGRESS": "45%", "SUCCESS": "100%"}.get(status, ""),
            "imageUrl": image_url,
            "failReason": self.fail if status == "FAILURE" else None,
            "properties": {"finalPrompt": self.prompt},
        }


class MidjourneyState(FakeUpstream):
    provider = "midjourney"
    endpoints = frozenset({"imagine", "blend", "change", "fetch", "cdn"})
    public_endpoints = frozenset({"cdn"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"imagine", "blend"})}

    def __init__(self, *, expected_key: str | None, pending_polls: int) -> None:
        super().__init__(expected_key=expected_key)
        self.pending_polls = pending_polls
        self.tasks: dict[str, _Task] = {}

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("mj-api-secret")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind = failure.kind
        if kind == "bad_key":
            return web.Response(status=401)
        if kind == "rate_limit":
            return submit_result(23, "队列已满，请稍后尝试", None, {"numberOfQueues": 10})
        if kind == "malformed":
            return malformed_json_response('{"code":1,"description":"提交成功","res')
        if kind == "content_policy":
            props = {"promptEn": "x", "bannedWord": "gore"}
            return submit_result(24, failure.message or "可能包含敏感词", None, props)
        return None  # server_error: the task fails


STATE: Final = web.AppKey("pixgate_fake_midjourney", MidjourneyState)


def state(app: web.Application) -> MidjourneyState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, pending_polls: int = 1) -> web.Application:
    st = MidjourneyState(expected_key=expected_key, pending_polls=pending_polls)
    app = make_app(st, STATE)
    app.router.add_post("/mj/submit/imagine", _imagine, name="imagine")
    app.router.add_post("/mj/submit/blend", _blend, name="blend")
    app.router.add_post("/mj/submit/change", _change, name="change")
    app.router.add_get("/mj/task/{id}/fetch", _fetch, name="fetch")
    app.router.add_get("/attachments/{name}", _cdn, name="cdn")
    return app


def submit_result(
    code: int, description: str, result: str | None, properties: dict[str, Any] | None = None
) -> web.Response:
    body = {
        "code": code,
        "description": description,
        "result": result,
        "properties": properties or {},
    }
    return json_response(body)


def _pads(value: Any, lo: int, hi: int) -> None:
    if value is None and lo == 0:
        return
    if not isinstance(value, list) or not lo <= len(value) <= hi:
        raise ValueError(f"base64Array: {lo}..{hi} images")
    for item in value:
        decoded = decode_data_uri(str(item))
        if decoded is None:
            raise ValueError("base64Array: items must be data URIs")
        image_info(decoded[1])


def _submit(request: web.Request, action: str, prompt: str, ratio: str) -> web.Response:
    st = state(request.app)
    task = _Task(new_id()[:16], action, prompt, ratio)
    failure = failure_of(request)
    if failure is not None:  # server_error
        task.fail = failure.message or "Internal Error: the Discord account is unavailable"
    st.tasks[task.id] = task
    return submit_result(1, "提交成功", task.id, {"discordInstanceId": "1118138338562560102"})


async def _imagine(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    body = record_of(request).json
    prompt = body.get("prompt") if isinstance(body, dict) else None
    try:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt不能为空")
        _pads(body.get("base64Array"), 0, 5)
        match = _AR.search(prompt)
        ratio = match.group(1) if match else "1:1"
        if ratio not in UPSCALE_SIZES:
            raise ValueError(f"unsupported --ar {ratio}")
    except ValueError as exc:
        st.reject(str(exc))
        return submit_result(4, str(exc), None)
    return _submit(request, "IMAGINE", prompt, ratio)


async def _blend(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    body = record_of(request).json
    try:
        if not isinstance(body, dict):
            raise ValueError("body must be an object")
        _pads(body.get("base64Array"), 2, 5)
        ratio = DIMENSIONS.get(body.get("dimensions", "SQUARE"))
        if ratio is None:
            raise ValueError("dimensions: PORTRAIT|SQUARE|LANDSCAPE")
    except ValueError as exc:
        st.reject(str(exc))
        return submit_result(4, str(exc), None)
    return _submit(request, "BLEND", "", ratio)


async def _change(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    body = record_of(request).json
    parent = st.tasks.get(str(body.get("taskId"))) if isinstance(body, dict) else None
    if parent is None or parent.action not in ("IMAGINE", "BLEND"):
        st.reject(f"change: no such grid task {body!r:.80}")
        return submit_result(3, "关联任务不存在或已失效", None)
    if parent.polls <= st.pending_polls or parent.fail:
        st.reject("change: the grid is not finished")
        return submit_result(4, "关联任务状态错误", None)
    index = body.get("index")
    if body.get("action") != "UPSCALE" or not isinstance(index, int) or not 1 <= index <= 4:
        st.reject(f"change: bad action/index {body!r:.80}")
        return submit_result(4, "参数错误", None)
    task = _Task(new_id()[:16], "UPSCALE", parent.prompt, parent.ratio, index=index)
    st.tasks[task.id] = task
    return submit_result(1, "提交成功", task.id)


async def _fetch(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    task = st.tasks.get(request.match_info["id"])
    if task is None:
        return web.Response(status=200, content_type="application/json")  # `null`, no body
    task.polls += 1
    if task.polls <= st.pending_polls:
        return json_response(task.view("IN_PROGRESS", None))
    if task.fail:
        return json_response(task.view("FAILURE", None))
    width, height = UPSCALE_SIZES[task.ratio]
    if task.action != "UPSCALE":  # the 2x2 grid
        width, height = width * 2, height * 2
    name = f"{task.id}.png"
    if name not in st.files:
        st.store_file(
            name, image_bytes("png", width, height, color_for(task.prompt, task.index)), "image/png"
        )
    url = f"{origin(request)}/attachments/{name}?ex=66&is=65&hm=fake"
    return json_response(task.view("SUCCESS", url))


async def _cdn(request: web.Request) -> web.StreamResponse:
    stored = state(request.app).files.get(request.match_info["name"])
    if stored is None:
        return web.Response(status=404, text="This content is no longer available.")
    return web.Response(body=stored.data, content_type=stored.content_type)
