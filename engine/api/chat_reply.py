"""Chat completion answers: markdown image replies, stream chunks, usage and progress lines."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..runtime.images.imagetypes import sniff
from ..runtime.images.results import ClientItem
from ..runtime.request import Outcome

_DATA_URI_PAYLOAD = re.compile(r"(data:[^,\s)]*,)[A-Za-z0-9+/=]+")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]<>`])")
_QUEUED = frozenset({"pending", "queued", "queue", "in_queue", "inqueue", "waiting", "submitted"})
_RUNNING = frozenset(
    {"running", "processing", "in_progress", "inprogress", "generating", "started", "working"}
)
_FINISHED = frozenset({"succeed", "succeeded", "success", "completed", "complete", "done"})
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d+)?)\s*%?$")
MAX_PROGRESS_TEXT = 200


def completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def image_markdown(item: ClientItem) -> str | None:
    """`![image](url)` for one result: its URL, or its base64 as a data URI."""
    url = str(item.get("url") or "")
    if not url and item.get("b64_json"):
        b64 = str(item["b64_json"])
        url = f"data:{_b64_mime(b64)};base64,{b64}"
    return f"![image]({url})" if url else None


def _b64_mime(b64: str) -> str:
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4))
    except (binascii.Error, ValueError):
        return "image/png"
    return sniff(head) or "image/png"


def content_parts(outcome: Outcome) -> list[str]:
    """The reply's markdown in the pieces a stream sends: an italic line with the revised
    prompt (when the upstream rewrote it), then one image per line."""
    parts: list[str] = []
    if outcome.revised_prompt and outcome.revised_prompt.strip():
        parts.append(f"*{escape_markdown(outcome.revised_prompt)}*\n\n")
    images = [md for md in (image_markdown(item) for item in outcome.data) if md]
    parts.extend(md if i == 0 else f"\n{md}" for i, md in enumerate(images))
    return parts


def escape_markdown(text: str) -> str:
    """One line of plain text that markdown shows as it is."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def rough_tokens(text: str) -> int:
    """About four characters a token; data URI payloads count as nothing."""
    text = _DATA_URI_PAYLOAD.sub(r"\1", text)
    return (len(text) + 3) // 4


def usage(prompt: str, content: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = rough_tokens(prompt), rough_tokens(content)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    id: str, created: int, model: str, content: str, usage: dict[str, int]
) -> dict[str, Any]:
    """A `chat.completion` (OpenAI's CreateChatCompletionResponse)."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


@dataclass(frozen=True, slots=True)
class Chunks:
    """`chat.completion.chunk`s of one stream: the same id, created and model in each."""

    id: str
    created: int
    model: str
    include_usage: bool = False

    def _base(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk = self._base()
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            chunk["usage"] = None  # as OpenAI does: only the last chunk carries the numbers
        return chunk

    def usage(self, usage: dict[str, int]) -> dict[str, Any]:
        chunk = self._base()
        chunk["choices"] = []
        chunk["usage"] = usage
        return chunk


def start_line(task: str, model: str, images: int, context: bool) -> str:
    """The first "thinking" line of a stream, before the upstream has said anything."""
    if task == "edit":
        what = "Editing the last image" if context else "Editing the image"
    elif task == "blend":
        what = f"Blending {images} images"
    elif task == "variation":
        what = "Making a variation of the image"
    else:
        what = "Generating"
    return f"{what} with {model}…"


def progress_text(value: Any) -> str | None:
    """A line for what a provider reported while polling: a percentage (`35`, `0.35`, "35%"),
    a status word (PENDING, RUNNING, ...) or its own text. None when there is nothing to say."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        fraction = isinstance(value, float) and 0 <= value <= 1
        percent = value * 100 if fraction else value
        return f"Progress: {max(0, min(100, round(percent)))}%"
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text:
        return None
    match = _PERCENT.match(text)
    if match:
        return f"Progress: {max(0, min(100, round(float(match.group(1)))))}%"
    word = text.lower().replace("-", "_").replace(" ", "_")
    if word in _QUEUED:
        return "Queued…"
    if word in _RUNNING:
        return "Running…"
    if word in _FINISHED:
        return "Finishing…"
    return text[:MAX_PROGRESS_TEXT]


class ProgressFeed:
    """The `on_progress` callback for a stream: turns provider values into lines and passes
    each on once (polling repeats the same status many times)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.last: str | None = None

    def __call__(self, value: Any) -> None:
        text = progress_text(value)
        if text is None or text == self.last:
            return
        self.last = text
        self.emit(text + "\n")
