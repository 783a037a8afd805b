"""Fake Black Forest Labs API (provider-apis.md §12).

Routes (gateway base URL ``{base}``):

* ``POST /v1/{model}`` (endpoint ``"submit"``), header ``x-key``. ``flux-pro-1.1`` /
  ``flux-dev``: ``prompt``, ``width``/``height`` (multiples of 32, 256..1440), ``seed``,
  ``output_format`` (``jpeg|png``), ``safety_tolerance`` (0..6), ``prompt_upsampling``;
  ``flux-pro-1.1-ultra`` and ``flux-kontext-*``: ``aspect_ratio`` instead of width/height
  (plus ``raw`` for ultra, ``input_image`` as base64 or URL for Kontext). Answers
  ``{"id","polling_url","cost","input_mp","output_mp"}``. ``polling_host`` (e.g. ``localhost``
  while the gateway talks to ``127.0.0.1``) puts the polling URL on another host name, as BFL's
  regional hosts do.
* ``GET /v1/get_result?id=`` (endpoint ``"poll"``), header ``x-key``: ``Pending`` for
  ``pending_polls`` polls, then ``Ready`` with ``result.sample`` (a signed URL under
  ``/delivery/``) or a terminal status; an unknown id is ``Task not found``.
* ``GET /delivery/{name}`` (endpoint ``"delivery"``, no key): the sample.

Failures: ``server_error`` is a poll that ends in ``Error``; ``content_policy`` one that ends in
``Content Moderated``; the others are HTTP errors on submit (422 ``detail`` list, 403, 429).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    failure_of,
    image_bytes,
    image_info,
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    record_of,
    retry_after,
)

SIZED: Final = frozenset({"flux-pro-1.1", "flux-dev", "flux-pro"})
RATIO: Final = frozenset({"flux-pro-1.1-ultra", "flux-kontext-pro", "flux-kontext-max"})
RATIO_SIZES: Final = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "3:2": (1216, 832),
    "2:3": (832, 1216), "4:3": (1152, 896), "3:4": (896, 1152), "21:9": (1536, 640),
    "9:21": (640, 1536),
}  # fmt: skip
COMMON: Final = frozenset(
    {"prompt", "seed", "output_format", "safety_tolerance", "prompt_upsampling", "webhook_url",
     "webhook_secret"}
)  # fmt: skip


@dataclass
class _Task:
    prompt: str
    size: tuple[int, int]
    fmt: str
    polls: int = 0
    outcome: str = "Ready"


class BflState(FakeUpstream):
    provider = "bfl"
    endpoints = frozenset({"submit", "poll", "delivery"})
    public_endpoints = frozenset({"delivery"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"submit"})}

    def __init__(
        self, *, expected_key: str | None, pending_polls: int, polling_host: str | None
    ) -> None:
        super().__init__(expected_key=expected_key)
        self.pending_polls = pending_polls
        self.polling_host = polling_host
        self.tasks: dict[str, _Task] = {}

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-key")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return json_response({"detail": msg or "Too many active tasks"}, 429, retry_after())
        if kind == "bad_key":
            return json_response({"detail": msg or "Not authenticated - Invalid API key"}, 403)
        if kind == "malformed":
            return malformed_json_response('{"id":"t-1","polling_url":"http')
        return None  # server_error and content_policy: the task's final status says it


STATE: Final = web.AppKey("pixgate_fake_bfl", BflState)


def state(app: web.Application) -> BflState:
    return app[STATE]


def create_app(
    *, expected_key: str | None = None, pending_polls: int = 1, polling_host: str | None = None
) -> web.Application:
    st = BflState(expected_key=expected_key, pending_polls=pending_polls, polling_host=polling_host)
    app = make_app(st, STATE)
    app.router.add_get("/v1/get_result", _poll, name="poll")
    app.router.add_post("/v1/{model}", _submit, name="submit")
    app.router.add_get("/delivery/{name}", _delivery, name="delivery")
    return app


def _invalid(msg: str, loc: str) -> web.Response:
    return json_response(
        {"detail": [{"loc": ["body", loc], "msg": msg, "type": "value_error"}]}, 422
    )


def _validate(model: str, body: Any) -> _Task:
    if model not in SIZED | RATIO:
        raise ValueError("model")
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        raise ValueError("prompt")
    allowed = COMMON | ({"width", "height", "image_prompt"} if model in SIZED else {"aspect_ratio"})
    allowed |= {"raw", "image_prompt", "image_prompt_strength"} if "ultra" in model else set()
    allowed |= {"input_image"} if "kontext" in model else set()
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(unknown[0])
    if model in SIZED:
        size = (body.get("width", 1024), body.get("height", 768))
        if not all(isinstance(v, int) and 256 <= v <= 1440 and v % 32 == 0 for v in size):
            raise ValueError("width")
    else:
        size = RATIO_SIZES.get(body.get("aspect_ratio", "1:1"), (0, 0))
        if size == (0, 0):
            raise ValueError("aspect_ratio")
    source = body.get("input_image")
    if source is not None and not str(source).startswith("http"):
        try:
            image_info(base64.b64decode(str(source), validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("input_image") from None
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        raise ValueError("output_format")
    return _Task(body["prompt"], (int(size[0]), int(size[1])), body.get("output_format", "jpeg"))


async def _submit(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    model = request.match_info["model"]
    try:
        task = _validate(model, rec.json)
    except ValueError as exc:
        st.reject(f"submit {model}: {exc}")
        if str(exc) == "model":
            return json_response({"detail": "Not Found"}, 404)
        return _invalid(f"invalid value for {exc}", str(exc))
    failure = failure_of(request)
    if failure is not None:
        task.outcome = {"server_error": "Error", "content_policy": "Content Moderated"}[
            failure.kind
        ]
    tid = new_id()
    st.tasks[tid] = task
    url = request.url.with_path("/v1/get_result").with_query({"id": tid})
    if st.polling_host:
        url = url.with_host(st.polling_host)
    return json_response(
        {"id": tid, "polling_url": str(url), "cost": 4, "input_mp": 0, "output_mp": 1.05}
    )


async def _poll(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    tid = request.query.get("id", "")
    task = st.tasks.get(tid)
    if task is None:
        return json_response({"id": tid, "status": "Task not found", "result": None})
    task.polls += 1
    if task.polls <= st.pending_polls:
        return json_response({"id": tid, "status": "Pending", "result": None, "progress": 0.5})
    if task.outcome != "Ready":
        details = {"reason": "internal error"} if task.outcome == "Error" else None
        return json_response(
            {"id": tid, "status": task.outcome, "result": None, "details": details}
        )
    name = f"{tid}.{task.fmt}"
    st.store_file(
        name, image_bytes(task.fmt, *task.size, color_for(task.prompt)), f"image/{task.fmt}"
    )
    sample = f"{request.url.origin()}/delivery/{name}?se=2099-01-01&sig=fake"
    result = {"sample": sample, "prompt": task.prompt, "seed": 1234, "duration": 0.01}
    return json_response({"id": tid, "status": "Ready", "result": result, "progress": None})


async def _delivery(request: web.Request) -> web.StreamResponse:
    stored = state(request.app).files.get(request.match_info["name"])
    if stored is None:
        return web.Response(status=404, text="BlobNotFound")
    return web.Response(body=stored.data, content_type=stored.content_type)
