"""Image sizes: parse `WxH`, read an aspect ratio, and fit a request to what a model accepts."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from .spec import SizeRule

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$")
_RATIO = re.compile(r"^\s*(\d{1,2})\s*:\s*(\d{1,2})\s*$")

# Ratios a chat prompt may end with; also what `size.aspect` reports (the nearest of these).
STANDARD_RATIOS: tuple[str, ...] = (
    "1:1",
    "16:9",
    "9:16",
    "3:2",
    "2:3",
    "4:3",
    "3:4",
    "21:9",
    "9:21",
    "4:5",
    "5:4",
)


@functools.lru_cache(maxsize=256)  # per request; only valid sizes (short) are kept
def parse_size(text: str) -> tuple[int, int]:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"size must look like 1024x1024, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= 16384 and 1 <= height <= 16384):
        raise ValueError(f"size out of range: {text!r}")
    return width, height


def parse_ratio(text: str) -> tuple[int, int] | None:
    match = _RATIO.match(text)
    if not match:
        return None
    w, h = int(match.group(1)), int(match.group(2))
    return (w, h) if w > 0 and h > 0 else None


@functools.lru_cache(maxsize=1024)
def nearest_ratio(width: int, height: int) -> str:
    target = math.log(width / height)
    return min(
        STANDARD_RATIOS,
        key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - target),
    )


def size_for_ratio(
    ratio: tuple[int, int], area: int = 1024 * 1024, multiple: int = 64
) -> tuple[int, int]:
    """A size of about `area` pixels with the given aspect ratio."""
    w, h = ratio
    width = math.sqrt(area * w / h)
    height = width * h / w
    return _round_to(width, multiple), _round_to(height, multiple)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int

    @property
    def text(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> str:
        return nearest_ratio(self.width, self.height)

    def as_context(self) -> dict[str, object]:
        """`size` in a template context: the same dict for the same size (templates only
        read it), made once rather than per request."""
        return _size_context(self.width, self.height)


@functools.lru_cache(maxsize=1024)
def _size_context(width: int, height: int) -> dict[str, object]:
    size = Size(width, height)
    return {"width": width, "height": height, "text": size.text, "aspect": size.aspect}


FITS_KEPT = 1024  # fitted sizes kept per rule (clients' sizes repeat; a flood of odd ones
# starts the rule's table afresh)


def fitted(requested: tuple[int, int] | None, rule: SizeRule) -> Size:
    """`fit_size` as a Size, made once per request size and rule (sizes repeat)."""
    found = rule.fits.get(requested)
    if found is None:
        if len(rule.fits) >= FITS_KEPT:
            rule.fits.clear()
        found = rule.fits[requested] = Size(*fit_size(requested, rule))
    return found


@functools.lru_cache(maxsize=4096)
def fit_size(requested: tuple[int, int] | None, rule: SizeRule) -> tuple[int, int]:
    """The allowed size nearest to the request (by aspect ratio first, then by area)."""
    if requested is None:
        requested = rule.default
    if rule.choices:
        return min(rule.choices, key=lambda c: _distance(requested, c))
    width, height = float(requested[0]), float(requested[1])
    lo, hi = rule.min, rule.max
    if hi is not None and (width > hi[0] or height > hi[1]):
        scale = min(hi[0] / width, hi[1] / height)
        width, height = width * scale, height * scale
    if lo is not None and (width < lo[0] or height < lo[1]):
        scale = max(lo[0] / width, lo[1] / height)
        width, height = width * scale, height * scale
    m = rule.multiple_of
    w, h = (_round_to(width, m), _round_to(height, m)) if m > 1 else (round(width), round(height))
    if hi is not None:
        w, h = min(w, hi[0] - hi[0] % m), min(h, hi[1] - hi[1] % m)
    if rule.max_pixels is not None and w * h > rule.max_pixels:
        # scale the area down, ratio kept; rounding down keeps the product under the cap
        scale = math.sqrt(rule.max_pixels / (w * h))
        w, h = _floor_to(w * scale, m), _floor_to(h * scale, m)
    return int(w), int(h)


def _floor_to(value: float, multiple: int) -> int:
    return max(multiple, math.floor(value / multiple) * multiple)


def _distance(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, float]:
    ratio = abs(math.log((a[0] / a[1]) / (b[0] / b[1])))
    area = abs(math.log((a[0] * a[1]) / (b[0] * b[1])))
    return (round(ratio, 3), area)
