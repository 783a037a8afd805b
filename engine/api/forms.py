"""Read image requests in both OpenAI forms: multipart (files) and JSON (URLs / data URIs)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import multipart, web
from aiohttp.http_exceptions import HttpProcessingError

from ..runtime.images.inputs import Source
from . import params
from .errors import ApiError, bad_request, too_large
from .keys import SETTINGS

# aiohttp reports a malformed Content-Disposition with warnings.warn, quoting the client's
# bytes: one stderr line per header a client invents. Such a part has no name and is skipped.
warnings.filterwarnings("ignore", category=multipart.BadContentDispositionHeader)
warnings.filterwarnings("ignore", category=multipart.BadContentDispositionParam)

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
        try:
            posted = await request.post()
        except (ValueError, LookupError) as exc:  # an unknown charset, bytes it cannot decode
            raise bad_request(f"malformed form body: {' '.join(str(exc).split())[:200]}") from None
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
    """The parts of a multipart body. Anything malformed (no or wrong boundary, truncated,
    control characters or overlong part headers, an unknown transfer encoding) is a 400: the
    parser's errors are the client's mistakes, never the gateway's."""
    limit = request.app[SETTINGS].max_body
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        return await _read_parts(request, limit)
    except HttpProcessingError as exc:  # a part's headers: NUL, control characters, too long
        raise malformed(exc.message) from None
    except (ValueError, RuntimeError, LookupError, AssertionError) as exc:
        raise malformed(str(exc)) from None


async def _read_parts(request: web.Request, limit: int) -> ImageForm:
    form = ImageForm()
    budget = limit
    reader = await request.multipart()
    counts: dict[str, int] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
            continue
        if part.headers.get("Content-Encoding", "identity").lower() != "identity":
            # gzip inside a part would decompress without a bound; no OpenAI client sends it
            raise bad_request("Content-Encoding on a form part is not supported", part.name)
        raw = bytearray()
        while chunk := await part.read_chunk(256 * 1024):  # never more than `limit` held
            budget -= len(chunk)
            if budget < 0:
                raise too_large(limit)
            raw += chunk
        data = part.decode(raw)  # Content-Transfer-Encoding: base64 / quoted-printable
        name = part.name
        if part.filename is not None or name in IMAGE_FIELDS or name == "mask":
            if name == "mask":
                form.mask = ("mask", bytes(data))
            elif name in IMAGE_FIELDS:
                index = counts.get(name, 0)
                counts[name] = index + 1
                form.images.append((f"{name.rstrip('[]')}[{index}]", bytes(data)))
            continue
        form.fields[name] = _coerce(name, bytes(data).decode("utf-8", errors="replace"))
    return form


def malformed(detail: str) -> ApiError:
    detail = " ".join(detail.split())[:200]  # the parser quotes client bytes: keep it short
    return bad_request(f"malformed multipart/form-data body: {detail}")


def _coerce(name: str, value: str) -> Any:
    """Form fields arrive as text; give the numeric and boolean ones their JSON types."""
    if name in INT_FIELDS and params.INTEGER.fullmatch(value.strip()):
        return int(value)
    if name == "stream":
        return value.strip().lower() in ("true", "1", "yes")
    return value
