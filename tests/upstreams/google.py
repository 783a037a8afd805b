"""Fake Google Generative Language API: Gemini image output and Imagen (provider-apis.md §13).

Routes (gateway base URL ``{base}/v1beta``), key in ``x-goog-api-key`` (or ``?key=``):

* ``POST /v1beta/models/{model}:generateContent`` (endpoint ``"generate_content"``): JSON
  ``contents[].parts[]`` of ``text`` and ``inlineData``/``inline_data`` (``mimeType``,
  base64 ``data``), ``generationConfig.responseModalities`` (must hold ``IMAGE`` for an image)
  and ``generationConfig.imageConfig.aspectRatio``. Answers ``candidates[0].content.parts``
  with a text part and one ``inlineData`` PNG: at the ratio's size, else the first input's.
* ``POST /v1beta/models/{model}:predict`` (endpoint ``"predict"``): Imagen
  ``instances[0].prompt``, ``parameters.sampleCount`` (1..4), ``aspectRatio``
  (``1:1|3:4|4:3|9:16|16:9``), ``personGeneration``, ``includeRaiReason``, ``imageSize``.
  Answers ``predictions[]`` of ``{bytesBase64Encoded, mimeType}``.

Errors are google.rpc ``{"error":{"code","message","status"}}``. ``content_policy``: Gemini
answers a 200 with ``promptFeedback.blockReason`` and no candidates; Imagen a 200 whose
samples were all filtered (only ``raiFilteredReason`` entries with ``includeRaiReason``).
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
    failure_of,
    image_bytes,
    image_info,
    json_response,
    make_app,
    malformed_json_response,
    record_of,
    retry_after,
)

GEMINI_SIZES: Final = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
IMAGEN_SIZES: Final = {
    "1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408),
    "16:9": (1408, 768),
}  # fmt: skip
FILTERED: Final = (
    "Your current safety filter threshold filtered out the generated images. You will not be "
    "charged for blocked images. Try rephrasing the prompt."
)


class GoogleState(FakeUpstream):
    provider = "google"
    endpoints = frozenset({"generate_content", "predict"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "*": frozenset({"generate_content", "predict"})
    }

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return rpc_error(
                429,
                "RESOURCE_EXHAUSTED",
                msg or "Resource has been exhausted (e.g. check quota).",
                retry_after(),
            )
        if kind == "bad_key":
            return rpc_error(
                400, "INVALID_ARGUMENT", msg or "API key not valid. Please pass a valid API key."
            )
        if kind == "server_error":
            return rpc_error(
                503, "UNAVAILABLE", msg or "The model is overloaded. Please try again later."
            )
        if kind == "malformed":
            return malformed_json_response('{"candidates":[{"content":{"parts":[{"inlineData":')
        return None  # content_policy: the handlers answer a blocked 200


STATE: Final = web.AppKey("pixgate_fake_google", GoogleState)


def state(app: web.Application) -> GoogleState:
    return app[STATE]


def create_app(*, expected_key: str | None = None) -> web.Application:
    st = GoogleState(expected_key=expected_key)
    app = make_app(st, STATE)
    app.router.add_post(
        "/v1beta/models/{model}:generateContent", _generate_content, name="generate_content"
    )
    app.router.add_post("/v1beta/models/{model}:predict", _predict, name="predict")
    return app


def rpc_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": code}}
    return json_response(body, status, headers)


def _b64_png(prompt: str, size: tuple[int, int], index: int = 0) -> str:
    return base64.b64encode(image_bytes("png", *size, color_for(prompt, index))).decode()


def _parts(body: Any) -> tuple[str, list[tuple[int, int]]]:
    contents = body.get("contents") if isinstance(body, dict) else None
    if not isinstance(contents, list) or not contents:
        raise ValueError("* GenerateContentRequest.contents: contents is not specified")
    texts, sizes = [], []
    for part in contents[-1].get("parts") or []:
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(inline, dict):
            try:
                raw = base64.b64decode(str(inline.get("data")), validate=True)
                sizes.append(image_info(raw)[1:3])
            except (binascii.Error, ValueError):
                raise ValueError("Unable to process input image. Please retry.") from None
            if not str(inline.get("mimeType") or inline.get("mime_type")).startswith("image/"):
                raise ValueError("inlineData.mimeType must be an image type")
        else:
            raise ValueError(f"Invalid JSON payload: unknown part {sorted(part)}")
    if not texts:
        raise ValueError("* GenerateContentRequest.contents.parts: must contain a text part")
    return " ".join(texts), sizes


async def _generate_content(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    try:
        prompt, inputs = _parts(rec.json)
        config = rec.json.get("generationConfig") or {}
        ratio = (config.get("imageConfig") or {}).get("aspectRatio")
        if ratio is not None and ratio not in GEMINI_SIZES:
            raise ValueError(f"Unsupported aspect ratio: {ratio}")
    except ValueError as exc:
        st.reject(str(exc))
        return rpc_error(400, "INVALID_ARGUMENT", str(exc))
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302}
    if failure_of(request) is not None:  # content_policy
        return json_response(
            {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage}
        )
    parts: list[dict[str, Any]] = [{"text": "Here you go."}]
    if "IMAGE" in (config.get("responseModalities") or []):
        size = GEMINI_SIZES[ratio] if ratio else (inputs[0] if inputs else (1024, 1024))
        parts.append({"inlineData": {"mimeType": "image/png", "data": _b64_png(prompt, size)}})
    model = request.match_info["model"]
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return json_response({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})


async def _predict(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    body = record_of(request).json
    try:
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or len(instances) != 1:
            raise ValueError("instances must hold exactly one instance")
        prompt = instances[0].get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("instances[0].prompt is required")
        params = body.get("parameters") or {}
        count = params.get("sampleCount", 4)
        if not isinstance(count, int) or not 1 <= count <= 4:
            raise ValueError("sampleCount must be 1..4")
        ratio = params.get("aspectRatio", "1:1")
        if ratio not in IMAGEN_SIZES:
            raise ValueError(f"Unsupported aspect ratio: {ratio}")
    except ValueError as exc:
        st.reject(str(exc))
        return rpc_error(400, "INVALID_ARGUMENT", str(exc))
    if failure_of(request) is not None:  # content_policy: every sample filtered
        filtered = [{"raiFilteredReason": FILTERED}] if params.get("includeRaiReason") else []
        return json_response({"predictions": filtered} if filtered else {})
    size = IMAGEN_SIZES[ratio]
    predictions = [
        {"bytesBase64Encoded": _b64_png(prompt, size, i), "mimeType": "image/png"}
        for i in range(count)
    ]
    return json_response({"predictions": predictions})
