"""Fake chat-completions upstream that answers with images (OpenRouter's image models, and the
resellers that put image models behind OpenAI's chat API).

Routes (gateway base URL ``{base}/v1``):

* ``POST /v1/chat/completions`` (endpoint ``"chat"``): JSON ``model``, ``messages`` (the last
  user message's ``content`` is the prompt, a string or a list of ``{"type":"text"}`` and
  ``{"type":"image_url","image_url":{"url"}}`` parts), optional ``modalities``
  (``["image","text"]``), ``image_config.aspect_ratio``, ``stream`` (must be false). The image
  has the aspect ratio's Gemini size, else the first input image's size, else 1024x1024.
  ``answer="images"`` (default): OpenRouter's ``choices[0].message.images[]``
  (``{"type":"image_url","image_url":{"url":"data:image/png;base64,..."}}``) beside a text
  ``content``; ``answer="markdown"``: ``content`` is ``![image](<url>)`` of a file served
  below. ``require_modalities=True`` answers text only unless ``modalities`` holds ``image``.
* ``GET /files/{name}`` (endpoint ``"files"``, no auth).

Failures: ``server_error`` is OpenRouter's ``{"error":{"code":502,"message"}}``;
``content_policy`` is a 200 whose choice has ``finish_reason: "content_filter"`` and no image
(the chat API's refusal); ``moderation`` is OpenRouter's 403 with ``error.metadata.reasons``.
"""

from __future__ import annotations

import base64
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

# Gemini's image sizes per aspect ratio (what OpenRouter's Gemini image models return).
ASPECT_SIZES: Final = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip


class ChatImagesState(FakeUpstream):
    provider = "chat-images"
    endpoints = frozenset({"chat", "files"})
    public_endpoints = frozenset({"files"})
    failure_kinds = GENERIC_FAILURES | {"moderation"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {"*": frozenset({"chat"})}

    def __init__(self, *, expected_key: str | None, answer: str, require_modalities: bool) -> None:
        super().__init__(expected_key=expected_key)
        self.answer = answer
        self.require_modalities = require_modalities

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return chat_error(429, msg or "Rate limit exceeded", retry_after())
        if kind == "bad_key":
            return chat_error(401, msg or "No auth credentials found")
        if kind == "server_error":
            return chat_error(502, msg or "Provider returned error")
        if kind == "malformed":
            return malformed_json_response('{"id":"gen-1","choices":[{"message":{"images":[')
        if kind == "moderation":
            meta = {"reasons": ["sexual"], "flagged_input": "x", "provider_name": "Google"}
            message = msg or "Input was flagged by moderation"
            body = {"error": {"code": 403, "message": message, "metadata": meta}}
            return json_response(body, 403)
        if kind == "content_policy":
            message = {"role": "assistant", "content": msg or "I can't create that image."}
            return json_response(_completion(rec, message, finish="content_filter"))
        return None


STATE: Final = web.AppKey("pixgate_fake_chat_images", ChatImagesState)


def state(app: web.Application) -> ChatImagesState:
    return app[STATE]


def create_app(
    *, expected_key: str | None = None, answer: str = "images", require_modalities: bool = False
) -> web.Application:
    st = ChatImagesState(
        expected_key=expected_key, answer=answer, require_modalities=require_modalities
    )
    app = make_app(st, STATE)
    app.router.add_post("/v1/chat/completions", _chat, name="chat")
    app.router.add_get("/files/{name}", serve_files(), name="files")
    return app


def chat_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"code": status, "message": message}}, status, headers)


def _completion(rec: RecordedRequest, message: dict[str, Any], finish: str) -> dict[str, Any]:
    model = rec.json.get("model") if isinstance(rec.json, dict) else None
    return {
        "id": f"gen-{new_id()}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "provider": "Google",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": finish,
                     "native_finish_reason": "STOP" if finish == "stop" else "IMAGE_SAFETY",
                     "message": message}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1290, "total_tokens": 1300},
    }  # fmt: skip


def _prompt_and_inputs(body: Any) -> tuple[str, list[tuple[int, int]]]:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError("model is required")
    if body.get("stream") not in (None, False):
        raise ValueError("this fake answers only stream: false")
    messages = body.get("messages")
    users = (
        [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if isinstance(messages, list)
        else []
    )
    if not users:
        raise ValueError("messages must hold a user message")
    content = users[-1].get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ValueError("content must be a string or a list of parts")
    texts, sizes = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            decoded = decode_data_uri(str(part["image_url"].get("url")))
            if decoded is None:
                raise ValueError("image_url.url must be a data URI (the fake fetches nothing)")
            sizes.append(image_info(decoded[1])[1:3])
        else:
            raise ValueError(f"unknown content part {part!r:.80}")
    return " ".join(texts), sizes


async def _chat(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    try:
        prompt, inputs = _prompt_and_inputs(rec.json)
        aspect = (rec.json.get("image_config") or {}).get("aspect_ratio")
        if aspect is not None and aspect not in ASPECT_SIZES:
            raise ValueError(f"unsupported aspect_ratio {aspect!r}")
    except ValueError as exc:
        st.reject(f"chat: {exc}")
        return chat_error(400, str(exc))
    if st.require_modalities and "image" not in (rec.json.get("modalities") or []):
        return json_response(
            _completion(rec, {"role": "assistant", "content": "A picture of " + prompt}, "stop")
        )
    width, height = ASPECT_SIZES[aspect] if aspect else (inputs[0] if inputs else (1024, 1024))
    data = image_bytes("png", width, height, color_for(prompt, new_id()))
    message: dict[str, Any] = {"role": "assistant"}
    if st.answer == "markdown":
        name = f"{new_id()}.png"
        st.store_file(name, data, "image/png")
        message["content"] = f"Here it is:\n\n![image]({origin(request)}/files/{name})"
    else:
        message["content"] = "Here is your image."
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        message["images"] = [{"type": "image_url", "image_url": {"url": uri}, "index": 0}]
    return json_response(_completion(rec, message, "stop"))
