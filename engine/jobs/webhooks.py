"""Webhooks: the final job POSTed to the client's `callback_url`, signed per Standard Webhooks
(webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.ts.body>),
retried with exponential backoff; every attempt is logged in the job record."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..api.errors import ApiError
from .config import JobConfig


async def check_callback(request: web.Request, url: Any) -> str:
    """A callback URL the gateway may call: https (http only when allowed) and, at delivery,
    through the SSRF-guarded session like any client URL."""
    from ..api.jobs import JOBS

    config: JobConfig = request.app[JOBS].config
    parts = urlsplit(url) if isinstance(url, str) else None
    allowed = ("https", "http") if config.webhook_allow_http else ("https",)
    if parts is None or parts.scheme not in allowed or not parts.hostname:
        raise ApiError(
            400,
            "callback_url must be an https URL"
            + (" (or http)" if config.webhook_allow_http else ""),
            param="callback_url",
        )
    if config.webhook_secret is None:
        raise ApiError(
            400,
            "webhooks are off: the gateway has no PIXGATE_WEBHOOK_SECRET",
            param="callback_url",
        )
    return str(url)


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()

