"""Fake Hugging Face Gradio 5 Space HTTP API (provider-apis.md §6.2).

Routes (gateway base URL ``{base}``; ``prefix`` defaults to ``/gradio_api``, use ``""`` for the
Gradio 4 layout):

* ``POST {prefix}/call/{api_name}`` (endpoint ``"submit"``): JSON ``{"data":[...positional
  inputs...], "session_hash"?: str}`` -> ``{"event_id": "<32 hex>"}``. A body without a ``data``
  list gets FastAPI's 422 ``{"detail":[...]}``; an unknown ``api_name`` gets 404.
* ``GET {prefix}/call/{api_name}/{event_id}`` (endpoint ``"stream"``): ``text/event-stream``::

      event: heartbeat
      data: null

      event: generating
      data: [{...preview FileData...}, <seed>]

      event: complete
      data: [{"path": "/tmp/gradio/<hash>/image.webp",
              "url": "/gradio_api/file=/tmp/gradio/<hash>/image.webp", "size": null,
              "orig_name": "image.webp", "mime_type": null, "is_stream": false,
              "meta": {"_type": "gradio.FileData"}}, <seed>]

  The ``url`` is RELATIVE unless ``absolute_urls=True``. Inputs that do not fit
  ``input_layout`` (wrong count / types) end the stream with ``event: error`` / ``data: null``
  (what a Space with ``show_error=False`` sends).
* ``GET {prefix}/file={path}`` (endpoint ``"file"``): serves generated / uploaded files.
* ``POST {prefix}/upload`` (endpoint ``"upload"``): multipart ``files`` -> ``["/tmp/gradio/..."]``.
* ``GET {prefix}/info`` (endpoint ``"info"``): ``{"named_endpoints": {...}}``.

Auth (``Authorization: Bearer hf_...``) is only enforced, on every route, when
``expected_key`` is set (a private / ZeroGPU Space).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
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
    json_response,
    make_app,
    malformed_json_response,
    new_id,
    origin,
    record_of,
    retry_after,
)

#: Positional inputs of a typical FLUX.1-schnell Space ``/infer`` endpoint.
DEFAULT_INPUT_LAYOUT: Final = (
    "prompt",
    "seed",
    "randomize_seed",
    "width",
    "height",
    "num_inference_steps",
)
DEFAULT_SSE_ERROR: Final = (
    "You have exceeded your GPU quota (60s requested vs. 0s left). Try again in 0:07:00."
)
DEFAULT_MODERATION_ERROR: Final = "NSFW content detected. Please try a different prompt."
_MIME: Final = {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}
_MAX_SEED: Final = 2**31 - 1


@dataclass(slots=True)
class GradioEvent:
    event_id: str
    api_name: str
    data: list[Any]
    session_hash: str | None
    width: int = 1024
    height: int = 1024
    seed: int = 0
    input_error: str | None = None
    """Why the inputs do not fit ``input_layout`` (the stream then ends in ``error``/null)."""


class GradioState(FakeUpstream):
    provider = "huggingface_space"
    endpoints = frozenset({"submit", "stream", "file", "upload", "info"})
    failure_kinds = FakeUpstream.failure_kinds | {"sse_error", "sse_error_null", "sse_stall"}
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "sse_error": frozenset({"stream"}),
        "sse_error_null": frozenset({"stream"}),
        "sse_stall": frozenset({"stream"}),
        "content_policy": frozenset({"stream"}),
        "*": frozenset({"submit"}),
    }

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        hang_seconds: float = 30.0,
        api_names: Iterable[str] = ("infer",),
        prefix: str = "/gradio_api",
        input_layout: Sequence[str] = DEFAULT_INPUT_LAYOUT,
        absolute_urls: bool = False,
        heartbeats: int = 1,
        generating_frames: int = 1,
        frame_delay: float = 0.0,
        output_format: str = "webp",
    ) -> None:
        super().__init__(expected_key=expected_key, hang_seconds=hang_seconds)
        self.api_names = frozenset(api_names)
        self.prefix = prefix.rstrip("/")
        self.input_layout = tuple(input_layout)
        self.absolute_urls = absolute_urls
        self.heartbeats = heartbeats
        self.generating_frames = generating_frames
        self.frame_delay = frame_delay
        self.output_format = output_format
        self.events: dict[str, GradioEvent] = {}

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return json_response(
                {"error": msg or "Too Many Requests: rate limit exceeded, please retry later."},
                429,
                retry_after(),
            )
        if kind == "bad_key":
            return json_response(
                {"error": msg or "Invalid credentials in Authorization header"}, 401
            )
        if kind == "server_error":
            return web.Response(status=500, text=msg or "Internal Server Error")
        if kind == "malformed":
            if rec.endpoint == "stream":
                return web.Response(
                    text='event: complete\ndata: [{"path": "/tmp/gradio/',
                    content_type="text/event-stream",
                )
            if rec.endpoint == "file":
                return web.Response(
                    body=image_bytes("webp", 32, 32)[:40], content_type="image/webp"
                )
            return malformed_json_response('{"event_id": "')
        if kind == "content_policy" and rec.endpoint != "stream":
            return json_response({"error": msg or DEFAULT_MODERATION_ERROR}, 400)
        return None  # sse_* and content_policy on the stream are written by the stream handler


STATE: Final = web.AppKey("pixgate_fake_huggingface_space", GradioState)


def state(app: web.Application) -> GradioState:
    return app[STATE]


def create_app(
    *,
    expected_key: str | None = None,
    hang_seconds: float = 30.0,
    api_name: str | Iterable[str] = "infer",
    prefix: str = "/gradio_api",
    input_layout: Sequence[str] = DEFAULT_INPUT_LAYOUT,
    absolute_urls: bool = False,
    heartbeats: int = 1,
    generating_frames: int = 1,
    frame_delay: float = 0.0,
    output_format: str = "webp",
) -> web.Application:
    """Build a fake Space.

    ``api_name``: endpoint name(s) served under ``{prefix}/call/``. ``input_layout``: names of
    the positional inputs; ``width``/``height``/``seed``/``randomize_seed`` are interpreted
    (size of the output image, returned seed), others only type-checked loosely.
    ``heartbeats`` / ``generating_frames``: how many of those frames precede ``complete``;
    ``frame_delay``: seconds between frames. ``output_format``: ``webp`` | ``png`` | ``jpeg``.
    """
    st = GradioState(
        expected_key=expected_key,
        hang_seconds=hang_seconds,
        api_names=[api_name] if isinstance(api_name, str) else api_name,
        prefix=prefix,
        input_layout=input_layout,
        absolute_urls=absolute_urls,
        heartbeats=heartbeats,
        generating_frames=generating_frames,
        frame_delay=frame_delay,
        output_format=output_format,
    )
    app = make_app(st, STATE)
    p = st.prefix
    app.router.add_post(p + "/call/{api_name}", _submit, name="submit")
    app.router.add_get(p + "/call/{api_name}/{event_id}", _stream, name="stream")
    app.router.add_get(p + "/file={path:.+}", _file, name="file")
    app.router.add_post(p + "/upload", _upload, name="upload")
    app.router.add_get(p + "/info", _info, name="info")
    return app


def file_data(request: web.Request, path: str) -> dict[str, Any]:
    """A ``gradio.FileData`` dict for ``path`` as this Space would send it."""
    st = state(request.app)
    url = f"{st.prefix}/file={path}"
    if st.absolute_urls:
        url = origin(request) + url
    return {
        "path": path,
        "url": url,
        "size": None,
        "orig_name": path.rsplit("/", 1)[-1],
        "mime_type": None,
        "is_stream": False,
        "meta": {"_type": "gradio.FileData"},
    }


def _tmp_path(material: bytes, filename: str) -> str:
    return f"/tmp/gradio/{hashlib.sha256(material).hexdigest()}/{filename}"


def _fastapi_422(kind: str, loc: list[Any], msg: str, value: Any) -> web.Response:
    return json_response({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": value}]}, 422)


def _interpret(event: GradioEvent, layout: tuple[str, ...]) -> None:
    data = event.data
    if len(data) != len(layout):
        event.input_error = f"expected {len(layout)} inputs {list(layout)}, got {len(data)}"
        return
    values = dict(zip(layout, data, strict=True))
    for name in ("width", "height", "seed", "num_inference_steps", "guidance_scale"):
        if name in values:
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                event.input_error = f"input {name!r} must be a number, got {value!r}"
                return
    if "prompt" in values and not isinstance(values["prompt"], str):
        event.input_error = f"input 'prompt' must be a string, got {values['prompt']!r}"
        return
    if "randomize_seed" in values and not isinstance(values["randomize_seed"], bool):
        event.input_error = "input 'randomize_seed' must be a boolean"
        return
    for side in ("width", "height"):
        if side in values and not 16 <= int(values[side]) <= 4096:
            event.input_error = f"input {side!r} out of range: {values[side]!r}"
            return
    event.width = int(values.get("width", 1024))
    event.height = int(values.get("height", 1024))
    if "seed" in values and not values.get("randomize_seed", False):
        event.seed = int(values["seed"])
    else:
        event.seed = int(event.event_id[:8], 16) % _MAX_SEED


async def _submit(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    api_name = request.match_info["api_name"]
    if api_name not in st.api_names:
        st.reject(f"submit: unknown api_name {api_name!r}")
        return json_response({"detail": "Not Found"}, 404)
    if rec.json_error is not None or rec.content_type != "application/json":
        st.reject(f"submit: body is not JSON ({rec.content_type}, {rec.json_error})")
        return _fastapi_422("json_invalid", ["body", 0], "JSON decode error", {})
    body = rec.json
    if not isinstance(body, dict) or "data" not in body:
        st.reject("submit: body has no 'data'")
        return _fastapi_422("missing", ["body", "data"], "Field required", body)
    if not isinstance(body["data"], list):
        st.reject("submit: 'data' is not a list")
        return _fastapi_422(
            "list_type", ["body", "data"], "Input should be a valid list", body["data"]
        )
    session_hash = body.get("session_hash")
    event = GradioEvent(
        event_id=new_id(),
        api_name=api_name,
        data=body["data"],
        session_hash=session_hash if isinstance(session_hash, str) else None,
    )
    _interpret(event, st.input_layout)
    if event.input_error:
        st.reject(f"submit: {event.input_error}")
    st.events[event.event_id] = event
    return json_response({"event_id": event.event_id})


def _frame(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _output(
    request: web.Request, event: GradioEvent, filename: str, material: tuple[Any, ...]
) -> str:
    st = state(request.app)
    path = _tmp_path(f"{event.event_id}/{filename}".encode(), filename)
    if path not in st.files:
        data = image_bytes(st.output_format, event.width, event.height, color_for(*material))
        st.store_file(path, data, _MIME[st.output_format])
    return path


async def _stream(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    event = st.events.get(request.match_info["event_id"])
    if event is None or event.api_name != request.match_info["api_name"]:
        st.reject(f"stream: unknown event {request.match_info['event_id']!r}")
        return json_response({"detail": "Event not found"}, 404)
    failure = failure_of(request)
    kind = failure.kind if failure is not None else None
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    for _ in range(st.heartbeats):
        await resp.write(_frame("heartbeat", None))
        if await st.sleep(st.frame_delay):
            return resp
    if kind == "sse_stall" and await st.sleep(st.hang_seconds):
        return resp
    if kind in ("sse_error", "content_policy"):
        default = DEFAULT_SSE_ERROR if kind == "sse_error" else DEFAULT_MODERATION_ERROR
        assert failure is not None
        await resp.write(_frame("error", failure.message or default))
        await resp.write_eof()
        return resp
    if kind == "sse_error_null" or event.input_error is not None:
        await resp.write(_frame("error", None))
        await resp.write_eof()
        return resp
    ext = "jpg" if st.output_format == "jpeg" else st.output_format
    prompt = event.data[0] if event.data else None
    for index in range(st.generating_frames):
        preview = _output(request, event, f"preview_{index}.{ext}", ("preview", prompt, index))
        await resp.write(_frame("generating", [file_data(request, preview), event.seed]))
        if await st.sleep(st.frame_delay):
            return resp
    final = _output(request, event, f"image.{ext}", (prompt, event.seed, event.width, event.height))
    await resp.write(_frame("complete", [file_data(request, final), event.seed]))
    await resp.write_eof()
    return resp


async def _file(request: web.Request) -> web.StreamResponse:
    stored = state(request.app).files.get(request.match_info["path"])
    if stored is None:
        return json_response({"detail": "File not found"}, 404)
    return web.Response(body=stored.data, content_type=stored.content_type)


async def _upload(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    files = rec.files("files")
    if rec.content_type != "multipart/form-data" or not files:
        st.reject("upload: expected multipart field 'files'")
        return _fastapi_422("missing", ["body", "files"], "Field required", None)
    paths = []
    for part in files:
        name = (part.filename or "file").rsplit("/", 1)[-1] or "file"
        path = _tmp_path(part.data + name.encode(), name)
        st.store_file(path, part.data, part.content_type or "application/octet-stream")
        paths.append(path)
    return json_response(paths)


async def _info(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    parameters = [
        {"label": name, "parameter_name": name, "parameter_has_default": False, "type": {}}
        for name in st.input_layout
    ]
    returns = [
        {"label": "Result", "type": {"type": "object"}, "component": "Image"},
        {"label": "Seed", "type": {"type": "number"}, "component": "Number"},
    ]
    endpoints = {
        f"/{name}": {"parameters": parameters, "returns": returns} for name in sorted(st.api_names)
    }
    return json_response({"named_endpoints": endpoints, "unnamed_endpoints": {}})
