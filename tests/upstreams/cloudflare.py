"""Fake Cloudflare Workers AI text-to-image (developers.cloudflare.com/workers-ai/models).

Route (gateway base URL ``{base}/client/v4``):

* ``POST /client/v4/accounts/{account}/ai/run/@cf/{author}/{model}`` (endpoint ``"run"``),
  ``Authorization: Bearer <token>``; the account must be ``account``. Models:

  - ``@cf/black-forest-labs/flux-1-schnell``: JSON ``prompt`` (1..2048 chars), ``steps``
    (1..8), ``seed``; answers ``{"result":{"image":<base64 JPEG 1024x1024>},"success":true,
    "errors":[],"messages":[]}``.
  - ``@cf/stabilityai/stable-diffusion-xl-base-1.0`` and the other SD models: ``prompt``,
    ``negative_prompt``, ``width``/``height`` (256..2048), ``num_steps`` (max 20),
    ``guidance``, ``seed``, ``image_b64`` + ``strength`` (img2img; required by
    ``*img2img*``); answers the raw ``image/png`` bytes.

Errors use Cloudflare's envelope ``{"result":null,"success":false,"errors":[{"code",
"message"}],"messages":[]}``; an unsafe prompt is a 400 ``AiError: Input prompt contains NSFW
content.`` (code 3030).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    image_bytes,
    image_info,
    json_response,
    make_app,
    malformed_json_response,
    record_of,
    retry_after,
)

FLUX: Final = "black-forest-labs/flux-1-schnell"
SD_MODELS: Final = frozenset(
    {"stabilityai/stable-diffusion-xl-base-1.0", "bytedance/stable-diffusion-xl-lightning",
     "lykon/dreamshaper-8-lcm", "runwayml/stable-diffusion-v1-5-img2img"}
)  # fmt: skip
SD_FIELDS: Final = frozenset(
    {"prompt", "negative_prompt", "width", "height", "num_steps", "guidance", "seed",
     "image_b64", "strength"}
)  # fmt: skip
NSFW: Final = "AiError: Input prompt contains NSFW content."


class CloudflareState(FakeUpstream):
    provider = "cloudflare"
    endpoints = frozenset({"run"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"run"})}

    def __init__(self, *, expected_key: str | None, account: str) -> None:
        super().__init__(expected_key=expected_key)
        self.account = account

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return cf_error(429, 3040, msg or "Capacity temporarily exceeded", retry_after())
        if kind == "bad_key":
            return cf_error(401, 10000, msg or "Authentication error")
        if kind == "server_error":
            return cf_error(500, 3043, msg or "AiError: Internal server error")
        if kind == "malformed":
            return malformed_json_response('{"result":{"image":"/9j/')
        if kind == "content_policy":
            return cf_error(400, 3030, msg or NSFW)
        return None


STATE: Final = web.AppKey("pixgate_fake_cloudflare", CloudflareState)


def state(app: web.Application) -> CloudflareState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, account: str = "acc0") -> web.Application:
    st = CloudflareState(expected_key=expected_key, account=account)
    app = make_app(st, STATE)
    app.router.add_post(
        "/client/v4/accounts/{account}/ai/run/@cf/{author}/{model}", _run, name="run"
    )
    return app


def cf_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"result": None, "success": False, "errors": [{"code": code, "message": message}],
            "messages": []}  # fmt: skip
    return json_response(body, status, headers)


def _int(body: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"Type mismatch of '/{name}', expected an integer in {lo}..{hi}")
    return value


async def _run(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    model = f"{request.match_info['author']}/{request.match_info['model']}"
    if request.match_info["account"] != st.account:
        st.reject(f"account {request.match_info['account']!r}")
        return cf_error(
            404, 7003, "Could not route to /accounts, perhaps your object identifier is invalid?"
        )
    if model != FLUX and model not in SD_MODELS:
        st.reject(f"model {model!r}")
        return cf_error(400, 5007, f"No such model @cf/{model} or task")
    body = rec.json
    try:
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            raise ValueError("Required properties at '/' are 'prompt'")
        if not 1 <= len(body["prompt"]) <= 2048:
            raise ValueError("Length of '/prompt' must be 1..2048")
        if model == FLUX:
            unknown = set(body) - {"prompt", "steps", "seed"}
            if unknown:
                raise ValueError(f"Unknown property '/{sorted(unknown)[0]}'")
            _int(body, "steps", 1, 8, 4)
            raw = image_bytes("jpeg", 1024, 1024, color_for(body["prompt"], body.get("seed")))
            result = {"image": base64.b64encode(raw).decode()}
            return json_response({"result": result, "success": True, "errors": [], "messages": []})
        unknown = set(body) - SD_FIELDS
        if unknown:
            raise ValueError(f"Unknown property '/{sorted(unknown)[0]}'")
        width = _int(body, "width", 256, 2048, 1024)
        height = _int(body, "height", 256, 2048, 1024)
        _int(body, "num_steps", 1, 20, 20)
        if "img2img" in model:
            try:
                image_info(base64.b64decode(str(body.get("image_b64")), validate=True))
            except (binascii.Error, ValueError) as exc:
                raise ValueError("'/image_b64' must be a base64 image") from exc
    except ValueError as exc:
        st.reject(str(exc))
        return cf_error(400, 5006, f"AiError: Bad input: {exc}")
    data = image_bytes("png", width, height, color_for(body["prompt"], body.get("seed")))
    return web.Response(body=data, content_type="image/png")
