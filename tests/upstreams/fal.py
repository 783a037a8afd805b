"""Fake fal.ai queue API (provider-apis.md §10).

Routes (gateway base URL ``{base}``, standing for ``https://queue.fal.run``):

* ``POST /{owner}/{app}[/{subpath}]`` (endpoint ``"submit"``): the app's JSON input, auth
  ``Authorization: Key <key>``. Apps: ``fal-ai/flux/schnell``, ``fal-ai/flux/dev`` (``prompt``,
  ``image_size`` as an enum or ``{width,height}``, ``num_images`` 1..4, ``seed``,
  ``num_inference_steps``, ``guidance_scale``, ``enable_safety_checker``, ``output_format``
  ``jpeg|png``, ``sync_mode``), ``fal-ai/flux/dev/image-to-image`` (``image_url`` and
  ``strength`` too) and ``fal-ai/flux-pro/kontext`` (``image_url``). Answers ``request_id``,
  ``status_url``, ``response_url``, ``cancel_url``, ``queue_position``; the URLs name only
  ``{owner}/{app}``: **the subpath is dropped**, as fal does.
* ``GET /{owner}/{app}/requests/{id}/status`` (endpoint ``"status"``): ``IN_QUEUE`` (202)
  for ``pending_polls`` polls, then ``COMPLETED`` (200).
* ``GET /{owner}/{app}/requests/{id}`` (endpoint ``"result"``): ``{"images":[{"url",
  "width","height","content_type"}],"timings","seed","has_nsfw_concepts","prompt"}``;
  asked before completion it is a 400.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): fal's CDN.

Failures: ``server_error`` is a 500 ``{"detail": "..."}`` on the result GET (fal has no
FAILED status); ``content_policy`` is a result whose images are black with
``has_nsfw_concepts: [true]``; ``moderation`` is the 422 ``content_policy_violation`` detail.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    GENERIC_FAILURES,
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
    retry_after,
    serve_files,
)

APPS: Final = {
    "fal-ai/flux/schnell": False,
    "fal-ai/flux/dev": False,
    "fal-ai/flux/dev/image-to-image": True,  # needs image_url
    "fal-ai/flux-pro/kontext": True,
}
FIELDS: Final = frozenset(
    {"prompt", "negative_prompt", "image_size", "num_images", "seed", "num_inference_steps",
     "guidance_scale", "enable_safety_checker", "output_format", "sync_mode", "image_url",
     "strength"}
)  # fmt: skip
SIZE_ENUM: Final = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}  # fmt: skip


@dataclass
class _Request:
    app: str
    body: dict[str, Any]
    size: tuple[int, int]
    polls: int = 0


class FalState(FakeUpstream):
    provider = "fal"
    endpoints = frozenset({"submit", "status", "result", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = GENERIC_FAILURES | {"moderation"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "*": frozenset({"submit"}),
        "server_error": frozenset({"result"}),
        "content_policy": frozenset({"result"}),
    }

    def __init__(self, *, expected_key: str | None, pending_polls: int) -> None:
        super().__init__(expected_key=expected_key)
        self.pending_polls = pending_polls
        self.queue: dict[str, _Request] = {}

    def presented_key(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return key if scheme == "Key" else None

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return json_response({"detail": msg or "Too many requests"}, 429, retry_after())
        if kind == "bad_key":
            return json_response({"detail": msg or "No user found for Key ID and Secret"}, 401)
        if kind == "server_error":
            body = {"detail": msg or "Internal server error while running the app"}
            return json_response(body, 500, {"x-fal-retryable": "true"})
        if kind == "malformed":
            return malformed_json_response('{"images":[{"url":"https://v3.fal')
        if kind == "moderation":
            detail = [{"loc": ["body", "prompt"], "msg": msg or "The content was flagged.",
                       "type": "content_policy_violation"}]  # fmt: skip
            headers = {"x-fal-error-type": "content_policy_violation"}
            return json_response({"detail": detail}, 422, headers)
        return None  # content_policy: the result handler blacks the images out


STATE: Final = web.AppKey("pixgate_fake_fal", FalState)


def state(app: web.Application) -> FalState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, pending_polls: int = 1) -> web.Application:
    st = FalState(expected_key=expected_key, pending_polls=pending_polls)
    app = make_app(st, STATE)
    app.router.add_get("/files/{name}", serve_files(), name="files")
    app.router.add_get("/{owner}/{app}/requests/{id}/status", _status, name="status")
    app.router.add_get("/{owner}/{app}/requests/{id}", _result, name="result")
    app.router.add_post("/{owner}/{app}/{subpath:.*}", _submit, name="submit")
    return app


def _validate(app: str, body: Any) -> tuple[dict[str, Any], tuple[int, int]]:
    if app not in APPS:
        raise ValueError(f"Application '{app}' not found")
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        raise ValueError("field required: prompt")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValueError(f"extra fields not permitted: {unknown[0]}")
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, dict):
        width, height = size.get("width"), size.get("height")
        if not all(isinstance(v, int) and 64 <= v <= 14142 for v in (width, height)):
            raise ValueError("image_size: width and height must be integers")
        dims = (int(width), int(height))  # type: ignore[arg-type]
    elif size in SIZE_ENUM:
        dims = SIZE_ENUM[size]
    else:
        raise ValueError("image_size: not a valid enum value or {width, height}")
    n = body.get("num_images", 1)
    if not isinstance(n, int) or not 1 <= n <= 4:
        raise ValueError("num_images: must be 1..4")
    if APPS[app]:
        source = body.get("image_url")
        decoded = decode_data_uri(source) if isinstance(source, str) else None
        if decoded is None and not (isinstance(source, str) and source.startswith("http")):
            raise ValueError("field required: image_url")
        if decoded is not None:
            dims = image_info(decoded[1])[1:3]
    return body, dims


async def _submit(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    owner, app_name = request.match_info["owner"], request.match_info["app"]
    app = "/".join(p for p in (owner, app_name, request.match_info["subpath"]) if p)
    try:
        body, size = _validate(app, rec.json)
    except ValueError as exc:
        st.reject(f"submit: {exc}")
        detail = [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        return json_response({"detail": detail}, 422)
    rid = new_id()
    st.queue[rid] = _Request(app, body, size)
    base = f"{origin(request)}/{owner}/{app_name}/requests/{rid}"  # no subpath, as fal does
    return json_response(
        {
            "request_id": rid,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "queue_position": 0,
        }
    )


def _lookup(request: web.Request) -> _Request | None:
    return state(request.app).queue.get(request.match_info["id"])


async def _status(request: web.Request) -> web.StreamResponse:
    job = _lookup(request)
    if job is None:
        return json_response({"detail": "Request not found"}, 404)
    job.polls += 1
    url = str(request.url.with_query(None)).removesuffix("/status")
    if job.polls <= state(request.app).pending_polls:
        return json_response({"status": "IN_QUEUE", "queue_position": 0, "response_url": url}, 202)
    body = {"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 0.01},
            "response_url": url, "error": None, "error_type": None}  # fmt: skip
    return json_response(body)


async def _result(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    job = _lookup(request)
    if job is None:
        return json_response({"detail": "Request not found"}, 404)
    if job.polls <= st.pending_polls:
        return json_response({"detail": "Request is still in progress"}, 400)
    failure = failure_of(request)
    flagged = failure is not None and failure.kind == "content_policy"
    fmt = job.body.get("output_format", "jpeg")
    images = []
    for index in range(job.body.get("num_images", 1)):
        color = (0, 0, 0) if flagged else color_for(job.body["prompt"], index)
        name = f"{new_id()}.{fmt}"
        st.store_file(name, image_bytes(fmt, *job.size, color), f"image/{fmt}")
        url = f"{origin(request)}/files/{name}"
        if job.body.get("sync_mode"):
            url = f"data:image/{fmt};base64," + base64.b64encode(st.files[name].data).decode()
        images.append({"url": url, "width": job.size[0], "height": job.size[1],
                       "content_type": f"image/{fmt}"})  # fmt: skip
    body = {"images": images, "timings": {"inference": 0.01}, "seed": 15860307465884635512,
            "has_nsfw_concepts": [flagged] * len(images), "prompt": job.body["prompt"]}  # fmt: skip
    return json_response(body)
