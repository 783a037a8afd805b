"""Request parsing and validation for the demo upstream: bodies, fields, images, the job."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import BodyPartReader, web

from engine.demo.errors import ApiError
from engine.demo.formats import normalize_format

MAX_PROMPT_CHARS: Final = 4000
MIN_SIDE: Final = 64
MAX_SIDE: Final = 2048
MAX_N: Final = 4
MAX_DELAY: Final = 30.0
MAX_INPUT_IMAGES: Final = 16
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Request bodies are read by the demo itself (not ``request.read()``), so the parent app's
``client_max_size`` does not apply; this is the demo's own limit."""

_SIZE_RE: Final = re.compile(r"^\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*$")


@dataclass(slots=True)
class RenderJob:
    """Everything needed to render a batch of images."""

    prompt: str
    width: int
    height: int
    n: int
    seed: int | None
    fmt: str
    inputs: list[bytes] = field(default_factory=list)

    def render_all(self) -> list[bytes]:
        from engine.demo.render import render_image  # Pillow: loaded on the first render

        base = self.seed if self.seed is not None else 0
        return [
            render_image(
                self.prompt,
                self.width,
                self.height,
                # n > 1 must give distinct images: each one gets its own seed.
                seed=self.seed if self.n == 1 else base + i,
                inputs=self.inputs,
                fmt=self.fmt,
            )
            for i in range(self.n)
        ]


async def _read_limited_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        buf += chunk
        if len(buf) > MAX_BODY_BYTES:
            raise ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    return bytes(buf)


async def read_json_object(request: web.Request, hint: str = "") -> dict[str, Any]:
    body = await _read_limited_body(request)
    if not body.strip():
        raise ApiError(f"request body must be a JSON object{hint}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(f"request body must be a JSON object{hint}; JSON error: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(f"request body must be a JSON object{hint}")
    return payload


async def _read_part(part: BodyPartReader, budget: list[int]) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(256 * 1024):
        buf += chunk
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    return bytes(buf)


async def read_multipart(
    request: web.Request,
) -> tuple[dict[str, str], list[bytes], bytes | None]:
    """Return (text fields, image parts, mask part) of a multipart/form-data request."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(f"request body too large (limit {MAX_BODY_BYTES} bytes)", status=413)
    fields: dict[str, str] = {}
    images: list[bytes] = []
    mask: bytes | None = None
    budget = [MAX_BODY_BYTES]
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError("nested multipart bodies are not supported")
            name = part.name or ""
            data = await _read_part(part, budget)
            if name in ("image", "image[]"):
                images.append(data)
            elif name in ("mask", "mask[]"):
                mask = data
            elif name:
                charset = part.get_charset("utf-8")
                try:
                    fields[name] = data.decode(charset)
                except (LookupError, UnicodeDecodeError):
                    raise ApiError(f"form field {name!r} is not valid text", param=name) from None
    except ApiError:
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise ApiError(f"malformed multipart body: {exc}") from None
    return fields, images, mask


def _parse_int(value: object, param: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ApiError(f"'{param}' must be an integer", param=param)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,20}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise ApiError(f"'{param}' must be an integer", param=param)
    if not lo <= value <= hi:
        raise ApiError(f"'{param}' must be between {lo} and {hi}, got {value}", param=param)
    return value


def parse_prompt(value: object) -> str:
    if value is None:
        raise ApiError("'prompt' is required", param="prompt")
    if not isinstance(value, str):
        raise ApiError("'prompt' must be a string", param="prompt")
    if not value.strip():
        raise ApiError("'prompt' must not be empty", param="prompt")
    if len(value) > MAX_PROMPT_CHARS:
        raise ApiError(
            f"'prompt' is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS})",
            param="prompt",
        )
    return value


def _parse_size(value: object) -> tuple[int, int] | None:
    """Return (width, height), or None for "auto"/absent (caller picks the default)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ApiError(
            f"'size' must look like '1024x1024' (WIDTHxHEIGHT), got {value!r}", param="size"
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ApiError(
            f"'size' sides must each be between {MIN_SIDE} and {MAX_SIDE} pixels, "
            f"got {width}x{height}",
            param="size",
        )
    return width, height


def _parse_choice(value: object, param: str, choices: Sequence[str], default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ApiError(
        f"'{param}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}",
        param=param,
    )


def _parse_format(value: object) -> str:
    if value is None:
        return "png"
    if isinstance(value, str):
        try:
            return normalize_format(value)
        except ValueError:
            pass
    raise ApiError(
        f"'output_format' must be one of 'png', 'jpeg', 'webp', got {value!r}",
        param="output_format",
    )


def decode_image_string(value: object, param: str, index: int) -> bytes:
    if not isinstance(value, str):
        raise ApiError(f"'{param}[{index}]' must be a data URI or base64 string", param=param)
    text = value.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ApiError(
                f"'{param}[{index}]' must be a base64 data URI (data:image/...;base64,...)",
                param=param,
            )
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            data = base64.urlsafe_b64decode(text)
        else:
            data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(f"'{param}[{index}]' is not valid base64", param=param) from None
    if not data:
        raise ApiError(f"'{param}[{index}]' is empty", param=param)
    return data


def decode_image_list(payload: Mapping[str, Any]) -> list[bytes]:
    """Images of a JSON request: ``images`` (list) or ``image`` (string or list)."""
    for param in ("images", "image"):
        value = payload.get(param)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ApiError(f"'{param}' must be a list of data URIs or base64 strings", param=param)
        if len(items) > MAX_INPUT_IMAGES:
            raise ApiError(f"at most {MAX_INPUT_IMAGES} input images are allowed", param=param)
        return [decode_image_string(item, param, i) for i, item in enumerate(items)]
    return []


async def probe_inputs(images: Sequence[bytes], param: str) -> tuple[int, int] | None:
    """Check that every input is a readable image; return the first one's size."""
    from engine.demo.render import image_size  # Pillow: loaded on the first input image

    first: tuple[int, int] | None = None
    for i, data in enumerate(images):
        try:
            size = await asyncio.to_thread(image_size, data)
        except ValueError as exc:
            raise ApiError(f"'{param}' #{i + 1}: {exc}", param=param) from None
        if first is None:
            first = size
    return first


def _size_from_input(size: tuple[int, int]) -> tuple[int, int]:
    """An input image's size, scaled down to fit MAX_SIDE and clamped to MIN_SIDE."""
    width, height = size
    scale = min(1.0, MAX_SIDE / max(width, height))
    width, height = round(width * scale), round(height * scale)
    return (
        min(MAX_SIDE, max(MIN_SIDE, width)),
        min(MAX_SIDE, max(MIN_SIDE, height)),
    )


def build_job(
    payload: Mapping[str, Any],
    inputs: list[bytes],
    input_size: tuple[int, int] | None,
) -> RenderJob:
    prompt = parse_prompt(payload.get("prompt"))
    n_raw = payload.get("n")
    n = 1 if n_raw is None else _parse_int(n_raw, "n", 1, MAX_N)
    size = _parse_size(payload.get("size"))
    if size is None:
        size = _size_from_input(input_size) if input_size else (1024, 1024)
    seed_raw = payload.get("seed")
    seed = None if seed_raw is None else _parse_int(seed_raw, "seed", -(2**63), 2**63 - 1)
    fmt = _parse_format(payload.get("output_format"))
    return RenderJob(prompt, size[0], size[1], n, seed, fmt, inputs)


def parse_response_format(payload: Mapping[str, Any]) -> str:
    return _parse_choice(
        payload.get("response_format"), "response_format", ("b64_json", "url"), "b64_json"
    )
