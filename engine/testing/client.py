"""The client side of a golden case: send its request to the gateway and check the answer."""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from PIL import Image, UnidentifiedImageError

from .cases import ExpectedImage, ExpectedResponse, GoldenCase
from .fakeserver import RUNNER_HEADER, RUNNER_VALUE
from .match import compare, compare_headers, describe, substitute

_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}


async def exchange(
    session: aiohttp.ClientSession,
    urls: Mapping[str, str],
    case: GoldenCase,
    problems: list[str],
    received: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Send the client request and check the response (for a cancel case, the answer to the
    DELETE sent once `received(case.cancel_after)` says the upstream has that many requests)."""
    req = case.request
    data: bytes | None = None
    headers = {k: str(substitute(v, urls)) for k, v in req.headers.items()}
    if req.has_json:
        data = json.dumps(substitute(req.json, urls), ensure_ascii=False).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif req.text is not None:
        data = req.text.encode("utf-8")
    if case.cancel_after is not None:
        headers["Prefer"] = "respond-async"
    async with session.request(
        req.method, urls["gateway"] + req.path, data=data, headers=headers
    ) as resp:
        raw = await resp.read()
        status = resp.status
        got_headers = {k.lower(): v for k, v in resp.headers.items()}
    if case.cancel_after is not None:
        if status != 202:
            problems.append(f"the async request answered {status}, not 202: {raw[:300]!r}")
            return
        if received is not None:
            await received(case.cancel_after)
        auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
        job = f"{urls['gateway']}/v1/images/jobs/{json.loads(raw)['id']}"
        async with session.delete(job, headers=auth) as resp:
            raw = await resp.read()
            status = resp.status
            got_headers = {k.lower(): v for k, v in resp.headers.items()}
    await _check_response(session, urls, case.response, status, got_headers, raw, problems)


async def _check_response(
    session: aiohttp.ClientSession,
    urls: Mapping[str, str],
    expected: ExpectedResponse,
    status: int,
    headers: dict[str, str],
    raw: bytes,
    problems: list[str],
) -> None:
    body: Any = None
    parsed = False
    try:
        body = json.loads(raw) if raw else None
        parsed = True
    except ValueError:
        pass
    shown = describe(body if parsed else raw[:300].decode("utf-8", errors="replace"), 500)
    if status != expected.status:
        # The rest of the body would only differ as a consequence: say it once.
        problems.append(f"response.status: expected {expected.status}, got {status}: {shown}")
        return
    compare_headers(substitute(expected.headers, urls), headers, "response.headers", problems)
    needs_json = expected.has_json or expected.error is not None or expected.images is not None
    if needs_json and not parsed:
        problems.append(f"response: the body is not JSON: {shown}")
        return
    if expected.has_json:
        compare(substitute(expected.json, urls), body, "response.json", problems, exact=False)
    if expected.error is not None:
        _check_error(expected, body, problems)
    if expected.images is not None:
        await _check_images(session, urls, expected.images, body, problems)


def _check_error(expected: ExpectedResponse, body: Any, problems: list[str]) -> None:
    assert expected.error is not None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        problems.append(f"response.error: expected an OpenAI error body, got {describe(body)}")
        return
    missing = [k for k in ("message", "type", "param", "code") if k not in error]
    if missing:
        problems.append(
            f"response.error: not the OpenAI error shape, missing {', '.join(missing)}: "
            f"{describe(error)}"
        )
    if not isinstance(error.get("message"), str) or not isinstance(error.get("type"), str):
        problems.append(f"response.error: message and type must be strings: {describe(error)}")
    for key, value in expected.error.exact.items():
        compare(value, error.get(key), f"response.error.{key}", problems, exact=True)
    needle = expected.error.message_contains
    message = error.get("message")
    if needle is not None and (not isinstance(message, str) or needle not in message):
        problems.append(
            f"response.error.message: expected it to contain {describe(needle)}, "
            f"got {describe(message, 400)}"
        )


async def _check_images(
    session: aiohttp.ClientSession,
    urls: Mapping[str, str],
    expected: Sequence[ExpectedImage],
    body: Any,
    problems: list[str],
) -> None:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        problems.append(f"response.images: expected a data list, got {describe(body)}")
        return
    if len(data) != len(expected):
        problems.append(f"response.images: expected {len(expected)} images, got {len(data)}")
    for i, (want, item) in enumerate(zip(expected, data, strict=False)):
        where = f"response.data[{i}]"
        try:
            blob = await _image_bytes(session, urls, item)
        except _ImageError as exc:
            problems.append(f"{where}: {exc}")
            continue
        try:
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                size, fmt = img.size, _FORMATS.get(img.format or "", img.format)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            problems.append(f"{where}: not a decodable image ({len(blob)} bytes): {exc}")
            continue
        if want.width is not None and size[0] != want.width:
            problems.append(f"{where}: expected width {want.width}, got {size[0]}")
        if want.height is not None and size[1] != want.height:
            problems.append(f"{where}: expected height {want.height}, got {size[1]}")
        if want.format is not None and fmt != want.format:
            problems.append(f"{where}: expected format {want.format}, got {fmt}")


class _ImageError(Exception):
    pass


async def _image_bytes(session: aiohttp.ClientSession, urls: Mapping[str, str], item: Any) -> bytes:
    if not isinstance(item, dict):
        raise _ImageError(f"expected an object with b64_json or url, got {describe(item)}")
    if isinstance(item.get("b64_json"), str):
        try:
            return base64.b64decode(item["b64_json"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _ImageError(f"b64_json is not valid base64: {exc}") from None
    url = item.get("url")
    if not isinstance(url, str):
        raise _ImageError(f"expected b64_json or url, got {describe(item)}")
    headers = {RUNNER_HEADER: RUNNER_VALUE} if url.startswith(urls["upstream"] + "/") else None
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(10)) as resp:
            blob = await resp.read()
            if resp.status != 200:
                text = blob[:300].decode("utf-8", errors="replace")
                raise _ImageError(f"downloading {url} failed: HTTP {resp.status}: {text}")
            return blob
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _ImageError(f"downloading {url} failed: {exc.__class__.__name__}: {exc}") from None
