"""Pillow, with the gateway's decompression-bomb bound set once for every module that uses it.

Those modules import it inside the functions that decode or draw an image (or are themselves
imported there), never at start: most gateways pass upstream answers through without opening
them, and loading Pillow would cost an idle gateway about 2.2 MiB of RSS."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

__all__ = ["Image", "ImageDraw", "ImageFont", "ImageOps", "UnidentifiedImageError"]

Image.MAX_IMAGE_PIXELS = 100_000_000  # a decompression bomb is refused, not rendered
