"""Fake OpenAI Images API (provider-apis.md §1.1, §1.2, §1.4, §1.6).

Routes (mount the gateway's provider base URL at ``{base}/v1``):

* ``POST /v1/images/generations`` (endpoint ``"generations"``): JSON body, Bearer auth.
* ``POST /v1/images/edits`` (endpoint ``"edits"``): multipart (``image`` / repeated ``image[]`` /
  ``mask`` + text fields) or the JSON form (``images: [{image_url|file_id}]``, GPT image only).
* ``GET /files/{name}`` (endpoint ``"files"``, no auth): serves ``response_format=url`` results.

Behaviour mirrors the real API: unknown body fields are rejected (``unknown_parameter``),
GPT image models (``gpt-image*``, ``chatgpt-image*``) always answer ``b64_json`` and reject
``response_format``; ``dall-e-3`` rejects ``n > 1`` and returns ``revised_prompt``; GPT image
responses carry ``background/output_format/quality/size/usage``; ``stream: true`` (GPT image)
answers an SSE stream of ``image_generation.*`` / ``image_edit.*`` events. Every response has an
``x-request-id`` header.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aiohttp import web

from .common import (
    RETRY_AFTER_SECONDS,
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

GPT_PREFIXES: Final = ("gpt-image", "chatgpt-image")
KNOWN_MODELS: Final = (
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
    "chatgpt-image-latest",
    "dall-e-2",
    "dall-e-3",
)
GENERATION_PARAMS: Final = frozenset(
    {
        "prompt", "model", "n", "size", "quality", "response_format", "style", "background",
        "output_format", "output_compression", "moderation", "stream", "partial_images", "user",
    }
)  # fmt: skip
EDIT_TEXT_PARAMS: Final = frozenset(
    {
        "prompt", "model", "n", "size", "quality", "response_format", "background",
        "output_format", "output_compression", "input_fidelity", "partial_images", "stream",
        "user",
    }
)  # fmt: skip
EDIT_JSON_PARAMS: Final = (EDIT_TEXT_PARAMS - {"response_format"}) | {"images", "mask"}
EDIT_FILE_FIELDS: Final = frozenset({"image", "image[]", "mask"})
GPT_ONLY_PARAMS: Final = frozenset(
    {"background", "output_format", "output_compression", "moderation", "stream",
     "partial_images", "input_fidelity"}
)  # fmt: skip
GPT_SIZES: Final = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALLE2_SIZES: Final = ("256x256", "512x512", "1024x1024")
DALLE3_SIZES: Final = ("1024x1024", "1792x1024", "1024x1792")
PROMPT_LIMITS: Final = {"gpt": 32000, "dall-e-2": 1000, "dall-e-3": 4000}
OUTPUT_TOKENS: Final = {"low": 272, "medium": 1056, "high": 4160}
REVISED_PROMPT_PREFIX: Final = "A detailed, photorealistic rendering of: "
_INT_RE: Final = re.compile(r"^-?[0-9]+$")
_MIME: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def revise_prompt(prompt: str) -> str:
    """The ``revised_prompt`` the fake dall-e-3 returns for ``prompt``."""
    return REVISED_PROMPT_PREFIX + prompt


class OpenAIState(FakeUpstream):
    provider = "openai"
    endpoints = frozenset({"generations", "edits", "files"})
    public_endpoints = frozenset({"files"})
    default_targets: ClassVar[Mapping[str, frozenset[str]]] = {
        "*": frozenset({"generations", "edits"})
    }

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        kind, msg = failure.kind, failure.message
        if kind == "rate_limit":
            return openai_error(
                msg
                or "Rate limit reached for images per minute. Limit: 5/1min. Current: 6/1min. "
                f"Please try again in {RETRY_AFTER_SECONDS}s.",
                type_="requests",
                code="rate_limit_exceeded",
                status=429,
                headers=retry_after(),
            )
        if kind == "bad_key":
            presented = self.presented_key(request)
            if presented is None and msg is None:
                msg = (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                return openai_error(msg, status=401)
            masked = f"{(presented or 'sk-')[:3]}***{(presented or '')[-4:]}"
            return openai_error(
                msg
                or f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
                status=401,
            )
        if kind == "server_error":
            return openai_error(
                msg or "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
                status=500,
            )
        if kind == "malformed":
            return malformed_json_response(
                '{"created": 1713833628, "data": [{"b64_json": "iVBORw0K'
            )
        if kind == "content_policy":
            model = _model_of(rec)
            if model.startswith(GPT_PREFIXES):
                return openai_error(
                    msg
                    or "Your request was rejected by the safety system. If you believe this is "
                    "an error, contact us at help.openai.com and include the request ID "
                    f"req_{new_id()}. safety_violations=[sexual].",
                    type_="image_generation_user_error",
                    code="moderation_blocked",
                )
            return openai_error(
                msg
                or "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                code="content_policy_violation",
            )
        return None


STATE: Final = web.AppKey("pixgate_fake_openai", OpenAIState)


def state(app: web.Application) -> OpenAIState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, hang_seconds: float = 30.0) -> web.Application:
    """Build the fake OpenAI Images API. ``expected_key``: required Bearer key (``None`` = any,
    including none). ``hang_seconds``: how long a scripted ``timeout`` stalls."""
    st = OpenAIState(expected_key=expected_key, hang_seconds=hang_seconds)
    app = make_app(st, STATE)
    app.router.add_post("/v1/images/generations", _generations, name="generations")
    app.router.add_post("/v1/images/edits", _edits, name="edits")
    app.router.add_get("/files/{name}", file_handler, name="files")
    app.on_response_prepare.append(_add_request_id)
    return app


# --------------------------------------------------------------------------------------------


def openai_error(
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    status: int = 400,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status, headers)


class _Invalid(Exception):
    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type_ = (
            message, param, code, status, type_,
        )  # fmt: skip

    def response(self) -> web.Response:
        return openai_error(
            self.message, type_=self.type_, param=self.param, code=self.code, status=self.status
        )


async def _add_request_id(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("x-request-id", f"req_{new_id()}")


def _model_of(rec: RecordedRequest) -> str:
    if isinstance(rec.json, dict) and isinstance(rec.json.get("model"), str):
        return str(rec.json["model"])
    return rec.field("model") or ""


def _family(model: str) -> str | None:
    if model.startswith(GPT_PREFIXES):
        return "gpt"
    if model in ("dall-e-2", "dall-e-3"):
        return model
    return None


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _int_param(params: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(
            f"Invalid type for '{name}': expected an integer, but got {_type_name(value)} instead.",
            name,
            "invalid_type",
        )
    if value < lo:
        raise _Invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {lo}, "
            f"but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if value > hi:
        raise _Invalid(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {hi}, "
            f"but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


def _enum_param(
    params: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None
) -> str | None:
    value = params.get(name, default)
    if value is None:
        return None
    if value not in allowed:
        raise _Invalid(
            f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.",
            name,
            "invalid_value",
        )
    return str(value)


@dataclass(slots=True)
class _Job:
    model: str
    family: str
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    response_format: str
    background: str
    output_format: str
    stream: bool
    partial_images: int
    input_images: int = 0


def _resolve_size(
    model: str, family: str, value: object, fallback: tuple[int, int]
) -> tuple[int, int]:
    if value is None:
        return fallback if family == "gpt" else (1024, 1024)
    if value == "auto" and family == "gpt":
        return fallback
    if not isinstance(value, str):
        raise _Invalid(
            f"Invalid type for 'size': expected a string, but got {_type_name(value)} instead.",
            "size",
            "invalid_type",
        )
    allowed = {"gpt": GPT_SIZES, "dall-e-2": DALLE2_SIZES, "dall-e-3": DALLE3_SIZES}[family]
    if value in allowed:
        parsed = parse_size(value)
        assert parsed is not None
        return parsed
    if model.startswith("gpt-image-2"):
        parsed = parse_size(value)
        if parsed is not None:
            w, h = parsed
            if (
                w % 16 == 0
                and h % 16 == 0
                and max(w, h) <= 3 * min(w, h)
                and max(w, h) <= 3840
                and w * h <= 3840 * 2160
            ):
                return parsed
    raise _Invalid(
        f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.",
        "size",
        "invalid_value",
    )


def _validate(
    params: dict[str, Any], *, edit: bool, default_model: str, fallback_size: tuple[int, int]
) -> _Job:
    if "prompt" not in params or params["prompt"] is None:
        raise _Invalid(
            "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    prompt = params["prompt"]
    if not isinstance(prompt, str):
        raise _Invalid(
            f"Invalid type for 'prompt': expected a string, but got {_type_name(prompt)} instead.",
            "prompt",
            "invalid_type",
        )
    model = params.get("model")
    if model is None:
        model = default_model
        if not edit and GPT_ONLY_PARAMS & params.keys():
            model = "gpt-image-1"
    if not isinstance(model, str):
        raise _Invalid(
            f"Invalid type for 'model': expected a string, but got {_type_name(model)} instead.",
            "model",
            "invalid_type",
        )
    family = _family(model)
    if family is None or (edit and family == "dall-e-3"):
        supported = tuple(m for m in KNOWN_MODELS if not (edit and m == "dall-e-3"))
        raise _Invalid(
            f"Invalid value: '{model}'. Supported values are: {_supported(supported)}.",
            "model",
            "invalid_value",
        )
    if not prompt:
        raise _Invalid("Invalid 'prompt': empty string.", "prompt", "empty_string")
    limit = PROMPT_LIMITS[family]
    if len(prompt) > limit:
        raise _Invalid(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(prompt)} instead.",
            "prompt",
            "string_above_max_length",
        )
    if family == "gpt" and "response_format" in params:
        raise _Invalid(
            "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter"
        )
    gpt_only = sorted(GPT_ONLY_PARAMS & params.keys())
    if family != "gpt" and gpt_only:
        raise _Invalid(
            f"The '{gpt_only[0]}' parameter is only supported for GPT image models.",
            gpt_only[0],
            "unsupported_parameter",
        )
    n = _int_param(params, "n", 1, 10, 1)
    if family == "dall-e-3" and n != 1:
        raise _Invalid("You must provide n=1 for this model.", "n", None)
    width, height = _resolve_size(model, family, params.get("size"), fallback_size)
    quality_values = {
        "gpt": ("low", "medium", "high", "auto"),
        "dall-e-3": ("standard", "hd"),
        "dall-e-2": ("standard",),
    }[family]
    if edit:
        quality_values = ("standard", "low", "medium", "high", "auto")
    quality = _enum_param(
        params, "quality", quality_values, "auto" if family == "gpt" else "standard"
    )
    if family == "dall-e-3":
        _enum_param(params, "style", ("vivid", "natural"), None)
    elif "style" in params:
        raise _Invalid(
            "The 'style' parameter is only supported for dall-e-3.",
            "style",
            "unsupported_parameter",
        )
    response_format = "b64_json"
    if family != "gpt":
        response_format = (
            _enum_param(params, "response_format", ("url", "b64_json"), "url") or "url"
        )
    background = (
        _enum_param(params, "background", ("transparent", "opaque", "auto"), "auto") or "auto"
    )
    output_format = _enum_param(params, "output_format", ("png", "jpeg", "webp"), "png") or "png"
    if background == "transparent" and output_format == "jpeg":
        raise _Invalid(
            "Transparent background requires output_format 'png' or 'webp'.",
            "background",
            "invalid_value",
        )
    if "output_compression" in params:
        _int_param(params, "output_compression", 0, 100, 100)
    _enum_param(params, "moderation", ("low", "auto"), None)
    if edit and "input_fidelity" in params:
        _enum_param(params, "input_fidelity", ("high", "low"), None)
        if model.startswith("gpt-image-1-mini"):
            raise _Invalid(
                f"input_fidelity is not supported for model '{model}'.",
                "input_fidelity",
                "unsupported_parameter",
            )
    stream = params.get("stream", False)
    if not isinstance(stream, bool):
        raise _Invalid(
            f"Invalid type for 'stream': expected a boolean, but got {_type_name(stream)} instead.",
            "stream",
            "invalid_type",
        )
    partial_images = _int_param(params, "partial_images", 0, 3, 0)
    if "user" in params and not isinstance(params["user"], str):
        raise _Invalid("Invalid type for 'user': expected a string.", "user", "invalid_type")
    resolved_quality = "medium" if quality in (None, "auto") else quality
    return _Job(
        model=model,
        family=family,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=str(resolved_quality),
        response_format=response_format,
        background="opaque" if background == "auto" else background,
        output_format=output_format if family == "gpt" else "png",
        stream=stream,
        partial_images=partial_images,
    )


def _usage(job: _Job) -> dict[str, Any]:
    text_tokens = max(1, len(job.prompt) // 4)
    image_in = 194 * job.input_images
    out = OUTPUT_TOKENS.get(job.quality, 1056) * job.n
    return {
        "input_tokens": text_tokens + image_in,
        "output_tokens": out,
        "total_tokens": text_tokens + image_in + out,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_in},
        "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
    }


def _image(job: _Job, index: int, *, partial: int | None = None) -> bytes:
    material: tuple[object, ...] = (job.model, job.prompt, index)
    if partial is not None:
        material = (*material, "partial", partial)
    return image_bytes(
        job.output_format,
        job.width,
        job.height,
        color_for(*material),
        transparent=job.background == "transparent",
    )


def _images_response(request: web.Request, job: _Job) -> web.Response:
    st = state(request.app)
    items: list[dict[str, Any]] = []
    for index in range(job.n):
        data = _image(job, index)
        item: dict[str, Any] = {}
        if job.response_format == "b64_json":
            item["b64_json"] = base64.b64encode(data).decode()
        else:
            name = f"img-{new_id()}.{job.output_format}"
            st.store_file(name, data, _MIME[job.output_format])
            item["url"] = f"{origin(request)}/files/{name}?se=2099-01-01T00%3A00%3A00Z&sig=fake"
        if job.family == "dall-e-3":
            item["revised_prompt"] = revise_prompt(job.prompt)
        items.append(item)
    body: dict[str, Any] = {"created": int(time.time())}
    if job.family == "gpt":
        body.update(
            background=job.background,
            output_format=job.output_format,
            quality=job.quality,
            size=f"{job.width}x{job.height}",
        )
    body["data"] = items
    if job.family == "gpt":
        body["usage"] = _usage(job)
    return json_response(body)


async def _sse(request: web.Request, job: _Job, prefix: str) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    created = int(time.time())
    common = {
        "background": job.background,
        "created_at": created,
        "output_format": job.output_format,
        "quality": job.quality,
        "size": f"{job.width}x{job.height}",
    }
    for index in range(job.n):
        for p in range(job.partial_images):
            event = {
                "type": f"{prefix}.partial_image",
                "b64_json": base64.b64encode(_image(job, index, partial=p)).decode(),
                **common,
                "partial_image_index": p,
            }
            await resp.write(_frame(event))
        done = {
            "type": f"{prefix}.completed",
            "b64_json": base64.b64encode(_image(job, index)).decode(),
            **common,
            "usage": _usage(job),
        }
        await resp.write(_frame(done))
    await resp.write_eof()
    return resp


def _frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _generations(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    body = rec.json
    if (
        rec.content_type != "application/json"
        or rec.json_error is not None
        or not isinstance(body, dict)
    ):
        st.reject(f"generations: body is not a JSON object ({rec.content_type}, {rec.json_error})")
        return openai_error(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what "
            "was sent was not valid JSON. If you have trouble figuring out how to fix this, "
            "please contact us through our help center at help.openai.com.)"
        )
    try:
        for name in body:
            if name not in GENERATION_PARAMS:
                raise _Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        job = _validate(body, edit=False, default_model="dall-e-2", fallback_size=(1024, 1024))
    except _Invalid as exc:
        st.reject(f"generations: {exc.message}")
        return exc.response()
    if job.stream:
        return await _sse(request, job, "image_generation")
    return _images_response(request, job)


def _coerce_form(fields: dict[str, list[str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, values in fields.items():
        value: Any = values[-1]
        if name in ("n", "output_compression", "partial_images") and _INT_RE.match(value):
            value = int(value)
        elif name == "stream" and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        params[name] = value
    return params


def _edit_inputs_multipart(
    rec: RecordedRequest,
) -> tuple[dict[str, Any], list[tuple[str, int, int, str]], Any]:
    for part in rec.parts:
        known = EDIT_FILE_FIELDS if part.filename is not None else EDIT_TEXT_PARAMS
        if part.name not in known:
            raise _Invalid(f"Unknown parameter: '{part.name}'.", part.name, "unknown_parameter")
    params = _coerce_form(rec.form())
    images = rec.files("image") + rec.files("image[]")
    if not images:
        raise _Invalid(
            "Missing required parameter: 'image'.", "image", "missing_required_parameter"
        )
    infos = []
    for number, part in enumerate(images, start=1):
        info = part.image()
        if info is None or info[0] not in ("PNG", "WEBP", "JPEG"):
            raise _Invalid(
                f"Invalid image file or mode for image {number}, please check your image file.",
                "image",
                "invalid_image_file",
            )
        infos.append(info)
    masks = rec.files("mask")
    mask_info = None
    if masks:
        mask_info = masks[0].image()
        if mask_info is None or mask_info[0] != "PNG":
            raise _Invalid(
                "Invalid mask image: the mask must be a valid PNG file.",
                "mask",
                "invalid_image_file",
            )
    return params, infos, (mask_info, images)


async def _edits(request: web.Request) -> web.StreamResponse:
    st = state(request.app)
    rec = record_of(request)
    try:
        if rec.content_type == "multipart/form-data":
            if rec.body_error is not None:
                raise _Invalid(f"Could not parse multipart form: {rec.body_error}")
            params, infos, (mask_info, image_parts) = _edit_inputs_multipart(rec)
            first = (infos[0][1], infos[0][2])
            job = _validate(params, edit=True, default_model="gpt-image-1.5", fallback_size=first)
            if job.family == "dall-e-2":
                fmt, w, h, _mode = infos[0]
                if len(infos) != 1:
                    raise _Invalid("dall-e-2 accepts exactly one image.", "image", "invalid_value")
                if fmt != "PNG" or w != h or image_parts[0].size >= 4 * 1024 * 1024:
                    raise _Invalid(
                        "Invalid input image - must be a square PNG less than 4 MB.",
                        "image",
                        "invalid_image",
                    )
            elif len(infos) > 16:
                raise _Invalid(
                    f"Invalid 'image': too many images. Expected at most 16, got {len(infos)}.",
                    "image",
                    "array_above_max_length",
                )
            if mask_info is not None:
                if mask_info[3] not in ("RGBA", "LA", "PA"):
                    raise _Invalid(
                        "Invalid mask image: the mask must have an alpha channel.",
                        "mask",
                        "invalid_image",
                    )
                if (mask_info[1], mask_info[2]) != first:
                    raise _Invalid(
                        "Invalid mask image format - mask size does not match image size",
                        "mask",
                        "invalid_image",
                    )
            job.input_images = len(infos)
        elif rec.content_type == "application/json" and isinstance(rec.json, dict):
            body: dict[str, Any] = rec.json
            for name in body:
                if name not in EDIT_JSON_PARAMS:
                    raise _Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
            first = _json_edit_images(body)
            job = _validate(body, edit=True, default_model="gpt-image-1.5", fallback_size=first)
            if job.family != "gpt":
                raise _Invalid(
                    "The JSON edit form is only supported for GPT image models.",
                    "model",
                    "invalid_value",
                )
            job.input_images = len(body["images"])
        else:
            raise _Invalid(
                f"Invalid Content-Type header ({rec.content_type or 'none'}), expected "
                "multipart/form-data or application/json."
            )
    except _Invalid as exc:
        st.reject(f"edits: {exc.message}")
        return exc.response()
    if job.stream:
        return await _sse(request, job, "image_edit")
    return _images_response(request, job)


def _json_edit_images(body: dict[str, Any]) -> tuple[int, int]:
    images = body.get("images")
    if images is None:
        raise _Invalid(
            "Missing required parameter: 'images'.", "images", "missing_required_parameter"
        )
    if not isinstance(images, list) or not images or len(images) > 16:
        raise _Invalid(
            "Invalid 'images': expected an array of 1 to 16 image references.",
            "images",
            "invalid_value",
        )
    first: tuple[int, int] | None = None
    for index, ref in enumerate(images):
        if (
            not isinstance(ref, dict)
            or len(ref) != 1
            or not isinstance(ref.get("image_url", ref.get("file_id")), str)
        ):
            raise _Invalid(
                f"Invalid 'images[{index}]': expected an object with exactly one of "
                "'image_url' or 'file_id'.",
                f"images[{index}]",
                "invalid_value",
            )
        url = ref.get("image_url")
        if isinstance(url, str):
            if url.startswith("data:"):
                decoded = decode_data_uri(url)
                try:
                    info = image_info(decoded[1]) if decoded else None
                except ValueError:
                    info = None
                if info is None:
                    raise _Invalid(
                        f"Invalid 'images[{index}].image_url': not a valid base64 image data URL.",
                        f"images[{index}].image_url",
                        "invalid_image_url",
                    )
                first = first or (info[1], info[2])
            elif not url.startswith(("http://", "https://")):
                raise _Invalid(
                    f"Invalid 'images[{index}].image_url': expected a URL.",
                    f"images[{index}].image_url",
                    "invalid_image_url",
                )
    return first or (1024, 1024)


# For fakes that serve this same API under other paths (Azure's deployments).
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
generations_handler: Final[Handler] = _generations
edits_handler: Final[Handler] = _edits
file_handler: Final[Handler] = serve_files("BlobNotFound")
