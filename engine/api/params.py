"""Read and check OpenAI request fields, with 400s that name the offending parameter."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from ..dsl.sizes import parse_size
from .errors import bad_request

# An integer as text: ASCII digits only (str.isdigit also takes '²', which int() refuses), and
# few enough of them that int() never meets its 4,300-digit limit.
INTEGER = re.compile(r"-?[0-9]{1,19}")

MAX_N = 10
MAX_PROMPT = 32000
MAX_KEPT_SIZE = 32  # characters: a longer size string is not kept in parse_size's cache


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The JSON body must be an object.", code="invalid_json")
    return body


def prompt(body: dict[str, Any]) -> str:
    value = body.get("prompt")
    if value is None:
        raise bad_request(
            "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    if not isinstance(value, str) or not value.strip():
        raise bad_request("'prompt' must be a non-empty string.", "prompt")
    if len(value) > MAX_PROMPT:
        raise bad_request(f"'prompt' is too long: at most {MAX_PROMPT} characters.", "prompt")
    return value


def n(body: dict[str, Any]) -> int:
    value = body.get("n", 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("'n' must be an integer.", "n")
    if not 1 <= value <= MAX_N:
        raise bad_request(f"{value} is not valid for 'n': it must be between 1 and {MAX_N}.", "n")
    return value


def size(body: dict[str, Any]) -> tuple[int, int] | None:
    value = body.get("size")
    if value is None or value == "auto":
        return None
    if not isinstance(value, str):
        raise bad_request("'size' must be a string like '1024x1024' or 'auto'.", "size")
    # parse_size remembers the sizes it reads (clients send the same few); a string longer
    # than any real size (whitespace around it is allowed) is read without being kept.
    parse = parse_size if len(value) <= MAX_KEPT_SIZE else parse_size.__wrapped__
    try:
        width, height = parse(value)
    except ValueError:
        raise bad_request(
            f"Invalid 'size' {value!r}: use WIDTHxHEIGHT like '1024x1024', or 'auto'.", "size"
        ) from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise bad_request(
            f"Invalid 'size' {value!r}: each side must be between 16 and 8192.", "size"
        )
    return width, height


def choice(
    body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None = None
) -> str | None:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise bad_request(
            f"Invalid value {value!r} for '{name}': expected one of {', '.join(allowed)}.", name
        )
    return str(value)


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean.", name)
    return value


def text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string.", name)
    return value


def seed(body: dict[str, Any]) -> int | None:
    value = body.get("seed")
    if value is None:
        return None
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise bad_request("'seed' must be a non-negative integer.", "seed")
    return value
