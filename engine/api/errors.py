"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson
from aiohttp import web

from ..runtime.lifecycle.overload import RETRY_AFTER, Overloaded
from ..runtime.routing.failures import CLIENT_STATUS, UpstreamFailure


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.Response(
            status=self.status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=self.headers,
        )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def too_large(limit: int) -> ApiError:
    """A request body over PIXGATE_MAX_BODY_BYTES."""
    return ApiError(
        413, f"request body is larger than the {limit} byte limit", code="request_too_large"
    )


def overloaded(exc: Overloaded) -> ApiError:
    """A 503 at one of the process's bounds: the openai SDKs retry it after Retry-After."""
    return ApiError(
        503,
        exc.message,
        type="server_error",
        code="overloaded",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def from_failure(failure: UpstreamFailure) -> ApiError:
    status, type_, code = CLIENT_STATUS.get(failure.kind, CLIENT_STATUS["upstream"])
    headers = {}
    wait = failure.retry_after
    if wait is not None and status == 429 and math.isfinite(wait):
        headers["Retry-After"] = str(max(1, round(wait)))
    where = f"upstream {failure.provider}" if failure.provider else "upstream"
    return ApiError(status, f"{where}: {failure.message}", type=type_, code=code, headers=headers)
