"""Read image requests in both OpenAI forms: multipart (files) and JSON (URLs / data URIs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ..runtime.inputs import Source
from . import params
from .errors import ApiError, bad_request
from .keys import SETTINGS

IMAGE_FIELDS = ("image", "image[]", "images", "images[]")
INT_FIELDS = ("n", "seed", "output_compression", "partial_images")


@dataclass(slots=True)
class ImageForm:
    fields: dict[str, Any] = field(default_factory=dict)
    images: list[tuple[str, Source]] = field(default_factory=list)  # (param, source)
    mask: tuple[str, Source] | None = None


async def read_image_form(request: web.Request) -> ImageForm:
    if request.content_type == "multipart/form-data":
        return await _multipart(request)
    if request.content_type == "application/x-www-form-urlencoded":  # fields only, no files
        posted = await request.post()
        return ImageForm(fields={k: _coerce(k, str(v)) for k, v in posted.items()})
    body = await params.read_json(request)
    form = ImageForm()
    for key, value in body.items():
        if key in ("images", "image"):
            values = value if isinstance(value, list) else [value]
            for i, item in enumerate(values):
                form.images.append(
                    (f"{key}[{i}]" if isinstance(value, list) else key, _json_image(item, key))
                )
        elif key == "mask":
            form.mask = ("mask", _json_image(value, "mask"))
        else:
            form.fields[key] = value
    return form


def _json_image(item: Any, param: str) -> Source:
    """OpenAI's `{"image_url": "..."}` (or `{"image_url": {"url": ...}}`), or a plain string."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        url = item.get("image_url", item.get("url"))
        if isinstance(url, dict):
            url = url.get("url")
        if isinstance(url, str):
            return url
        if "file_id" in item:
            raise bad_request(
                "file_id images are not supported; send the image itself, a URL or a data URI",
                param,
            )
    raise bad_request(
        f"'{param}' must be an image URL, a data URI, base64, or {{\"image_url\": ...}}", param
    )


async def _multipart(request: web.Request) -> ImageForm:
    limit = request.app[SETTINGS].max_body
    form = ImageForm()
    total = 0
    reader = await request.multipart()
    counts: dict[str, int] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
            continue
        data = await part.read(decode=True)
        total += len(data)
        if total > limit:
            raise ApiError(
                413, f"request body is larger than the {limit} byte limit", code="request_too_large"
            )
        name = part.name
        if part.filename is not None or name in IMAGE_FIELDS or name == "mask":
            if name == "mask":
                form.mask = ("mask", bytes(data))
            elif name in IMAGE_FIELDS:
                index = counts.get(name, 0)
                counts[name] = index + 1
                form.images.append((f"{name.rstrip('[]')}[{index}]", bytes(data)))
            continue
        form.fields[name] = _coerce(name, data.decode("utf-8", errors="replace"))
    return form


def _coerce(name: str, value: str) -> Any:
    """Form fields arrive as text; give the numeric and boolean ones their JSON types."""
    if name in INT_FIELDS and params.INTEGER.fullmatch(value.strip()):
        return int(value)
    if name == "stream":
        return value.strip().lower() in ("true", "1", "yes")
    return value
