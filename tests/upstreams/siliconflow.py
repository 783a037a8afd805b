"""Fake SiliconFlow image API (provider-apis.md §2).

Routes (gateway base URL ``{base}/v1``):

* ``POST /v1/images/generations`` (endpoint ``"generations"``): JSON ``model``, ``prompt``,
  ``negative_prompt``, ``image_size`` ("WxH"), ``batch_size`` (1..4), ``seed``
  (0..9999999999), ``num_inference_steps`` (1..100), ``guidance_scale`` (0..20), ``cfg``
  (0.1..20), ``image``/``image2``/``image3`` (data URI or URL; edit models require ``image``).
  Answers ``{"images":[{"url":...}],"timings":{"inference":...},"seed":...}`` with an
  ``x-siliconcloud-trace-id`` header. The URLs point at ``/files/{name}`` on this fake.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth).

Errors use ``{"code":<int>,"message":"...","data":null}`` (the documented 429 omits ``code``).
``Qwen/Qwen-Image-Edit*`` models ignore ``image_size`` and answer at the input image's size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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
    parse_size,
    record_of,
    retry_after,
    serve_files,
)

DEFAULT_MODELS: Final = (
    "Kwai-Kolors/Kolors",
    "Qwen/Qwen-Image",
    "Qwen/Qwen-Image-Edit",
    "Qwen/Qwen-Image-Edit-2509",
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-dev",
    "stabilityai/stable-diffusion-3-5-large",
)
INVALID_PARAMETER: Final = "The parameter is invalid. Please check again."
MODEL_NOT_FOUND: Final = "Model does not exist. Please check it carefully."
MAX_SEED: Final = 9_999_999_999


class SiliconFlowState(FakeUpstream):
    provider = "siliconflow"
    endpoints = frozenset({"generations", "files"})
    public_endpoints = frozenset({"files"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"generations"})}

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        hang_seconds: float = 30.0,
        models: Iterable[str] | None = DEFAULT_MODELS,
    ) -> None:
        super().__init__(expected_key=expected_key, hang_seconds=hang_seconds)
        self.models: frozenset[str] | None = None if models is None else frozenset(models)

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return json_response(
                {
                    "message": msg
                    or "Request was rejected due to rate limiting. If you want more, please "
                    "contact contact@siliconflow.cn",
                    "data": None,
                },
                429,
                retry_after(),
            )
        if kind == "bad_key":
            return sf_error(401, 20003, msg or "Invalid token")
        if kind == "server_error":
            return sf_error(500, 50000, msg or "Internal server error. Please try again later.")
        if kind == "malformed":
            return malformed_json_response('{"images":[{"url":"http://127.0.0.1/files/img-')
        if kind == "content_policy":
            # §2: moderation has no documented code; it is a 400 with a message (?).
            return sf_error(
                400,
                20015,
                msg
                or "The prompt or image may contain sensitive content. "
                "Please modify it and try again.",
            )
        return None


STATE: Final = web.AppKey("pixgate_fake_siliconflow", SiliconFlowState)


def state(app: web.Application) -> SiliconFlowState:
    return app[STATE]


def create_app(
    *,
    expected_key: str | None = None,
    hang_seconds: float = 30.0,
    models: Iterable[str] | None = DEFAULT_MODELS,
) -> web.Application:
    """``models``: accepted model ids (``None`` = accept any non-empty id)."""
    st = SiliconFlowState(expected_key=expected_key, hang_seconds=hang_seconds, models=models)
    app = make_app(st, STATE)
    app.router.add_post("/v1/images/generations", _generations, name="generations")
    app.router.add_get("/files/{name}", serve_files("NoSuchKey"), name="files")
    app.on_response_prepare.append(_add_trace_id)
    return app


def sf_error(status: int, code: int, message: str) -> web.Response:
    return json_response({"code": code, "message": message, "data": None}, status)


class _Invalid(Exception):
    def __init__(self, reason: str, *, code: int = 20015, message: str = INVALID_PARAMETER) -> None:
        super().__init__(reason)
        self.reason, self.code, self.message = reason, code, message


async def _add_trace_id(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("x-siliconcloud-trace-id", new_id())


def _number(
    body: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool
) -> float | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
        raise _Invalid(
            f"{name}={value!r} must be {'an integer' if integer else 'a number'} in [{lo}, {hi}]"
        )
    return float(value)


def _input_image(body: dict[str, Any], name: str) -> tuple[int, int] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{name} must be a data URI or URL string")
    if value.startswith("data:"):
        decoded = decode_data_uri(value)
        if decoded is None:
            raise _Invalid(f"{name} is not a valid base64 data URI")
        try:
            _fmt, w, h, _mode = image_info(decoded[1])
        except ValueError as exc:
            raise _Invalid(f"{name}: {exc}") from exc
        return w, h
    if value.startswith(("http://", "https://")):
        return None  # the fake never fetches URLs
    raise _Invalid(f"{name} must be a data URI or an http(s) URL")


def _validate(body: Any, models: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("body is not a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Invalid("model is required")
    if models is not None and model not in models:
        raise _Invalid(f"unknown model {model!r}", code=20012, message=MODEL_NOT_FOUND)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _Invalid("prompt is required and must be a non-empty string")
    negative = body.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise _Invalid("negative_prompt must be a string")
    is_edit = "Edit" in model
    size: tuple[int, int] = (1024, 1024)
    if body.get("image_size") is not None:
        parsed = parse_size(body["image_size"])
        if parsed is None or max(parsed) > 4096:
            raise _Invalid(f"image_size={body['image_size']!r} is not 'WxH'")
        size = parsed
    batch = _number(body, "batch_size", 1, 4, integer=True)
    seed = _number(body, "seed", 0, MAX_SEED, integer=True)
    _number(body, "num_inference_steps", 1, 100, integer=True)
    _number(body, "guidance_scale", 0, 20, integer=False)
    _number(body, "cfg", 0.1, 20, integer=False)
    first = _input_image(body, "image")
    for extra in ("image2", "image3"):
        _input_image(body, extra)
    if is_edit:
        if body.get("image") is None:
            raise _Invalid(f"{model} requires an input image")
        size = first or size
    return {
        "model": model,
        "prompt": prompt,
        "size": size,
        "batch": int(batch or 1),
        "seed": int(seed) if seed is not None else int(new_id()[:8], 16) % (MAX_SEED + 1),
    }


async def _generations(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    started = time.perf_counter()
    try:
        if rec.content_type != "application/json" or rec.json_error is not None:
            raise _Invalid(f"body is not JSON ({rec.content_type}, {rec.json_error})")
        job = _validate(rec.json, st.models)
    except _Invalid as exc:
        st.reject(f"generations: {exc.reason}")
        return sf_error(400, exc.code, exc.message)
    width, height = job["size"]
    images = []
    for index in range(job["batch"]):
        data = image_bytes(
            "png", width, height, color_for(job["model"], job["prompt"], job["seed"], index)
        )
        name = f"img-{new_id()}.png"
        st.store_file(name, data, "image/png")
        images.append({"url": f"{origin(request)}/files/{name}?Expires=3600&Signature=fake"})
    elapsed = round(time.perf_counter() - started, 4)
    return json_response({"images": images, "timings": {"inference": elapsed}, "seed": job["seed"]})
