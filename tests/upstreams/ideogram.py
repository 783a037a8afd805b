"""Fake Ideogram 3.0 API: synchronous, multipart/form-data, the key in an ``Api-Key`` header.

Routes (gateway base URL ``{base}``):

* ``POST /v1/ideogram-v3/generate`` (endpoint ``"generate"``): **multipart only**. Text
  fields ``prompt`` (required), ``resolution`` (one of ``RESOLUTIONS``) or ``aspect_ratio``,
  ``rendering_speed`` (``FLASH|TURBO|DEFAULT|QUALITY``), ``num_images`` (1..8), ``seed``,
  ``negative_prompt``, ``magic_prompt`` (``AUTO|ON|OFF``), ``style_type``. Answers
  ``{"created": <ISO time>, "data": [{"url", "prompt", "resolution", "seed",
  "is_image_safe", "style_type"}]}``; URLs are on this fake under ``/api/images/ephemeral/``.
* ``POST /v1/ideogram-v3/edit`` (endpoint ``"edit"``): files ``image`` and ``mask`` (the same
  size; the mask black and white, black where to edit), ``prompt``, ``rendering_speed``,
  ``num_images``, ``seed``, ``magic_prompt``. The results have the input's size.
* ``GET /api/images/ephemeral/{name}`` (endpoint ``"files"``, no auth).

Errors: 400/401/429/500 ``{"error": "..."}``; ``content_policy`` is the 422 of a prompt that
failed the safety check; scripted ``unsafe`` answers 200 with every image
``is_image_safe: false`` and no URL.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from aiohttp import web
from PIL import Image

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
    parse_size,
    record_of,
    retry_after,
    serve_files,
)

_W_H: Final = (
    "512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536 704x1152 704x1216 "
    "704x1280 704x1344 704x1408 704x1472 736x1312 768x1088 768x1216 768x1280 768x1344 800x1280 "
    "832x960 832x1024 832x1088 832x1152 832x1216 832x1248 864x1152 896x960 896x1024 896x1088 "
    "896x1120 896x1152 960x832 960x896 960x1024 960x1088 1024x832 1024x896 1024x960 1024x1024 "
    "1088x768 1088x832 1088x896 1088x960 1120x896 1152x704 1152x832 1152x864 1152x896 1216x704 "
    "1216x768 1216x832 1248x832 1280x704 1280x768 1280x800 1312x736 1344x640 1344x704 1344x768 "
    "1408x576 1408x640 1408x704 1472x576 1472x640 1472x704 1536x512 1536x576 1536x640"
)
RESOLUTIONS: Final = frozenset(_W_H.split())
SPEEDS: Final = frozenset({"FLASH", "TURBO", "DEFAULT", "QUALITY"})
GENERATE_FIELDS: Final = frozenset(
    {"prompt", "resolution", "aspect_ratio", "rendering_speed", "num_images", "seed",
     "negative_prompt", "magic_prompt", "style_type"}
)  # fmt: skip
EDIT_FIELDS: Final = frozenset({"prompt", "rendering_speed", "num_images", "seed", "magic_prompt"})


class IdeogramState(FakeUpstream):
    provider = "ideogram"
    endpoints = frozenset({"generate", "edit", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = GENERIC_FAILURES | {"unsafe"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"generate", "edit"})}

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("Api-Key")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return json_response({"error": msg or "Too many requests"}, 429, retry_after())
        if kind == "bad_key":
            return json_response({"error": msg or "Not authorized"}, 401)
        if kind == "server_error":
            return json_response({"error": msg or "Internal server error"}, 500)
        if kind == "malformed":
            return malformed_json_response('{"created": "2026-12-05", "data": [{"url": "')
        if kind == "content_policy":
            return json_response({"error": msg or "Prompt failed the safety check."}, 422)
        return None  # unsafe: the handler answers unsafe images


STATE: Final = web.AppKey("pixgate_fake_ideogram", IdeogramState)


def state(app: web.Application) -> IdeogramState:
    return app[STATE]


def create_app(*, expected_key: str | None = None) -> web.Application:
    app = make_app(IdeogramState(expected_key=expected_key), STATE)
    app.router.add_post("/v1/ideogram-v3/generate", _generate, name="generate")
    app.router.add_post("/v1/ideogram-v3/edit", _edit, name="edit")
    app.router.add_get("/api/images/ephemeral/{name}", serve_files("Not Found"), name="files")
    return app


def _fields(rec: RecordedRequest, allowed: frozenset[str]) -> dict[str, str]:
    if rec.content_type != "multipart/form-data":
        raise ValueError(f"expected multipart/form-data, got {rec.content_type or 'nothing'}")
    form = {name: values[-1] for name, values in rec.form().items()}
    if set(form) - allowed:
        raise ValueError(f"unknown fields {sorted(set(form) - allowed)}")
    if not form.get("prompt"):
        raise ValueError("prompt is required")
    if form.get("rendering_speed", "DEFAULT") not in SPEEDS:
        raise ValueError(f"invalid rendering_speed {form['rendering_speed']!r}")
    if not form.get("num_images", "1").isdigit() or not 1 <= int(form.get("num_images", "1")) <= 8:
        raise ValueError("num_images must be 1 to 8")
    return form


def _answer(
    st: IdeogramState, request: web.Request, form: dict[str, str], size: tuple[int, int]
) -> web.Response:
    unsafe = (failure := failure_of(request)) is not None and failure.kind == "unsafe"
    seed = int(form.get("seed", "7"))
    data: list[dict[str, Any]] = []
    for i in range(int(form.get("num_images", "1"))):
        name = f"{new_id()}.png"
        if not unsafe:
            png = image_bytes("png", *size, color_for(form["prompt"], seed + i))
            st.store_file(name, png, "image/png")
        data.append(
            {
                "url": None if unsafe else f"{origin(request)}/api/images/ephemeral/{name}",
                "prompt": form["prompt"],
                "resolution": f"{size[0]}x{size[1]}",
                "seed": seed + i,
                "is_image_safe": not unsafe,
                "style_type": "GENERAL",
            }
        )
    return json_response({"created": datetime.now(UTC).isoformat(), "data": data})


async def _generate(request: web.Request) -> web.StreamResponse:
    st, rec = state(request.app), record_of(request)
    try:
        form = _fields(rec, GENERATE_FIELDS)
        resolution = form.get("resolution", "1024x1024")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"invalid resolution {resolution!r}")
    except ValueError as exc:
        st.reject(f"generate: {exc}")
        return json_response({"error": str(exc)}, 400)
    return _answer(st, request, form, parse_size(resolution) or (1024, 1024))


def _image_size(data: bytes, mask: bool) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        if mask and set(img.convert("L").histogram()[1:255]) != {0}:  # only 0 and 255
            raise ValueError("the mask must be black and white")
        return img.size


async def _edit(request: web.Request) -> web.StreamResponse:
    st, rec = state(request.app), record_of(request)
    try:
        form = _fields(rec, EDIT_FIELDS)
        images, masks = rec.files("image"), rec.files("mask")
        if len(images) != 1 or len(masks) != 1:
            raise ValueError("one image and one mask file are required")
        size = _image_size(images[0].data, mask=False)
        if _image_size(masks[0].data, mask=True) != size:
            raise ValueError("the mask must have the image's size")
    except (ValueError, OSError) as exc:
        st.reject(f"edit: {exc}")
        return json_response({"error": str(exc)}, 400)
    return _answer(st, request, form, size)
