"""Fake Together AI images API (provider-apis.md §14).

Routes (gateway base URL ``{base}/v1``):

* ``POST /v1/images/generations`` (endpoint ``"generations"``): JSON ``model``, ``prompt``,
  ``width``/``height`` (multiples of 16, 256..1792), ``n`` (1..4), ``steps``, ``seed``,
  ``negative_prompt``, ``guidance_scale``, ``output_format`` (``jpeg|png``),
  ``response_format`` (``url|base64``; anything else is a 400), ``image_url`` (Kontext input,
  an http(s) URL or a data URI; required by ``*kontext*`` models, whose output has the
  input's size). Answers ``{"id","model","object":"list","data":[{"index","url"|"b64_json"}]}``.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): the proxied result images.

Errors are OpenAI-like ``{"error":{"message","type","param","code"}}``; the safety checker's
refusal is a 422 whose message names NSFW content.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    decode_data_uri,
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

FIELDS: Final = frozenset(
    {"model", "prompt", "width", "height", "n", "steps", "seed", "negative_prompt",
     "guidance_scale", "output_format", "response_format", "image_url",
     "disable_safety_checker", "image_loras"}
)  # fmt: skip
NSFW: Final = "NSFW content detected in the output. Try a different prompt or seed."


class TogetherState(FakeUpstream):
    provider = "together"
    endpoints = frozenset({"generations", "files"})
    public_endpoints = frozenset({"files"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"generations"})}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return together_error(
                429, msg or "Rate limit exceeded", "rate_limit_exceeded",
                retry_after(),
            )  # fmt: skip
        if kind == "bad_key":
            return together_error(401, msg or "Invalid API key provided.", "invalid_api_key")
        if kind == "server_error":
            return together_error(500, msg or "Internal server error", "server_error")
        if kind == "malformed":
            return malformed_json_response('{"id":"x","data":[{"url":"http')
        if kind == "content_policy":
            return together_error(422, msg or NSFW, "invalid_request_error")
        return None


STATE: Final = web.AppKey("pixgate_fake_together", TogetherState)


def state(app: web.Application) -> TogetherState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, hang_seconds: float = 30.0) -> web.Application:
    st = TogetherState(expected_key=expected_key, hang_seconds=hang_seconds)
    app = make_app(st, STATE)
    app.router.add_post("/v1/images/generations", _generations, name="generations")
    app.router.add_get("/files/{name}", serve_files(), name="files")
    return app


def together_error(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}  # fmt: skip
    return json_response(body, status, headers)


def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("prompt"), str):
        raise ValueError("model and prompt are required strings")
    size = []
    for name in ("width", "height"):
        value = body.get(name, 1024)
        if not isinstance(value, int) or not 256 <= value <= 1792 or value % 16:
            raise ValueError(f"{name} must be a multiple of 16 in 256..1792")
        size.append(value)
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 4:
        raise ValueError("n must be 1..4")
    if body.get("response_format", "url") not in ("url", "base64"):
        raise ValueError("response_format must be 'url' or 'base64'")
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        raise ValueError("output_format must be 'jpeg' or 'png'")
    source = body.get("image_url")
    if "kontext" in body["model"]:
        if not isinstance(source, str):
            raise ValueError("image_url is required for Kontext models")
        decoded = decode_data_uri(source)
        if decoded is not None:
            size = list(image_info(decoded[1])[1:3])
        elif not source.startswith(("http://", "https://")):
            raise ValueError("image_url must be a URL")
    return {**body, "n": n, "size": size}


async def _generations(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    try:
        job = _validate(rec.json)
    except ValueError as exc:
        st.reject(f"generations: {exc}")
        return together_error(400, str(exc), "invalid_request_error")
    fmt = job.get("output_format", "jpeg")
    data = []
    for index in range(job["n"]):
        raw = image_bytes(fmt, *job["size"], color_for(job["prompt"], job.get("seed"), index))
        item: dict[str, Any] = {"index": index, "timings": {"inference": 0.01}}
        if job.get("response_format") == "base64":
            item["b64_json"] = base64.b64encode(raw).decode()
        else:
            name = f"{new_id()}.{fmt}"
            st.store_file(name, raw, f"image/{fmt}")
            item["url"] = f"{origin(request)}/files/{name}"
        data.append(item)
    return json_response({"id": new_id(), "model": job["model"], "object": "list", "data": data})
