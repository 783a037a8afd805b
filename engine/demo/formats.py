"""The demo renderer's output formats, apart from the renderer: the demo upstream's routes and
forms need them at start, and the renderer (engine/demo/render.py, Pillow) is loaded only when
the demo first renders or reads an image."""

from __future__ import annotations

from typing import Final

FORMATS: Final[dict[str, str]] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
"""Supported output formats mapped to their MIME type."""

_FORMAT_ALIASES: Final[dict[str, str]] = {"jpg": "jpeg"}


def normalize_format(fmt: str) -> str:
    """Return the canonical output-format name (``png``/``jpeg``/``webp``) or raise ValueError."""
    key = fmt.strip().lower()
    key = _FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValueError(
            f"unsupported output format {fmt!r}; expected one of: {', '.join(FORMATS)}"
        )
    return key
