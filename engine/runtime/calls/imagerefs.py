"""Result images as an upstream names them: a URL (absolute or relative to the request), a
data URI, or bare base64, found by a step's `images` expression or a stream event; and
decoding base64 without an extra copy."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from yarl import URL

from ...rawtext import RawText
from ..routing.failures import UpstreamFailure

_B64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")


@dataclass(slots=True)
class ImageRef:
    """One result image as the upstream gave it."""

    kind: str  # "url" | "b64" | "bytes"
    value: str | bytes | RawText  # RawText: base64 still in the upstream's body
    mime: str | None = None


def image_refs(found: Any, kind: str, request_url: str | URL) -> list[ImageRef]:
    items = found if isinstance(found, list) else [found] if found is not None else []
    refs = []  # (a loop: a comprehension is a function call of its own, once per answer)
    for item in items:
        if (ref := image_ref(item, kind, request_url)) is not None:
            refs.append(ref)
    return refs


def image_ref(item: Any, kind: str, request_url: str | URL) -> ImageRef | None:
    if isinstance(item, dict):
        item = item.get("url") or item.get("b64_json") or item.get("path")
    if isinstance(item, RawText):
        return _raw_image_ref(item, kind, request_url)
    if not isinstance(item, str) or not item:
        return None
    if kind == "base64":
        return ImageRef("b64", item)
    if item.startswith(("http://", "https://")):
        return ImageRef("url", item)
    if item.startswith("data:"):
        header, _, payload = item.partition(",")
        mime = header[5:].split(";")[0] or None
        return ImageRef("b64", payload, mime)
    if kind == "auto" and len(item) >= 64 and _B64.match(item[:256]):
        return ImageRef("b64", item)
    return ImageRef("url", urljoin(str(request_url), item))  # relative to the request


def _raw_image_ref(item: RawText, kind: str, request_url: str | URL) -> ImageRef | None:
    """A long string: base64 or a data URI, decided as for a str but without copying it."""
    if kind == "base64":
        return ImageRef("b64", item)
    if item.startswith(b"data:"):
        header, comma, _ = item.head(256).partition(b",")
        if comma:
            mime = header[5:].split(b";")[0].decode("ascii", "replace") or None
            return ImageRef("b64", item.tail_after(len(header) + 1), mime)
    if kind == "auto" and _B64.match(item.head(256).decode("ascii", "replace")):
        return ImageRef("b64", item)
    return image_ref(str(item), kind, request_url)


def decode_b64(value: str | RawText) -> bytes:
    """binascii directly: base64.b64decode first copies a buffer it is given into bytes."""
    try:
        return binascii.a2b_base64(value.view if isinstance(value, RawText) else value)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamFailure("upstream", f"upstream sent invalid base64: {exc}") from None
