"""The canonical image job: what every OpenAI endpoint turns a client request into."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from .images.imagetypes import extension


@dataclass(slots=True)
class InputImage:
    """An image the client sent, in every form a provider template may want."""

    data: bytes
    mime: str
    public_url: str | None = None

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.b64}"

    @property
    def url(self) -> str:
        """A URL the upstream can fetch: the gateway's own file URL, else a data URI."""
        return self.public_url or self.data_uri

    @property
    def filename(self) -> str:
        return f"image.{extension(self.mime)}"

    @property
    def bytes(self) -> bytes:
        return self.data

    def __str__(self) -> str:  # `{{ image }}` in a text template means its URL
        return self.url


@dataclass(slots=True)
class ImageJob:
    task: str
    prompt: str
    model: str | None = None
    n: int = 1
    size: tuple[int, int] | None = None
    quality: str | None = None
    style: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    response_format: str | None = None  # None: the route's or model's default (Attempt)
    output_format: str | None = None
    background: str | None = None
    user: str | None = None
    images: list[InputImage] = field(default_factory=list)
    mask: InputImage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
