"""Fake Zhipu AI BigModel CogView images API: synchronous and OpenAI-like.

Routes (gateway base URL ``{base}/api/paas/v4``):

* ``POST /api/paas/v4/images/generations`` (endpoint ``"generate"``): Bearer auth, JSON
  ``model``, ``prompt``, ``size`` (``WxH``: 512..2048 per side, multiples of 16, at most 2^21
  pixels), ``quality`` (``hd`` | ``standard``), ``user_id`` (6..128 characters),
  ``watermark_enabled``. One image per call: ``{"created", "data": [{"url"}],
  "content_filter": [{"role", "level"}]}``.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): the result PNG.

Errors are ``{"error": {"code": "<business code>", "message"}}``: 1002 (401, bad token),
1113 (429, account in arrears; scripted kind ``arrears``), 1214 (400, invalid parameter),
1301 (400, unsafe content), 1302 (429, too much concurrency), 500.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    GENERIC_FAILURES,
    FakeUpstream,
    RecordedRequest,
    ScriptedFailure,
    color_for,
    image_bytes,
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

FIELDS: Final = frozenset({"model", "prompt", "size", "quality", "user_id", "watermark_enabled"})


class ZhipuState(FakeUpstream):
    provider = "zhipu"
    endpoints = frozenset({"generate", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = GENERIC_FAILURES | {"arrears"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"generate"})}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return zp_error(
                429, "1302", msg or "High concurrency usage of this API.", retry_after()
            )
        if kind == "arrears":
            return zp_error(429, "1113", msg or "Your account is in arrears, please recharge.")
        if kind == "bad_key":
            return zp_error(401, "1002", msg or "Invalid Authentication Token.")
        if kind == "server_error":
            return zp_error(500, "500", msg or "Internal Error")
        if kind == "malformed":
            return malformed_json_response('{"created": 1, "data": [{"url": "')
        if kind == "content_policy":
            return zp_error(
                400, "1301", msg or "System detected potentially unsafe or sensitive content."
            )
        return None


STATE: Final = web.AppKey("pixgate_fake_zhipu", ZhipuState)


def state(app: web.Application) -> ZhipuState:
    return app[STATE]


def create_app(*, expected_key: str | None = None) -> web.Application:
    app = make_app(ZhipuState(expected_key=expected_key), STATE)
    app.router.add_post("/api/paas/v4/images/generations", _generate, name="generate")
    app.router.add_get("/files/{name}", serve_files("Not Found"), name="files")
    return app


def zp_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def _validate(body: Any) -> tuple[int, int]:
    if not isinstance(body, dict) or set(body) - FIELDS:
        raise ValueError(f"unknown fields {sorted(set(body or {}) - FIELDS)}")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("prompt"), str):
        raise ValueError("model and prompt are required")
    size = parse_size(body.get("size", "1024x1024"))
    if size is None or not all(512 <= s <= 2048 and s % 16 == 0 for s in size):
        raise ValueError(f"invalid size {body.get('size')!r}")
    if size[0] * size[1] > 2**21:
        raise ValueError(f"size {body['size']} exceeds 2^21 pixels")
    if body.get("quality", "standard") not in ("hd", "standard"):
        raise ValueError(f"invalid quality {body.get('quality')!r}")
    user = body.get("user_id", "user-id")
    if not isinstance(user, str) or not 6 <= len(user) <= 128:
        raise ValueError("user_id must be 6 to 128 characters")
    return size


async def _generate(request: web.Request) -> web.StreamResponse:
    st, rec = state(request.app), record_of(request)
    try:
        width, height = _validate(rec.json)
    except ValueError as exc:
        st.reject(f"generate: {exc}")
        return zp_error(400, "1214", str(exc))
    name = f"{new_id()}.png"
    color = color_for(rec.json["prompt"], len(st.requests))
    st.store_file(name, image_bytes("png", width, height, color), "image/png")
    return json_response(
        {
            "created": int(time.time()),
            "data": [{"url": f"{origin(request)}/files/{name}"}],
            "content_filter": [{"role": "assistant", "level": 3}],
        }
    )
