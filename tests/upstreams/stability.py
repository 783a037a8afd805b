"""Fake Stability AI v2beta Stable Image generate API (provider-apis.md §11).

Routes (gateway base URL ``{base}``):

* ``POST /v2beta/stable-image/generate/{core|ultra|sd3}`` (endpoint ``"generate"``):
  **multipart/form-data only** (anything else is a 400, even without a file), Bearer auth,
  ``Accept`` ``image/*`` (raw bytes with ``finish-reason`` and ``seed`` headers) or
  ``application/json`` (``{"image":<base64>,"finish_reason","seed"}``); other values are a
  400. Fields: ``prompt`` (required), ``negative_prompt``, ``aspect_ratio`` (one of
  ``ASPECT_SIZES``), ``seed`` (0..4294967294), ``output_format`` (``png|jpeg|webp``; sd3 no
  webp), ``style_preset``; ``ultra`` takes an optional ``image`` file with ``strength``;
  ``sd3`` takes ``model`` and ``mode`` (``text-to-image`` | ``image-to-image``, the latter
  with ``image`` + ``strength`` and no ``aspect_ratio``). Image-to-image keeps the input's size.

Errors: ``{"id","name","errors":[...]}``; ``content_policy`` answers a 200 whose finish reason
is ``CONTENT_FILTERED`` (a blurred image), ``moderation`` the 403 ``content_moderation``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
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
    record_of,
    retry_after,
)

ASPECT_SIZES: Final = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "5:4": (1088, 896),
    "4:5": (896, 1088),
    "21:9": (1536, 640),
    "9:21": (640, 1536),
}
SD3_MODELS: Final = frozenset({"sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium"})
TEXT_FIELDS: Final = frozenset(
    {
        "prompt",
        "negative_prompt",
        "aspect_ratio",
        "seed",
        "output_format",
        "style_preset",
        "strength",
        "model",
        "mode",
        "cfg_scale",
    }
)


class StabilityState(FakeUpstream):
    provider = "stability"
    endpoints = frozenset({"generate"})
    failure_kinds = GENERIC_FAILURES | {"moderation"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"generate"})}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return stability_error(
                429,
                "rate_limit_exceeded",
                msg
                or "You have exceeded the rate limit of 150 requests within a 10 second period.",
                retry_after(),
            )
        if kind == "bad_key":
            return stability_error(
                401, "unauthorized", msg or "authorization: invalid or missing header value"
            )
        if kind == "server_error":
            return stability_error(
                500,
                "internal_error",
                msg or "An unexpected server error has occurred, please try again later.",
            )
        if kind == "malformed":
            return malformed_json_response('{"image":"iVBOR')
        if kind == "moderation":
            return stability_error(
                403,
                "content_moderation",
                msg
                or "Your request was flagged by our content moderation system, as a result your "
                "request was denied and you were not charged.",
            )
        if kind == "content_policy":
            return None  # the handler answers a filtered 200
        return None


STATE: Final = web.AppKey("pixgate_fake_stability", StabilityState)


def state(app: web.Application) -> StabilityState:
    return app[STATE]


def create_app(*, expected_key: str | None = None) -> web.Application:
    st = StabilityState(expected_key=expected_key)
    app = make_app(st, STATE)
    app.router.add_post("/v2beta/stable-image/generate/{service}", _generate, name="generate")
    return app


def stability_error(
    status: int, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"id": new_id(), "name": name, "errors": [message]}, status, headers)


def _validate(service: str, rec: RecordedRequest) -> dict[str, Any]:
    if rec.content_type != "multipart/form-data":
        raise ValueError(f"content-type: must be multipart/form-data, got {rec.content_type}")
    form = {name: values[-1] for name, values in rec.form().items()}
    unknown = sorted(set(form) - TEXT_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field")
    if not form.get("prompt"):
        raise ValueError("prompt: is required")
    images = rec.files("image")
    size = ASPECT_SIZES.get(form.get("aspect_ratio", "1:1"))
    if size is None:
        raise ValueError(f"aspect_ratio: must be one of {', '.join(ASPECT_SIZES)}")
    seed = int(form.get("seed", "0"))
    if not 0 <= seed <= 4294967294:
        raise ValueError("seed: must be between 0 and 4294967294")
    fmt = form.get("output_format", "png")
    if fmt not in (("png", "jpeg") if service == "sd3" else ("png", "jpeg", "webp")):
        raise ValueError(f"output_format: {fmt} is not supported")
    image_mode = bool(images)
    if service == "sd3":
        if form.get("model", "sd3.5-large") not in SD3_MODELS:
            raise ValueError("model: unknown model")
        image_mode = form.get("mode", "text-to-image") == "image-to-image"
        if image_mode and "aspect_ratio" in form:
            raise ValueError("aspect_ratio: not allowed in image-to-image mode")
    elif service == "core" and images:
        raise ValueError("image: not accepted by this service")
    if image_mode:
        if len(images) != 1 or images[0].image() is None:
            raise ValueError("image: exactly one image file is required")
        if not 0 <= float(form.get("strength", "-1")) <= 1:
            raise ValueError("strength: required, between 0 and 1, with an image")
        info = images[0].image()
        assert info is not None
        size = (info[1], info[2])
    return {"prompt": form["prompt"], "size": size, "seed": seed or 1229191277, "format": fmt}


async def _generate(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    service = request.match_info["service"]
    accept = request.headers.get("Accept", "")
    try:
        if service not in ("core", "ultra", "sd3"):
            raise ValueError(f"no such service {service!r}")
        if accept not in ("image/*", "application/json"):
            raise ValueError("accept: must be image/* or application/json")
        job = _validate(service, rec)
    except ValueError as exc:
        st.reject(str(exc))
        return stability_error(400, "bad_request", str(exc))
    failure = failure_of(request)
    filtered = failure is not None and failure.kind == "content_policy"
    finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
    data = image_bytes(job["format"], *job["size"], color_for(job["prompt"], job["seed"]))
    if accept == "application/json":
        body = {
            "image": base64.b64encode(data).decode(),
            "finish_reason": finish,
            "seed": job["seed"],
        }
        return json_response(body)
    headers = {"finish-reason": finish, "seed": str(job["seed"]), "x-request-id": new_id()}
    return web.Response(body=data, content_type=f"image/{job['format']}", headers=headers)
