"""Deterministic placeholder-image renderer for the offline demo upstream.

Everything here is pure and CPU-bound (no I/O, no global state): callers running inside an
event loop should invoke :func:`render_image` through ``asyncio.to_thread`` or an executor.

The output is a two-colour diagonal gradient (colours derived from a hash of prompt and seed),
the prompt word-wrapped on a translucent panel, a small ``"WxH · pixgate demo"`` caption and,
when client images are given (edits / blends), the first one as a faded background and every
one of them as a tile along the bottom edge.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import warnings
from collections.abc import Sequence
from typing import Final

from ..pillow import Image, ImageDraw, ImageFont, ImageOps
from .formats import FORMATS, normalize_format

__all__ = [
    "FORMATS",
    "MAX_INPUT_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "image_size",
    "normalize_format",
    "render_image",
]

MIN_SIDE: Final = 1
MAX_SIDE: Final = 8192
"""Hard limits of the renderer itself; the HTTP layer enforces the narrower 64..2048."""

MAX_INPUT_PIXELS: Final = 40_000_000
"""Client images larger than this (decoded) are refused instead of being decoded."""

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def image_size(data: bytes) -> tuple[int, int]:
    """Return ``(width, height)`` of an encoded image by reading its header only.

    Raises ValueError if the bytes are not a recognisable image or are unreasonably large.
    """
    with _open_image(data, index=None) as img:
        return img.size


def render_image(
    prompt: str,
    width: int,
    height: int,
    *,
    seed: int | None = None,
    inputs: Sequence[bytes] = (),
    fmt: str = "png",
) -> bytes:
    """Render a deterministic demo image and return it encoded as ``fmt``.

    The result is exactly ``width`` x ``height`` pixels. The same arguments always produce the
    same bytes. ``inputs`` are encoded client images (PNG, JPEG, WebP, ...); they are decoded
    and composed into the picture. Raises ValueError for invalid sizes, unknown formats or
    undecodable input images.
    """
    fmt = normalize_format(fmt)
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be between {MIN_SIDE} and {MAX_SIDE}, got {value}")

    decoded = [_decode_input(data, i) for i, data in enumerate(inputs)]

    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    color_a, color_b = _palette(digest)
    canvas = _gradient(width, height, color_a, color_b)
    if decoded:
        background = ImageOps.fit(decoded[0], (width, height), Image.Resampling.BILINEAR)
        canvas = Image.blend(canvas, background, 0.4)

    draw = ImageDraw.Draw(canvas, "RGBA")
    short = min(width, height)
    margin = max(2, round(short * 0.03))
    bottom = _draw_caption(draw, width, height, margin)
    if decoded:
        bottom = _draw_tiles(canvas, draw, decoded, width, bottom, margin)
    _draw_prompt(draw, prompt, width, margin, bottom - margin)

    return _encode(canvas, fmt)


# --------------------------------------------------------------------------------------------
# input decoding


def _open_image(data: bytes, index: int | None) -> Image.Image:
    label = "input image" if index is None else f"input image #{index + 1}"
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"{label} must be bytes")
    if not data:
        raise ValueError(f"{label} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBomb*, ...
        raise ValueError(f"{label} is not a valid image ({type(exc).__name__})") from exc
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > MAX_INPUT_PIXELS:
        img.close()
        raise ValueError(f"{label} is too large ({w}x{h}; at most {MAX_INPUT_PIXELS} pixels)")
    return img


def _decode_input(data: bytes, index: int) -> Image.Image:
    img = _open_image(data, index)
    try:
        # JPEG can decode at a reduced scale for free; inputs are only shown downscaled.
        img.draft("RGB", (MAX_SIDE // 4, MAX_SIDE // 4))
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return img.convert("RGB")
    except Exception as exc:
        raise ValueError(
            f"input image #{index + 1} could not be decoded ({type(exc).__name__})"
        ) from exc
    finally:
        img.close()


# --------------------------------------------------------------------------------------------
# drawing


def _palette(digest: bytes) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    hue = digest[0] / 256
    hue_b = (hue + 0.22 + (digest[1] / 256) * 0.3) % 1.0
    sat_a = 0.45 + digest[2] / 256 * 0.35
    sat_b = 0.45 + digest[3] / 256 * 0.35
    val_a = 0.55 + digest[4] / 256 * 0.4
    val_b = 0.55 + digest[5] / 256 * 0.4

    def rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb(h, s, v)
        return round(r * 255), round(g * 255), round(b * 255)

    return rgb(hue, sat_a, val_a), rgb(hue_b, sat_b, val_b)


def _gradient(
    width: int, height: int, color_a: tuple[int, int, int], color_b: tuple[int, int, int]
) -> Image.Image:
    vertical = Image.linear_gradient("L")  # 256x256, 0 at the top, 255 at the bottom
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT
    )
    diagonal = Image.blend(vertical, horizontal, 0.5).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return ImageOps.colorize(diagonal, color_a, color_b)


def _font(size: int) -> _Font:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _safe_text(font: _Font, text: str) -> str:
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    # The bitmap fallback font only knows latin-1.
    return text.encode("latin-1", "replace").decode("latin-1")


def _line_height(font: _Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    _left, top, _right, bottom = font.getbbox("Ag")
    return int(bottom - top) + 2


def _draw_caption(draw: ImageDraw.ImageDraw, width: int, height: int, margin: int) -> int:
    """Draw the caption bottom-right; return the y coordinate above it."""
    size = max(9, round(min(width, height) / 40))
    font = _font(size)
    line_h = _line_height(font)
    y = height - margin - line_h
    for text in (f"{width}x{height} · pixgate demo", f"{width}x{height}"):
        text = _safe_text(font, text)
        text_w = font.getlength(text)
        if text_w <= width - 2 * margin:
            pad = max(2, size // 4)
            x = width - margin - text_w
            draw.rounded_rectangle(
                (x - pad, y - 1, width - margin + pad, y + line_h + 1),
                radius=pad,
                fill=(0, 0, 0, 110),
            )
            draw.text((x, y), text, font=font, fill=(255, 255, 255, 235))
            return y - pad
    return height - margin


def _draw_tiles(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    images: Sequence[Image.Image],
    width: int,
    bottom: int,
    margin: int,
) -> int:
    """Draw one tile per input image in a row ending at ``bottom``; return the row's top."""
    count = len(images)
    gap = max(2, margin // 2)
    available = width - 2 * margin - gap * (count - 1)
    tile = min(round(canvas.height * 0.24), available // count)
    if tile < 6:
        return bottom
    border = max(1, tile // 40)
    row_w = count * tile + gap * (count - 1)
    x = (width - row_w) // 2
    bottom -= gap
    top = bottom - tile
    for img in images:
        draw.rectangle((x, top, x + tile - 1, top + tile - 1), fill=(255, 255, 255, 255))
        inner = tile - 2 * border
        if inner > 0:
            thumb = ImageOps.contain(img, (inner, inner), Image.Resampling.BILINEAR)
            canvas.paste(
                thumb,
                (
                    x + border + (inner - thumb.width) // 2,
                    top + border + (inner - thumb.height) // 2,
                ),
            )
        x += tile + gap
    return top


class _Measure:
    """Cached text-width measurement (per-word and per-character) for one font."""

    def __init__(self, font: _Font) -> None:
        self.font = font
        self._cache: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        width = self._cache.get(text)
        if width is None:
            width = self._cache[text] = self.font.getlength(text)
        return width


def _wrap(text: str, measure: _Measure, max_width: float) -> list[str]:
    space = measure(" ")
    lines: list[str] = []
    current = ""
    current_w = 0.0
    for word in text.split():
        word_w = measure(word) if len(word) <= 64 else max_width + 1
        if word_w > max_width:
            # Break an over-long word into chunks that fit (per-character widths, ignoring
            # kerning, which is close enough for a placeholder).
            if current:
                lines.append(current)
            chunk, chunk_w = "", 0.0
            for ch in word:
                ch_w = measure(ch)
                if chunk and chunk_w + ch_w > max_width:
                    lines.append(chunk)
                    chunk, chunk_w = "", 0.0
                chunk += ch
                chunk_w += ch_w
            current, current_w = chunk, chunk_w
        elif not current:
            current, current_w = word, word_w
        elif current_w + space + word_w <= max_width:
            current += " " + word
            current_w += space + word_w
        else:
            lines.append(current)
            current, current_w = word, word_w
    if current or not lines:
        lines.append(current)
    return lines


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, top: int, bottom: int) -> None:
    """Draw the word-wrapped prompt centred in the box ``[top, bottom]``."""
    area_h = bottom - top
    pad_x = max(2, round(width * 0.07))
    max_w = width - 2 * pad_x
    if area_h < 8 or max_w < 8:
        return
    text = " ".join(prompt.split()) or "(empty prompt)"
    if len(text) > 4000:
        text = text[:4000] + "…"

    # Start from a size that suits short prompts, capped by a rough estimate of the size at
    # which the whole text fits (glyphs ~0.5em wide, lines ~1.3em high), then shrink.
    size = round(min(width, area_h * 1.4) / 11)
    fit = (max_w * area_h * 0.75 / (0.65 * len(text))) ** 0.5
    min_size = max(8, round(min(width, area_h) / 60))
    size = max(min_size, min(size, round(fit * 1.15)))
    while True:
        font = _font(size)
        measure = _Measure(font)
        text_f = _safe_text(font, text)
        line_h = round(_line_height(font) * 1.15)
        lines = _wrap(text_f, measure, max_w * 0.92)
        if len(lines) * line_h <= area_h * 0.9 or size <= min_size:
            break
        size = max(min_size, int(size * 0.88))

    max_lines = max(1, int(area_h * 0.9) // line_h)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > max_w * 0.92:
            last = last[:-1]
        lines[-1] = _safe_text(font, last.rstrip() + "…")

    widths = [font.getlength(line) for line in lines]
    block_h = len(lines) * line_h
    block_w = max(widths)
    pad = max(4, size // 2)
    y0 = top + (area_h - block_h) // 2
    draw.rounded_rectangle(
        (
            (width - block_w) / 2 - pad,
            y0 - pad,
            (width + block_w) / 2 + pad,
            y0 + block_h + pad,
        ),
        radius=pad,
        fill=(15, 15, 20, 120),
    )
    for i, (line, line_w) in enumerate(zip(lines, widths, strict=True)):
        y = y0 + i * line_h + (line_h - _line_height(font)) // 2
        draw.text(((width - line_w) / 2, y), line, font=font, fill=(255, 255, 255, 255))


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        img.save(out, format="PNG", compress_level=1)
    elif fmt == "jpeg":
        img.save(out, format="JPEG", quality=88)
    else:
        img.save(out, format="WEBP", quality=82, method=0)
    return out.getvalue()
