"""The prompt optimizer: an OpenAI-compatible chat model rewrites the prompt before generation.

`optimize` sends `POST {base_url}/chat/completions` with the route's system prompt and the
client's prompt and returns the rewrite, or raises OptimizerError. The caller (the image
service) falls back to the original prompt on any error: the optimizer never fails a request.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ...dsl.spec import OptimizerSpec, ProviderSpec
from ..lifecycle.bodygate import read_capped

MAX_ANSWER = 1024 * 1024  # a chat answer larger than this is not a prompt
MAX_PROMPT = 32000  # a rewrite longer than OpenAI's own prompt limit is refused

_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("「", "」"))


class OptimizerError(Exception):
    """The rewrite failed (HTTP error, timeout, unusable answer); the message has no key."""


async def optimize(
    session: aiohttp.ClientSession,
    spec: OptimizerSpec,
    provider: ProviderSpec,
    base_url: str,
    key: str | None,
    prompt: str,
) -> str:
    """The rewritten prompt. Raises OptimizerError; the whole exchange is bounded by
    `spec.timeout`."""
    url = URL(base_url.rstrip("/") + "/chat/completions", encoded=True)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key is not None:
        if provider.auth.header and provider.auth.value is not None:
            headers[provider.auth.header] = str(provider.auth.value.render({"key": key}))
        if provider.auth.query:
            url = url.update_query({provider.auth.query: key})
    body = {
        "model": spec.model,
        "messages": [
            {"role": "system", "content": spec.system},
            {"role": "user", "content": prompt},
        ],
        "stream": False,
    }
    try:
        async with asyncio.timeout(spec.timeout):
            status, raw = await _post(session, url, headers, orjson.dumps(body))
    except TimeoutError:
        raise OptimizerError(f"no answer within {spec.timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise OptimizerError(f"request failed: {exc.__class__.__name__}") from None
    try:
        answer = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        answer = None
    if status >= 400:
        raise OptimizerError(f"HTTP {status}: {_error_text(answer, raw)}")
    if not isinstance(answer, dict):
        raise OptimizerError(f"the answer is not a JSON object: {raw[:200]!r}")
    text = clean(_content(answer), reasoning=spec.reasoning)
    if not text:
        raise OptimizerError("the answer has no text")
    if len(text) > MAX_PROMPT:
        raise OptimizerError(f"the rewrite is too long ({len(text)} characters)")
    return text


async def _post(
    session: aiohttp.ClientSession, url: URL, headers: dict[str, str], data: bytes
) -> tuple[int, bytes]:
    async with session.post(url, headers=headers, data=data) as resp:
        raw = await read_capped(resp.content, MAX_ANSWER, gated=False)
        if raw is None:
            raise OptimizerError("the answer is too large")
        return resp.status, bytes(raw)


def _content(answer: dict[str, Any]) -> str:
    """`choices[0].message.content`: a string, or a list of text parts. `reasoning_content`
    (and any other field) is never read."""
    choices = answer.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", None)
        )
    return ""


def clean(text: str, *, reasoning: bool) -> str:
    """Trim the answer to the prompt itself. In reasoning mode, `<think>...</think>` blocks go,
    and so does everything before a stray closing `</think>` (servers that drop the opening
    tag). One pair of quotes around the whole answer goes too."""
    if reasoning:
        text = _THINK.sub("", text)
        parts = _THINK_END.split(text)
        text = parts[-1]
    text = text.strip()
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            inner = text[len(left) : -len(right)]
            if left not in inner and right not in inner:
                text = inner.strip()
            break
    return text


def _error_text(answer: Any, raw: bytes) -> str:
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
        if answer.get("message"):
            return str(answer["message"])[:300]
    return raw[:200].decode("utf-8", errors="replace") or "no details"
