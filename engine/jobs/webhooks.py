"""Webhooks: the final job POSTed to the client's `callback_url`, signed per Standard Webhooks
(webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.ts.body>),
retried with exponential backoff; every attempt is logged in the job record (`deliveries`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web

from ..api.errors import ApiError
from ..api.keys import SETTINGS, STATE
from ..runtime.images.fetch import FetchRefused, check_url, parse_url
from .manager import JobManager
from .records import public

MAX_BACKOFF = 3600.0


async def check_callback(request: web.Request, url: Any, manager: JobManager) -> str:
    """A callback URL the gateway may call: https (http only when allowed), and a host the
    SSRF guard accepts (checked again, after DNS, at every delivery)."""
    config = manager.config
    parts = urlsplit(url) if isinstance(url, str) else None
    allowed = ("https", "http") if config.webhook_allow_http else ("https",)
    if parts is None or parts.scheme not in allowed or not parts.hostname:
        raise ApiError(
            400, f"callback_url must be an {' or '.join(allowed)} URL", param="callback_url"
        )
    if config.webhook_secret is None:
        raise ApiError(
            400, "webhooks are off: the gateway has no PIXGATE_WEBHOOK_SECRET", param="callback_url"
        )
    try:
        check_url(parse_url(str(url)), request.app[SETTINGS].fetch_policy.allow_loopback)
    except FetchRefused as exc:
        raise ApiError(
            400, exc.client_message.replace("image URL", "callback_url"), param="callback_url"
        ) from None
    return str(url)


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Webhooks:
    """Delivers finished jobs that carry a callback_url, from background tasks."""

    def __init__(self, app: web.Application, manager: JobManager) -> None:
        self.app = app
        self.manager = manager
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_finished(self, record: dict[str, Any]) -> None:
        if record.get("callback_url") and self.manager.config.webhook_secret:
            task = asyncio.create_task(self.deliver(dict(record)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def deliver(self, record: dict[str, Any]) -> None:
        config = self.manager.config
        assert config.webhook_secret is not None
        url = str(record["callback_url"])
        msg_id = "msg_" + str(record["id"])  # the same id on every retry: receivers dedupe
        body = orjson.dumps({"type": f"image.job.{record['status']}", "data": public(record)})
        give_up = time.monotonic() + config.webhook_retry_for
        backoff = config.webhook_first_backoff
        log: list[dict[str, Any]] = record.setdefault("deliveries", [])
        while True:
            at = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(at),
                "webhook-signature": sign(config.webhook_secret, msg_id, at, body),
            }
            entry: dict[str, Any] = {"at": at, "status": None, "error": None}
            try:
                check_url(parse_url(url), self.app[SETTINGS].fetch_policy.allow_loopback)
                session = self.app[STATE].fetch_session  # DNS answers pass the SSRF guard
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    entry["status"] = resp.status
                    ok = 200 <= resp.status < 300
            except FetchRefused as exc:
                entry["error"], ok = exc.client_message, False
            except (aiohttp.ClientError, TimeoutError) as exc:
                entry["error"], ok = type(exc).__name__, False
            log.append(entry)
            await self.manager.save(record)
            if ok or time.monotonic() + backoff > give_up:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
