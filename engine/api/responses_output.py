"""The Response object of /v1/responses and its image_generation_call items (docs/responses.md).

Shared by the JSON answer (responses.py) and the event stream (responses_stream.py).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..rawtext import RawText
from ..runtime.request import Outcome
from . import imagestream, params
from .images import is_image_usage
from .responses_input import TOOL_FIELDS, ImageCall


class Shape:
    """The parts of a Response that echo the request, shared by the answer and the stream."""

    def __init__(self, body: dict[str, Any], call: ImageCall, model: str | None) -> None:
        self.id = "resp_" + secrets.token_hex(24)
        self.created_at = int(time.time())
        self.model = params.text(body, "model") or model or "auto"
        self.prompt = call.prompt
        self.quality = call.options.get("quality")
        self.background = call.options.get("background")
        self.echo: dict[str, Any] = {
            "instructions": _string_or_none(body.get("instructions")),
            "metadata": _metadata(body.get("metadata")),
            "temperature": _number(body.get("temperature"), 1.0),
            "top_p": _number(body.get("top_p"), 1.0),
            "tool_choice": _tool_choice(body.get("tool_choice")),
            "tools": [{k: v for k, v in call.tool.items() if k in TOOL_FIELDS}]
            if call.tool is not None
            else [],
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "max_output_tokens": None,
            "previous_response_id": None,
            "truncation": "disabled",
        }

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        outcome: Outcome | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        done = status == "completed"
        answer = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if done else None,
            "error": error,
            "incomplete_details": None,
            "model": self.model,
            "output": output,
            **self.echo,
        }
        if done:
            answer["usage"] = usage(outcome.usage if outcome else None)
        return answer

    def call_item(self, item_id: str, status: str, result: str | RawText | None) -> dict[str, Any]:
        return {"type": "image_generation_call", "id": item_id, "status": status, "result": result}


async def generation_call(
    shape: Shape, b64: str | RawText, outcome: Outcome, item_id: str | None = None
) -> dict[str, Any]:
    """A completed image_generation_call item, described like OpenAI's: the prompt it was made
    from (the upstream's revision, else the client's), size, format, quality, background.
    `b64` may still be a view of the upstream's body (RawText): it is written out as it is."""
    fmt, size = await imagestream.describe(str(b64))
    item = shape.call_item(item_id or new_item_id(), "completed", b64)
    item.update(
        revised_prompt=outcome.revised_prompt or shape.prompt,
        size=size or "auto",
        quality=shape.quality or "auto",
        background=shape.background or "auto",
        output_format=fmt or "png",
    )
    return item


def new_item_id() -> str:
    return "ig_" + secrets.token_hex(24)


def usage(image_usage: Any) -> dict[str, Any]:
    """ResponseUsage: the image's token counts when the upstream reported them, else zeros."""
    counts = (
        {k: image_usage[k] for k in ("input_tokens", "output_tokens", "total_tokens")}
        if is_image_usage(image_usage)
        else {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    )
    return {
        "input_tokens": counts["input_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": counts["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts["total_tokens"],
    }


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _tool_choice(value: Any) -> Any:
    if value in ("auto", "required", "none"):
        return value
    if isinstance(value, dict) and value.get("type") == "image_generation":
        return {"type": "image_generation"}
    return "auto"
