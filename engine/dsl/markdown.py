"""Markdown image links in upstream text: `![alt](url)`, `![alt](<url>)`, `![alt](url "t")`."""

from __future__ import annotations

import re

# Only http(s) and data URIs: anything else (javascript:, file:, relative paths) is not an
# image a gateway may fetch or hand out.
_IMAGE = re.compile(
    r"!\[[^\]\n]{0,500}\]\(\s*<?((?:https?://|data:image/)[^\s<>()]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)


def markdown_image_urls(text: str) -> list[str]:
    return _IMAGE.findall(text)
