"""Real image bytes for canned answers (solid colours made with Pillow), cached."""

from __future__ import annotations

import base64
import functools
import io
import re

from PIL import Image

DEFAULT_COLOR = (64, 128, 192)
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
#: ``{{b64:1024x768}}`` or ``{{b64:1024x768:jpeg}}`` inside a canned string: base64 image bytes.
B64_TOKEN = re.compile(r"\{\{b64:([0-9]{1,4})x([0-9]{1,4})(?::(png|jpeg|webp))?\}\}")


@functools.lru_cache(maxsize=64)
def make_image(
    width: int, height: int, fmt: str = "png", color: tuple[int, int, int] = DEFAULT_COLOR
) -> bytes:
    """Encode a solid-colour `width` x `height` image as png, jpeg or webp."""
    img = Image.new("RGB", (width, height), color)
    buf = io.BytesIO()
    img.save(buf, PIL_FORMATS[fmt])
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def image_b64(width: int, height: int, fmt: str = "png") -> str:
    return base64.b64encode(make_image(width, height, fmt)).decode("ascii")


def expand_b64_tokens(text: str) -> str:
    """Replace every ``{{b64:WxH[:format]}}`` with the base64 of such an image."""
    return B64_TOKEN.sub(
        lambda m: image_b64(int(m.group(1)), int(m.group(2)), m.group(3) or "png"), text
    )
